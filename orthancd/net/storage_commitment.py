"""Storage Commitment Push Model (PS3.4 annex J) on the wire, as Orthanc speaks it.

The requester of a commitment sends N-ACTION-RQ (Action Type 1, "Request
Storage Commitment") whose data set lists the instances by SOP Class/Instance
UID under a Transaction UID; the committer answers N-ACTION-RSP at once, then
reports later with N-EVENT-REPORT-RQ (Event Type 1 when everything is
committed, 2 when failures exist) on an association it opens itself,
proposing the SCP role for the storage commitment SOP class.

This module encodes and decodes those data sets and holds the two requestor
operations: ``request_commitment`` (orthancd asks a modality) and
``send_report`` (orthancd answers one).  Failures become the OrthancError
Orthanc 1.13.0 reports.
"""
import dataclasses
import logging
import struct

from orthancd.errors import ErrorCode, OrthancError
from orthancd.net import dimse, scu
from orthancd.net.client import DimseTimeout
from orthancd.net.transfer_syntaxes import EXPLICIT_LITTLE, IMPLICIT_LITTLE, decode_in
from orthancd.net.upper_layer import AssociationAborted

log = logging.getLogger(__name__)

SOP_CLASS = "1.2.840.10008.1.20.1"
# The well-known SOP instance every storage commitment message addresses.
SOP_INSTANCE = "1.2.840.10008.1.20.1.1"

ACTION_REQUEST_COMMITMENT = 1
EVENT_ALL_COMMITTED = 1
EVENT_FAILURES_EXIST = 2
EVENT_TYPES = (EVENT_ALL_COMMITTED, EVENT_FAILURES_EXIST)

N_ACTION_RSP = dimse.RESPONSE_OF[dimse.N_ACTION_RQ]
N_EVENT_REPORT_RSP = dimse.RESPONSE_OF[dimse.N_EVENT_REPORT_RQ]

# What orthancd proposes for both operations, in Orthanc's order.
TRANSFER_SYNTAXES = (EXPLICIT_LITTLE, IMPLICIT_LITTLE)

_TRANSACTION_UID = 0x00081195
_FAILED_SOP_SEQUENCE = 0x00081198
_REFERENCED_SOP_SEQUENCE = 0x00081199
_REFERENCED_SOP_CLASS_UID = 0x00081150
_REFERENCED_SOP_INSTANCE_UID = 0x00081155
_FAILURE_REASON = 0x00081197
_ITEM = 0xFFFEE000


@dataclasses.dataclass(frozen=True)
class Reference:
    """One instance named in a commitment request or report."""
    sop_class_uid: str
    sop_instance_uid: str


@dataclasses.dataclass(frozen=True)
class Failure:
    """One instance the committer did not commit, with its Failure Reason."""
    sop_class_uid: str
    sop_instance_uid: str
    reason: int


class MalformedMessage(Exception):
    """A storage commitment message that does not follow annex J (Orthanc
    drops the association on those)."""


# -- data sets -----------------------------------------------------------------
#
# The outgoing data sets are flat lists of UIDs: written directly (in the
# Little Endian syntaxes orthancd proposes), in tag order as DCMTK does,
# rather than through pydicom, which would warn about every odd UID a REST
# client passes along.


def _header(tag, vr, length, explicit):
    if not explicit or vr is None:
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length)
    if vr == "SQ":
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, b"SQ", 0, length)
    if length > 0xFFFF:
        raise ValueError("value too long for its VR")
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode("ascii"), length)


def _uid(tag, value, explicit):
    data = value.encode("utf-8")
    if len(data) % 2:
        data += b"\0"
    return _header(tag, "UI", len(data), explicit) + data


def _sequence(tag, items, explicit):
    body = b"".join(_header(_ITEM, None, len(item), explicit) + item for item in items)
    return _header(tag, "SQ", len(body), explicit) + body


def _item(reference, explicit, reason=None):
    item = (_uid(_REFERENCED_SOP_CLASS_UID, reference.sop_class_uid, explicit)
            + _uid(_REFERENCED_SOP_INSTANCE_UID, reference.sop_instance_uid, explicit))
    if reason is not None:
        item += _header(_FAILURE_REASON, "US", 2, explicit) + struct.pack("<H", reason)
    return item


