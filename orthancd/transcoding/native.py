"""The stored pixel values of a data set, frame by frame, as DCMTK holds
them once decompressed: what a transcoder writes back natively or hands
to an encoder.

DCMTK's JPEG decoder converts YCbCr to RGB (JPEG lossy colour comes out
RGB); its RLE and JPEG-LS decoders keep the photometric interpretation,
and RLE keeps the planar configuration.  Frames are produced one at a
time: a file promising more frames or pixels than it holds fails at the
first missing one, before anything large is allocated.
"""
import numpy as np

from orthancd.errors import OrthancError
from orthancd.pixels import codecs
from orthancd.pixels.decoding import MAX_DECODED_FRAME_SIZE, DicomPixels, ycbcr_to_rgb
from orthancd.pixels.frames import PIXEL_DATA, FrameIndex, is_encapsulated
from orthancd.pixels.image import PixelFormat
from orthancd.pixels.information import ImageInformation
from orthancd.transcoding import syntaxes


class CannotDecode(Exception):
    """The pixel data cannot be brought back to native values."""


class NativePixels:
    """The image module of a data set and its frames as native values
    (arrays of unsigned bit patterns, (rows, columns[, samples]))."""

    def __init__(self, dataset, syntax):
        self.dataset = dataset
        self.syntax = syntax
        try:
            information = ImageInformation(dataset)
            self.frame_size = information.frame_size()
        except OrthancError as e:
            raise CannotDecode(str(e)) from e
        if syntax not in syntaxes.UNCOMPRESSED and syntax not in syntaxes.DECODABLE:
            raise CannotDecode("no decoder for " + syntax)
        if syntax not in syntaxes.UNCOMPRESSED and not is_encapsulated(dataset):
            raise CannotDecode("compressed syntax without encapsulated pixel data")
        if information.bits_allocated not in (8, 16) or information.bits_stored < 2:
            raise CannotDecode("%d bits allocated, %d stored"
                               % (information.bits_allocated, information.bits_stored))
        if information.samples_per_pixel not in (1, 3):
            raise CannotDecode("%d samples per pixel" % information.samples_per_pixel)
        if self.frame_size > MAX_DECODED_FRAME_SIZE:
            raise CannotDecode("frames of %d bytes" % self.frame_size)
        self.information = information
        self.rows, self.columns = information.height, information.width
        self.samples = information.samples_per_pixel
        self.bits_allocated = information.bits_allocated
        self.bits_stored = information.bits_stored
        self.is_signed = information.is_signed
        self.count = information.number_of_frames
        self.photometric = information.photometric or "MONOCHROME2"
        self.planar = int(information.is_planar)
        if syntax in syntaxes.JPEG_FAMILY:
            if self.photometric.startswith("YBR"):
                self.photometric = "RGB"
            self.planar = 0
        elif syntax in (syntaxes.JPEG_LS_LOSSLESS, syntaxes.JPEG_LS_LOSSY):
            self.planar = 0
        elif syntax in syntaxes.JPEG_2000:
            # OpenJPEG undoes the colour transform of YBR_ICT / YBR_RCT.
            if self.photometric in ("YBR_ICT", "YBR_RCT"):
                self.photometric = "RGB"
            self.planar = 0
        try:
            self._index = FrameIndex(dataset)
        except OrthancError as e:
            raise CannotDecode(str(e)) from e
        self._dtype = np.dtype("u1" if self.bits_allocated == 8 else "<u2")

    @property
    def is_palette(self):
        return self.photometric == "PALETTE COLOR"

    def frame(self, index):
        """Frame ``index`` as an interleaved array of unsigned values."""
        try:
            raw = self._index.raw_frame(index)
        except OrthancError as e:
            raise CannotDecode(str(e)) from e
        if self.syntax in syntaxes.UNCOMPRESSED:
            if len(raw) < self.frame_size:
                raise CannotDecode("truncated pixel data")
            array = np.frombuffer(raw, self._dtype, self.rows * self.columns * self.samples)
            if self.samples == 1:
                return array.reshape(self.rows, self.columns)
            if self.planar:
                return array.reshape(3, self.rows, self.columns).transpose(1, 2, 0)
            return array.reshape(self.rows, self.columns, 3)
        as_rgb = self.syntax in syntaxes.JPEG_FAMILY
        try:
            array = codecs.decode(self.syntax, raw, self.information, as_rgb=as_rgb)
        except codecs.CodecError as e:
            raise CannotDecode(str(e)) from e
        expected = (self.rows, self.columns) + ((3,) if self.samples == 3 else ())
        if array.size != self.rows * self.columns * self.samples:
            raise CannotDecode("the codec gave %s instead of %s" % (array.shape, expected))
        array = array.reshape(expected)
        if array.dtype.itemsize != self._dtype.itemsize:
            array = array.astype(self._dtype.str.replace("u", "i") if self.is_signed
                                 else self._dtype)
        return array.view(self._dtype)

    def native_frame_bytes(self, index):
        """Frame ``index`` as native pixel data (little endian), in the
        planar configuration this image keeps."""
        array = self.frame(index)
        if self.samples == 3 and self.planar:
            array = array.transpose(2, 0, 1)
        return np.ascontiguousarray(array).astype(self._dtype.newbyteorder("<"),
                                                  copy=False).tobytes()

    def rgb_frame(self, index):
        """Frame ``index`` as 8-bit RGB, what DCMTK's lossy encoder
        compresses for colour: YCbCr converted, palettes looked up."""
        if self.is_palette:
            try:
                image = DicomPixels(self.dataset).decode(index)
            except OrthancError as e:
                raise CannotDecode(str(e)) from e
            if image.format is PixelFormat.RGB48:
                return (image.pixels >> 8).astype("u1")
            return np.ascontiguousarray(image.pixels)
        array = self.frame(index)
        if self.photometric in ("YBR_FULL", "YBR_FULL_422"):
            return ycbcr_to_rgb(array)
        return array


def has_pixel_data(dataset):
    return PIXEL_DATA in dataset
