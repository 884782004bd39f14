"""The modification jobs, registered with the engine so that saved ones
come back after a restart (SaveJobs).

By name: orthancd.modification.jobs (and pydicom with it) is imported only
when a saved job of these types comes back, or when a job is created
(orthancd.lazy_modules).
"""
import importlib

# Job type -> the class of orthancd.modification.jobs that rebuilds it.
SAVED_JOB_CLASSES = {
    "ResourceModification": "ResourceModificationJob",
    "SplitStudy": "SplitStudyJob",
    "MergeStudy": "MergeStudyJob",
}


def _rebuild(server, class_name, saved):
    jobs = importlib.import_module("orthancd.modification.jobs")
    return getattr(jobs, class_name).unserialize(server, saved)


def register(server):
    """Let the engine rebuild the saved modification jobs after a restart."""
    for job_type, class_name in SAVED_JOB_CLASSES.items():
        server.jobs.register_type(
            job_type, lambda saved, class_name=class_name: _rebuild(server, class_name, saved))