def encode_request(transaction_uid, references, transfer_syntax):
    """The N-ACTION-RQ data set: Transaction UID and Referenced SOP Sequence."""
    explicit = transfer_syntax != IMPLICIT_LITTLE
    return (_uid(_TRANSACTION_UID, transaction_uid, explicit)
            + _sequence(_REFERENCED_SOP_SEQUENCE,
                        [_item(reference, explicit) for reference in references], explicit))


def encode_report(transaction_uid, successes, failures, transfer_syntax):
    """The N-EVENT-REPORT-RQ data set; as Orthanc, the Failed SOP Sequence
    only when there are failures, the Referenced SOP Sequence always."""
    explicit = transfer_syntax != IMPLICIT_LITTLE
    data = _uid(_TRANSACTION_UID, transaction_uid, explicit)
    if failures:
        data += _sequence(_FAILED_SOP_SEQUENCE,
                          [_item(failure, explicit, failure.reason) for failure in failures],
                          explicit)
    return data + _sequence(_REFERENCED_SOP_SEQUENCE,
                            [_item(success, explicit) for success in successes], explicit)


def _text(container, keyword):
    """The value of a string element as DCMTK's findAndGetString gives it;
    None when absent or empty."""
    value = container.get(keyword)
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    value = str(value).strip("\0 ")
    return value or None


def _references(dataset, keyword, mandatory, with_reasons=False):
    sequence = dataset.get(keyword)
    if sequence is None:
        if mandatory:
            raise MalformedMessage("missing mandatory sequence %s" % keyword)
        return []
    found = []
    for item in sequence:
        sop_class = _text(item, "ReferencedSOPClassUID")
        sop_instance = _text(item, "ReferencedSOPInstanceUID")
        if sop_class is None or sop_instance is None:
            raise MalformedMessage("missing Referenced SOP Class/Instance UID in %s" % keyword)
        if not with_reasons:
            found.append(Reference(sop_class, sop_instance))
            continue
        reason = item.get("FailureReason")
        if isinstance(reason, (list, tuple)) or type(reason).__name__ == "MultiValue":
            reason = reason[0] if len(reason) else None
        if not isinstance(reason, int):
            raise MalformedMessage("missing Failure Reason (0008,1197) in %s" % keyword)
        found.append(Failure(sop_class, sop_instance, reason))
    return found


def _decode(data, transfer_syntax, read):
    try:
        dataset = decode_in(data, transfer_syntax)
        transaction_uid = _text(dataset, "TransactionUID")
        if transaction_uid is None:
            raise MalformedMessage("missing Transaction UID")
        return (transaction_uid,) + read(dataset)
    except MalformedMessage:
        raise
    except Exception as exc:
        raise MalformedMessage("unreadable data set: %s" % exc) from exc


def decode_request(data, transfer_syntax):
    """``(transaction_uid, [Reference])`` of an N-ACTION-RQ data set.
    Blocking parse: run it in a thread."""
    return _decode(data, transfer_syntax, lambda dataset: (
        _references(dataset, "ReferencedSOPSequence", mandatory=True),))


def decode_report(data, transfer_syntax, event_type):
    """``(transaction_uid, [Reference], [Failure])`` of an N-EVENT-REPORT-RQ
    data set, read as Orthanc does: the successes are mandatory for event 1,
    the failures are read (and mandatory) for event 2 only."""
    return _decode(data, transfer_syntax, lambda dataset: (
        _references(dataset, "ReferencedSOPSequence",
                    mandatory=event_type == EVENT_ALL_COMMITTED),
        _references(dataset, "FailedSOPSequence", mandatory=True, with_reasons=True)
        if event_type == EVENT_FAILURES_EXIST else []))


def _uid_field(command, keyword):
    return str(command.get(keyword) or "").strip("\0 ")


def addresses_commitment(command, prefix):
    """Whether ``command`` names the storage commitment SOP class and its
    well-known instance (``prefix`` "Requested" or "Affected")."""
    return (_uid_field(command, prefix + "SOPClassUID") == SOP_CLASS
            and _uid_field(command, prefix + "SOPInstanceUID") == SOP_INSTANCE)


