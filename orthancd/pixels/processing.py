"""What Orthanc does to a decoded frame before encoding it: its extraction
modes (preview, uint8, uint16, int16), the rendering of /rendered
(rescale, windowing, resizing, smoothing), and the rescaling of numpy.

Arithmetic follows Orthanc's: float32 where it computes in float, its
rounding (half away from zero) or truncation, its clamping.
"""
import re

import numpy as np

from orthancd.errors import ErrorCode, OrthancError
from orthancd.pixels.extraction_modes import ExtractionMode
from orthancd.pixels.image import Image, PixelFormat, not_implemented_at
from orthancd.pixels.information import tag_text

F32 = np.float32


def _not_implemented():
    # The details name a line of ImageProcessing.cpp or DicomImageDecoder.cpp:
    # these paths only end in 415 answers, whose body is empty.
    return OrthancError(ErrorCode.NotImplemented)


# -- rounding as Orthanc (boost::math::iround, in float32) --

def iround(values):
    values = np.asarray(values, dtype=F32)
    up = np.ceil(values)
    up = np.where(up - values > F32(0.5), up - F32(1), up)
    down = np.floor(values)
    down = np.where(values - down > F32(0.5), down + F32(1), down)
    return np.where(values >= 0, up, down)


def iround_scalar(value):
    return int(iround(np.array([value], dtype=F32))[0])


# -- conversions between formats (Orthanc's ImageProcessing::Convert) --

def _luminance(rgb):
    # Orthanc's Y = 0.2126 R + 0.7152 G + 0.0722 B, whose last constant is
    # written "0722" in C++: an octal literal, 466.
    channels = rgb.astype(np.int64)
    return (2126 * channels[..., 0] + 7152 * channels[..., 1] + 466 * channels[..., 2]) // 10000


_CONVERSIONS = {
    (PixelFormat.Grayscale8, PixelFormat.Grayscale16), (PixelFormat.Grayscale8, PixelFormat.SignedGrayscale16),
    (PixelFormat.Grayscale16, PixelFormat.Grayscale8), (PixelFormat.Grayscale16, PixelFormat.SignedGrayscale16),
    (PixelFormat.SignedGrayscale16, PixelFormat.Grayscale8), (PixelFormat.SignedGrayscale16, PixelFormat.Grayscale16),
    (PixelFormat.RGB24, PixelFormat.Grayscale8), (PixelFormat.RGB24, PixelFormat.Grayscale16),
    (PixelFormat.RGB48, PixelFormat.Grayscale16), (PixelFormat.RGB48, PixelFormat.Grayscale8),
    (PixelFormat.RGB24, PixelFormat.SignedGrayscale16), (PixelFormat.RGB48, PixelFormat.RGB24),
}


def convert(image, target):
    source = image.format
    if source is target:
        return image
    if target is PixelFormat.Float32:
        if source in (PixelFormat.Grayscale8, PixelFormat.Grayscale16, PixelFormat.Grayscale32,
                      PixelFormat.SignedGrayscale16):
            return Image(target, image.pixels.astype(F32))
        raise _not_implemented()
    if (source, target) not in _CONVERSIONS:
        raise _not_implemented()
    if source is PixelFormat.RGB48 and target is PixelFormat.RGB24:
        return Image(target, (image.pixels >> 8).astype("u1"))
    values = _luminance(image.pixels) if source.is_color else image.pixels
    limits = np.iinfo(target.dtype)
    return Image(target, np.clip(values, limits.min, limits.max).astype(target.dtype))


# -- extraction modes --

def _is_color(pixel_format):
    # As Orthanc's IsColorImage: RGB48 does not count.
    return pixel_format is PixelFormat.RGB24


def apply_extraction_mode(image, mode, invert):
    if mode is ExtractionMode.Preview:
        image = _preview(image)
    else:
        target = {ExtractionMode.UInt8: PixelFormat.Grayscale8,
                  ExtractionMode.UInt16: PixelFormat.Grayscale16,
                  ExtractionMode.Int16: PixelFormat.SignedGrayscale16}[mode]
        if _is_color(image.format) != _is_color(target):
            raise not_implemented_at("DicomImageDecoder.cpp:1228")
        image = convert(image, target)
    if invert:
        if image.format is not PixelFormat.Grayscale8:
            raise _not_implemented()
        image = Image(image.format, 255 - image.pixels)
    return image


def stretch_parameters(minimum, maximum):
    """(a, b) of Orthanc's float32 "a * x + b" stretching [min, max] to
    [0, 255], or None when the image is flat."""
    if minimum == maximum:
        return None
    scale = F32(255.0) / F32(maximum - minimum)
    offset = F32(-minimum)
    return scale, F32(offset * scale)


