"""What the Query/Retrieve SCPs (C-FIND, C-MOVE, C-GET) have in common.

Their requests carry a small identifier data set, collected whole before the
service runs; C-MOVE and C-GET then resolve it to local instances (by UID
equality at the requested level: a retrieve identifier is a list of UIDs)
and report the progress of their sub-operations in pending responses.
"""
import logging

from twisted.internet import defer

from orthancd.dicom.summary import normalize_for_find
from orthancd.ids import ResourceLevel
from orthancd.index.base import UnknownResource
from orthancd.net import dimse
from orthancd.net.scp_echo import QUERY_TRANSFER_SYNTAXES
from orthancd.net.transfer_syntaxes import decode_in

log = logging.getLogger(__name__)

SUB_OPERATIONS_FAILED = 0xA702
SUB_OPERATIONS_WARNING = 0xB000
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000

# QueryRetrieveLevel -> (our level, the UID keyword matched at that level, its tag)
LEVELS = {
    "PATIENT": (ResourceLevel.PATIENT, "PatientID", 0x00100020),
    "STUDY": (ResourceLevel.STUDY, "StudyInstanceUID", 0x0020000D),
    "SERIES": (ResourceLevel.SERIES, "SeriesInstanceUID", 0x0020000E),
    "IMAGE": (ResourceLevel.INSTANCE, "SOPInstanceUID", 0x00080018),
    "INSTANCE": (ResourceLevel.INSTANCE, "SOPInstanceUID", 0x00080018),
}


class IdentifierSink:
    """Collects the identifier data set of a request."""

    def __init__(self, on_complete):
        self._parts = []
        self._on_complete = on_complete

    def write(self, fragment):
        self._parts.append(bytes(fragment))

    def finish(self):
        self._on_complete(b"".join(self._parts))

    def discard(self):
        self._parts = []


class IdentifierService:
    """A DIMSE service answering requests that carry an identifier.

    Subclasses set ``request_type``, ``command_fields``, ``name`` (for the
    logs) and implement ``abstract_syntaxes`` and ``async serve(request,
    data)``, called with the identifier's bytes.
    """
    name = "Q/R"

    def transfer_syntaxes(self, settings):
        return QUERY_TRANSFER_SYNTAXES

    def start(self, request):
        if not request.has_dataset:
            request.respond(UNABLE_TO_PROCESS)
            return None
        return IdentifierSink(lambda data: self._received(request, data))

    def _received(self, request, data):
        d = defer.ensureDeferred(self.serve(request, data))
        d.addErrback(self._crashed, request)

    def _crashed(self, failure, request):
        log.error("%s failed: %s", self.name, failure.getTraceback())
        # The requestor waits for a final response: never leave it hanging.
        if not request.finished:
            request.respond(UNABLE_TO_PROCESS)


def resolve_instances(index, identifier):
    """Public IDs of the local instances an identifier designates.

    Raises ValueError when the identifier has no usable level or UID.
    """
    level_name = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if level_name not in LEVELS:
        raise ValueError("bad QueryRetrieveLevel %r" % level_name)
    level, keyword, tag = LEVELS[level_name]
    raw = identifier.get(keyword)
    if raw is None:
        values = []
    elif isinstance(raw, str):
        values = raw.split("\\")
    else:  # pydicom MultiValue: a list of UIDs
        values = list(raw)
    values = [str(v).strip() for v in values if str(v).strip()]
    if not values:
        raise ValueError("no %s in the identifier" % keyword)
    instances = []
    for value in values:
        for public_id in index.lookup_identifier(level, tag, normalize_for_find(value)):
            try:
                resource = index.get_resource(public_id, level)
                # The index holds normalized values: check the exact UID.
                if resource.main_tags.get(keyword, "").strip() != value:
                    continue
                instances.extend(index.get_descendant_instances(public_id, level))
            except UnknownResource:
                continue  # deleted meanwhile
    return list(dict.fromkeys(instances))


def requested_instances(service_name, index, request, data):
    """The local instances a C-MOVE/C-GET request designates, or None after
    answering 0xA900 when its identifier cannot be read or resolved."""
    try:
        identifier = decode_in(data, request.context.transfer_syntax)
        return resolve_instances(index, identifier)
    except Exception as exc:
        log.warning("%s from %s: bad identifier (%s)", service_name,
                    request.association.remote_aet, exc)
        request.respond(IDENTIFIER_DOES_NOT_MATCH)
        return None


class Progress:
    """Counts the sub-operations of a C-MOVE/C-GET and sends its responses."""

    def __init__(self, request, total):
        self.request = request
        self.total = total
        self.completed = 0
        self.failed = 0

    @property
    def remaining(self):
        return max(self.total - self.completed - self.failed, 0)

    def _counts(self, with_remaining=True):
        counts = {"NumberOfCompletedSuboperations": self.completed,
                  "NumberOfFailedSuboperations": self.failed,
                  "NumberOfWarningSuboperations": 0}
        if with_remaining:
            counts["NumberOfRemainingSuboperations"] = self.remaining
        return counts

    def stored(self, instance_id, ok):
        if ok:
            self.completed += 1
        else:
            self.failed += 1
        if self.remaining and not self.request.finished:
            self.request.respond(dimse.PENDING, final=False, **self._counts())

    def failed_all(self):
        self.failed = self.total - self.completed

    def finish(self):
        if self.request.finished:
            return
        if self.request.cancelled and self.remaining:
            status = dimse.CANCEL
        elif self.failed and not self.completed:
            status = SUB_OPERATIONS_FAILED
        elif self.failed:
            status = SUB_OPERATIONS_WARNING
        else:
            status = dimse.SUCCESS
        self.request.respond(status, **self._counts(with_remaining=status == dimse.CANCEL))
