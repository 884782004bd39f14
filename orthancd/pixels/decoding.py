"""One frame of a dataset -> Image, as Orthanc 1.13.0's DicomImageDecoder
decodes it: the same pixel formats, the same quirks (no masking of the
bits above High Bit on the direct path, YBR_FULL left as is in native
data...) and the same errors, raised as OrthancError.

The REST layer decides what those errors become (Orthanc turns them into
415 for the image routes, and passes them on for numpy).
"""
import struct

import numpy as np

from orthancd.errors import ErrorCode, OrthancError
from orthancd.pixels import codecs
from orthancd.pixels.frames import (DEFLATED_LITTLE_ENDIAN, EXPLICIT_BIG_ENDIAN,
                                    EXPLICIT_LITTLE_ENDIAN, IMPLICIT_LITTLE_ENDIAN, PIXEL_DATA,
                                    FrameIndex, decode_psmct_rle1, fragments, frames_count, is_encapsulated,
                                    is_psmct_rle1, native_pixel_bytes, transfer_syntax)
from orthancd.pixels.image import (MAX_IMAGE_FRAME_SIZE, Image, PixelFormat, check_buffer_size,
                                   internal_error_at, not_implemented_at)
from orthancd.pixels.information import ImageInformation, tag_text

NATIVE_SYNTAXES = frozenset((IMPLICIT_LITTLE_ENDIAN, EXPLICIT_LITTLE_ENDIAN, EXPLICIT_BIG_ENDIAN,
                             DEFLATED_LITTLE_ENDIAN))

# Beyond Orthanc's own 4 GB guard: a decoded frame larger than this is
# refused, so that a few concurrent requests on hostile files (a small
# codestream or header promising gigapixels) cannot exhaust memory.
MAX_DECODED_FRAME_SIZE = 1024 * 1024 * 1024

_RED, _GREEN, _BLUE = 0x00281101, 0x00281102, 0x00281103
_RED_DATA, _GREEN_DATA, _BLUE_DATA = 0x00281201, 0x00281202, 0x00281203


