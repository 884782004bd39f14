"""The image module of a dataset, read as Orthanc's DicomImageInformation
reads it: the same defaults, the same refusals, the same errors."""
from pydicom.dataelem import RawDataElement

from orthancd.errors import ErrorCode, OrthancError
from orthancd.pixels.image import MAX_IMAGE_FRAME_SIZE, PixelFormat, not_implemented_at

PHOTOMETRIC_INTERPRETATION = 0x00280004
SAMPLES_PER_PIXEL = 0x00280002
PLANAR_CONFIGURATION = 0x00280006
NUMBER_OF_FRAMES = 0x00280008
ROWS = 0x00280010
COLUMNS = 0x00280011
BITS_ALLOCATED = 0x00280100
BITS_STORED = 0x00280101
HIGH_BIT = 0x00280102
PIXEL_REPRESENTATION = 0x00280103

_INFORMATION_LINE = "DicomImageInformation.cpp:187"


def unknown_vr_tags(dataset):
    """The tags stored with VR UN in the file.  pydicom reads them with the
    dictionary's VR; DCMTK keeps them UN, and Orthanc cannot read their
    value as a string (a Rescale Slope in UN is ignored)."""
    tags = getattr(dataset, "_orthancd_un_tags", None)
    if tags is None:
        tags = frozenset(tag for tag, element in dataset._dict.items()
                         if isinstance(element, RawDataElement) and element.VR == "UN")
        object.__setattr__(dataset, "_orthancd_un_tags", tags)
    return tags


def tag_text(dataset, tag):
    """A tag's value as Orthanc's DICOM summary holds it (multiple values
    joined by backslashes), or None when absent, empty or of VR UN."""
    if tag in unknown_vr_tags(dataset):
        return None
    element = dataset.get(tag)
    if element is None:
        return None
    value = element.value
    if value is None or value == "" or value == b"":
        return None
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("latin-1")
        except Exception:
            return None
        return value.strip(" \x00")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_scalar_text(v) for v in value)
    return _scalar_text(value)


def _scalar_text(value):
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = getattr(value, "original_string", None)
    if isinstance(text, str):
        return text.strip()
    return str(value).strip()


def parse_unsigned(text):
    """Orthanc's ParseUnsignedInteger32: digits only, surrounding spaces allowed."""
    if text is None:
        return None
    text = text.strip()
    if not text.isdigit():
        return None
    value = int(text)
    return value if value < 2 ** 32 else None


def parse_first_unsigned(text):
    if text is None:
        return None
    return parse_unsigned(text.split("\\")[0])


