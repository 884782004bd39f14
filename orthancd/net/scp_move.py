"""C-MOVE SCP: send the instances an identifier designates to a known modality.

The move destination is looked up by AET among the modalities (unknown ->
0xA801).  The instances are sent over one sub-association, streamed one by
one from their storage files, with a pending C-MOVE-RSP after each carrying
the remaining/completed/failed/warning counts, then the final status:
success, 0xB000 when some sub-operations failed, 0xA702 when all did,
0xFE00 when the requestor cancelled.
"""
import logging

from orthancd.errors import OrthancError
from orthancd.modalities import modality_registry
from orthancd.net import access, dimse, scu
from orthancd.net.scp_query_retrieve import IdentifierService, Progress, requested_instances

log = logging.getLogger(__name__)

MOVE_DESTINATION_UNKNOWN = 0xA801


class MoveService(IdentifierService):
    request_type = access.MOVE
    command_fields = (dimse.C_MOVE_RQ,)
    name = "C-MOVE"

    def __init__(self, server):
        self._server = server

    def abstract_syntaxes(self, settings):
        return (scu.PATIENT_ROOT_MOVE, scu.STUDY_ROOT_MOVE)

    async def serve(self, request, data):
        server = self._server
        destination = str(request.command.get("MoveDestination", "")).strip()
        found = modality_registry(server).lookup_aet(destination)
        if found is None:
            log.warning("C-MOVE from %s: unknown destination AET %r",
                        request.association.remote_aet, destination)
            request.respond(MOVE_DESTINATION_UNKNOWN)
            return
        _, modality = found
        instances = requested_instances(self.name, server.index, request, data)
        if instances is None:
            return
        settings = scu.ScuSettings.for_modality(server.configuration, modality)
        settings.local_aet = request.association.settings.aet
        # Orthanc's C-MOVE SCP closes its sub-association when the move is
        # over (DicomAssociationCloseDelay is for the SCU operations): the
        # requestor may be the destination and wait for it to end.
        settings.close_delay = 0
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
