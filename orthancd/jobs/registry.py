"""The jobs and their states, as Orthanc's JobsRegistry keeps them.

Pending jobs wait in a priority queue (highest priority first, then in the
order they were submitted); finished jobs (success or failure) stay in a
history of ``JobsHistorySize`` entries, oldest forgotten first.  The state
machine is Orthanc's: a pending, retrying or paused job is canceled at once,
a running one when its current step ends; pause likewise; resume takes a
paused job back to pending; resubmit takes a failed one back.

Everything here runs on the reactor thread: no locks.
"""
import heapq
import itertools
import time
import uuid

from orthancd.errors import DESCRIPTIONS, ErrorCode
from orthancd.jobs.model import JobState


def iso_time(seconds):
    """boost::posix_time::to_iso_string of a UTC time: 20201227T161842.520129."""
    whole = int(seconds)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(whole)) + ".%06d" % int(
        round((seconds - whole) * 1e6) % 1000000)


class JobHandler:
    """One job and what the registry knows of it."""

    def __init__(self, job, priority, job_id=None, now=None):
        now = time.time() if now is None else now
        self.id = job_id or str(uuid.uuid4())
        self.job = job
        self.priority = int(priority)
        self.state = JobState.PENDING
        self.creation_time = now
        self.last_state_change = now
        self.runtime = 0.0
        self.retry_time = now
        self.pause_scheduled = False
        self.cancel_scheduled = False
        self.error_code = ErrorCode.Success
        self.error_details = ""
        self.error_payload = None     # {"Type": ..., "Content": ...} of the failed step

    def _touch(self, now):
        if self.state is JobState.RUNNING:
            self.runtime += now - self.last_state_change
        self.last_state_change = now

    def set_state(self, state, now=None):
        self._touch(time.time() if now is None else now)
        self.state = state
        self.pause_scheduled = False
        self.cancel_scheduled = False

    def info(self, now=None):
        """The job's JSON, as GET /jobs/{id} answers it."""
        now = time.time() if now is None else now
        runtime = self.runtime
        if self.state is JobState.RUNNING:
            runtime += now - self.last_state_change
        progress = min(max(float(self.job.progress()), 0.0), 1.0)
        out = {
            "ID": self.id,
            "Priority": self.priority,
            "ErrorCode": int(self.error_code),
            "ErrorDescription": DESCRIPTIONS.get(self.error_code, self.error_code.name),
            "ErrorDetails": self.error_details,
            "State": self.state.value,
            "Timestamp": iso_time(now),
            "CreationTime": iso_time(self.creation_time),
            "EffectiveRuntime": int(runtime * 1000) / 1000.0,
            "Progress": int(progress * 100 + 0.5),
            "Type": self.job.job_type,
            "Content": self.job.public_content(),
        }
        if self.job.user_data is not None:
            out["UserData"] = self.job.user_data
        if self.error_payload is not None:
            out["ErrorPayload"] = self.error_payload
        if self.state is JobState.RUNNING and progress > 0.01 and runtime > 0:
            remaining = runtime / progress * (1.0 - progress)
            out["EstimatedTimeOfArrival"] = iso_time(now + remaining)
        if self.state in (JobState.SUCCESS, JobState.FAILURE):
            out["CompletionTime"] = iso_time(self.last_state_change)
        return out


