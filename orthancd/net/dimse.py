"""DIMSE command sets: field codes, statuses and their (de)serialization.

Command sets are always Implicit VR Little Endian (PS3.7 6.3.1).  Both
ways are on the path of every C-STORE and C-MOVE sub-operation, so the usual
elements (numbers, single ASCII texts) are packed and unpacked directly, with
pydicom's values (pydicom takes ~0.3 ms to encode a command set, ~50 µs to
decode one); anything unusual goes through pydicom.  Replies are built from
plain keyword mappings.
"""

import struct
from io import BytesIO

from pydicom.datadict import dictionary_VR, keyword_dict
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pynetdicom.dsutils import encode

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_GET_RQ = 0x0010
C_GET_RSP = 0x8010
C_FIND_RQ = 0x0020
C_FIND_RSP = 0x8020
C_MOVE_RQ = 0x0021
C_MOVE_RSP = 0x8021
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
C_CANCEL_RQ = 0x0FFF
N_EVENT_REPORT_RQ = 0x0100
N_GET_RQ = 0x0110
N_SET_RQ = 0x0120
N_ACTION_RQ = 0x0130
N_CREATE_RQ = 0x0140
N_DELETE_RQ = 0x0150

RESPONSE_OF = {
    C_STORE_RQ: C_STORE_RSP, C_GET_RQ: C_GET_RSP, C_FIND_RQ: C_FIND_RSP,
    C_MOVE_RQ: C_MOVE_RSP, C_ECHO_RQ: C_ECHO_RSP,
    N_EVENT_REPORT_RQ: 0x8100, N_GET_RQ: 0x8110, N_SET_RQ: 0x8120,
    N_ACTION_RQ: 0x8130, N_CREATE_RQ: 0x8140, N_DELETE_RQ: 0x8150,
}

# CommandDataSetType value meaning "no data set follows".
NO_DATASET = 0x0101
HAS_DATASET = 0x0001

# Statuses (PS3.7 annex C and the service classes of PS3.4).
SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
UNRECOGNIZED_OPERATION = 0x0211
REFUSED_OUT_OF_RESOURCES = 0xA700
ERROR_DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
ERROR_CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110


def decode_command(encoded):
    """Decode an Implicit VR Little Endian command set: a CommandSet, or a
    pydicom Dataset when an element is unusual (both answer ``get`` and
    attributes by keyword)."""
    return _unpack_command(encoded) or read_dataset(BytesIO(encoded), True, True)


class CommandSet:
    """The elements of a decoded command set by keyword, with the values
    pydicom would give; read as a Dataset is (``get``, attributes)."""
    __slots__ = ("_values",)

    def __init__(self, values):
        self._values = values

    def get(self, keyword, default=None):
        return self._values.get(keyword, default)

    def __getattr__(self, keyword):
        try:
            return self._values[keyword]
        except KeyError:
            raise AttributeError(keyword) from None

    def __contains__(self, keyword):
        return keyword in self._values

    def __repr__(self):
        return "CommandSet(%r)" % (self._values,)


# How each text VR's padding goes, as pydicom reads it.
_TEXT_STRIP = {"UI": lambda t: t.rstrip("\0 "), "AE": lambda t: t.strip(" "),
               "CS": lambda t: t.strip(" "), "SH": lambda t: t.rstrip(" "),
               "LO": lambda t: t.rstrip(" "), "LT": lambda t: t.rstrip(" ")}
_NUMBER_VALUES = {"US": struct.Struct("<H"), "UL": struct.Struct("<I")}


