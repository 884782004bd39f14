"""Walking a pydicom dataset element by element with Orthanc's eyes.

Every element is seen as (tag, VR, name, private creator, value) where the VR
is the one DCMTK would use (explicit VR from the file, otherwise DCMTK's
dictionary) and the value is either a list of child datasets (sequence), a
string, or None (Orthanc's 'Null': binary data, unsupported VRs, unreadable
numbers).  Values are decoded from the raw bytes so that pydicom's own
conversions (number parsing, VR guessing, charset handling) never leak in.
"""
import struct

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.valuerep import PersonName

from orthancd.dicom import charsets, dictionary

# VRs whose DCMTK class is a byte string (DcmByteString and its children).
STRING_VRS = frozenset(
    "AE AS CS DA DS DT IS LO LT PN SH ST TM UI UT UC UR".split())
# Binary VRs: always shown as Null by Orthanc's JSON (ConvertBinaryToNull).
BINARY_VRS = frozenset("OB OW UN ox".split())
# Numbers: struct format.  The O* VRs are lists of numbers DCMTK prints
# itself (floats with 9 significant digits, doubles with 17), where Orthanc
# prints FL and FD as doubles with 17.
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d",
                   "SV": "q", "UV": "Q", "OL": "I", "OF": "f", "OD": "d", "OV": "Q", "AT": "HH"}
_OTHER_NUMBER_VRS = frozenset(("OL", "OF", "OD", "OV", "AT"))
PIXEL_DATA = 0x7FE00010


class Element:
    """One element as Orthanc renders it."""
    __slots__ = ("tag", "vr", "name", "creator", "value")

    def __init__(self, tag, vr, name, creator, value):
        self.tag = tag
        self.vr = vr
        self.name = name
        self.creator = creator
        self.value = value

    @property
    def is_sequence(self):
        return isinstance(self.value, list)


def format_tag(tag):
    return "%04x,%04x" % (tag >> 16, tag & 0xFFFF)


def _format_float(value):
    # boost::lexical_cast<std::string>(double): 17 significant digits, %g style.
    return "%.17g" % value


_FORMATTERS = {"FL": _format_float, "FD": _format_float, "OD": _format_float,
               "OF": lambda value: "%.9g" % value}


_WORD_SIZES = {"US": 2, "SS": 2, "OW": 2, "AT": 2, "UL": 4, "SL": 4, "FL": 4, "OL": 4, "OF": 4,
               "FD": 8, "OD": 8, "SV": 8, "UV": 8, "OV": 8}


def little_endian_bytes(data, vr, little_endian):
    """A binary or numeric value in little endian order, as DCMTK holds it in
    memory (and Orthanc sends it) whatever the file's byte order."""
    size = _WORD_SIZES.get(vr)
    if little_endian or size is None:
        return data
    usable = len(data) - len(data) % size
    swapped = bytearray(data)
    for start in range(0, usable, size):
        swapped[start:start + size] = data[start:start + size][::-1]
    return bytes(swapped)


def value_count(length, vr):
    """How many values DCMTK sees in ``length`` bytes of a numeric VR."""
    return values_in(length, struct.calcsize("<" + _NUMBER_FORMATS[vr]))


def values_in(length, size):
    """How many ``size``-byte values DCMTK sees in ``length`` bytes: odd
    lengths are padded to even, and a length that is no multiple of the value
    size holds a single value."""
    padded = length + (length & 1)
    if padded % size == 0:
        return padded // size
    return 1 if padded >= size else 0


def is_misaligned(length, vr):
    """DCMTK refuses a file with an AT or O[DFLV] element whose (even)
    length is no multiple of its value size."""
    if vr not in _OTHER_NUMBER_VRS:
        return False
    size = struct.calcsize("<" + _NUMBER_FORMATS[vr])
    return (length + (length & 1)) % size != 0


