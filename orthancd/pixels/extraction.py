"""The operations behind the pixel routes, from a parsed file (DicomPixels,
see orthancd.pixels.parsed_files) to the bytes of the answer.  They run in
the pixel pool (orthancd.tap), never on the reactor.

Errors: OrthancError as Orthanc raises them.  ``DecodingFailed`` marks a
frame that could not be decoded at all: Orthanc's image routes answer it
with 415 whatever the reason, where numpy reports the reason.
"""
import threading
import zlib

import numpy as np

from orthancd.errors import ErrorCode, OrthancError
from orthancd.pixels import encoders, processing
from orthancd.pixels.frames import extract_pdf, raw_frame_mime
from orthancd.pixels.image import PixelFormat
from orthancd.pixels.information import PHOTOMETRIC_INTERPRETATION, tag_text
from orthancd.pixels.processing import ExtractionMode


class DecodingFailed(Exception):
    """Orthanc's DecodeDicomFrame failed (it says "Not implemented")."""


class Encoding:
    """How an image answer is encoded: "png", "jpeg" (with a quality) or
    "pam".  ``refusal`` is an error found while reading the request that
    Orthanc only reports once the frame is decoded."""

    def __init__(self, kind=None, quality=90, refusal=None):
        self.kind = kind
        self.quality = quality
        self.refusal = refusal

    @property
    def mime(self):
        return {"png": "image/png", "jpeg": "image/jpeg",
                "pam": "image/x-portable-arbitrarymap"}[self.kind]


class Unanswered(Exception):
    """Orthanc's handler answers nothing (an empty 404)."""


def _decode(pixels, frame):
    try:
        return pixels.decode(frame)
    except OrthancError as e:
        raise DecodingFailed() from e


def encode_image(image, mode, invert, encoding):
    if encoding.refusal is not None:
        raise encoding.refusal
    if encoding.kind is None:
        raise Unanswered()
    if encoding.kind == "jpeg":
        if mode not in (ExtractionMode.UInt8, ExtractionMode.Preview):
            raise OrthancError(ErrorCode.ParameterOutOfRange)
        image = processing.apply_extraction_mode(image, mode, invert)
        return encoders.encode_jpeg(image, encoding.quality)
    image = processing.apply_extraction_mode(image, mode, invert)
    if encoding.kind == "pam":
        return encoders.encode_pam(image)
    return encoders.encode_png(image)


def frame_image(pixels, frame, mode, encoding):
    """/preview, /image-uint8, /image-uint16, /image-int16."""
    image = _decode(pixels, frame)
    invert = False
    if mode is ExtractionMode.Preview:
        invert = pixels.information().photometric == "MONOCHROME1"
    return encode_image(image, mode, invert, encoding)


class Rendering:
    """The arguments of /rendered, or the error reading them raised."""

    def __init__(self, window_center=None, window_width=None, width=0, height=0, smooth=False,
                 refusal=None):
        self.window_center = window_center
        self.window_width = window_width
        self.width = width
        self.height = height
        self.smooth = smooth
        self.refusal = refusal


def rendered(pixels, frame, rendering, encoding):
    image = _decode(pixels, frame)
    dataset = pixels.dataset
    invert = (tag_text(dataset, PHOTOMETRIC_INTERPRETATION) or "").strip() == "MONOCHROME1"
    intercept, slope = processing.rescale(dataset, frame)
    center, width = processing.default_windowing(dataset, frame)
    if rendering.refusal is not None:
        raise rendering.refusal
    if rendering.window_width is not None:
        width = rendering.window_width
    if rendering.window_center is not None:
        center = rendering.window_center
    image, mode, invert = processing.render(image, invert, intercept, slope, center, width,
                                            rendering.width, rendering.height, rendering.smooth)
    return encode_image(image, mode, invert, encoding)


def matlab(pixels, frame):
    image = _decode(pixels, frame)
    return encoders.encode_matlab(image)


def raw_frame(pixels, frame, compress):
    """(mime, bytes) of /frames/{n}/raw and raw.gz."""
    dataset = pixels.dataset
    from orthancd.pixels.frames import PIXEL_DATA, is_psmct_rle1
    if PIXEL_DATA not in dataset and not is_psmct_rle1(dataset):
        raise OrthancError(ErrorCode.BadRequest,
                           "Cannot extract a frame from a DICOM file that does not have pixel data.")
    raw = pixels.frame_index().raw_frame(frame)
    if compress:
        # Orthanc's gzip member: zlib's default level, no name, no time.
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        return "application/gzip", compressor.compress(raw) + compressor.flush()
    return raw_frame_mime(dataset), raw


def frames_count(pixels):
    return pixels.frames_count()