class JobsRegistry:
    """The handlers, the pending queue, the retry set and the history."""

    def __init__(self, history_size=10, clock=time.time):
        self.history_size = int(history_size)
        self._clock = clock
        self._handlers = {}           # id -> JobHandler
        self._pending = []            # heap of (-priority, order, id)
        self._order = itertools.count()
        self._retry = set()           # ids
        self._completed = []          # ids, oldest first
        self.listeners = []           # callables (event, handler): "submitted", "success", "failure"

    # -- queries --

    def ids(self):
        return sorted(self._handlers)

    def get(self, job_id):
        return self._handlers.get(job_id)

    def info(self, job_id):
        """The JSON of a job, None when unknown."""
        handler = self._handlers.get(job_id)
        return None if handler is None else handler.info(self._clock())

    def handlers(self):
        return list(self._handlers.values())

    def counts(self):
        """{state value: number of jobs}."""
        out = {}
        for handler in self._handlers.values():
            out[handler.state.value] = out.get(handler.state.value, 0) + 1
        return out

    # -- submission and the pending queue --

    def new_handler(self, job, priority):
        return JobHandler(job, priority, now=self._clock())

    def submit(self, handler, loaded=False):
        """Register ``handler``; a loaded (unserialized) handler keeps its
        finished or paused state, anything else becomes pending."""
        self._handlers[handler.id] = handler
        if handler.state in (JobState.PENDING, JobState.RETRY, JobState.RUNNING):
            handler.state = JobState.PENDING
            self._push(handler)
        elif handler.state in (JobState.SUCCESS, JobState.FAILURE):
            self._completed.append(handler.id)
        if not loaded:
            handler.job.start()
        self._notify("submitted", handler)
        self._forget_old()
        return handler.id

    def _push(self, handler):
        heapq.heappush(self._pending, (-handler.priority, next(self._order), handler.id))

    def _remove_pending(self, job_id):
        self._pending = [entry for entry in self._pending if entry[2] != job_id]
        heapq.heapify(self._pending)

    def pop_pending(self):
        """The pending job to run next (marked running), or None."""
        while self._pending:
            _, _, job_id = heapq.heappop(self._pending)
            handler = self._handlers.get(job_id)
            if handler is not None and handler.state is JobState.PENDING:
                handler.set_state(JobState.RUNNING, self._clock())
                return handler
        return None

    def has_pending(self):
        return any(self._handlers.get(e[2]) is not None and
                   self._handlers[e[2]].state is JobState.PENDING for e in self._pending)

    def set_priority(self, job_id, priority):
        handler = self._handlers.get(job_id)
        if handler is None:
            return False
        handler.priority = int(priority)
        if handler.state is JobState.PENDING:
            self._remove_pending(job_id)
            self._push(handler)
        return True

    # -- completion --

    def _complete(self, handler, success):
        handler.set_state(JobState.SUCCESS if success else JobState.FAILURE, self._clock())
        self._completed.append(handler.id)

    def _forget_old(self):
        while len(self._completed) > self.history_size:
            job_id = self._completed.pop(0)
            handler = self._handlers.pop(job_id, None)
            if handler is not None:
                handler.job.delete_all_outputs()

    def mark_success(self, handler):
        handler.error_code, handler.error_details = ErrorCode.Success, ""
        handler.error_payload = None
        self._complete(handler, True)
        self._notify("success", handler)
        self._forget_old()

    def mark_failure(self, handler, code, details="", payload=None):
        handler.error_code, handler.error_details = ErrorCode(code), details or ""
        handler.error_payload = payload
        self._complete(handler, False)
        self._notify("failure", handler)
        self._forget_old()

    def mark_canceled(self, handler):
        self._complete(handler, False)
        handler.error_code, handler.error_details = ErrorCode.CanceledJob, ""
        self._notify("failure", handler)
        self._forget_old()

    def mark_paused(self, handler):
        handler.set_state(JobState.PAUSED, self._clock())

    def mark_retry(self, handler, milliseconds):
        handler.set_state(JobState.RETRY, self._clock())
        handler.retry_time = self._clock() + milliseconds / 1000.0
        self._retry.add(handler.id)

    def schedule_retries(self):
        """Retrying jobs whose time has come go back to pending; returns
        whether any did."""
        now = self._clock()
        ready = [i for i in self._retry if self._handlers.get(i) is None or
                 self._handlers[i].retry_time <= now]
        for job_id in ready:
            self._retry.discard(job_id)
            handler = self._handlers.get(job_id)
            if handler is not None and handler.state is JobState.RETRY:
                handler.set_state(JobState.PENDING, now)
                self._push(handler)
        return bool(ready)

    # -- the actions of the REST API: False when the job is unknown --

    def pause(self, job_id):
        handler = self._handlers.get(job_id)
        if handler is None:
            return False
        if handler.state is JobState.PENDING:
            self._remove_pending(job_id)
            handler.set_state(JobState.PAUSED, self._clock())
        elif handler.state is JobState.RETRY:
            self._retry.discard(job_id)
            handler.set_state(JobState.PAUSED, self._clock())
        elif handler.state is JobState.RUNNING:
            handler.pause_scheduled = True
        return True

    def cancel(self, job_id):
        handler = self._handlers.get(job_id)
        if handler is None:
            return False
        if handler.state in (JobState.PENDING, JobState.RETRY, JobState.PAUSED):
            self._remove_pending(job_id)
            self._retry.discard(job_id)
            self._complete(handler, False)
            handler.error_code, handler.error_details = ErrorCode.CanceledJob, ""
            self._notify("failure", handler)
        elif handler.state is JobState.RUNNING:
            handler.cancel_scheduled = True
        self._forget_old()
        return True

    def resume(self, job_id):
        handler = self._handlers.get(job_id)
        if handler is None or handler.state is not JobState.PAUSED:
            return False
        handler.set_state(JobState.PENDING, self._clock())
        self._push(handler)
        return True

    def resubmit(self, job_id):
        handler = self._handlers.get(job_id)
        if handler is None or handler.state is not JobState.FAILURE:
            return False
        handler.job.reset()
        if job_id in self._completed:
            self._completed.remove(job_id)
        handler.runtime = 0.0
        handler.error_code, handler.error_details = ErrorCode.Success, ""
        handler.error_payload = None
        handler.set_state(JobState.PENDING, self._clock())
        self._push(handler)
        return True

    def delete_info(self, job_id):
        """Forget a finished job (and its outputs); False if unknown or not
        finished."""
        handler = self._handlers.get(job_id)
        if handler is None or job_id not in self._completed:
            return False
        handler.job.delete_all_outputs()
        self._completed.remove(job_id)
        del self._handlers[job_id]
        return True

    def output(self, job_id, key):
        """The JobOutput ``key`` of a successful job, or None."""
        handler = self._handlers.get(job_id)
        if handler is None or handler.state is not JobState.SUCCESS:
            return None
        return handler.job.outputs.get(key)

    def delete_output(self, job_id, key):
        handler = self._handlers.get(job_id)
        if handler is None or handler.state is not JobState.SUCCESS:
            return False
        return handler.job.delete_output(key)

    def _notify(self, event, handler):
        for listener in list(self.listeners):
            listener(event, handler)