def decode_numbers(data, vr, little_endian=True):
    """Orthanc's string for a numeric element ('1\\2\\3'), or None (Null)."""
    fmt = _NUMBER_FORMATS[vr]
    size = struct.calcsize("<" + fmt)
    count = value_count(len(data), vr)
    if count == 0:
        return "" if vr in _OTHER_NUMBER_VRS and not data else None
    data = bytes(data[:count * size]).ljust(count * size, b"\0")
    values = struct.unpack(("<" if little_endian else ">") + fmt * count, data)
    if vr == "AT":
        return "\\".join("%04x,%04x" % pair for pair in zip(values[::2], values[1::2]))
    formatter = _FORMATTERS.get(vr, str)
    return "\\".join(formatter(v) for v in values)


def decode_tags(data, little_endian=True):
    return decode_numbers(data, "AT", little_endian)


def machine_string(data):
    """DCMTK's getString(): stops at the first NUL, trailing padding removed."""
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]
    return data.rstrip(b" ")


def decode_leaf(data, vr, tag, creator, encoding, little_endian=True):
    """Raw value bytes -> Orthanc's string, or None for Null."""
    if vr in STRING_VRS:
        return charsets.decode(machine_string(data), encoding,
                               vr not in charsets.SINGLE_VALUE_VRS)
    if vr == "UN":
        # Orthanc looks unknown-VR values up in the dictionary and shows them
        # verbatim (padding kept, up to a NUL) when the dictionary says text
        # and the bytes are ASCII; anything else stays binary.
        entry = dictionary.lookup(tag, creator)
        if entry is not None and entry.vr in STRING_VRS and data.isascii():
            return data.split(b"\0")[0].decode("ascii")
        return None
    if vr in _NUMBER_FORMATS:
        return decode_numbers(data, vr, little_endian)
    return None


