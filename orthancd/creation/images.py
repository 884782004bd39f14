"""The images a data URI can embed in a new DICOM file (PngReader,
JpegReader and PamReader of Orthanc 1.13.0): PNG, JPEG and PAM read into
pixels, with the formats, limits and errors of Orthanc's readers.

The dimensions a header promises are checked before anything is decoded
or allocated: beyond Orthanc's own 4 GB limit (whose message is kept), or
wider or taller than a DICOM US can say (which Orthanc finds out once it
has decoded the image, with the same error), nothing is decoded.  Within
the limit, an image larger than SPOOL_THRESHOLD is decoded into the
array ``allocate(shape, dtype)`` gives when the caller passes one (a
file-backed memory map: orthancd.creation.spool), so that a 4 GB image
costs no 4 GB of the daemon's own memory.
"""
import struct

import imagecodecs
import numpy as np

from orthancd.errors import ErrorCode, OrthancError
from orthancd.modification import values
from orthancd.pixels.image import not_implemented_at

MAX_IMAGE_FRAME_SIZE = 4294967296            # Orthanc's limit (4 GB)
# Decoded images above this size go to a spool when the caller has one.
SPOOL_THRESHOLD = 64 * 1024 * 1024
MAX_DIMENSION = 0xFFFF                       # Rows and Columns are US
COLUMNS, ROWS = 0x00280011, 0x00280010


class Embedded:
    """Decoded pixels: ``format`` is Orthanc's pixel format name
    (Grayscale8, Grayscale16, RGB24, RGBA32, RGBA64), ``pixels`` an array
    (height, width[, channels]) in native values."""

    def __init__(self, pixel_format, pixels):
        self.format = pixel_format
        self.pixels = pixels

    @property
    def height(self):
        return self.pixels.shape[0]

    @property
    def width(self):
        return self.pixels.shape[1]


def _bad(details=None):
    return OrthancError(ErrorCode.BadFileFormat, details)


def _check_size(kind, total):
    if total > MAX_IMAGE_FRAME_SIZE:
        raise _bad("%s size overflow  (%d vs. %d)" % (kind, total, MAX_IMAGE_FRAME_SIZE))


def _check_dimensions(width, height):
    """What ParsedDicomFile answers when it writes Columns, then Rows, of
    an image too wide or too tall for them; said before decoding."""
    for tag, value in ((COLUMNS, width), (ROWS, height)):
        if value > MAX_DIMENSION:
            raise values.out_of_range(tag, value)


