"""DIMSE command sets: field codes, statuses and their (de)serialization.

Command sets are always Implicit VR Little Endian (PS3.7 6.3.1); we decode
them with pynetdicom's dsutils into pydicom Datasets and build replies from
plain keyword mappings.
"""

from io import BytesIO

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
    """Decode an Implicit VR Little Endian command set into a Dataset."""
    return read_dataset(BytesIO(encoded), True, True)


def encode_command(fields):
    """Encode a command set from ``{keyword: value}``, adding the group length.

    Fields whose value is None are left out, which is how optional elements
    (AffectedSOPInstanceUID of an echo, ErrorComment...) are skipped.
    """
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