def _value_bytes(value):
    """Re-encode an already-converted pydicom value (fallback path)."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (list, tuple, MultiValue)):
        return b"\\".join(_value_bytes(v) for v in value)
    if isinstance(value, PersonName):
        return value.original_string if isinstance(value.original_string, bytes) \
            else str(value).encode("utf-8")
    return str(value).encode("utf-8")


def _converted_leaf(element, vr, tag, creator, encoding):
    value = element.value
    if vr in STRING_VRS:
        text = _value_bytes(value)
        text = machine_string(text)
        if isinstance(value, bytes) or text.isascii():
            return charsets.decode(text, encoding, vr not in charsets.SINGLE_VALUE_VRS)
        return text.decode("utf-8", "ignore")
    if isinstance(value, bytes) and vr in _NUMBER_FORMATS:
        return decode_numbers(value, vr)
    if vr in _NUMBER_FORMATS:
        values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
        values = [v for v in values if v is not None]
        if not values:
            return "" if vr in _OTHER_NUMBER_VRS else None
        if vr == "AT":
            return "\\".join(format_tag(int(v)) for v in values)
        if vr in ("FL", "FD", "OD"):
            return "\\".join(_format_float(float(v)) for v in values)
        if vr == "OF":
            return "\\".join(_FORMATTERS["OF"](float(v)) for v in values)
        return "\\".join(str(int(v)) for v in values)
    if vr == "UN" and isinstance(value, bytes):
        return decode_leaf(value, vr, tag, creator, encoding)
    return None


def private_creators(ds):
    """{(group, block): creator} from the (gggg,0010-00ff) elements of one item."""
    creators = {}
    for tag in ds.keys():
        group, element = tag >> 16, tag & 0xFFFF
        if group % 2 == 1 and 0x10 <= element <= 0xFF:
            raw = ds.get_item(tag, keep_deferred=True)
            value = raw.value
            if isinstance(value, bytes):
                text = machine_string(value).decode("latin-1")
            elif value is None:
                text = ""
            else:
                text = str(value).rstrip(" ")
            creators[(group, element)] = text
    return creators


def creator_of(tag, creators):
    """The private creator of an element (``creators`` from private_creators())."""
    group, number = tag >> 16, tag & 0xFFFF
    if group % 2 == 1 and number >= 0x1000:
        return creators.get((group, number >> 8)) or None  # an empty creator is none
    return None


def dataset_encoding(ds, default_encoding="Latin1"):
    """The charsets.Charset that decodes the strings of ``ds``."""
    if charsets.SPECIFIC_CHARACTER_SET not in ds:
        return charsets.Charset(default_encoding, False)
    raw = ds.get_item(charsets.SPECIFIC_CHARACTER_SET, keep_deferred=True)
    value = raw.value
    if value is None:
        return charsets.Charset(default_encoding, False)
    if not isinstance(value, bytes):
        value = _value_bytes(value)
    return charsets.detect_charset(value, default_encoding)


# DCMTK settles the 'US or SS' dictionary VR of these from PixelRepresentation;
# other 'xs' elements of implicit-VR files stay unresolved (Null in Orthanc).
_PIXEL_VALUE_TAGS = frozenset((0x00280106, 0x00280107, 0x00280108, 0x00280109,
                               0x00280110, 0x00280111, 0x00280120, 0x00280121))
PIXEL_REPRESENTATION = 0x00280103


def _pixel_representation(ds):
    if PIXEL_REPRESENTATION not in ds:
        return 0
    raw = ds.get_item(PIXEL_REPRESENTATION, keep_deferred=True)
    value = raw.value
    if isinstance(value, bytes):
        if len(value) < 2:
            return 0
        return struct.unpack("<H" if raw.is_little_endian else ">H", value[:2])[0]
    return int(value or 0)


def _element_vr(raw, tag, creator, ds):
    vr = raw.VR
    if vr is None or (isinstance(raw, RawDataElement) and raw.is_implicit_VR):
        vr = dictionary.lookup_vr(tag, creator) or "UN"
        if vr == "xs" and tag in _PIXEL_VALUE_TAGS:
            vr = "SS" if _pixel_representation(ds) == 1 else "US"
    return vr


def _to_sequence(raw, vr):
    """Sequence items of an element, or None when it is a leaf."""
    value = raw.value
    if isinstance(value, Sequence):
        return value
    if vr == "SQ" and not value:
        return []  # an empty sequence (its raw value is None)
    if vr == "SQ" and isinstance(value, bytes) and isinstance(raw, RawDataElement):
        try:
            return pydicom.values.convert_SQ(value, raw.is_implicit_VR, raw.is_little_endian)
        except Exception:  # a broken nested sequence is shown as Null, not fatal
            return None
    return None


def iter_elements(ds, encoding, stop_after_pixels=True, depth=0, include_binary=True):
    """Orthanc's view of the elements of one dataset or item, sorted by tag.

    Elements are taken raw (``keep_deferred``): pydicom would otherwise
    convert an empty one, guessing its VR from the dictionary.

    Sequence values are lists of lists of Elements (one list per item).
    """
    creators = private_creators(ds)
    for tag in sorted(ds.keys()):
        tag = int(tag)
        raw = ds.get_item(tag, keep_deferred=True)
        creator = creator_of(tag, creators)
        vr = _element_vr(raw, tag, creator, ds)
        if not include_binary and vr in BINARY_VRS:
            continue
        entry = dictionary.lookup(tag, creator)
        name = entry.name if entry is not None else dictionary.UNKNOWN_NAME
        items = _to_sequence(raw, vr)
        if items is not None:
            value = [list(iter_elements(item, encoding, stop_after_pixels, depth + 1,
                                        include_binary))
                     for item in items]
        elif isinstance(raw, RawDataElement):
            value = decode_leaf(raw.value or b"", vr, tag, creator, encoding,
                                raw.is_little_endian)
        else:
            value = _converted_leaf(raw, vr, tag, creator, encoding)
        yield Element(tag, vr, name, creator, value)
        if tag == PIXEL_DATA and stop_after_pixels and depth == 0:
            return
    if depth == 0 and getattr(ds, "pixel_data_follows", False) and PIXEL_DATA not in ds:
        yield Element(PIXEL_DATA, "OW", "PixelData", None, None)
