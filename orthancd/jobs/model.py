"""What a job is, for the engine: Orthanc's job model.

A job advances in steps.  ``step()`` is a coroutine run on the reactor: it
does a bounded amount of work (handing anything blocking to a pool) and says
whether the job goes on, is done, failed, or wants to be retried later.  The
engine checks for pause and cancel requests between steps, so a step should
stay short (a few instances, a few megabytes).
"""
import abc
import dataclasses
import enum
from typing import Optional

from orthancd.errors import ErrorCode, OrthancError


class JobState(enum.Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILURE = "Failure"
    PAUSED = "Paused"
    RETRY = "Retry"


class StopReason(enum.Enum):
    """Why a job stops running (Orthanc's JobStopReason)."""
    SUCCESS = "Success"
    PAUSED = "Paused"
    FAILURE = "Failure"
    CANCELED = "Canceled"
    RETRY = "Retry"


@dataclasses.dataclass(frozen=True)
class StepResult:
    kind: str                     # "continue", "success", "failure" or "retry"
    code: ErrorCode = ErrorCode.Success
    details: str = ""
    retry_ms: int = 0
    # Orthanc's "ErrorPayload" of a failed step ({"Type": ..., "Content": ...}).
    payload: Optional[dict] = None


CONTINUE = StepResult("continue")
SUCCESS = StepResult("success")


def failure(code, details="", payload=None):
    return StepResult("failure", ErrorCode(code), details or "", payload=payload)


def failure_of(error):
    """The failed step of an OrthancError, its payload kept."""
    return failure(error.code, error.details or "", error.payload)


def retry(milliseconds):
    return StepResult("retry", retry_ms=int(milliseconds))


@dataclasses.dataclass
class JobOutput:
    """One output of a finished job (GET /jobs/{id}/{key}): ``open()`` gives
    a binary stream of it, read off the reactor by the caller."""
    mime_type: str
    filename: Optional[str]
    size: int
    open: object              # callable -> binary file object
    remove: object = None     # callable removing what backs it, or None


class Job(abc.ABC):
    """A unit of work the engine runs.  Subclasses set ``job_type`` and, to
    survive a restart, ``serialize()`` and a factory registered with the
    engine (orthancd.jobs.engine.JobsEngine.register_type)."""

    job_type = "Job"

    def __init__(self):
        self.user_data = None       # "UserData" of the request, shown as given
        self.outputs = {}           # key -> JobOutput, once successful

    def start(self):
        """Called once, when the job is submitted."""

    @abc.abstractmethod
    async def step(self, job_id):
        """Advance the job; return a StepResult."""

    def stop(self, reason):
        """The job stops running for ``reason`` (a StopReason): release what
        a step held open (associations, files being written...)."""

    def reset(self):
        """Start over, for a resubmission after a failure."""
        raise OrthancError(ErrorCode.NotImplemented,
                           "A %s job cannot be resubmitted" % self.job_type)

    @abc.abstractmethod
    def progress(self):
        """How far the job is, from 0.0 to 1.0."""

    def public_content(self):
        """The "Content" of the job's JSON."""
        return {}

    def error_payload(self):
        """The payload a synchronous request's error carries when the job
        failed (Orthanc's LookupErrorPayload), None to keep the failed
        step's own."""
        return None

    def serialize(self):
        """A JSON-able dict from which the job can be rebuilt after a
        restart, or None when it cannot be saved."""
        return None

    def delete_output(self, key):
        output = self.outputs.pop(key, None)
        if output is None:
            return False
        if output.remove is not None:
            output.remove()
        return True

    def delete_all_outputs(self):
        for key in list(self.outputs):
            self.delete_output(key)
