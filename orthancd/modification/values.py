"""Values of a modification request turned into DICOM elements, as Orthanc
1.13.0 builds them (FromDcmtkBridge::FromJson, FillElementWithString).

A JSON string is converted to the element's value representation (the
dictionary's, with the request's private creator for private tags): text
VRs keep it as is (in the dataset's character set), numeric VRs parse one
value or a backslash-separated list, binary VRs take the bytes of a
"data:application/octet-stream;base64," URI.  A JSON array builds a
sequence (objects are items), null an empty value.  Anything else is
Orthanc's "Bad type for a parameter".

Elements are built as raw elements encoded for the dataset they go into
(explicit or implicit VR, byte order), so that writing the dataset back
does not convert anything else.
"""
import base64
import binascii
import math
import re
import struct

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from orthancd.dicom import charsets, dictionary
from orthancd.errors import ErrorCode, OrthancError
from orthancd.modification.paths import format_tag, parse_tag

BINARY_URI_PREFIX = "data:application/octet-stream;base64,"
_DATA_URI = re.compile(r"data:([^;]+);base64,([a-zA-Z0-9=+/]*)\Z", re.IGNORECASE | re.DOTALL)

PIXEL_DATA = 0x7FE00010
ENCAPSULATED_DOCUMENT = 0x00420011

TEXT_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UI UT UC UR".split())
_NUMBER_FORMATS = {"SL": "i", "SS": "h", "SV": "q", "UL": "I", "OL": "I", "US": "H", "OW": "H",
                   "UV": "Q", "OV": "Q", "FL": "f", "OF": "f", "FD": "d", "OD": "d"}
_INTEGER_RANGES = {"i": (-2 ** 31, 2 ** 31 - 1), "h": (-2 ** 15, 2 ** 15 - 1),
                   "q": (-2 ** 63, 2 ** 63 - 1), "I": (0, 2 ** 32 - 1), "H": (0, 2 ** 16 - 1),
                   "Q": (0, 2 ** 64 - 1)}


class Encoding:
    """How the elements of one dataset are written: transfer syntax
    (implicit VR, little endian) and the character set of its strings."""

    def __init__(self, is_implicit_vr, is_little_endian, charset):
        self.is_implicit_vr = is_implicit_vr
        self.is_little_endian = is_little_endian
        self.charset = charset      # orthancd.dicom.charsets encoding name

    def encode_text(self, text):
        """Toolbox::ConvertFromUtf8: characters the target cannot hold are
        skipped."""
        if self.charset == "Utf8":
            return text.encode("utf-8", "ignore")
        codec = charsets.ENCODING_CODECS.get(self.charset)
        if codec is None:
            return charsets.to_ascii(text.encode("utf-8", "ignore")).encode("ascii")
        try:
            return text.encode(codec, "ignore")
        except LookupError:
            return charsets.to_ascii(text.encode("utf-8", "ignore")).encode("ascii")


def decode_data_uri(text):
    """(mime, bytes) of a data URI, None when it is not one."""
    match = _DATA_URI.match(text)
    if match is None:
        return None
    payload = match.group(2)
    try:
        return match.group(1), base64.b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError):
        return match.group(1), b""


def element_vr(tag, private_creator):
    """The VR DCMTK gives a new element: its dictionary entry (the private
    one for the request's private creator), else UN."""
    creator = private_creator if (tag >> 16) % 2 == 1 and private_creator else None
    vr = dictionary.lookup_vr(tag, creator) or "UN"
    if vr == "ox":
        return "OB"
    return vr


def out_of_range(tag, value):
    return OrthancError(ErrorCode.BadFileFormat,
                        'While creating a DICOM instance, tag (%s) has out-of-range value: "%s"'
                        % (format_tag(tag), value))


def _lexical_integer(text, fmt):
    """boost::lexical_cast to an integer type: decimal digits with an
    optional sign, nothing else; a minus sign on an unsigned type wraps
    around as in C++."""
    body = text[1:] if text[:1] in "+-" else text
    if not body or not body.isascii() or not body.isdigit():
        raise ValueError(text)
    low, high = _INTEGER_RANGES[fmt]
    value = int(body)
    if text[:1] == "-":
        if low == 0:
            if value > high:
                raise ValueError(text)
            return (-value) % (high + 1)
        value = -value
    if not low <= value <= high:
        raise ValueError(text)
    return value


_FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)\Z",
                    re.IGNORECASE)


def _lexical_float(text, fmt):
    if not _FLOAT.match(text):
        raise ValueError(text)
    value = float(text)
    if fmt == "f" and not math.isinf(value) and abs(value) > 3.4028234663852886e38:
        raise ValueError(text)
    return value


def _numbers(text, vr, tag, little_endian):
    fmt = _NUMBER_FORMATS[vr]
    parse = _lexical_float if fmt in "fd" else _lexical_integer
    try:
        values = [parse(token, fmt) for token in text.split("\\")]
    except ValueError:
        raise out_of_range(tag, text)
    return struct.pack(("<" if little_endian else ">") + fmt * len(values), *values)


