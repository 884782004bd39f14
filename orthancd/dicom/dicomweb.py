"""The DICOMweb JSON rendering of a dataset (PS3.18 F.2), as Orthanc's core
writes it for GET /instances/{id}/file with ``Accept: application/dicom+json``
(its DicomWebJsonVisitor, without a bulk data formatter).

Orthanc's choices, where the standard leaves room:
  - keys are upper-case "GGGGEEEE"; group lengths (gggg,0000) are left out;
  - an empty value has no "Value" member, an empty item of a list is null
    (an empty object for PN);
  - DS stays text (trimmed, without a final decimal point), IS becomes a
    32-bit integer, values that do not parse are dropped;
  - OW, OF, OD, OL, OV are lists of numbers like US, FL, FD, UL, UV (UV
    wraps to signed 64-bit, OV does not); NaN is written null;
  - OB, UN and native pixel data are InlineBinary (base64); encapsulated
    pixel data is left out;
  - PN values are objects with Alphabetic, Ideographic and Phonetic groups.
Strings are decoded exactly as for /tags (charsets, code extensions).
"""
import base64
import math
import re
import struct

from orthancd.dicom import charsets, dictionary
from orthancd.dicom import elements as _elements

_INTEGER_VRS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "SV": "q", "UV": "q",
                "OW": "H", "OL": "I", "OV": "Q"}
_FLOAT_VRS = {"FL": "f", "FD": "d", "OF": "f", "OD": "d"}
_BINARY_VRS = frozenset(("OB", "UN"))
_KNOWN_VRS = frozenset(
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI "
    "UL UN UR US UT UV".split())
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z|[+-]?(nan|inf|infinity)\Z",
                      re.IGNORECASE)
_INTEGER = re.compile(r"[+-]?\d+\Z")
_PERSON_NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def _string_values(vr, text):
    values = []
    for token in text.split("\\"):
        if vr == "DS":
            token = token.strip(" ")
            if token.endswith("."):
                token = token[:-1]  # Orthanc drops a trailing decimal point
            if not token:
                values.append(None)
            elif _DECIMAL.match(token):
                values.append(token)
        elif vr == "IS":
            token = token.strip(" ")
            if not token:
                values.append(None)
            elif _INTEGER.match(token) and -2 ** 63 <= int(token) < 2 ** 63:
                # Orthanc reads an int64 and keeps its low 32 bits, as a
                # signed number when negative, unsigned otherwise.
                number = int(token)
                low = number & 0xFFFFFFFF
                values.append(low - 2 ** 32 if number < 0 and low >= 2 ** 31 else low)
        elif vr == "PN":
            if not token:
                values.append({})
            else:
                groups = token.split("=")
                values.append({name: group for name, group in zip(_PERSON_NAME_GROUPS, groups)})
        else:
            values.append(token if token else None)
    return values


def _numbers(data, vr, little_endian):
    if vr == "AT":
        count = _elements.value_count(len(data), "AT")
        data = bytes(data[:count * 4]).ljust(count * 4, b"\0")
        words = struct.unpack(("<" if little_endian else ">") + "HH" * count, data)
        return ["%04X%04X" % pair for pair in zip(words[::2], words[1::2])]
    fmt = _INTEGER_VRS.get(vr) or _FLOAT_VRS[vr]
    size = struct.calcsize("<" + fmt)
    count = _elements.values_in(len(data), size)
    data = bytes(data[:count * size]).ljust(count * size, b"\0")
    values = struct.unpack(("<" if little_endian else ">") + fmt * count, data)
    return list(values)


# DCMTK's classes for the dictionary's ambiguous VRs of implicit VR files.
_AMBIGUOUS_VRS = {"ox": "OW", "px": "OW", "xs": "US", "lt": "OW", "up": "UL"}


def _raw(raw):
    value = raw.value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return _elements._value_bytes(value)