class DicomPixels:
    """The pixels of one parsed dataset."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.syntax = transfer_syntax(dataset)
        self._index = None
        self._information = None
        self._native_data = None

    def frames_count(self):
        return frames_count(self.dataset)

    def information(self):
        """The dataset's ImageInformation, read once (an error reading it
        is raised again on each call: nothing is kept)."""
        if self._information is None:
            self._information = ImageInformation(self.dataset)
        return self._information

    def frame_index(self):
        if self._index is None:
            self._index = FrameIndex(self.dataset)
        return self._index

    def decode(self, frame):
        """The decoded frame, or OrthancError as Orthanc would fail."""
        if self.syntax in NATIVE_SYNTAXES:
            return self._decode_native(frame)
        if self.syntax in codecs.SUPPORTED:
            return self._decode_compressed(frame)
        raise OrthancError(ErrorCode.NotImplemented,
                           "The built-in DCMTK decoder cannot decode some DICOM instance whose "
                           "transfer syntax is: %s" % self.syntax)

    # -- native pixel data --

    def _decode_native(self, frame):
        dataset = self.dataset
        information = self.information()
        pixel_format = information.pixel_format(ignore_photometric=False)
        if pixel_format is None:
            raise not_implemented_at("DicomImageDecoder.cpp:357")
        width, height = information.width, information.height
        check_buffer_size(pixel_format, width, height)
        data = self._native_bytes()
        if information.bits_allocated > 32 or information.bits_stored >= 32:
            raise OrthancError(ErrorCode.NotImplemented,
                               "No support for BitsAllocated > 32 or BitsStored >= 32")
        frame_size = information.frame_size()
        if information.number_of_frames * frame_size > len(data):
            raise OrthancError(ErrorCode.BadFileFormat, "Invalid size")
        if frame >= information.number_of_frames:
            raise OrthancError(ErrorCode.ParameterOutOfRange)
        _check_decoded_size(pixel_format, width, height)
        if information.is_palette:
            return _lookup_table(dataset, information, data, information.number_of_frames, frame)
        shift = information.shift
        if (not information.is_planar and information.bits_stored != 1 and
                (shift == 0 or pixel_format in (PixelFormat.Grayscale8, PixelFormat.Grayscale16))):
            # Orthanc's direct path: the values as stored, shifted right,
            # without masking what lies above High Bit.
            # (Without shift, a read-only view of the file's bytes: nothing
            # downstream writes into a decoded image.)
            pixels = _view(data, pixel_format, width, height, frame)
            if shift:
                pixels = pixels >> shift
            return Image(pixel_format, pixels)
        return _decode_value_by_value(information, pixel_format, data, frame, frame_size)

    def _native_bytes(self):
        """The native pixel data in host order, or Philips' decoded
        PMSCT_RLE1: made once (a big endian file's swapped copy, the
        decoded run-lengths), and shared by the frames, which are views on
        it."""
        if self._native_data is None:
            dataset = self.dataset
            if PIXEL_DATA in dataset:
                self._native_data = native_pixel_bytes(dataset)
            elif is_psmct_rle1(dataset):
                self._native_data = decode_psmct_rle1(dataset)
            else:
                raise OrthancError(ErrorCode.BadFileFormat)
        return self._native_data

    # -- encapsulated pixel data --

    def _decode_compressed(self, frame):
        dataset = self.dataset
        if not is_encapsulated(dataset):
            raise OrthancError(ErrorCode.BadFileFormat)
        information = self.information()
        pixel_format = information.pixel_format(ignore_photometric=True)
        if pixel_format is None:
            raise not_implemented_at("DicomImageDecoder.cpp:357")
        width, height = information.width, information.height
        check_buffer_size(pixel_format, width, height)
        palette = information.is_palette and information.samples_per_pixel == 1
        if palette:
            if information.bits_stored == 1:
                raise OrthancError(ErrorCode.BadSequenceOfCalls,
                                   "This call is incompatible with black-and-white images")
            size = width * height * information.bytes_per_value
            if size > MAX_IMAGE_FRAME_SIZE:
                raise OrthancError(ErrorCode.BadFileFormat,
                                   "ImageDecoder: max decoded frame size overflow  (%d vs. %d)"
                                   % (size, MAX_IMAGE_FRAME_SIZE))
        failure = "Cannot decode a palette image" if palette else "Cannot decode a non-palette image"
        _check_decoded_size(pixel_format, width, height)
        compressed = self._compressed_frame(frame, failure)
        # Orthanc's own YCbCr conversion applies to planar RLE (see below):
        # the codec must hand over the values as stored.
        raw_values = palette or self.syntax == codecs.RLE
        try:
            array = codecs.decode(self.syntax, compressed, information, as_rgb=not raw_values)
        except codecs.CodecError as e:
            raise OrthancError(ErrorCode.BadFileFormat, failure) from e
        if palette:
            values = np.ascontiguousarray(array).astype("<u%d" % information.bytes_per_value,
                                                         copy=False)
            return _lookup_table(dataset, information, values.tobytes(), 1, 0)
        expected = (height, width) if pixel_format.channels == 1 else (height, width, 3)
        if array.size != height * width * pixel_format.channels:
            raise OrthancError(ErrorCode.BadFileFormat, failure)
        pixels = _to_dtype(array.reshape(expected), pixel_format.dtype)
        if (pixel_format is PixelFormat.RGB24 and self.syntax == codecs.RLE and
                information.is_planar and information.photometric == "YBR_FULL"):
            pixels = ycbcr_to_rgb(pixels)
        return Image(pixel_format, pixels)

    def _compressed_frame(self, frame, failure):
        try:
            return self.frame_index().raw_frame(frame)
        except OrthancError:
            pass
        # What Orthanc's frame index cannot split, DCMTK's codecs may
        # still find (frames spread over fragments without offset table).
        from pydicom.encaps import get_frame
        count = frames_count(self.dataset)
        if frame >= count:
            raise OrthancError(ErrorCode.BadFileFormat, failure)
        try:
            items = fragments(self.dataset[PIXEL_DATA].value)
        except OrthancError:
            raise OrthancError(ErrorCode.BadFileFormat, failure)
        if len(items) < count + 1:
            raise OrthancError(ErrorCode.BadFileFormat, failure)
        try:
            return get_frame(self.dataset[PIXEL_DATA].value, frame, number_of_frames=count)
        except Exception as e:
            raise OrthancError(ErrorCode.BadFileFormat, failure) from e


def _check_decoded_size(pixel_format, width, height):
    if pixel_format.bytes_per_pixel * width * height > MAX_DECODED_FRAME_SIZE:
        raise OrthancError(ErrorCode.BadFileFormat,
                           "Trying to create an ImageBuffer whose size (%d bytes) is larger than "
                           "the limit (%d bytes)" % (pixel_format.bytes_per_pixel * width * height,
                                                     MAX_DECODED_FRAME_SIZE))


def _to_dtype(array, dtype):
    if array.dtype == dtype:
        return np.ascontiguousarray(array)
    info = np.iinfo(dtype)
    return np.clip(array, info.min, info.max).astype(dtype)


def _view(data, pixel_format, width, height, frame):
    count = width * height * pixel_format.channels
    offset = frame * count * pixel_format.dtype.itemsize
    pixels = np.frombuffer(data, dtype=pixel_format.dtype, count=count, offset=offset)
    if pixel_format.channels == 1:
        return pixels.reshape(height, width)
    return pixels.reshape(height, width, pixel_format.channels)


def _decode_value_by_value(information, pixel_format, data, frame, frame_size):
    """Orthanc's slow path (DicomIntegerPixelAccessor): every sample read,
    shifted, masked to Bits Stored, sign-extended, clamped to the format."""
    if pixel_format in (PixelFormat.RGB24, PixelFormat.Grayscale8):
        dtype = np.dtype("u1")
    elif pixel_format is PixelFormat.Grayscale16:
        dtype = np.dtype("<u2")
    elif pixel_format is PixelFormat.SignedGrayscale16:
        dtype = np.dtype("<i2")
    else:
        raise internal_error_at("DicomImageDecoder.cpp:730")
    width, height, channels = information.width, information.height, information.samples_per_pixel
    raw = np.frombuffer(data, dtype="u1", count=frame_size, offset=frame * frame_size)
    if information.bits_stored == 1:
        bits = np.unpackbits(raw.reshape(height, width // 8), axis=1, bitorder="little")
        return Image(pixel_format, (bits * 255).astype("u1"))
    per_value = information.bytes_per_value
    samples = raw.reshape(-1, per_value).astype("<u4")
    values = samples[:, 0].copy()
    for byte in range(1, per_value):
        values |= samples[:, byte] << (8 * byte)
    if information.is_planar:
        values = values.reshape(channels, height, width).transpose(1, 2, 0)
    else:
        values = values.reshape(height, width, channels)
    values = values >> information.shift
    stored = information.bits_stored
    if information.is_signed:
        mask = (1 << (stored - 1)) - 1
        negative = (values & (1 << (stored - 1))) != 0
        result = (values & mask).astype("i8")
        result[negative] -= mask + 1
    else:
        result = (values & ((1 << stored) - 1)).astype("i8")
    limits = np.iinfo(dtype)
    result = np.clip(result, limits.min, limits.max).astype(dtype)
    if pixel_format.channels == 1:
        result = result.reshape(height, width)
    return Image(pixel_format, np.ascontiguousarray(result))


def ycbcr_to_rgb(pixels):
    """Orthanc's JPEG YCbCr -> RGB conversion, in float32 and truncated."""
    ybr = pixels.astype(np.float32)
    y, cb, cr = ybr[..., 0], ybr[..., 1] - np.float32(128), ybr[..., 2] - np.float32(128)
    red = y + np.float32(1.402) * cr
    green = y - np.float32(0.344136) * cb - np.float32(0.714136) * cr
    blue = y + np.float32(1.772) * cb
    rgb = np.stack((red, green, blue), axis=-1)
    return np.clip(rgb, 0, 255).astype("u1")