def _attribute_tags(text, little_endian):
    tags = [parse_tag(token) for token in text.split("\\")]
    order = "<" if little_endian else ">"
    return b"".join(struct.pack(order + "HH", t >> 16, t & 0xFFFF) for t in tags)


def _padded(data, vr):
    if len(data) % 2:
        data += b"\0" if vr in ("UI", "OB", "UN") else b" "
    return data


def string_value_bytes(tag, vr, text, encoding, decode_data_uri_scheme=True):
    """The bytes of an element of ``vr`` holding the UTF-8 ``text``
    (FillElementWithString)."""
    if decode_data_uri_scheme and text.startswith(BINARY_URI_PREFIX):
        decoded = decode_data_uri(text)
        if decoded is None:
            raise OrthancError(ErrorCode.BadFileFormat)
        data = decoded[1]
    else:
        data = encoding.encode_text(text)
    if vr in ("OB", "UN") or (vr in ("OW", "px") and tag == PIXEL_DATA):
        if vr in ("OW", "px") and len(data) % 2:
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               "A tag with OW VR must have an even number of bytes")
        return _padded(data, "OB")
    if vr in TEXT_VRS:
        return _padded(data, vr)
    # Numbers are parsed from the converted bytes, as DCMTK parses them.
    number_text = data.decode("latin-1")
    if vr in _NUMBER_FORMATS:
        return _numbers(number_text, vr, tag, encoding.is_little_endian)
    if vr == "xs":
        return _numbers(number_text, "SS" if "-" in number_text else "US", tag,
                        encoding.is_little_endian)
    if vr == "AT":
        return _attribute_tags(number_text, encoding.is_little_endian)
    # Sequences and DCMTK's internal VRs cannot hold a string.
    raise out_of_range(tag, number_text)


def _written_vr(vr):
    if vr == "xs":
        return "US"
    if vr == "px":
        return "OW"
    if vr in ("lt", "up", "na"):
        return "UN"
    return vr


def raw_element(tag, vr, data, encoding):
    return RawDataElement(pydicom.tag.Tag(tag), _written_vr(vr), len(data), data, 0,
                          encoding.is_implicit_vr, encoding.is_little_endian, True)


def empty_element(tag, vr, encoding):
    """An element without value (what DCMTK's insertEmptyElement makes)."""
    if vr == "SQ":
        return sequence_element(tag, [])
    return raw_element(tag, vr, b"", encoding)


def sequence_element(tag, items):
    element = DataElement(tag, "SQ", Sequence(items))
    element.is_undefined_length = False
    return element


def new_item(encoding):
    item = Dataset()
    item.set_original_encoding(encoding.is_implicit_vr, encoding.is_little_endian,
                               None)
    item.is_undefined_length_sequence_item = False
    return item


def string_element(tag, text, encoding, private_creator, decode_data_uri_scheme=True):
    """An element holding a string (ParsedDicomFile::Replace with a string):
    an empty string makes an empty element."""
    vr = element_vr(tag, private_creator)
    if text == "":
        return empty_element(tag, vr, encoding)
    return raw_element(tag, vr, string_value_bytes(tag, vr, text, encoding,
                                                   decode_data_uri_scheme), encoding)


def json_element(tag, value, encoding, private_creator, decode_data_uri_scheme=True):
    """FromDcmtkBridge::FromJson."""
    if isinstance(value, str):
        vr = element_vr(tag, private_creator)
        return raw_element(tag, vr, string_value_bytes(tag, vr, value, encoding,
                                                       decode_data_uri_scheme), encoding)
    if value is None:
        vr = element_vr(tag, private_creator)
        if vr == "SQ":
            raise out_of_range(tag, "")
        return raw_element(tag, vr, string_value_bytes(tag, vr, "", encoding,
                                                       decode_data_uri_scheme), encoding)
    if isinstance(value, list):
        if element_vr(tag, private_creator) != "SQ":
            raise OrthancError(ErrorCode.BadParameterType,
                               "Bad Parameter type for tag " + format_tag(tag))
        items = []
        for entry in value:
            item = new_item(encoding)
            if isinstance(entry, dict):
                for name, child in entry.items():
                    child_tag = parse_tag(name)
                    item[child_tag] = json_element(child_tag, child, encoding,
                                                   private_creator, decode_data_uri_scheme)
            elif not (isinstance(entry, list) and not entry):
                # An empty array stands for an empty item (Lua cannot tell
                # an empty object from an empty array).
                raise OrthancError(ErrorCode.BadParameterType)
            items.append(item)
        return sequence_element(tag, items)
    raise OrthancError(ErrorCode.BadParameterType, "Bad Parameter type for tag " + format_tag(tag))
