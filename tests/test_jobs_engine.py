"""The job engine on its own (orthancd.jobs), on a fake clock: Orthanc's
state machine, priorities, pause, cancel, resubmit, retry, history and the
save/load round trip.  The REST routes are exercised with real job types in
the tests of those jobs."""
import json

import pytest
from twisted.internet import defer, task

from orthancd.errors import ErrorCode, OrthancError
from orthancd.jobs import model
from orthancd.jobs.engine import JobsEngine
from orthancd.jobs.model import JobState, StopReason


class CountingJob(model.Job):
    """Does ``total`` steps; a step may wait on ``gate`` when one is set."""
    job_type = "Counting"

    def __init__(self, total=3, fail_at=None, retry_at=None, log=None):
        super().__init__()
        self.total, self.done = total, 0
        self.fail_at, self.retry_at = fail_at, retry_at
        self.gate = None
        self.stops = []
        self.log = log

    async def step(self, job_id):
        if self.gate is not None:
            await self.gate
        if self.log is not None:
            self.log.append(job_id)
        if self.done == self.fail_at:
            self.fail_at = None
            raise OrthancError(ErrorCode.NetworkProtocol, "peer went away")
        if self.done == self.retry_at:
            self.retry_at = None
            return model.retry(500)
        self.done += 1
        return model.SUCCESS if self.done >= self.total else model.CONTINUE

    def stop(self, reason):
        self.stops.append(reason)

    def reset(self):
        self.done = 0

    def progress(self):
        return self.done / self.total

    def public_content(self):
        return {"Done": self.done}

    def serialize(self):
        return {"Total": self.total, "Done": self.done}


class MemoryStore:
    def __init__(self):
        self.saved = None

    def save_jobs(self, serialized):
        self.saved = serialized
        return defer.succeed(None)

    def load_jobs(self):
        return self.saved


def pump(clock, rounds=50):
    for _ in range(rounds):
        clock.advance(0)


@pytest.fixture
def clock():
    return task.Clock()


def engine_on(clock, **kw):
    engine = JobsEngine(clock, **kw)
    engine.startService()
    return engine


def test_a_job_runs_to_success(clock):
    engine = engine_on(clock)
    job = CountingJob(3)
    job.user_data = {"Who": "me"}
    job_id = engine.submit(job, priority=5)
    pump(clock)
    info = engine.registry.get(job_id).info()
    assert info["State"] == "Success" and info["Progress"] == 100
    assert info["ErrorCode"] == 0 and info["ErrorDescription"] == "Success"
    assert info["ErrorDetails"] == "" and info["Priority"] == 5
    assert info["Type"] == "Counting" and info["Content"] == {"Done": 3}
    assert info["UserData"] == {"Who": "me"}
    assert "CompletionTime" in info and len(info["CreationTime"]) == 22
    assert job.stops == [StopReason.SUCCESS]


def test_highest_priority_first(clock):
    engine = engine_on(clock, concurrent_jobs=1)
    order = []
    blocker = CountingJob(1, log=order)
    blocker.gate = defer.Deferred()
    engine.submit(blocker)
    pump(clock)
    low = engine.submit(CountingJob(1, log=order), priority=1)
    high = engine.submit(CountingJob(1, log=order), priority=9)
    blocker.gate.callback(None)
    pump(clock)
    assert order[1:] == [high, low]


def test_pause_resume_and_cancel(clock):
    engine = engine_on(clock, concurrent_jobs=1)
    job = CountingJob(5)
    job_id = engine.submit(job)
    job.gate = defer.Deferred()
    pump(clock)
    assert engine.registry.get(job_id).state is JobState.RUNNING
    assert engine.pause(job_id)
    gate, job.gate = job.gate, None
    gate.callback(None)
    pump(clock)
    assert engine.registry.get(job_id).state is JobState.PAUSED
    assert StopReason.PAUSED in job.stops
    assert engine.resume(job_id) and not engine.resume(job_id)
    pump(clock)
    assert engine.registry.get(job_id).state is JobState.SUCCESS
    pending = CountingJob(2)
    pending.gate = defer.Deferred()
    blocked = engine.submit(pending)
    waiting = engine.submit(CountingJob(2))
    pump(clock)
    assert engine.cancel(waiting)  # pending: canceled at once
    info = engine.registry.get(waiting).info()
    assert info["State"] == "Failure" and info["ErrorCode"] == int(ErrorCode.CanceledJob)
    assert engine.cancel(blocked)  # running: once its step ends
    pending.gate.callback(None)
    pump(clock)
    assert engine.registry.get(blocked).state is JobState.FAILURE
    assert not engine.cancel("nonsense")


def test_failure_resubmit_and_wait(clock):
    engine = engine_on(clock)
    job = CountingJob(2, fail_at=1)
    outcome = []
    d = engine.submit_and_wait(job)
    d.addErrback(lambda f: outcome.append(f.value))
    job_id = engine.registry.ids()[0]
    pump(clock)
    assert isinstance(outcome[0], OrthancError) and outcome[0].code is ErrorCode.NetworkProtocol
    info = engine.registry.get(job_id).info()
    assert (info["State"], info["ErrorDetails"]) == ("Failure", "peer went away")
    assert engine.resubmit(job_id)
    done = []
    engine.wait(job_id).addCallback(done.append)
    pump(clock)
    assert done == [{"Done": 2}] and engine.registry.get(job_id).info()["ErrorCode"] == 0


def test_retry_then_success(clock):
    engine = engine_on(clock)
    job_id = engine.submit(CountingJob(2, retry_at=1))
    pump(clock)
    assert engine.registry.get(job_id).state is JobState.RETRY
    clock.advance(0.6)
    pump(clock)
    assert engine.registry.get(job_id).state is JobState.SUCCESS


def test_history_keeps_the_newest(clock):
    engine = engine_on(clock, history_size=2)
    ids = [engine.submit(CountingJob(1)) for _ in range(4)]
    pump(clock)
    assert sorted(engine.registry.ids()) == sorted(ids[2:])
    assert engine.delete_info(ids[3]) and not engine.delete_info(ids[3])


def test_saved_jobs_come_back(clock):
    store = MemoryStore()
    engine = engine_on(clock, store=store)
    done_id = engine.submit(CountingJob(1))
    pump(clock)
    paused = CountingJob(3)
    paused_id = engine.submit(paused)
    engine.pause(paused_id)
    clock.advance(2)
    assert json.loads(store.saved)["Jobs"]
    engine.stopService()
    again = JobsEngine(task.Clock(), store=store)
    again.register_type("Counting", lambda saved: CountingJob(saved["Total"]))
    again.startService()
    assert again.registry.get(done_id).state is JobState.SUCCESS
    assert again.registry.get(paused_id).state is JobState.PAUSED
    assert again.resume(paused_id)
