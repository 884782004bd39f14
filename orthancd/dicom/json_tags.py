"""Orthanc's JSON renderings of DICOM datasets.

Three formats, as in GET /instances/{id}/tags:
  full     {"0010,0010": {"Name": "PatientName", "Type": "String", "Value": "..."}}
           Type is String, Sequence, Null (binary or unreadable) or TooLong
           (string longer than 256 bytes once in UTF-8); private elements whose
           creator is known carry a "PrivateCreator" key.
  simplify {"PatientName": "..."}  (keyed by DCMTK's tag name; null for Null/TooLong)
  short    {"0010,0010": "..."}
Keys come out sorted, as Orthanc's JSON objects are.
"""
import struct

from orthancd.dicom import elements as _elements
from orthancd.dicom.elements import format_tag, iter_elements, dataset_encoding

MODES = ("full", "simplify", "short")
# ORTHANC_MAXIMUM_TAG_LENGTH: longer strings are replaced by TooLong/null.
MAX_STRING_LENGTH = 256


class ContentPathError(KeyError):
    """Unknown path below /instances/{id}/content."""


class PixelBlockError(ValueError):
    """A pixel data block index that is not a number (Orthanc: 'Bad file
    format', 'Invalid Block URI: not a number')."""


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError("Unknown JSON format: %r" % (mode,))


def _leaf_json(value, mode, max_length):
    too_long = value is not None and max_length and len(value.encode("utf-8")) > max_length
    if mode == "full":
        if value is None:
            return "Null", None
        if too_long:
            return "TooLong", None
        return "String", value
    return None, (None if too_long else value)


def elements_to_json(items, mode="full", max_length=MAX_STRING_LENGTH, ignore_length=frozenset()):
    """A sequence of Element objects -> Orthanc JSON object (sorted keys).
    Values of the tags in ``ignore_length`` are never TooLong."""
    _check_mode(mode)
    result = {}
    for element in items:
        key = element.name if mode == "simplify" else format_tag(element.tag)
        if element.is_sequence:
            children = [elements_to_json(item, mode, max_length, ignore_length)
                        for item in element.value]
            if mode == "full":
                result[key] = {"Name": element.name, "Type": "Sequence", "Value": children}
            else:
                result[key] = children
            continue
        kind, value = _leaf_json(element.value, mode,
                                 0 if element.tag in ignore_length else max_length)
        if mode == "full":
            node = {"Name": element.name}
            if element.creator is not None:
                node["PrivateCreator"] = element.creator
            node["Type"] = kind
            node["Value"] = value
            result[key] = node
        else:
            result[key] = value
    return dict(sorted(result.items()))


def convert_full_node(node, mode):
    """One element in Orthanc's full format -> its "simplify" or "short"
    value (sequences recursively, their items keyed by name or tag)."""
    if node.get("Type") != "Sequence":
        return node.get("Value") if node.get("Type") == "String" else None
    return [convert_full_items(item, mode) for item in node["Value"]]


def convert_full_items(item, mode):
    """{"gggg,eeee": full node} -> the same object in ``mode``."""
    out = {}
    for key, node in item.items():
        out[node["Name"] if mode == "simplify" else key] = convert_full_node(node, mode)
    return dict(sorted(out.items()))


def dataset_to_json(ds, mode="full", default_encoding="Latin1", max_length=MAX_STRING_LENGTH,
                    ignore_length=frozenset()):
    """GET /instances/{id}/tags (mode full), ?simplify, ?short."""
    encoding = dataset_encoding(ds, default_encoding)
    return elements_to_json(iter_elements(ds, encoding), mode, max_length, ignore_length)


