"""Storage commitment on orthancd's DICOM listener: the two DIMSE-N requests.

N-ACTION-RQ: a modality asks orthancd to commit instances.  orthancd
acknowledges at once (N-ACTION-RSP), then checks the instances and reports
on a new association (``orthancd.storage_commitment.CommitmentJob``).

N-EVENT-REPORT-RQ: a modality reports on instances orthancd asked it to
commit; the report is kept for ``/storage-commitment/{id}``.

As Orthanc, a message that does not follow annex J (wrong action or event
type, another SOP instance, a data set without its mandatory elements) ends
the association without an answer.  The data sets are parsed in a worker
thread: a request may list thousands of instances.
"""
import logging

from twisted.internet import threads

from orthancd import storage_commitment
from orthancd.errors import OrthancError
from orthancd.net import access, dimse, fsm, pdu
from orthancd.net.reassembly import ProtocolViolation
from orthancd.net.scp_echo import QUERY_TRANSFER_SYNTAXES
from orthancd.net.scp_query_retrieve import IdentifierSink
from orthancd.net.storage_commitment import (
    ACTION_REQUEST_COMMITMENT,
    EVENT_TYPES,
    SOP_CLASS,
    SOP_INSTANCE,
    addresses_commitment,
    decode_report,
    decode_request,
)

log = logging.getLogger(__name__)


class _StorageCommitmentService:
    """What both requests share: the SOP class, the data set read off the
    reactor, the answer, and the abort on malformed messages."""

    name = "storage commitment"

    def __init__(self, server):
        self._server = server

    def abstract_syntaxes(self, settings):
        return (SOP_CLASS,)

    def transfer_syntaxes(self, settings):
        return QUERY_TRANSFER_SYNTAXES

    def start(self, request):
        problem = self.command_problem(request.command)
        if problem is None and not request.has_dataset:
            problem = "no data set"
        if problem is not None:
            raise ProtocolViolation("%s from %s: %s" % (self.name, request.association.remote_aet,
                                                        problem))
        return IdentifierSink(lambda data: self._received(request, data))

    def _received(self, request, data):
        d = threads.deferToThread(self.decode, request, data)
        d.addCallbacks(self._decoded, self._malformed, callbackArgs=(request,),
                       errbackArgs=(request,))
        d.addErrback(self._crashed, request)

    def _decoded(self, decoded, request):
        if not request.association.can_send:
            return  # the association ended meanwhile
        try:
            after_answer = self.handle(request, *decoded)
            status = dimse.SUCCESS
        except OrthancError as exc:
            log.error("Error while processing an incoming %s: %s", self.name,
                      exc.details or exc)
            after_answer, status = None, dimse.PROCESSING_FAILURE
        request.respond(status, AffectedSOPClassUID=SOP_CLASS,
                        AffectedSOPInstanceUID=SOP_INSTANCE)
        if after_answer is not None:
            after_answer()

    def _malformed(self, failure, request):
        log.warning("%s from %s: %s, aborting the association", self.name,
                    request.association.remote_aet, failure.getErrorMessage())
        self._abort(request)

    def _crashed(self, failure, request):
        log.error("%s failed: %s", self.name, failure.getTraceback())
        self._abort(request)

    @staticmethod
    def _abort(request):
        association = request.association
        if association.can_send:
            association.event(fsm.ABORT_REQUEST, pdu.ABORT_REASON_NOT_SPECIFIED)


class StorageCommitmentRequestService(_StorageCommitmentService):
    """N-ACTION SCP: "Request Storage Commitment"."""

    request_type = access.N_ACTION
    command_fields = (dimse.N_ACTION_RQ,)
    name = "storage commitment request"

    @staticmethod
    def command_problem(command):
        if command.get("ActionTypeID") != ACTION_REQUEST_COMMITMENT:
            return "only storage commitment is implemented for N-ACTION"
        if not addresses_commitment(command, "Requested"):
            return "unexpected SOP class/instance in storage commitment request"
        return None

    @staticmethod
    def decode(request, data):
        return decode_request(data, request.context.transfer_syntax)

    def handle(self, request, transaction_uid, references):
        association = request.association
        job = storage_commitment.accept_request(
            self._server, association.remote_aet, association.called_aet,
            transaction_uid, references)
        return job.start


class StorageCommitmentReportService(_StorageCommitmentService):
    """N-EVENT-REPORT SCP: the report on a commitment orthancd requested."""

    request_type = access.N_EVENT_REPORT
    command_fields = (dimse.N_EVENT_REPORT_RQ,)
    name = "storage commitment report"

    @staticmethod
    def command_problem(command):
        if command.get("EventTypeID") not in EVENT_TYPES:
            return "only storage commitment is implemented for N-EVENT-REPORT"
        if not addresses_commitment(command, "Affected"):
            return "unexpected SOP class/instance in storage commitment event report"
        return None

    @staticmethod
    def decode(request, data):
        return decode_report(data, request.context.transfer_syntax,
                             request.command.get("EventTypeID"))

    def handle(self, request, transaction_uid, successes, failures):
        storage_commitment.report_received(self._server, request.association.remote_aet,
                                           transaction_uid, successes, failures)
        return None