def stretch(pixels, parameters, source_format, minimum=None, maximum=None):
    """The stretched values of ``pixels`` as uint8 (works on any row band).
    With the range of the values known, the float arithmetic runs once per
    value of the range (a lookup table), not once per pixel."""
    if parameters is None:
        return np.zeros(pixels.shape, dtype="u1")
    if minimum is not None and pixels.dtype.itemsize <= 2:
        # Indexed by the values' bits (two's complement for signed ones):
        # no temporary array larger than the uint8 answer.
        unsigned = np.dtype("u%d" % pixels.dtype.itemsize)
        values = np.arange(minimum, maximum + 1, dtype=np.int64)
        table = np.zeros(1 << (8 * pixels.dtype.itemsize), dtype="u1")
        table[values.astype(pixels.dtype).view(unsigned)] = _stretch_values(values, parameters,
                                                                            source_format)
        # np.take: about twice as fast as indexing (table[...]) for a lookup.
        return np.take(table, pixels.view(unsigned))
    return _stretch_values(pixels, parameters, source_format)


def _stretch_values(pixels, parameters, source_format):
    a, b = parameters
    if abs(b) <= 10 * np.finfo(F32).eps and abs(a - 1) <= 10 * np.finfo(F32).eps:
        values = pixels
    else:
        v = a * pixels.astype(F32) + b
        limits = np.iinfo(source_format.dtype)
        values = iround(v)
        values = np.where(v >= F32(limits.max), limits.max,
                          np.where(v <= F32(limits.min), limits.min, values))
    return np.clip(values, 0, 255).astype("u1")


def _preview(image):
    fmt = image.format
    if fmt is PixelFormat.RGB24:
        return image
    if fmt is PixelFormat.RGB48:
        return convert(image, PixelFormat.RGB24)
    if fmt in (PixelFormat.Grayscale8, PixelFormat.Grayscale16, PixelFormat.SignedGrayscale16):
        pixels = image.pixels
        if pixels.size == 0:
            return Image(PixelFormat.Grayscale8, pixels.astype("u1"))
        minimum, maximum = int(pixels.min()), int(pixels.max())
        parameters = stretch_parameters(minimum, maximum)
        return Image(PixelFormat.Grayscale8, stretch(pixels, parameters, fmt, minimum, maximum))
    raise _not_implemented()


# -- what /rendered reads in the dataset --

_DOUBLE = re.compile(r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|nan|inf|infinity)$", re.IGNORECASE)


def parse_double(text):
    """Orthanc's ParseDouble (boost::lexical_cast after stripping spaces)."""
    if text is None:
        return None
    text = text.strip(" ")
    if not _DOUBLE.match(text):
        return None
    return float(text)


def parse_first_double(text):
    if text is None:
        return None
    return parse_double(text.split("\\")[0])


_PER_FRAME_GROUPS = 0x52009230
_FRAME_VOI_LUT = 0x00289132
_PIXEL_VALUE_TRANSFORMATION = 0x00289145
_WINDOW_CENTER, _WINDOW_WIDTH = 0x00281050, 0x00281051
_RESCALE_INTERCEPT, _RESCALE_SLOPE = 0x00281052, 0x00281053
_SOP_CLASS_UID, _BITS_STORED = 0x00080016, 0x00280101
_RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"


def _frame_item(dataset, frame, sequence_tag):
    groups = dataset.get(_PER_FRAME_GROUPS)
    if groups is None or not groups.value or frame >= len(groups.value):
        return None
    inner = groups.value[frame].get(sequence_tag)
    if inner is None or not inner.value:
        return None
    return inner.value[0]


def rescale(dataset, frame):
    """(intercept, slope) as Orthanc's ParsedDicomFile::GetRescale."""
    if tag_text(dataset, _SOP_CLASS_UID) == _RT_DOSE:
        return 0.0, 1.0
    for item in (dataset, _frame_item(dataset, frame, _PIXEL_VALUE_TRANSFORMATION)):
        if item is None:
            continue
        intercept = parse_double(tag_text(item, _RESCALE_INTERCEPT))
        slope = parse_double(tag_text(item, _RESCALE_SLOPE))
        if intercept is not None and slope is not None:
            return intercept, slope
    return 0.0, 1.0


def default_windowing(dataset, frame):
    """(center, width) as Orthanc's ParsedDicomFile::GetDefaultWindowing."""
    for item in (dataset, _frame_item(dataset, frame, _FRAME_VOI_LUT)):
        if item is None:
            continue
        center = parse_first_double(tag_text(item, _WINDOW_CENTER))
        width = parse_first_double(tag_text(item, _WINDOW_WIDTH))
        if center is not None and width is not None:
            return center, width
    stored = dataset.get(_BITS_STORED)
    bits = stored.value if stored is not None and isinstance(stored.value, int) else 0
    bits = bits or 8
    width = float(1 << bits)
    return width / 2.0, width


# -- /rendered --