def pdf(pixels):
    return extract_pdf(pixels.dataset)


# -- numpy --

class NumpyVolume:
    """Frames answered one after the other as a .npy array, as Orthanc's
    NumpyVisitor: every frame of the same size and format.

    Each frame is decoded and checked when it is written (in any thread,
    at its index, once the first frame has fixed the format), so that
    Orthanc's errors come before any byte of the answer.

    A frame whose file stays in memory anyway (``keep``: the file is in the
    cache of parsed files, or is the only one) is kept as decoded (for
    native pixel data, a view on the file's bytes) and only converted
    (rescaled to float32) when its chunk of the answer is made, just
    before it is sent: no array of the whole volume, whose fresh pages
    cost more to fault in than the conversion itself.  Any other frame is
    converted at once into such an array (allocated at the first one: one
    allocation, huge pages), so that its file's memory is freed and reused
    for the next file."""

    def __init__(self, depth, rescale):
        self.depth = depth
        self.rescale = rescale
        self.written = 0
        # Per frame: (pixels, (intercept, slope) or None), or None once
        # converted into self._array.
        self._frames = [None] * max(depth, 1)
        self._array = None
        self._shape = None
        self._lock = threading.Lock()

    def write(self, pixels, frame, index=None, keep=True):
        image = pixels.decode(frame)
        if self._shape is None:
            self._shape = (image.width, image.height, image.format)
            rescaled = self.rescale and image.format is not PixelFormat.RGB24
            self._set_format(image, PixelFormat.Float32 if rescaled else image.format)
        elif (image.width, image.height) != self._shape[:2]:
            raise OrthancError(ErrorCode.IncompatibleImageSize,
                               "The size of the frames varies across the instance(s)")
        elif image.format is not self._shape[2]:
            raise OrthancError(ErrorCode.IncompatibleImageFormat,
                               "The pixel format of the frames varies across the instance(s)")
        rescaling = None
        if self.rescale and image.format is not PixelFormat.RGB24:
            processing.check_rescalable(image.format)
            rescaling = processing.rescale(pixels.dataset, frame)
        position = self.written if index is None else index
        if keep:
            self._frames[position] = (image.pixels, rescaling)
        else:
            self._convert(image.pixels, rescaling, self._allocated()[position])
        with self._lock:
            self.written += 1

    def _set_format(self, image, pixel_format):
        self._header = encoders.numpy_header(self.depth, image.width, image.height, pixel_format)
        self._dtype = encoders.numpy_dtype(pixel_format)
        self._frame_shape = (image.height, image.width) + ((3,) if pixel_format.channels == 3 else ())
        self._frame_size = image.width * image.height * pixel_format.channels * self._dtype.itemsize

    def _allocated(self):
        with self._lock:
            if self._array is None:
                # np.empty: no page is touched before its frame is written.
                self._array = np.empty((len(self._frames),) + self._frame_shape, dtype=self._dtype)
            return self._array

    def _convert(self, pixels, rescaling, target=None):
        if rescaling is not None:
            intercept, slope = rescaling
            return processing.rescaled(pixels, intercept, slope, target)
        if target is None:
            return pixels.astype(self._dtype, copy=False)
        target[...] = pixels.reshape(target.shape)
        return target

    def _check_complete(self):
        if (self.depth == 0 and self.written != 1) or (self.depth and self.written != self.depth):
            raise OrthancError(ErrorCode.BadSequenceOfCalls)

    @property
    def size(self):
        return len(self._header) + len(self._frames) * self._frame_size

    def chunks(self):
        """The .npy bytes, frame by frame (no copy of the whole array)."""
        self._check_complete()
        for index in range(self.chunks_count):
            yield self.chunk(index)

    @property
    def chunks_count(self):
        return 1 + len(self._frames)

    def chunk(self, index):
        """Chunk ``index`` of the answer: the header, then the frames."""
        if index == 0:
            self._check_complete()
            return self._header
        kept = self._frames[index - 1]
        if kept is None:
            return self._array[index - 1].tobytes()
        return self._convert(*kept).tobytes()

    def answer(self, compress):
        self._check_complete()
        return encoders.finalize_numpy(list(self.chunks()), compress)


def numpy_frame(pixels, frame, rescale):
    volume = NumpyVolume(0, rescale)
    volume.write(pixels, frame)
    return volume


def numpy_instance(pixels, rescale):
    depth = pixels.frames_count()
    if depth == 0:
        raise OrthancError(ErrorCode.BadFileFormat, "Empty DICOM instance")
    volume = NumpyVolume(depth, rescale)
    for frame in range(depth):
        volume.write(pixels, frame)
    return volume