def _decode(decode, content, shape, dtype, allocate):
    """``decode(content)``, into a spooled array when the image is large
    and the caller has a spool."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if allocate is None or size <= SPOOL_THRESHOLD:
        return decode(content)
    return decode(content, out=allocate(shape, dtype))


# -- PNG --

_PNG_FORMATS = {(0, 8): ("Grayscale8", 1, 1), (0, 16): ("Grayscale16", 1, 2),
                (2, 8): ("RGB24", 3, 1), (6, 8): ("RGBA32", 4, 1), (6, 16): ("RGBA64", 4, 2)}


def read_png(content, allocate=None):
    if len(content) < 8 or content[:8] != b"\x89PNG\r\n\x1a\n":
        raise _bad()
    if len(content) < 33 or content[12:16] != b"IHDR":
        raise _bad()
    width, height, depth, color = struct.unpack(">IIBB", content[16:26])
    found = _PNG_FORMATS.get((color, depth))
    if found is None:
        raise not_implemented_at("PngReader.cpp:195")
    pixel_format, channels, size = found
    _check_size("PNG IMAGE", width * channels * size * height)
    _check_dimensions(width, height)
    expected = (height, width) if channels == 1 else (height, width, channels)
    try:
        # libpng, as Orthanc
        pixels = _decode(imagecodecs.png_decode, content, expected,
                         "<u2" if size == 2 else "u1", allocate)
    except Exception:   # imagecodecs' PngError, and whatever libpng reports
        raise _bad()
    if pixels.shape != expected:
        raise _bad()
    return Embedded(pixel_format, np.ascontiguousarray(pixels))


# -- JPEG --

def read_jpeg(content, allocate=None):
    from orthancd.pixels.codecs import CodecError, jpeg_frame_header
    try:
        height, width, components = jpeg_frame_header(content)
    except (CodecError, struct.error):
        # libjpeg tells what is wrong below
        height = width = 0
        components = None
    # JpegReader: the output format first (grey or RGB), then the size.
    if components is not None and components not in (1, 3):
        raise not_implemented_at("JpegReader.cpp:63")
    _check_size("JPEG IMAGE", width * height * (components or 3))
    _check_dimensions(width, height)
    shape = (height, width) if components == 1 else (height, width, 3)
    try:
        # libjpeg-turbo, as Orthanc
        pixels = _decode(imagecodecs.jpeg8_decode, content, shape, "u1", allocate)
    except Exception as e:   # imagecodecs' Jpeg8Error: libjpeg's message
        raise OrthancError(ErrorCode.InternalError, "Error during JPEG decoding: %s" % e)
    if pixels.ndim == 2:
        return Embedded("Grayscale8", np.ascontiguousarray(pixels))
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return Embedded("RGB24", np.ascontiguousarray(pixels))
    raise not_implemented_at("JpegReader.cpp:63")


# -- PAM --

def read_pam(content, allocate=None):
    """The pixels are a view of ``content`` (no copy; 16-bit values big
    endian, as in the file)."""
    delimiter = b"ENDHDR\n"
    end = content.find(delimiter)
    if end < 0:
        raise _bad()
    lines = content[:end].decode("latin-1").split("\n")
    if len(lines) < 2 or lines[0] != "P7" or lines[-1] != "":
        raise _bad()
    parameters = {}
    for line in lines[1:-1]:
        tokens = [t for t in line.split(" ") if t]
        if len(tokens) != 2:
            raise _bad()
        parameters[tokens[0]] = tokens[1]

    def integer(key):
        if key not in parameters:
            raise _bad()
        try:
            value = int(parameters[key])
        except ValueError:
            raise _bad()
        if value < 0 or value > 0x7FFFFFFF:
            raise _bad()
        return value
    width, height = integer("WIDTH"), integer("HEIGHT")
    channels, maximum = integer("DEPTH"), integer("MAXVAL")
    if "TUPLTYPE" not in parameters:
        raise _bad()
    kind = parameters["TUPLTYPE"]
    if width > 65535 or height > 65535 or channels > 4 or maximum > 65535:
        raise _bad("PAM header values exceed reasonable limits")
    formats = {("GRAYSCALE", 1, 255): "Grayscale8", ("GRAYSCALE", 1, 65535): "Grayscale16",
               ("RGB", 3, 255): "RGB24", ("RGB", 3, 65535): "RGB48"}
    pixel_format = formats.get((kind, channels, maximum))
    if pixel_format is None:
        line = {"GRAYSCALE": 68, "RGB": 87}.get(kind) if channels == (1 if kind == "GRAYSCALE"
                                                                      else 3) else None
        raise not_implemented_at("PamReader.cpp:%d" % (line or 92))
    size = 1 if maximum == 255 else 2
    total = width * channels * size * height
    if total > MAX_IMAGE_FRAME_SIZE:
        raise _bad("PAM image too large  (%d vs. %d)" % (total, MAX_IMAGE_FRAME_SIZE))
    if len(content) != end + len(delimiter) + total:
        raise _bad()
    _check_dimensions(width, height)
    pixels = np.frombuffer(content, ">u2" if size == 2 else np.uint8,
                           width * height * channels, end + len(delimiter))
    shape = (height, width) if channels == 1 else (height, width, channels)
    return Embedded(pixel_format, pixels.reshape(shape))


READERS = {"image/png": read_png, "image/jpeg": read_jpeg,
           "image/x-portable-arbitrarymap": read_pam}