def _unpack_command(encoded):
    """A CommandSet of the usual elements (numbers, single ASCII texts),
    decoded directly (pydicom takes about 50 µs for a C-STORE-RQ); None when
    an element needs pydicom."""
    values = {}
    offset, end = 0, len(encoded)
    while offset < end:
        if offset + 8 > end:
            return None
        group, element, length = _ELEMENT_HEADER.unpack_from(encoded, offset)
        offset += 8
        value = encoded[offset:offset + length]
        offset += length
        if group != 0x0000 or len(value) != length or length == 0xFFFFFFFF:
            return None
        keyword, vr = _COMMAND_KEYWORDS.get(element, (None, None))
        if keyword is None or not length:
            return None
        number = _NUMBER_VALUES.get(vr)
        if number is not None:
            if length != number.size:
                return None
            values[keyword] = number.unpack(value)[0]
            continue
        strip = _TEXT_STRIP.get(vr)
        if strip is None or b"\\" in value or not value.isascii():
            return None
        values[keyword] = strip(value.decode("ascii"))
    return CommandSet(values)


def encode_command(fields):
    """Encode a command set from ``{keyword: value}``, adding the group length.

    Fields whose value is None are left out, which is how optional elements
    (AffectedSOPInstanceUID of an echo, ErrorComment...) are skipped.
    """
    encoded = _pack_command(fields)
    if encoded is not None:
        return encoded
    return _encode_with_pydicom(fields)


# Command group elements: keyword -> (tag, VR), from pydicom's dictionary.
_COMMAND_ELEMENTS = {keyword: (tag, dictionary_VR(tag)) for keyword, tag in keyword_dict.items()
                     if tag >> 16 == 0x0000}
_NUMBER_FORMATS = {"US": struct.Struct("<HHIH"), "UL": struct.Struct("<HHII")}
# Text VRs and the byte pydicom pads an odd-length value with.
_TEXT_PADDING = {"UI": b"\0", "AE": b" ", "SH": b" ", "LO": b" ", "CS": b" ", "LT": b" "}
_GROUP_LENGTH = _NUMBER_FORMATS["UL"]
_ELEMENT_HEADER = struct.Struct("<HHI")
# Element number -> (keyword, VR), for decoding.
_COMMAND_KEYWORDS = {tag & 0xFFFF: (keyword, vr) for keyword, (tag, vr) in _COMMAND_ELEMENTS.items()}


def _pack_command(fields):
    """Implicit VR Little Endian bytes of the command set, identical to what
    pydicom writes; None when a field needs pydicom (unknown keyword, a VR or
    a value type not handled here)."""
    elements = []
    for keyword, value in fields.items():
        if value is None:
            continue
        known = _COMMAND_ELEMENTS.get(keyword)
        if known is None:
            return None
        tag, vr = known
        number_format = _NUMBER_FORMATS.get(vr)
        if number_format is not None:
            if type(value) is not int:
                return None
            limit = 0xFFFF if vr == "US" else 0xFFFFFFFF
            if not 0 <= value <= limit:
                return None
            elements.append((tag, number_format.pack(0x0000, tag & 0xFFFF, number_format.size - 8, value)))
            continue
        padding = _TEXT_PADDING.get(vr)
        if padding is None or not isinstance(value, str) or not value.isascii():
            return None
        data = value.encode("ascii")
        if len(data) % 2:
            data += padding
        elements.append((tag, _ELEMENT_HEADER.pack(0x0000, tag & 0xFFFF, len(data)) + data))
    elements.sort()
    body = b"".join(encoded for tag, encoded in elements if tag != 0x00000000)
    return _GROUP_LENGTH.pack(0x0000, 0x0000, 4, len(body)) + body


def _encode_with_pydicom(fields):
    command = Dataset()
    for keyword, value in fields.items():
        if value is not None:
            setattr(command, keyword, value)
    body = encode(command, True, True)
    command.CommandGroupLength = len(body)
    return encode(command, True, True)


def has_dataset(command):
    return command.get("CommandDataSetType", NO_DATASET) != NO_DATASET


def response_fields(request, status, **extra):
    """The common fields of the response to ``request`` (a command Dataset)."""
    fields = {
        "AffectedSOPClassUID": request.get("AffectedSOPClassUID"),
        "CommandField": RESPONSE_OF[request.CommandField],
        "MessageIDBeingRespondedTo": request.get("MessageID", 0),
        "CommandDataSetType": NO_DATASET,
        "Status": status,
    }
    fields.update(extra)
    return fields
