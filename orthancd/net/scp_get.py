"""C-GET SCP: send the designated instances back on the requestor's association.

Each instance goes as a C-STORE sub-operation on the storage context the
requestor proposed (with the SCP role) for its SOP class, in its stored
transfer syntax when accepted, else transcoded to an uncompressed one
(as far as pydicom can).  As Orthanc 1.13.0, a pending C-GET-RSP follows
every sub-operation with the completed/failed/warning counts as the
requestor's C-STORE statuses tell them; an instance that cannot be sent
at all (no context for it) ends the request with 0xC000 and the counts.
"""
import logging


from orthancd.net import access, dimse, scu
from orthancd.net.scp_query_retrieve import (
    COMPLETED, FAILED, WARNING, IdentifierService, Progress, requested_instances)
from orthancd.net.upper_layer import AssociationAborted

log = logging.getLogger(__name__)


class GetService(IdentifierService):
    request_type = access.GET
    command_fields = (dimse.C_GET_RQ,)
    name = "C-GET"

    def __init__(self, server):
        self._server = server

    def abstract_syntaxes(self, settings):
        return (scu.PATIENT_ROOT_GET, scu.STUDY_ROOT_GET)

    async def serve(self, request, data):
        instances = requested_instances(self.name, self._server.index, request, data)
        if instances is None:
            return
        progress = Progress(request, len(instances), pending_after_last=True)
        for instance_id in instances:
            if request.cancelled:
                break
            outcome = await self._send(request, instance_id)
            if not request.association.can_send:
                return  # the association is gone: nobody to answer
            if outcome is None:
                progress.failed += 1
                progress.refuse(with_counts=True)
                return
            progress.count(outcome)
        progress.finish()

    async def _send(self, request, instance_id):
        """The outcome of one sub-operation, or None when it could not be sent."""
        protocol = request.association
        try:
            instance = scu.outgoing_instance(self._server, instance_id)
        except Exception as exc:
            log.warning("C-GET: instance %s vanished (%s)", instance_id, exc)
            return None
        context = scu.choose_context(protocol.contexts.values(), instance)
        if context is None:
            log.warning("C-GET from %s: no storage context accepted for %s",
                        protocol.remote_aet, instance.sop_class)
            return None
        try:
            pool = self._server.file_io if context.transfer_syntax == instance.transfer_syntax \
                else self._server.pixel_pool
            payload = await pool.run(scu.load_payload, self._server, instance,
                                     context.transfer_syntax)
        except Exception as exc:
            log.warning("C-GET: cannot send %s: %s", instance_id, exc)
            return None
        fields = {
            "AffectedSOPClassUID": instance.sop_class,
            "CommandField": dimse.C_STORE_RQ,
            "Priority": 0,
            "AffectedSOPInstanceUID": instance.sop_instance,
        }
        try:
            response = await protocol.send_sub_request(context.context_id, fields, payload)
        except AssociationAborted:
            return FAILED
        status = response.get("Status", dimse.PROCESSING_FAILURE)
        if status == dimse.SUCCESS:
            return COMPLETED
        if status in scu.STORE_WARNINGS:
            return WARNING
        return FAILED
