"""The index writer's group commits (orthancd.index.writer): the files of a
batch are made durable while its operations run, and the commit waits for
them; a batch whose files cannot be made durable commits nothing; a full map
grows and the batch runs again without asking for durability twice.  With
commits that leave their meta page unsynced (sync_index), a batch is
acknowledged, and its files settled, only after a sync that followed its
commit."""
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


def _writer(env, reactor, make_durable=None, grow_map=None, sync_index=None, settle=None):
    def begin_write(parent=None):
        return env.begin(write=True, parent=parent)
    writer = IndexWriter(begin_write, reactor, make_durable=make_durable, grow_map=grow_map,
                         sync_index=sync_index, settle=settle)
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


def _nometasync_env(tmp_path):
    return lmdb.open(str(tmp_path / "nometasync"), map_size=1 << 20, max_dbs=2,
                     metasync=False)


def test_a_batch_is_acknowledged_only_after_a_sync_that_followed_its_commit(tmp_path):
    env = _nometasync_env(tmp_path)
    reactor = ThreadedReactor()
    journal = []  # what happened, in order

    def sync_index():
        env.sync(True)
        journal.append("sync")

    def settle(files):
        journal.append(("settled", tuple(files)))

    writer = _writer(env, reactor, make_durable=lambda files: None, sync_index=sync_index,
                     settle=settle)

    def operation(txn):
        txn.put(b"k", b"v")
        journal.append("committing")
        return "stored"
    results = []
    writer.submit(operation, files=["f"]).addCallback(
        lambda result: journal.append(("acknowledged", result)))
    reactor.run_until(lambda: any(isinstance(e, tuple) and e[0] == "acknowledged"
                                  for e in journal))
    acknowledged = journal.index(("acknowledged", "stored"))
    # Alone, the batch is synced by the writer as soon as it committed.
    assert journal.index("committing") < journal.index("sync") < acknowledged
    reactor.run_until(lambda: ("settled", ("f",)) in journal)
    assert journal.index("sync") < journal.index(("settled", ("f",)))
    _stop(writer, reactor)
    with env.begin() as txn:
        assert txn.get(b"k") == b"v"
    env.close()
    del results


def test_under_load_the_next_batch_syncs_the_previous_one(tmp_path):
    """Batches queued behind each other: each is acknowledged in order, by
    the sync the durability thread makes for the next batch, so there are
    fewer syncs than commits and none is skipped."""
    env = _nometasync_env(tmp_path)
    reactor = ThreadedReactor()
    syncs = []
    gate = threading.Event()

    def sync_index():
        env.sync(True)
        syncs.append(threading.current_thread().name)

    writer = _writer(env, reactor, make_durable=lambda files: None, sync_index=sync_index)

    started = threading.Event()

    def slow_first(txn):
        started.set()
        assert gate.wait(10)  # the others queue up meanwhile
        txn.put(b"first", b"1")
        return 0
    acknowledged = []
    writer.submit(slow_first, files=["0"]).addCallback(acknowledged.append)
    assert started.wait(10)
    for i in range(1, 40):
        writer.submit(_put(b"k%d" % i, b"v"), files=[str(i)]).addCallback(
            lambda key, i=i: acknowledged.append(i))
    gate.set()
    reactor.run_until(lambda: len(acknowledged) == 40)
    assert acknowledged == list(range(40))  # in the order they were submitted
    assert writer.commits == 2
    # The first batch was synced by the durability thread as the second
    # started; the second by the writer, with nothing queued after it.
    assert syncs == ["lmdb-durability", "lmdb-writer"]
    _stop(writer, reactor)
    env.close()


def test_a_failed_index_sync_fails_the_batch_and_settles_nothing(tmp_path):
    env = _nometasync_env(tmp_path)
    reactor = ThreadedReactor()
    settled = []

    def sync_index():
        raise OSError(5, "Input/output error")

    writer = _writer(env, reactor, make_durable=lambda files: None, sync_index=sync_index,
                     settle=settled.extend)
    failures = []
    writer.submit(_put(b"k", b"v"), files=["f"]).addErrback(failures.append)
    reactor.run_until(lambda: failures)
    assert failures[0].check(OSError)
    assert settled == []
    writer._sync_index = None  # the stop has nothing left to sync
    _stop(writer, reactor)
    env.close()