def _converted_numbers(value, vr):
    """Values pydicom has already converted (elements it was asked about)."""
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        values = list(value)
    else:
        values = [value]
    if vr == "AT":
        return ["%08X" % int(v) for v in values if v is not None]
    if vr in _FLOAT_VRS:
        return [float(v) for v in values if v is not None]
    return [int(v) for v in values if v is not None]


def _element_json(raw, tag, vr, charset, little_endian, padded=False):
    if tag == _elements.PIXEL_DATA:
        if raw.length == 0xFFFFFFFF:
            return None  # encapsulated: not rendered by Orthanc
        data = _elements.little_endian_bytes(_raw(raw), vr, little_endian)
        return {"vr": vr, "InlineBinary": base64.b64encode(
            data + (b"\0" if len(data) % 2 else b"")).decode("ascii")}
    if vr in _BINARY_VRS:
        data = _raw(raw)
        if not data:
            return {"vr": vr}
        return {"vr": vr, "InlineBinary": base64.b64encode(
            data + (b"\0" if len(data) % 2 else b"")).decode("ascii")}
    node = {"vr": vr}
    if vr in _elements.STRING_VRS:
        data = _raw(raw)
        # A value read as UN keeps its padding (only a NUL ends it).
        data = data.split(b"\0")[0] if padded else _elements.machine_string(data)
        text = charsets.decode(data, charset, vr not in charsets.SINGLE_VALUE_VRS)
        if text:
            values = _string_values(vr, text)
            if tag == charsets.SPECIFIC_CHARACTER_SET and values[0] is None:
                # DCMTK drops the empty first value of a code extension list.
                values = values[1:]
            node["Value"] = values
    elif vr in _INTEGER_VRS or vr in _FLOAT_VRS or vr == "AT":
        if isinstance(raw.value, (bytes, bytearray)):
            values = _numbers(_raw(raw), vr, little_endian)
        else:
            values = _converted_numbers(raw.value, vr)
        if values:
            node["Value"] = values
    return node


def _dataset_json(ds, charset, depth):
    result = {}
    creators = _elements.private_creators(ds)
    for tag in sorted(ds.keys()):
        tag = int(tag)
        if tag & 0xFFFF == 0:
            continue  # group lengths
        raw = ds.get_item(tag, keep_deferred=True)
        creator = _elements.creator_of(tag, creators)
        vr = _elements._element_vr(raw, tag, creator, ds)
        vr = _AMBIGUOUS_VRS.get(vr, vr)
        read_as_unknown = vr == "UN"
        if vr == "UN":
            # Orthanc reads an unknown-VR value with the dictionary's VR when
            # it knows the tag (its fix for issue #120): text is decoded,
            # anything else is not rendered.
            known = dictionary.lookup_vr(tag, creator)
            known = _AMBIGUOUS_VRS.get(known, known)
            if known and known != "UN":
                if known not in _elements.STRING_VRS:
                    continue
                vr = known
        if vr not in _KNOWN_VRS:
            continue
        key = "%04X%04X" % (tag >> 16, tag & 0xFFFF)
        items = _elements._to_sequence(raw, vr)
        if items is not None or vr == "SQ":
            node = {"vr": "SQ"}
            if items:
                node["Value"] = [_dataset_json(item, charset, depth + 1) for item in items]
            result[key] = node
            continue
        little_endian = getattr(raw, "is_little_endian", True) is not False
        node = _element_json(raw, tag, vr, charset, little_endian, read_as_unknown)
        if node is not None:
            result[key] = node
    return result


def dataset_to_dicomweb(ds, default_encoding="Latin1"):
    """The DICOMweb JSON object of a dataset read with its pixel data."""
    return _dataset_json(ds, _elements.dataset_encoding(ds, default_encoding), 0)


def format_float(value):
    """JsonCpp's rendering of a double in Orthanc's DICOMweb answers (NaN is
    null, infinities +/-1e+9999)."""
    if math.isnan(value):
        return "null"
    if math.isinf(value):
        return "1e+9999" if value > 0 else "-1e+9999"
    return "%.17g" % value