def target_size(width, height, wanted_width, wanted_height):
    if width == 0 or height == 0:
        return width, height
    ratio = F32(1)
    if wanted_width and wanted_height:
        ratio = min(F32(wanted_width) / F32(width), F32(wanted_height) / F32(height))
    elif wanted_width:
        ratio = F32(wanted_width) / F32(width)
    elif wanted_height:
        ratio = F32(wanted_height) / F32(height)
    return iround_scalar(F32(ratio * F32(width))), iround_scalar(F32(ratio * F32(height)))


def resize(pixels, width, height):
    """Orthanc's nearest-neighbour resizing (float32 lookup tables)."""
    source_height, source_width = pixels.shape[:2]
    if width == 0 or height == 0:
        return np.zeros((height, width) + pixels.shape[2:], dtype=pixels.dtype)
    if source_width == 0 or source_height == 0:
        return np.zeros((height, width) + pixels.shape[2:], dtype=pixels.dtype)
    scale_x = F32(source_width) / F32(width)
    scale_y = F32(source_height) / F32(height)
    xs = np.floor((np.arange(width, dtype=F32) + F32(0.5)) * scale_x).astype(np.int64)
    ys = np.floor((np.arange(height, dtype=F32) + F32(0.5)) * scale_y).astype(np.int64)
    xs = np.clip(xs, 0, source_width - 1)
    ys = np.clip(ys, 0, source_height - 1)
    return pixels[ys][:, xs]


def smooth_gaussian_5x5(pixels):
    """Orthanc's separable 1-4-6-4-1 smoothing, borders repeated, the sum
    divided by 256 and truncated (exact in integers)."""
    if pixels.size == 0:
        return pixels
    kernel = (1, 4, 6, 4, 1)
    pad = [(2, 2), (2, 2)] + [(0, 0)] * (pixels.ndim - 2)
    padded = np.pad(pixels.astype(np.int64), pad, mode="edge")
    height, width = pixels.shape[:2]
    horizontal = sum(k * padded[:, i:i + width] for i, k in enumerate(kernel))
    vertical = sum(k * horizontal[i:i + height] for i, k in enumerate(kernel))
    limits = np.iinfo(pixels.dtype)
    return np.clip(vertical // 256, limits.min, limits.max).astype(pixels.dtype)


def window_to_uint8(image, intercept, slope, center, width):
    """Rescale then window a grayscale frame into [0, 255], as /rendered."""
    floats = convert(image, PixelFormat.Float32).pixels
    if width <= 1.0:
        width = 1.0
    if abs(slope) <= 0.0001:
        slope = 0.0001
    scaling = 255.0 * slope / width
    offset = (intercept - center + width / 2.0) / slope
    a = F32(scaling)
    b = F32(F32(offset) * a)
    v = a * floats + b
    values = np.where(v >= F32(255), F32(255), np.where(v <= F32(0), F32(0), np.floor(v)))
    return values.astype("u1")


def render(image, invert, intercept, slope, center, width, wanted_width, wanted_height, smooth):
    """/rendered: returns (Image, mode) ready for encoding."""
    target_width, target_height = target_size(image.width, image.height, wanted_width,
                                               wanted_height)
    resized = (target_width, target_height) != (image.width, image.height)
    shrinking = target_width < image.width or target_height < image.height
    if image.format in (PixelFormat.RGB24, PixelFormat.RGB48):
        if not resized:
            return image, ExtractionMode.Preview, False
        if image.format is not PixelFormat.RGB24:
            raise _not_implemented()
        pixels = smooth_gaussian_5x5(image.pixels) if smooth and shrinking else image.pixels
        return (Image(image.format, resize(pixels, target_width, target_height)),
                ExtractionMode.Preview, False)
    rescaled = window_to_uint8(image, intercept, slope, center, width)
    if resized:
        if smooth and shrinking:
            rescaled = smooth_gaussian_5x5(rescaled)
        rescaled = resize(rescaled, target_width, target_height)
    return Image(PixelFormat.Grayscale8, rescaled), ExtractionMode.UInt8, invert


# -- numpy --

_RESCALABLE = (PixelFormat.Grayscale8, PixelFormat.Grayscale16, PixelFormat.Grayscale32,
               PixelFormat.SignedGrayscale16)


def check_rescalable(pixel_format):
    if pixel_format not in _RESCALABLE:
        raise _not_implemented()


def rescaled(pixels, intercept, slope, out=None):
    """Orthanc's rescaling for numpy, float32 "slope * x + intercept", of
    grayscale integers (see check_rescalable), into ``out`` if given."""
    a, b = F32(slope), F32(intercept)
    eps = 10 * np.finfo(F32).eps
    if abs(b) <= eps and abs(a - 1) <= eps:
        if out is None:
            return pixels.astype(F32)
        out[...] = pixels
        return out
    # One pass converts and multiplies (in float32, as Orthanc), one adds.
    values = np.multiply(pixels, a, out=out, dtype=F32, casting="unsafe")
    values += b
    return values