# -- palettes --

def _descriptor(dataset, tag):
    element = dataset.get(tag)
    if element is None:
        return None
    value = element.value
    if isinstance(value, (bytes, bytearray)):
        # Not yet typed (implicit VR): 16-bit words.
        if len(value) % 2:
            return None
        return "\\".join(str(v) for v in struct.unpack("<%dH" % (len(value) // 2), value))
    return tag_text(dataset, tag)


def _lut(dataset, tag):
    element = dataset.get(tag)
    if element is None or not element.value:
        return None
    value = bytes(element.value)
    big = transfer_syntax(dataset) == EXPLICIT_BIG_ENDIAN
    return np.frombuffer(value[:len(value) - len(value) % 2], dtype=">u2" if big else "<u2")


def _lookup_table(dataset, information, pixel_data, frames_in_data, frame):
    """Orthanc's palette decoding, with its checks of the tables' sizes and
    of every index (CVE class: indexes past the end of the table)."""
    pixel_format = information.pixel_format(ignore_photometric=False)
    red, green, blue = (_descriptor(dataset, t) for t in (_RED, _GREEN, _BLUE))
    luts = [_lut(dataset, t) for t in (_RED_DATA, _GREEN_DATA, _BLUE_DATA)]
    if (information.is_planar or pixel_format is None or None in (red, green, blue) or
            red != green or red != blue or any(t is None for t in luts) or not pixel_data):
        raise OrthancError(ErrorCode.NotImplemented, "Inconsistent Palette Color Lookup Table")
    width, height = information.width, information.height
    red_lut, green_lut, blue_lut = luts
    if pixel_format is PixelFormat.RGB24:
        parts = red.split("\\")
        if len(parts) != 3:
            raise OrthancError(ErrorCode.NotImplemented,
                               "Palette Color Lookup Table Descriptor invalid length: '%s'" % red)
        try:
            size, first, bits = (int(p) for p in parts)
        except ValueError:
            raise OrthancError(ErrorCode.NotImplemented, "Inconsistent Palette Color Lookup Table")
        if first != 0 or bits < 8 or size < 0:
            raise OrthancError(ErrorCode.NotImplemented, "Inconsistent Palette Color Lookup Table")
        if not (len(red_lut) == len(green_lut) == len(blue_lut) == size):
            raise OrthancError(ErrorCode.NotImplemented,
                               "Palette Color Lookup Table Descriptor invalid palette size: '%s'"
                               % red)
        expected = width * height
        if len(pixel_data) != expected * frames_in_data:
            raise OrthancError(ErrorCode.BadFileFormat, "Invalid size")
        indexes = np.frombuffer(pixel_data, dtype="u1", count=expected, offset=expected * frame)
        if indexes.size and int(indexes.max()) >= size:
            raise OrthancError(ErrorCode.BadFileFormat, "Pixel value exceeds palette")
        shift = bits - 8
        table = (np.stack((red_lut, green_lut, blue_lut), axis=-1).astype("<u4") >> shift) & 0xFF
        return Image(PixelFormat.RGB24, table.astype("u1")[indexes].reshape(height, width, 3))
    expected = width * height * 2
    if expected * frames_in_data != len(pixel_data):
        raise OrthancError(ErrorCode.InternalError,
                           "Palette Color Lookup Table Descriptor: invalid image size")
    if red != "0\\0\\16" or not (len(red_lut) == len(green_lut) == len(blue_lut) == 65536):
        raise OrthancError(ErrorCode.NotImplemented,
                           "Palette Color Lookup Table Descriptor not supported: '%s'" % red)
    indexes = np.frombuffer(pixel_data, dtype="<u2", count=width * height, offset=expected * frame)
    table = np.stack((red_lut, green_lut, blue_lut), axis=-1).astype("<u2")
    return Image(PixelFormat.RGB48, table[indexes].reshape(height, width, 3))