# -- application/dicom+xml: Orthanc writes the same model as PS3.19 XML
# (pugixml, two-space indent), with its own quirks kept: numbers are
# printed as 32-bit floats, each sequence item is followed by an empty
# <Value>, private tags have no keyword.

_XML_HEADER = ('<?xml version="1.0" encoding="utf-8"?>\n'
               '<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM" '
               'xsi:schemaLocation="http://dicom.nema.org/PS3.19/models/NativeDICOM" '
               'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"')
_NAME_PARTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_FLOAT32_MAX = 3.4028234663852886e38


def _xml_text(text):
    out = []
    for c in text:
        if c == "&":
            out.append("&amp;")
        elif c == "<":
            out.append("&lt;")
        elif c == ">":
            out.append("&gt;")
        elif c < " " and c not in "\t\n\r":
            out.append("&#%02d;" % ord(c))
        else:
            out.append(c)
    return "".join(out)


def _xml_number(value):
    if isinstance(value, float):
        # pugixml receives the value as a float
        if math.isnan(value):
            return "nan"
        if abs(value) > _FLOAT32_MAX:
            return "inf" if value > 0 else "-inf"
        return "%.9g" % struct.unpack("<f", struct.pack("<f", value))[0]
    return str(value)


def _xml_leaf(name, text, indent, attributes=""):
    if text:
        return "%s<%s%s>%s</%s>\n" % (indent, name, attributes, text, name)
    return "%s<%s%s />\n" % (indent, name, attributes)


def _xml_attribute(key, node, out, indent):
    tag = int(key, 16)
    entry = dictionary.lookup(tag)
    keyword = ' keyword="%s"' % entry.name if entry is not None else ""
    head = '%s<DicomAttribute tag="%s" vr="%s"%s' % (indent, key, node["vr"], keyword)
    inner = indent + "  "
    body = []
    if "Value" in node:
        for number, value in enumerate(node["Value"], 1):
            if node["vr"] == "SQ":
                if isinstance(value, dict):
                    if value:
                        body.append('%s<Item number="%d">\n' % (inner, number))
                        _xml_dataset(value, body, inner + "  ")
                        body.append("%s</Item>\n" % inner)
                    else:
                        body.append('%s<Item number="%d" />\n' % (inner, number))
                body.append('%s<Value number="%d" />\n' % (inner, number))
            elif node["vr"] == "PN":
                if not value:
                    continue
                body.append('%s<PersonName number="%d">\n' % (inner, number))
                for group in _PERSON_NAME_GROUPS:
                    if group in value:
                        body.append("%s  <%s>\n" % (inner, group))
                        for part, text in zip(_NAME_PARTS, value[group].split("^")):
                            body.append(_xml_leaf(part, _xml_text(text), inner + "    "))
                        body.append("%s  </%s>\n" % (inner, group))
                body.append("%s</PersonName>\n" % inner)
            else:
                if value is None:
                    text = ""
                elif isinstance(value, str):
                    text = _xml_text(value)
                else:
                    text = _xml_number(value)
                body.append(_xml_leaf("Value", text, inner, ' number="%d"' % number))
    elif "InlineBinary" in node:
        body.append(_xml_leaf("InlineBinary", node["InlineBinary"], inner))
    if body:
        out.append(head + ">\n")
        out.extend(body)
        out.append("%s</DicomAttribute>\n" % indent)
    else:
        out.append(head + " />\n")


def _xml_dataset(model, out, indent):
    for key in sorted(model):
        _xml_attribute(key, model[key], out, indent)


def dicomweb_to_xml(model):
    """The application/dicom+xml document of a dataset_to_dicomweb() model."""
    if not model:
        return _XML_HEADER + " />\n"
    out = [_XML_HEADER, ">\n"]
    _xml_dataset(model, out, "  ")
    out.append("</NativeDicomModel>\n")
    return "".join(out)
