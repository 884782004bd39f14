"""C-MOVE SCP: send the instances an identifier designates to a known modality.

The move destination is looked up by AET among the modalities (unknown ->
0xA801).  The instances are sent over one sub-association, streamed one by
one from their storage files, with a pending C-MOVE-RSP after each carrying
the remaining/completed/failed/warning counts, then the final status:
success, 0xB000 when some sub-operations failed, 0xA702 when all did,
0xFE00 when the requestor cancelled.

Identifiers are resolved at the requested level by UID equality (Patient
Root and Study Root models: a C-MOVE identifier is a list of UIDs).
"""
import logging
from io import BytesIO

from pydicom.filereader import read_dataset
from twisted.internet import defer

from orthancd.dicom.summary import normalize_for_find
from orthancd.errors import OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import UnknownResource
from orthancd.modalities import modality_registry
from orthancd.net import access, dimse, scu
from orthancd.net.scp_echo import QUERY_TRANSFER_SYNTAXES
from orthancd.net.transfer_syntaxes import is_implicit_vr, is_little_endian

log = logging.getLogger(__name__)

MOVE_DESTINATION_UNKNOWN = 0xA801
SUB_OPERATIONS_FAILED = 0xA702
SUB_OPERATIONS_WARNING = 0xB000
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000

# QueryRetrieveLevel -> (our level, the UID keyword matched at that level)
LEVELS = {
    "PATIENT": (ResourceLevel.PATIENT, "PatientID", 0x00100020),
    "STUDY": (ResourceLevel.STUDY, "StudyInstanceUID", 0x0020000D),
    "SERIES": (ResourceLevel.SERIES, "SeriesInstanceUID", 0x0020000E),
    "IMAGE": (ResourceLevel.INSTANCE, "SOPInstanceUID", 0x00080018),
    "INSTANCE": (ResourceLevel.INSTANCE, "SOPInstanceUID", 0x00080018),
}


class IdentifierSink:
    """Collects the (small) identifier data set of a C-MOVE/C-GET request."""

    def __init__(self, on_complete):
        self._parts = []
        self._on_complete = on_complete

    def write(self, fragment):
        self._parts.append(bytes(fragment))

    def finish(self):
        self._on_complete(b"".join(self._parts))

    def discard(self):
        self._parts = []


def decode_identifier(data, transfer_syntax):
    return read_dataset(BytesIO(data), is_implicit_vr(transfer_syntax),
                        is_little_endian(transfer_syntax))


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


class MoveService:
    request_type = access.MOVE
    command_fields = (dimse.C_MOVE_RQ,)

    def __init__(self, server):
        self._server = server

    def abstract_syntaxes(self, settings):
        return (scu.PATIENT_ROOT_MOVE, scu.STUDY_ROOT_MOVE)

    def transfer_syntaxes(self, settings):
        return QUERY_TRANSFER_SYNTAXES

    def start(self, request):
        if not request.has_dataset:
            request.respond(UNABLE_TO_PROCESS)
            return None
        return IdentifierSink(lambda data: self._received(request, data))

    def _received(self, request, data):
        d = defer.ensureDeferred(self._serve(request, data))
        d.addErrback(self._crashed, request)

    def _crashed(self, failure, request):
        log.error("C-MOVE failed: %s", failure.getTraceback())
        if not request.finished:
            request.respond(UNABLE_TO_PROCESS)

    async def _serve(self, request, data):
        server = self._server
        destination = str(request.command.get("MoveDestination", "")).strip()
        found = modality_registry(server).lookup_aet(destination)
        if found is None:
            log.warning("C-MOVE from %s: unknown destination AET %r",
                        request.association.remote_aet, destination)
            request.respond(MOVE_DESTINATION_UNKNOWN)
            return
        _, modality = found
        try:
            identifier = decode_identifier(data, request.context.transfer_syntax)
            instances = resolve_instances(server.index, identifier)
        except Exception as exc:
            log.warning("C-MOVE from %s: bad identifier (%s)", request.association.remote_aet, exc)
            request.respond(IDENTIFIER_DOES_NOT_MATCH)
            return
        settings = scu.ScuSettings.for_modality(server.configuration, modality)
        settings.local_aet = request.association.settings.aet
        progress = Progress(request, len(instances))
        if instances:
            try:
                await scu.store(server, settings, modality, instances,
                                move_originator=(request.association.remote_aet,
                                                 request.command.get("MessageID", 0)),
                                on_stored=progress.stored,
                                should_stop=lambda: request.cancelled)
            except OrthancError as exc:
                log.warning("C-MOVE to %s: %s", destination, exc.details or exc)
                progress.failed_all()
        progress.finish()


class Progress:
    """Counts the sub-operations of a C-MOVE/C-GET and sends its responses."""

    def __init__(self, request, total):
        self.request = request
        self.total = total
        self.completed = 0
        self.failed = 0
        self.failed_uids = []

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
