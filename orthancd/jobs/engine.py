"""The job engine: a cooperative scheduler on the reactor, a service.

``ConcurrentJobs`` workers, each a coroutine, take the pending job of
highest priority and run its steps one after the other, checking between
steps for a pause or a cancel.  A step never blocks the reactor: jobs hand
blocking work to the pools.  Between two steps the worker yields to the
reactor, so requests and the other workers keep going.

With ``SaveJobs`` the jobs (pending, running, paused and the history) are
written to the index shortly after every change and when the service stops;
at start they are read back, and pending or running ones run again.  A job
type survives a restart when it can serialize itself and a factory for it
is registered (``register_type``).
"""
import json

from twisted.application import service
from twisted.internet import defer, task

from orthancd.changes import JOB_FAILURE, JOB_SUBMITTED, JOB_SUCCESS
from orthancd.errors import ErrorCode, OrthancError
from orthancd.index.base import Change
from orthancd.index.base import now_iso
from orthancd.jobs import model
from orthancd.jobs.model import JobState, StopReason
from orthancd.jobs.registry import JobHandler, JobsRegistry
from orthancd.logs import logger

log = logger(__name__)

# How often retrying jobs are looked at, and how soon a change is saved.
RETRY_PERIOD = 0.2
_JOB_EVENTS = {"submitted": JOB_SUBMITTED, "success": JOB_SUCCESS, "failure": JOB_FAILURE}
SAVE_DELAY = 1.0
FORMAT_VERSION = 1


