"""ModalityRegistry with DicomModalitiesInDatabase: the file is written in
the thread pool, one write at a time, and put/delete fire once it is durable."""
import json

from orthancd.modalities import ModalityRegistry


class QueuedThreadPool:
    """Runs the jobs given to the thread pool only when the test says so."""

    def __init__(self):
        self.jobs = []

    def callInThreadWithCallback(self, on_result, function, *args, **kwargs):
        self.jobs.append((on_result, function, args, kwargs))

    def run_next(self):
        on_result, function, args, kwargs = self.jobs.pop(0)
        try:
            result = function(*args, **kwargs)
        except Exception as exc:  # handed back as the thread pool does
            on_result(False, exc)
        else:
            on_result(True, result)


class ImmediateReactor:
    def __init__(self):
        self.pool = QueuedThreadPool()

    def getThreadPool(self):
        return self.pool

    def callFromThread(self, function, *args, **kwargs):
        function(*args, **kwargs)


def outcome(deferred):
    """A list that receives the Deferred's result when it has one."""
    results = []
    deferred.addCallback(results.append)
    return results


def stored(path):
    with open(path, encoding="utf-8") as stream:
        return sorted(json.load(stream))


def test_changes_are_written_in_the_thread_pool_in_order(tmp_path):
    reactor = ImmediateReactor()
    path = str(tmp_path / "index" / "modalities.json")
    registry = ModalityRegistry({}, persistent_path=path, reactor=reactor)
    first = outcome(registry.put("a", ["A", "127.0.0.1", 104]))
    second = outcome(registry.put("b", ["B", "127.0.0.1", 105]))
    third = outcome(registry.delete("a"))
    # Nothing was written on the calling (reactor) thread, and the registry
    # already answers with the new set.
    assert not (tmp_path / "index").exists()
    assert registry.names() == ["b"]
    assert not first
    # One write at a time: the second waits for the first to be durable.
    assert len(reactor.pool.jobs) == 1
    reactor.pool.run_next()
    assert first and first[0]["AET"] == "A"
    assert stored(path) == ["a"]
    assert not second
    reactor.pool.run_next()
    assert second and stored(path) == ["a", "b"]
    reactor.pool.run_next()
    assert third and stored(path) == ["b"]
    assert not reactor.pool.jobs
    assert not (tmp_path / "index" / "modalities.json.tmp").exists()


def test_in_memory_registry_answers_at_once(tmp_path):
    reactor = ImmediateReactor()
    registry = ModalityRegistry({}, reactor=reactor)
    assert outcome(registry.put("a", ["A", "127.0.0.1", 104]))
    assert outcome(registry.delete("a")) == [None]
    assert not reactor.pool.jobs