class ImageInformation:
    """Width, height, samples, bits, sign and planarity of an image."""

    def __init__(self, dataset):
        photometric = tag_text(dataset, PHOTOMETRIC_INTERPRETATION)
        self.photometric = (photometric or "").strip().upper() or None
        columns, rows = tag_text(dataset, COLUMNS), tag_text(dataset, ROWS)
        if columns is None or rows is None:
            # Orthanc reads both without checking their presence first.
            raise not_implemented_at(_INFORMATION_LINE)
        self.width = parse_first_unsigned(columns) or 0
        self.height = parse_first_unsigned(rows) or 0
        if self.width > 65535 or self.height > 65535:
            raise not_implemented_at(_INFORMATION_LINE)
        self.bits_allocated = parse_unsigned(tag_text(dataset, BITS_ALLOCATED))
        if self.bits_allocated is None:
            raise not_implemented_at(_INFORMATION_LINE)
        samples = parse_unsigned(tag_text(dataset, SAMPLES_PER_PIXEL))
        self.samples_per_pixel = 1 if samples is None else samples
        stored = parse_unsigned(tag_text(dataset, BITS_STORED))
        self.bits_stored = self.bits_allocated if stored is None else stored
        if self.bits_stored > self.bits_allocated:
            raise not_implemented_at(_INFORMATION_LINE)
        high_bit = parse_unsigned(tag_text(dataset, HIGH_BIT))
        self.high_bit = self.bits_stored - 1 if high_bit is None else high_bit
        representation = parse_unsigned(tag_text(dataset, PIXEL_REPRESENTATION))
        planar = 0
        if self.samples_per_pixel > 1:
            planar = parse_unsigned(tag_text(dataset, PLANAR_CONFIGURATION)) or 0
        frames_text = tag_text(dataset, NUMBER_OF_FRAMES)
        if frames_text is None:
            self.number_of_frames = 1
        else:
            self.number_of_frames = parse_unsigned(frames_text)
            if self.number_of_frames is None:
                raise not_implemented_at("DicomImageInformation.cpp:195")
        if self.bits_allocated not in (1, 8, 16, 24, 32):
            raise OrthancError(ErrorCode.IncompatibleImageFormat,
                               "Image not supported: %d bits allocated" % self.bits_allocated)
        if self.number_of_frames == 0:
            raise OrthancError(ErrorCode.IncompatibleImageFormat, "Image not supported (no frames)")
        if planar not in (0, 1):
            raise OrthancError(ErrorCode.IncompatibleImageFormat,
                               "Image not supported: planar configuration is %d" % planar)
        if self.samples_per_pixel == 0:
            raise OrthancError(ErrorCode.IncompatibleImageFormat,
                               "Image not supported: samples per pixel is 0")
        if self.bits_stored == 1:
            if self.bits_allocated != 1:
                raise OrthancError(ErrorCode.BadFileFormat)
            if self.width % 8 != 0:
                raise OrthancError(ErrorCode.BadFileFormat,
                                   "Bad number of columns for a black-and-white image")
            self.bytes_per_value = 0
        else:
            self.bytes_per_value = self.bits_allocated // 8
        self.is_planar = planar != 0
        self.is_signed = bool(representation)

    @property
    def shift(self):
        return self.high_bit + 1 - self.bits_stored

    @property
    def is_palette(self):
        return self.photometric == "PALETTE COLOR"

    def pixel_format(self, ignore_photometric=False):
        """Orthanc's ExtractPixelFormat: the format of the decoded image,
        or None when Orthanc does not decode such images."""
        photometric = self.photometric
        one, three = self.samples_per_pixel == 1, self.samples_per_pixel == 3
        signed = self.is_signed
        if photometric == "PALETTE COLOR" and one and not signed:
            if self.bits_stored == 8:
                return PixelFormat.RGB24
            if self.bits_stored == 16:
                return PixelFormat.RGB48
        if ignore_photometric or photometric in ("MONOCHROME1", "MONOCHROME2"):
            if one:
                if self.bits_stored == 8 and not signed:
                    return PixelFormat.Grayscale8
                if self.bits_allocated == 16:
                    return PixelFormat.SignedGrayscale16 if signed else PixelFormat.Grayscale16
                if self.bits_allocated == 32 and not signed:
                    return PixelFormat.Grayscale32
                if self.bits_stored == 1 and not signed:
                    return PixelFormat.Grayscale8
        if three and not signed and (ignore_photometric or photometric == "RGB"):
            if self.bits_stored == 8:
                return PixelFormat.RGB24
            if self.bits_stored == 16:
                return PixelFormat.RGB48
        return None

    def frame_size(self):
        """Bytes of one frame in native pixel data, with Orthanc's guard."""
        if self.bits_stored == 1:
            if self.samples_per_pixel != 1:
                raise OrthancError(ErrorCode.IncompatibleImageFormat,
                                   "Image not supported (multi-channel black-and-image image)")
            size = self.height * self.width // 8
        else:
            size = self.height * self.width * self.bytes_per_value * self.samples_per_pixel
        if size > MAX_IMAGE_FRAME_SIZE:
            raise OrthancError(ErrorCode.BadFileFormat, "DICOM Frame size overflow  (%d vs. %d)"
                               % (size, MAX_IMAGE_FRAME_SIZE))
        return size
