"""C-MOVE SCP: send the instances an identifier designates to a known modality.

As Orthanc 1.13.0 (synchronous C-MOVE): the destination is looked up by
AET among the modalities and the instances are sent over one
sub-association, streamed one by one from their storage files, with a
pending C-MOVE-RSP after each but the last carrying the remaining and
completed counts (a C-STORE warning counts as completed), then success.
An unknown destination, an identifier matching nothing, a destination
that cannot be reached or a sub-operation that fails end the request with
0xC000; a C-CANCEL with 0xFE00.
"""
import logging

from orthancd.errors import OrthancError
from orthancd.modalities import modality_registry
from orthancd.net import access, dimse, scu
from orthancd.net.scp_query_retrieve import (
    COMPLETED, IdentifierService, Progress, refuse, requested_instances)

log = logging.getLogger(__name__)


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
        instances = requested_instances(self.name, server.index, request, data, infer_level=True)
        if instances is None:
            return
        destination = str(request.command.get("MoveDestination", "")).strip()
        found = modality_registry(server).lookup_aet(destination)
        if found is None:
            log.warning("C-MOVE from %s: unknown destination AET %r",
                        request.association.remote_aet, destination)
            refuse(request)
            return
        _, modality = found
        settings = scu.ScuSettings.for_modality(server.configuration, modality)
        settings.local_aet = request.association.settings.aet
        # Orthanc's C-MOVE SCP closes its sub-association when the move is
        # over (DicomAssociationCloseDelay is for the SCU operations): the
        # requestor may be the destination and wait for it to end.
        settings.close_delay = 0
        progress = Progress(request, len(instances))

        def stored(instance_id, ok):
            if ok:
                progress.count(COMPLETED)
            else:
                log.warning("C-MOVE to %s: instance %s not stored", destination, instance_id)
                progress.refuse()

        try:
            await scu.store(server, settings, modality, instances,
                            move_originator=(request.association.remote_aet,
                                             request.command.get("MessageID", 0)),
                            on_stored=stored,
                            should_stop=lambda: request.cancelled or request.finished)
        except OrthancError as exc:
            log.warning("C-MOVE to %s: %s", destination, exc.details or exc)
            progress.refuse()
        progress.finish()
