"""What the Query/Retrieve SCPs (C-FIND, C-MOVE, C-GET) have in common.

Their requests carry a small identifier data set, collected whole before the
service runs; C-MOVE and C-GET then resolve it to local instances as
Orthanc 1.13.0's OrthancMoveRequestHandler does, and report the progress
of their sub-operations in pending responses.

Resolving: the level's key (PatientID, StudyInstanceUID, or
AccessionNumber when given, SeriesInstanceUID, SOPInstanceUID) holds one
value or a backslash-separated list, each compared with the stored
identifiers without regard to case; every match contributes its instances
(duplicates included).  C-MOVE infers a missing level from the most
specific key present.  A request resolving to nothing fails with 0xC000.
"""
import logging

from twisted.internet import defer

from orthancd.dicom.main_tags import normalize_for_find
from orthancd.ids import ResourceLevel
from orthancd.index.base import UnknownResource
from orthancd.net import dimse
from orthancd.net.scp_echo import QUERY_TRANSFER_SYNTAXES
from orthancd.net.transfer_syntaxes import decode_in

log = logging.getLogger(__name__)

SUB_OPERATIONS_FAILED = 0xA702
SUB_OPERATIONS_WARNING = 0xB000
UNABLE_TO_PROCESS = 0xC000

ACCESSION_NUMBER = ("AccessionNumber", 0x00080050)

# QueryRetrieveLevel -> (our level, the key matched at that level, its tag)
LEVELS = {
    "PATIENT": (ResourceLevel.PATIENT, "PatientID", 0x00100020),
    "STUDY": (ResourceLevel.STUDY, "StudyInstanceUID", 0x0020000D),
    "SERIES": (ResourceLevel.SERIES, "SeriesInstanceUID", 0x0020000E),
    "IMAGE": (ResourceLevel.INSTANCE, "SOPInstanceUID", 0x00080018),
    "INSTANCE": (ResourceLevel.INSTANCE, "SOPInstanceUID", 0x00080018),
}
# The order in which C-MOVE looks for a key when the level is missing.
_INFERRED_LEVELS = ("IMAGE", "SERIES", "STUDY", "PATIENT")


class RetrieveRefused(Exception):
    """Orthanc fails the C-MOVE/C-GET as a whole (status 0xC000)."""


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


def _text(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _key(identifier, level_name):
    """(keyword, tag) matched at ``level_name``, and its raw value (None
    when the identifier lacks it)."""
    _, keyword, tag = LEVELS[level_name]
    if level_name == "STUDY":
        accession = _text(identifier.get(ACCESSION_NUMBER[0]))
        if accession:
            return ACCESSION_NUMBER, accession
    return (keyword, tag), _text(identifier.get(keyword)) if keyword in identifier else None


def _matching(index, level, key, token):
    keyword, tag = key
    token = token.rstrip(" \0")
    wanted = token.upper()
    for public_id in index.lookup_identifier(level, tag, normalize_for_find(token)):
        try:
            resource = index.get_resource(public_id, level)
        except UnknownResource:
            continue  # deleted meanwhile
        if resource.main_tags.get(keyword, "").upper() == wanted:
            yield public_id


def resolve_instances(index, identifier, infer_level=False):
    """Public IDs of the local instances an identifier designates, in the
    order of its values.  Raises RetrieveRefused as Orthanc refuses."""
    level_name = _text(identifier.get("QueryRetrieveLevel")) if \
        "QueryRetrieveLevel" in identifier else None
    level_name = (level_name or "").strip().upper()
    if not level_name and infer_level:
        level_name = next((name for name in _INFERRED_LEVELS
                           if _key(identifier, name)[1] is not None), "")
    if level_name not in LEVELS:
        raise RetrieveRefused("bad or missing QueryRetrieveLevel %r" % level_name)
    level = LEVELS[level_name][0]
    key, value = _key(identifier, level_name)
    if value is None:
        raise RetrieveRefused("no %s in the identifier" % key[0])
    instances = []
    for token in value.split("\\"):
        for public_id in _matching(index, level, key, token):
            try:
                instances.extend(index.get_descendant_instances(public_id, level))
            except UnknownResource:
                continue
    if not instances:
        raise RetrieveRefused("the identifier matches no stored resource")
    return instances


def requested_instances(service_name, index, request, data, infer_level=False):
    """The local instances a C-MOVE/C-GET request designates, or None after
    answering 0xC000 when its identifier cannot be read or resolved."""
    try:
        identifier = decode_in(data, request.context.transfer_syntax)
        return resolve_instances(index, identifier, infer_level)
    except Exception as exc:
        log.warning("%s from %s: %s", service_name, request.association.remote_aet, exc)
        refuse(request)
        return None


def refuse(request, completed=0, failed=0, warning=0):
    """The final 0xC000 Orthanc answers when a retrieve fails as a whole."""
    if not request.finished:
        request.respond(UNABLE_TO_PROCESS, NumberOfCompletedSuboperations=completed,
                        NumberOfFailedSuboperations=failed,
                        NumberOfWarningSuboperations=warning)


# Outcomes of one sub-operation.
COMPLETED, WARNING, FAILED = "completed", "warning", "failed"


class Progress:
    """Counts the sub-operations of a C-MOVE/C-GET and sends its responses.

    Orthanc's two SCPs differ: C-MOVE counts the C-STORE warnings as
    completed, sends no pending response after the last sub-operation, and
    fails as a whole (0xC000, no counts) at the first failed one; C-GET
    counts failures and warnings and goes on, with a pending response after
    every sub-operation.
    """

    def __init__(self, request, total, pending_after_last=False):
        self.request = request
        self.total = total
        self.completed = 0
        self.failed = 0
        self.warning = 0
        self._pending_after_last = pending_after_last

    @property
    def remaining(self):
        return max(self.total - self.completed - self.failed - self.warning, 0)

    def _counts(self, with_remaining=True):
        counts = {"NumberOfCompletedSuboperations": self.completed,
                  "NumberOfFailedSuboperations": self.failed,
                  "NumberOfWarningSuboperations": self.warning}
        if with_remaining:
            counts["NumberOfRemainingSuboperations"] = self.remaining
        return counts

    def count(self, outcome):
        """Record one sub-operation and send the pending response."""
        if outcome == COMPLETED:
            self.completed += 1
        elif outcome == WARNING:
            self.warning += 1
        else:
            self.failed += 1
        if (self.remaining or self._pending_after_last) and not self.request.finished:
            self.request.respond(dimse.PENDING, final=False, **self._counts())

    def refuse(self, with_counts=False):
        """Fail the whole request with 0xC000."""
        if with_counts:
            refuse(self.request, self.completed, self.failed, self.warning)
        else:
            refuse(self.request)

    def finish(self):
        if self.request.finished:
            return
        if self.request.cancelled and self.remaining:
            status = dimse.CANCEL
        elif self.failed and not self.completed and not self.warning:
            status = SUB_OPERATIONS_FAILED
        elif self.failed or self.warning:
            status = SUB_OPERATIONS_WARNING
        else:
            status = dimse.SUCCESS
        self.request.respond(status, **self._counts(with_remaining=status == dimse.CANCEL))
