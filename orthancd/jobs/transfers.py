"""The transfer jobs (DICOM store, move, get; peer store), registered with
the engine so that saved ones come back after a restart (SaveJobs).

Their modules import the DICOM client (pynetdicom, pydicom) only when a
job runs (orthancd.lazy_modules)."""
from orthancd.jobs.dicom_retrieve import DicomGetScuJob, DicomMoveScuJob
from orthancd.jobs.dicom_store import DicomModalityStoreJob
from orthancd.jobs.peer_store import OrthancPeerStoreJob

TRANSFER_JOBS = (DicomModalityStoreJob, DicomMoveScuJob, DicomGetScuJob, OrthancPeerStoreJob)


def register_transfer_jobs(server):
    for job_class in TRANSFER_JOBS:
        server.jobs.register_type(job_class.job_type,
                                  lambda saved, job_class=job_class:
                                  job_class.unserialize(server, saved))
