"""The index writer's group commits (orthancd.index.writer): the files of a
batch are made durable while its operations run, and the commit waits for
them; a batch whose files cannot be made durable commits nothing; a full map
grows and the batch runs again without asking for durability twice."""
import queue
import threading

import lmdb
import pytest

from orthancd.index.writer import IndexWriter


class ThreadedReactor:
    """callFromThread hands calls to the test thread, which runs them."""

    def __init__(self):
        self.calls = queue.SimpleQueue()

    def callFromThread(self, function, *args):
        self.calls.put((function, args))

    def run_until(self, predicate, timeout=10):
        import time
        deadline = time.monotonic() + timeout
        while not predicate():
            function, args = self.calls.get(timeout=max(0.01, deadline - time.monotonic()))
            function(*args)


@pytest.fixture
def env(tmp_path):
    environment = lmdb.open(str(tmp_path / "index"), map_size=1 << 20, max_dbs=2)
    yield environment
    environment.close()


def _writer(env, reactor, make_durable=None, grow_map=None):
    def begin_write(parent=None):
        return env.begin(write=True, parent=parent)
    writer = IndexWriter(begin_write, reactor, make_durable=make_durable, grow_map=grow_map)
    writer.startService()
    return writer


def _put(key, value):
    def operation(txn):
        txn.put(key, value)
        return key
    return operation


def _stop(writer, reactor):
    done = []
    writer.stopService().addCallback(done.append)
    reactor.run_until(lambda: done)


def test_operations_run_while_files_are_made_durable_and_commit_after(env):
    reactor = ThreadedReactor()
    syncing = threading.Event()
    operation_ran = threading.Event()
    release = threading.Event()

    def make_durable(files):
        syncing.set()
        # Not over before the operation ran: they overlap.
        assert operation_ran.wait(10)
        assert release.wait(10)

    writer = _writer(env, reactor, make_durable)
    results = []

    def operation(txn):
        assert syncing.wait(10)  # the sync started: this runs beside it
        txn.put(b"k", b"v")
        operation_ran.set()
        return "done"
    writer.submit(operation, files=["a file"]).addCallback(results.append)
    assert operation_ran.wait(10)
    # Not committed while the files are not durable.
    with env.begin() as txn:
        assert txn.get(b"k") is None
    release.set()
    reactor.run_until(lambda: results)
    assert results == ["done"]
    with env.begin() as txn:
        assert txn.get(b"k") == b"v"
    _stop(writer, reactor)


def test_files_that_cannot_be_made_durable_fail_the_batch(env):
    reactor = ThreadedReactor()

    def make_durable(files):
        if "bad" in files:
            raise OSError(5, "Input/output error")

    writer = _writer(env, reactor, make_durable)
    failures, results = [], []
    writer.submit(_put(b"a", b"1"), files=["bad"]).addErrback(failures.append)
    reactor.run_until(lambda: failures)
    assert failures[0].check(OSError)
    with env.begin() as txn:
        assert txn.get(b"a") is None
    # The writer goes on with the next batches.
    writer.submit(_put(b"b", b"2"), files=["good"]).addCallback(results.append)
    reactor.run_until(lambda: results)
    with env.begin() as txn:
        assert txn.get(b"b") == b"2"
    _stop(writer, reactor)


def test_full_map_grows_and_the_batch_runs_again(env):
    reactor = ThreadedReactor()
    synced = []

    def grow_map():
        env.set_mapsize(env.info()["map_size"] * 4)

    writer = _writer(env, reactor, synced.append, grow_map)
    results = []

    def big(txn):
        for i in range(400):
            txn.put(b"key%05d" % i, b"x" * 3000)
        return "stored"
    writer.submit(big, files=["f"]).addCallback(results.append)
    reactor.run_until(lambda: results)
    assert results == ["stored"] and synced == [["f"]]
    with env.begin() as txn:
        assert txn.get(b"key00399") == b"x" * 3000
    _stop(writer, reactor)