class JobsEngine(service.Service):
    name = "jobs"

    def __init__(self, reactor, concurrent_jobs=2, history_size=10, store=None, changes=None):
        """``store``: where the jobs are saved (an object with ``load_jobs()``
        -> str or None and ``save_jobs(str)`` -> Deferred), None when they
        are not (SaveJobs false); ``changes``: the ChangeStream that the
        job events (JobSubmitted, JobSuccess, JobFailure) go to."""
        self.reactor = reactor
        self.registry = JobsRegistry(history_size, clock=lambda: reactor.seconds())
        self.concurrent_jobs = max(1, int(concurrent_jobs))
        self._store = store
        self._factories = {}          # job type -> callable(serialized dict) -> Job
        self._waiting = []            # Deferreds of idle workers
        self._workers = []
        self._running = False
        self._retries = None
        self._save_call = None
        self._waiters = {}            # job id -> [Deferred] of submit_and_wait
        self.registry.listeners.append(self._job_event)
        self._changes = changes

    def register_type(self, job_type, factory):
        """``factory(serialized dict)`` rebuilds a saved job of ``job_type``."""
        self._factories[job_type] = factory

    # -- the service --

    def startService(self):
        super().startService()
        self._load()
        self._running = True
        self._workers = [defer.ensureDeferred(self._worker(n))
                         for n in range(self.concurrent_jobs)]
        self._retries = task.LoopingCall(self._schedule_retries)
        self._retries.clock = self.reactor
        self._retries.start(RETRY_PERIOD, now=False)

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        self._running = False
        if self._retries is not None and self._retries.running:
            self._retries.stop()
        for waiting in self._waiting:
            waiting.callback(None)
        self._waiting = []
        # Each worker ends after its current step.
        yield defer.DeferredList(self._workers)
        if self._save_call is not None and self._save_call.active():
            self._save_call.cancel()
        yield self._save()

    # -- submitting --

    def submit(self, job, priority=0):
        """Queue ``job``; returns its ID."""
        job_id = self.registry.submit(self.registry.new_handler(job, priority))
        self._wake()
        return job_id

    def submit_and_wait(self, job, priority=0):
        """Queue ``job``; a Deferred fires with its public content once it
        succeeds, or fails with its OrthancError."""
        job_id = self.submit(job, priority)
        return self.wait(job_id)

    def wait(self, job_id):
        handler = self.registry.get(job_id)
        if handler is not None and handler.state in (JobState.SUCCESS, JobState.FAILURE):
            return defer.maybeDeferred(self._outcome, handler)
        d = defer.Deferred()
        self._waiters.setdefault(job_id, []).append(d)
        return d

    @staticmethod
    def _outcome(handler):
        if handler.state is JobState.SUCCESS:
            return handler.job.public_content()
        payload = handler.job.error_payload() or handler.error_payload
        raise OrthancError(handler.error_code, handler.error_details or None, payload=payload)

    def _job_event(self, event, handler):
        if event in ("success", "failure"):
            for d in self._waiters.pop(handler.id, []):
                try:
                    d.callback(self._outcome(handler))
                except OrthancError:
                    d.errback()
        if self._changes is not None:
            # The job's own ID stands for the resource of a job event.
            self._changes.publish([Change(None, _JOB_EVENTS[event], None, handler.id, now_iso(),
                                          {"Type": handler.job.job_type})])
        self.changed()

    # -- the actions (the REST API's) --

    def pause(self, job_id):
        done = self.registry.pause(job_id)
        self.changed()
        return done

    def cancel(self, job_id):
        done = self.registry.cancel(job_id)
        self.changed()
        return done

    def resume(self, job_id):
        done = self.registry.resume(job_id)
        if done:
            self._wake()
            self.changed()
        return done

    def resubmit(self, job_id):
        done = self.registry.resubmit(job_id)
        if done:
            self._wake()
            self.changed()
        return done

    def delete_info(self, job_id):
        done = self.registry.delete_info(job_id)
        self.changed()
        return done

    # -- the workers --

    def _wake(self):
        while self._waiting:
            d = self._waiting.pop(0)
            d.callback(None)
            if not self.registry.has_pending():
                break

    def _idle(self):
        d = defer.Deferred()
        self._waiting.append(d)
        return d

    def _schedule_retries(self):
        if self.registry.schedule_retries():
            self._wake()

    async def _worker(self, number):
        while self._running:
            handler = self.registry.pop_pending()
            if handler is None:
                await self._idle()
                continue
            log.debug("Worker {n} runs {type} job {id}", n=number, type=handler.job.job_type,
                      id=handler.id)
            self.changed()
            try:
                await self._run(handler)
            except Exception:
                log.failure("Job {id} broke its worker", id=handler.id)
                if handler.state is JobState.RUNNING:
                    self.registry.mark_failure(handler, ErrorCode.InternalError)

    async def _run(self, handler):
        job = handler.job
        while True:
            if handler.pause_scheduled:
                job.stop(StopReason.PAUSED)
                self.registry.mark_paused(handler)
                self.changed()
                return
            if handler.cancel_scheduled:
                job.stop(StopReason.CANCELED)
                self.registry.mark_canceled(handler)
                return
            if not self._running:
                # Stopping: the job stays running, saved as such, and runs
                # again at the next start.
                return
            try:
                result = await job.step(handler.id)
            except OrthancError as e:
                result = model.failure_of(e)
            except Exception as e:
                log.failure("Step of {type} job {id} failed", type=job.job_type, id=handler.id)
                result = model.failure(ErrorCode.InternalError, str(e))
            if result.kind == "success":
                job.stop(StopReason.SUCCESS)
                self.registry.mark_success(handler)
                return
            if result.kind == "failure":
                job.stop(StopReason.FAILURE)
                self.registry.mark_failure(handler, result.code, result.details, result.payload)
                return
            if result.kind == "retry":
                job.stop(StopReason.RETRY)
                self.registry.mark_retry(handler, result.retry_ms)
                self.changed()
                return
            # Let the reactor serve others before the next step.
            await task.deferLater(self.reactor, 0, lambda: None)

    # -- saving and loading --

    def changed(self):
        """Something about the jobs changed: save soon (coalesced)."""
        if self._store is None or not self.running:
            return
        if self._save_call is None or not self._save_call.active():
            self._save_call = self.reactor.callLater(SAVE_DELAY, self._save)

    def serialize(self):
        jobs = []
        for handler in self.registry.handlers():
            content = handler.job.serialize()
            if content is None:
                continue  # a job that cannot survive a restart
            state = handler.state
            if state is JobState.RUNNING or state is JobState.RETRY:
                state = JobState.PENDING
            jobs.append({
                "ID": handler.id,
                "Type": handler.job.job_type,
                "State": state.value,
                "Priority": handler.priority,
                "CreationTime": handler.creation_time,
                "LastStateChange": handler.last_state_change,
                "Runtime": handler.runtime,
                "ErrorCode": int(handler.error_code),
                "ErrorDetails": handler.error_details,
                "ErrorPayload": handler.error_payload,
                "UserData": handler.job.user_data,
                "Job": content,
            })
        return json.dumps({"Version": FORMAT_VERSION, "Jobs": jobs}, separators=(",", ":"))

    def _save(self):
        if self._store is None:
            return defer.succeed(None)
        d = self._store.save_jobs(self.serialize())
        d.addErrback(lambda f: log.failure("Cannot save the jobs", f))
        return d

    def _load(self):
        if self._store is None:
            return
        raw = self._store.load_jobs()
        if not raw:
            return
        try:
            saved = json.loads(raw)
        except ValueError:
            log.error("The saved jobs cannot be read: they are dropped")
            return
        for entry in saved.get("Jobs", []):
            factory = self._factories.get(entry.get("Type"))
            if factory is None:
                log.warn("A saved job of unknown type {type} is dropped", type=entry.get("Type"))
                continue
            try:
                job = factory(entry["Job"])
            except Exception:
                log.failure("A saved {type} job cannot be rebuilt", type=entry.get("Type"))
                continue
            job.user_data = entry.get("UserData")
            handler = JobHandler(job, entry.get("Priority", 0), entry["ID"],
                                 entry.get("CreationTime"))
            handler.state = JobState(entry.get("State", "Pending"))
            handler.last_state_change = entry.get("LastStateChange", handler.creation_time)
            handler.runtime = entry.get("Runtime", 0.0)
            handler.error_code = ErrorCode(entry.get("ErrorCode", 0))
            handler.error_details = entry.get("ErrorDetails", "")
            handler.error_payload = entry.get("ErrorPayload")
            self.registry.submit(handler, loaded=True)
        log.info("Loaded {n} saved job(s)", n=len(self.registry.handlers()))
