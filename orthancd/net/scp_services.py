"""The DIMSE services orthancd's DICOM listener offers, in one list."""
from orthancd.net.scp_echo import EchoService
from orthancd.net.scp_find import FindService
from orthancd.net.scp_get import GetService
from orthancd.net.scp_move import MoveService
from orthancd.net.scp_store import StoreService
from orthancd.net.scp_storage_commitment import (
    StorageCommitmentReportService,
    StorageCommitmentRequestService,
)


def scp_services(server):
    """Service objects for DicomServerFactory, each bound to the server."""
    return [
        EchoService(),
        StoreService(server),
        MoveService(server),
        GetService(server),
        FindService(server),
        StorageCommitmentRequestService(server),
        StorageCommitmentReportService(server),
    ]