def header_to_json(ds, mode="full", default_encoding="Latin1"):
    """GET /instances/{id}/header: the file meta information (group 0002)."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return {}
    # Orthanc leaves binary elements (FileMetaInformationVersion) out here.
    return elements_to_json(iter_elements(meta, default_encoding, include_binary=False),
                            mode, MAX_STRING_LENGTH)


def _parse_content_tag(text):
    parts = text.split("-")
    if len(parts) != 2 or any(len(p) != 4 for p in parts):
        raise ContentPathError(text)
    try:
        return (int(parts[0], 16) << 16) | int(parts[1], 16)
    except ValueError:
        raise ContentPathError(text)


def _listing(item):
    return ["%04x-%04x" % (tag >> 16, tag & 0xFFFF) for tag in sorted(item.keys())]


def _raw_bytes(element):
    """The value bytes as stored in the file."""
    value = element.value
    if isinstance(value, bytes):
        return value
    data = _elements._value_bytes(value)
    if len(data) % 2:
        data += b"\0" if element.VR == "UI" else b" "
    return data


def _leaf_bytes(element, vr):
    """A leaf's value as Orthanc streams it from DCMTK: strings lose their
    trailing spaces and NULs then are padded to an even length again (NUL
    for UI, space otherwise); other values are padded with a NUL byte."""
    data = _raw_bytes(element)
    if vr in _elements.STRING_VRS:
        data = data.rstrip(b" \0")
        if len(data) % 2:
            data += b"\0" if vr == "UI" else b" "
        return data
    if len(data) % 2:
        data += b"\0"
    return _elements.little_endian_bytes(
        data, vr, getattr(element, "is_little_endian", True) is not False)


_ITEM_TAG = (0xFFFE, 0xE000)
_SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)


def pixel_data_blocks(element):
    """The blocks Orthanc shows below /content/7fe0-0010: the basic offset
    table then each fragment of encapsulated pixel data, or the whole value
    of native pixel data."""
    value = element.value if isinstance(element.value, bytes) else _raw_bytes(element)
    if element.length != 0xFFFFFFFF:
        return [_elements.little_endian_bytes(
            value, element.VR or "OW", getattr(element, "is_little_endian", True) is not False)]
    order = "<" if getattr(element, "is_little_endian", True) else ">"
    blocks, position = [], 0
    while position + 8 <= len(value):
        group, number, length = struct.unpack(order + "HHI", value[position:position + 8])
        if (group, number) != _ITEM_TAG:
            break
        blocks.append(value[position + 8:position + 8 + length])
        position += 8 + length
    return blocks


def _block_index(text):
    """boost::lexical_cast<unsigned int> as Orthanc parses the block number."""
    text = text.strip()
    digits = text[1:] if text.startswith("+") else text
    if not digits.isdigit() or not digits.isascii() or int(digits) > 0xFFFFFFFF:
        raise PixelBlockError("Invalid Block URI: not a number")
    return int(digits)


def content_at(ds, path_parts, parse_tag=None):
    """GET /instances/{id}/content/{path}: a list of child names
    ("0008-1140" for elements, "0", "1"... for sequence items and pixel data
    blocks) or the raw bytes of a leaf.  `ds` should be read with its pixel
    data.  Raises ContentPathError (a KeyError) for paths that lead nowhere,
    PixelBlockError for a pixel data block that is no number.  Tags are read
    with ``parse_tag`` (default: "gggg-eeee") as the walk reaches them."""
    parse_tag = parse_tag or _parse_content_tag
    node = ds
    parts = [p for p in path_parts if p != ""]
    if parts and len(parts) <= 2 and parse_tag(parts[0]) == _elements.PIXEL_DATA:
        if _elements.PIXEL_DATA not in ds:
            raise ContentPathError(parts[0])
        blocks = pixel_data_blocks(ds.get_item(_elements.PIXEL_DATA, keep_deferred=True))
        if len(parts) == 1:
            return [str(n) for n in range(len(blocks))]
        index = _block_index(parts[1])
        if index >= len(blocks):
            raise ContentPathError("/".join(parts))
        return blocks[index]
    i = 0
    while i < len(parts):
        tag = parse_tag(parts[i])
        if tag not in node:
            raise ContentPathError("/".join(parts[:i + 1]))
        element = node.get_item(tag, keep_deferred=True)
        creator = _elements.creator_of(tag, _elements.private_creators(node))
        vr = _elements._element_vr(element, tag, creator, node)
        items = _elements._to_sequence(element, vr)
        if items is None:
            if i != len(parts) - 1:
                raise ContentPathError("/".join(parts))
            return _leaf_bytes(element, vr)
        if i == len(parts) - 1:
            return [str(n) for n in range(len(items))]
        index = parts[i + 1]
        if not index.isdigit() or int(index) >= len(items):
            raise ContentPathError("/".join(parts[:i + 2]))
        node = items[int(index)]
        i += 2
    return _listing(node)
