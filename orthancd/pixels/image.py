"""Pixel formats (Orthanc's names) and the decoded image."""
import enum

import numpy as np

from orthancd.errors import ErrorCode, OrthancError

# Orthanc refuses to allocate any image buffer larger than this (64-bit build).
MAX_IMAGE_FRAME_SIZE = 4 * 1024 * 1024 * 1024


class PixelFormat(enum.Enum):
    # value: (numpy dtype, channels)
    Grayscale8 = ("u1", 1)
    Grayscale16 = ("<u2", 1)
    SignedGrayscale16 = ("<i2", 1)
    Grayscale32 = ("<u4", 1)
    RGB24 = ("u1", 3)
    RGB48 = ("<u2", 3)
    Float32 = ("<f4", 1)

    @property
    def dtype(self):
        return np.dtype(self.value[0])

    @property
    def channels(self):
        return self.value[1]

    @property
    def bytes_per_pixel(self):
        return self.dtype.itemsize * self.channels

    @property
    def is_color(self):
        return self.channels == 3


GRAYSCALE_INTEGERS = (PixelFormat.Grayscale8, PixelFormat.Grayscale16,
                      PixelFormat.SignedGrayscale16)


class Image:
    """A decoded frame: ``pixels`` is (height, width) for one channel,
    (height, width, 3) for colour, of the format's dtype."""

    __slots__ = ("format", "pixels")

    def __init__(self, pixel_format, pixels):
        self.format = pixel_format
        self.pixels = pixels

    @property
    def width(self):
        return self.pixels.shape[1]

    @property
    def height(self):
        return self.pixels.shape[0]


def check_buffer_size(pixel_format, width, height):
    """Orthanc's guard before allocating an image."""
    size = pixel_format.bytes_per_pixel * width * height
    if size > MAX_IMAGE_FRAME_SIZE:
        raise OrthancError(ErrorCode.BadFileFormat,
                           "Trying to create an ImageBuffer whose size (%d bytes) is larger than "
                           "the limit (%d bytes)" % (size, MAX_IMAGE_FRAME_SIZE))


def not_implemented_at(place):
    """The error Orthanc raises with THROW_WITH_FILE_AND_LINE_INFO: its
    details name the source line, and clients see them."""
    return OrthancError(ErrorCode.NotImplemented,
                        "ErrorCode_NotImplemented triggered from %s" % place)


def internal_error_at(place):
    return OrthancError(ErrorCode.InternalError,
                        "ErrorCode_InternalError triggered from %s" % place)