# -- requestor operations --------------------------------------------------------


def _error(details):
    return OrthancError(ErrorCode.NetworkProtocol, "Storage commitment - " + details)


async def _exchange(reactor, settings, modality, operation, fields, encode, scp_roles=()):
    """Open an association proposing the storage commitment SOP class, send
    one request whose data set ``encode(transfer_syntax)`` makes, and return
    its response.  As Orthanc, the association is released right after (no
    DicomAssociationCloseDelay), and any idle one to the same peer first."""
    aet = modality["AET"]
    settings = dataclasses.replace(settings, close_delay=0)
    async with scu.modality_association(
            reactor, settings, modality, [(SOP_CLASS, TRANSFER_SYNTAXES)],
            lambda association: association.find_context(SOP_CLASS) is not None,
            scp_roles=scp_roles) as association:
        context = association.find_context(SOP_CLASS)
        if context is None:
            raise OrthancError(ErrorCode.NoPresentationContext,
                               'Unable to negotiate a presentation context with AET "%s"' % aet)
        try:
            dataset = encode(context.transfer_syntax)
        except (ValueError, UnicodeError) as exc:
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               "Cannot encode the storage commitment data set: %s" % exc) from None
        try:
            return await association.send_request(context, fields, dataset=dataset)
        except (DimseTimeout, AssociationAborted):
            raise _error("Unable to read %s response from AET: %s" % (operation, aet)) from None


def _check_response(response, expected_field, operation, aet):
    command = response.command
    if (command.get("CommandField") != expected_field
            or not addresses_commitment(command, "Affected")
            or response.dataset is not None):
        raise _error("Badly formatted %s response from AET: %s" % (operation, aet))
    if response.status != dimse.SUCCESS:
        raise _error("The request cannot be handled by remote AET: %s" % aet)


async def request_commitment(reactor, settings, modality, transaction_uid, references):
    """Ask ``modality`` to commit ``references`` (N-ACTION); returns once it
    accepted the request.  Its report comes later, on our DICOM listener."""
    for reference in references:
        if not reference.sop_class_uid or not reference.sop_instance_uid:
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               'The SOP class/instance UIDs cannot be empty, found: "%s" / "%s"'
                               % (reference.sop_class_uid, reference.sop_instance_uid))
    if not transaction_uid.startswith("2.25."):
        raise OrthancError(ErrorCode.ParameterOutOfRange)
    aet = modality["AET"]
    log.info('Request to modality "%s" about storage commitment for %d instances, '
             "with transaction UID: %s", aet, len(references), transaction_uid)
    response = await _exchange(reactor, settings, modality, "N-ACTION", {
        "CommandField": dimse.N_ACTION_RQ,
        "RequestedSOPClassUID": SOP_CLASS,
        "RequestedSOPInstanceUID": SOP_INSTANCE,
        "ActionTypeID": ACTION_REQUEST_COMMITMENT,
    }, lambda transfer_syntax: encode_request(transaction_uid, references, transfer_syntax))
    _check_response(response, N_ACTION_RSP, "N-ACTION", aet)


async def send_report(reactor, settings, modality, transaction_uid, successes, failures):
    """Report to ``modality`` what was committed (N-EVENT-REPORT), on an
    association where orthancd takes the SCP role of storage commitment."""
    aet = modality["AET"]
    log.info('Reporting modality "%s" about storage commitment transaction: %s '
             "(%d successes, %d failures)", aet, transaction_uid, len(successes), len(failures))
    response = await _exchange(reactor, settings, modality, "N-EVENT-REPORT", {
        "CommandField": dimse.N_EVENT_REPORT_RQ,
        "AffectedSOPClassUID": SOP_CLASS,
        "AffectedSOPInstanceUID": SOP_INSTANCE,
        "EventTypeID": EVENT_FAILURES_EXIST if failures else EVENT_ALL_COMMITTED,
    }, lambda transfer_syntax: encode_report(transaction_uid, successes, failures,
                                             transfer_syntax),
        scp_roles=[SOP_CLASS])
    _check_response(response, N_EVENT_REPORT_RSP, "N-EVENT-REPORT", aet)
