"""The index writer's group commits (orthancd.index.writer): the files of a
batch are made durable before its operations commit; a batch whose files
cannot be made durable commits nothing; a full map grows and the batch runs
again without asking for durability twice; batches queued behind a slow one
commit together, in order.  With commits that leave their meta page
unsynced (sync_index), a batch is acknowledged, and its files settled,
only after a sync that followed its commit: the writer's for a batch with
files, the acknowledging thread's for one without (one sync for all those
waiting), in the order of the commits.  A batch waits, a moment at most,
for the writes it is told are on their way.  Where make_durable covers the
index too (record_files), a batch with files commits first, recording the
files of its operations that succeeded, and one make_durable then makes both
durable; if it fails, the clients hear of it."""
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


def _writer(env, reactor, make_durable=None, grow_map=None, settle=None, sync_index=None,
            **options):
    def begin_write(parent=None):
        return env.begin(write=True, parent=parent)
    writer = IndexWriter(begin_write, reactor, make_durable=make_durable, grow_map=grow_map,
                         settle=settle, sync_index=sync_index, **options)
    writer.startService()
    return writer


def _put(key, value):
    def operation(txn):
        txn.put(key, value)
        return key
    return operation


class HeldOperation:
    """An operation that, once running, waits for ``release()``: what is
    submitted meanwhile queues up behind it."""

    def __init__(self, key=b"first", result=0):
        self._key, self._result = key, result
        self.started = threading.Event()
        self._gate = threading.Event()

    def __call__(self, txn):
        self.started.set()
        assert self._gate.wait(10)
        txn.put(self._key, b"1")
        return self._result

    def submit_to(self, writer, files=()):
        """Submit it and wait until it runs; its Deferred."""
        d = writer.submit(self, files=files)
        assert self.started.wait(10)
        return d

    def release(self):
        self._gate.set()


def _stop(writer, reactor):
    done = []
    writer.stopService().addCallback(done.append)
    reactor.run_until(lambda: done)


def test_files_are_made_durable_before_the_batch_commits(env):
    reactor = ThreadedReactor()
    journal = []

    def make_durable(files):
        with env.begin() as txn:
            journal.append(("durable", tuple(files), txn.get(b"k")))

    def settle(files):
        journal.append(("settled", tuple(files)))

    writer = _writer(env, reactor, make_durable, settle=settle)

    def operation(txn):
        txn.put(b"k", b"v")
        journal.append("ran")
        return "done"
    writer.submit(operation, files=["a file"]).addCallback(
        lambda result: journal.append(("acknowledged", result)))
    reactor.run_until(lambda: ("acknowledged", "done") in journal)
    reactor.run_until(lambda: ("settled", ("a file",)) in journal)
    # Durable first (nothing committed yet), then run, committed and
    # acknowledged; settled after the commit.
    assert journal[0] == ("durable", ("a file",), None)
    assert journal.index("ran") < journal.index(("acknowledged", "done"))
    assert journal.index("ran") < journal.index(("settled", ("a file",)))
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


def test_operations_queued_meanwhile_commit_together_in_order(env):
    reactor = ThreadedReactor()
    durable = []
    writer = _writer(env, reactor, make_durable=durable.append)
    first = HeldOperation()
    acknowledged = []
    first.submit_to(writer, files=["0"]).addCallback(acknowledged.append)
    for i in range(1, 40):
        writer.submit(_put(b"k%d" % i, b"v"), files=[str(i)]).addCallback(
            lambda key, i=i: acknowledged.append(i))
    first.release()
    reactor.run_until(lambda: len(acknowledged) == 40)
    assert acknowledged == list(range(40))  # in the order they were submitted
    assert writer.commits == 2 and writer.last_batch_size == 39
    # One make_durable per batch, with the files of all its operations.
    assert durable == [["0"], [str(i) for i in range(1, 40)]]
    _stop(writer, reactor)


def test_a_batch_waits_for_the_writes_on_their_way(env):
    reactor = ThreadedReactor()
    on_the_way = [1]
    writer = _writer(env, reactor, gather_limit=60)
    writer.on_the_way = lambda: on_the_way[0]
    results = []
    writer.submit(_put(b"a", b"1")).addCallback(results.append)
    # Long after the first write, the one on its way comes: one commit for both.
    threading.Event().wait(0.2)
    on_the_way[0] = 0
    writer.submit(_put(b"b", b"2")).addCallback(results.append)
    reactor.run_until(lambda: len(results) == 2)
    assert results == [b"a", b"b"]
    assert writer.commits == 1 and writer.last_batch_size == 2
    _stop(writer, reactor)


def test_a_batch_waits_no_longer_than_the_gather_limit(env):
    reactor = ThreadedReactor()
    writer = _writer(env, reactor, gather_limit=0.05)
    writer.on_the_way = lambda: 1  # announced, never coming
    results = []
    writer.submit(_put(b"a", b"1")).addCallback(results.append)
    reactor.run_until(lambda: results)
    assert writer.commits == 1
    _stop(writer, reactor)


def test_nothing_on_its_way_means_no_wait(env):
    reactor = ThreadedReactor()
    writer = _writer(env, reactor, gather_limit=3600)
    writer.on_the_way = lambda: 0
    results = []
    writer.submit(_put(b"a", b"1")).addCallback(results.append)
    reactor.run_until(lambda: results, timeout=10)
    assert results == [b"a"]
    _stop(writer, reactor)


def test_an_operation_that_fails_leaves_the_others_of_its_batch(env):
    reactor = ThreadedReactor()
    settled = []
    writer = _writer(env, reactor, make_durable=lambda files: None, settle=settled.extend)
    first = HeldOperation(result="first")

    def failing(txn):
        txn.put(b"half", b"written")
        raise ValueError("refused")
    outcomes = []
    first.submit_to(writer).addCallback(outcomes.append)
    writer.submit(_put(b"a", b"1"), files=["a"]).addCallback(outcomes.append)
    writer.submit(failing, files=["bad"]).addErrback(lambda f: outcomes.append(f.type))
    writer.submit(_put(b"b", b"2"), files=["b"]).addCallback(outcomes.append)
    first.release()
    reactor.run_until(lambda: len(outcomes) == 4)
    assert outcomes == ["first", b"a", ValueError, b"b"]
    reactor.run_until(lambda: len(settled) == 2)
    assert settled == ["a", "b"]  # not the file of the failed operation
    with env.begin() as txn:
        assert txn.get(b"half") is None
        assert txn.get(b"a") == b"1" and txn.get(b"b") == b"2"
    _stop(writer, reactor)


def test_an_operation_alone_that_fails_commits_nothing(env):
    reactor = ThreadedReactor()
    settled = []
    writer = _writer(env, reactor, make_durable=lambda files: None, settle=settled.extend)

    def failing(txn):
        txn.put(b"half", b"written")
        raise ValueError("refused")
    outcomes = []
    writer.submit(failing, files=["bad"]).addErrback(lambda f: outcomes.append(f.type))
    reactor.run_until(lambda: outcomes)
    writer.submit(_put(b"next", b"1"), files=["next"]).addCallback(outcomes.append)
    reactor.run_until(lambda: len(outcomes) == 2)
    assert outcomes == [ValueError, b"next"] and writer.commits == 2
    reactor.run_until(lambda: settled)
    assert settled == ["next"]
    with env.begin() as txn:
        assert txn.get(b"half") is None and txn.get(b"next") == b"1"
    _stop(writer, reactor)


def test_a_stop_commits_what_was_submitted_before_it(env):
    reactor = ThreadedReactor()
    writer = _writer(env, reactor)
    results = []
    for i in range(5):
        writer.submit(_put(b"s%d" % i, b"v")).addCallback(results.append)
    _stop(writer, reactor)
    reactor.run_until(lambda: len(results) == 5)
    with env.begin() as txn:
        assert all(txn.get(b"s%d" % i) == b"v" for i in range(5))
    failures = []
    writer.submit(_put(b"late", b"v")).addErrback(failures.append)
    assert failures and failures[0].type.__name__ == "IndexStopped"


@pytest.fixture
def nometasync_env(tmp_path):
    """An index whose commits leave their meta page unsynced, as orthancd's."""
    environment = lmdb.open(str(tmp_path / "nometasync"), map_size=1 << 20, max_dbs=2,
                            metasync=False)
    yield environment
    environment.close()


@pytest.mark.parametrize("files", [["f"], []], ids=["with files", "without files"])
def test_a_batch_is_acknowledged_only_after_a_sync_that_followed_its_commit(nometasync_env, files):
    env = nometasync_env
    reactor = ThreadedReactor()
    journal = []  # what happened, in order

    def sync_index():
        env.sync(True)
        journal.append(("sync", threading.current_thread().name))

    writer = _writer(env, reactor, make_durable=lambda files: None, sync_index=sync_index,
                     settle=lambda settled: journal.append(("settled", tuple(settled))))

    def operation(txn):
        txn.put(b"k", b"v")
        journal.append("committing")
        return "stored"
    writer.submit(operation, files=files).addCallback(
        lambda result: journal.append(("acknowledged", result)))
    reactor.run_until(lambda: ("acknowledged", "stored") in journal)
    syncs = [e for e in journal if isinstance(e, tuple) and e[0] == "sync"]
    # Alone, a batch is synced by the writer, with files or without.
    assert syncs == [("sync", "lmdb-writer")]
    assert journal.index("committing") < journal.index(syncs[0]) \
        < journal.index(("acknowledged", "stored"))
    if files:
        reactor.run_until(lambda: ("settled", ("f",)) in journal)
        assert journal.index(syncs[0]) < journal.index(("settled", ("f",)))
    _stop(writer, reactor)
    with env.begin() as txn:
        assert txn.get(b"k") == b"v"


def test_acknowledgements_keep_the_order_of_the_commits(nometasync_env):
    """Batches without files and with files, committed while the first
    one's acknowledgement waits: they are acknowledged in the order they
    committed, and the acknowledging thread syncs once for all that wait
    there together."""
    env = nometasync_env
    reactor = ThreadedReactor()
    syncing = threading.Event()
    release = threading.Event()
    syncs = []

    def sync_index():
        if threading.current_thread().name == "lmdb-acknowledge" and not syncs:
            syncing.set()
            assert release.wait(10)  # the writer commits more meanwhile
        env.sync(True)
        syncs.append(threading.current_thread().name)

    writer = _writer(env, reactor, make_durable=lambda files: None, sync_index=sync_index)
    first = HeldOperation()
    acknowledged = []
    done = []
    first.submit_to(writer).addCallback(acknowledged.append)
    # Queued when the first commits: the first goes to the acknowledging thread.
    writer.submit(_put(b"k1", b"v")).addCallback(lambda key: done.append(1))
    first.release()
    assert syncing.wait(10)  # held in the acknowledging thread's first sync
    for i in range(2, 7):
        writer.submit(_put(b"k%d" % i, b"v"), files=["f%d" % i] if i % 2 else []).addCallback(
            lambda key, i=i: done.append(i))
    # All committed, and handed to the acknowledging thread.
    while writer.committed_operations < 7 or writer._handed < writer.commits:
        threading.Event().wait(0.01)
    release.set()
    reactor.run_until(lambda: len(done) == 6)
    assert acknowledged + done == list(range(7))
    # The batches committed while the first sync was held waited behind it
    # in the acknowledging thread (those with files too): one more sync
    # covered them all.
    assert syncs == ["lmdb-acknowledge", "lmdb-acknowledge"]
    _stop(writer, reactor)


def test_batches_without_files_under_load_need_fewer_syncs_than_commits(nometasync_env):
    env = nometasync_env
    reactor = ThreadedReactor()
    syncs = []

    def sync_index():
        env.sync(True)
        syncs.append(1)

    writer = _writer(env, reactor, sync_index=sync_index)
    first = HeldOperation()
    acknowledged = []
    first.submit_to(writer).addCallback(acknowledged.append)
    for i in range(1, 40):
        writer.submit(_put(b"k%d" % i, b"v")).addCallback(lambda key, i=i: acknowledged.append(i))
    first.release()
    reactor.run_until(lambda: len(acknowledged) == 40)
    assert acknowledged == list(range(40))
    assert writer.commits == 2 and 1 <= len(syncs) <= 2
    _stop(writer, reactor)


def test_a_failed_index_sync_fails_the_batch_and_settles_nothing(nometasync_env):
    env = nometasync_env
    reactor = ThreadedReactor()
    settled = []

    def sync_index():
        raise OSError(5, "Input/output error")

    writer = _writer(env, reactor, make_durable=lambda files: None, sync_index=sync_index,
                     settle=settled.extend)
    failures = []
    writer.submit(_put(b"k", b"v"), files=["f"]).addErrback(failures.append)
    writer.submit(_put(b"j", b"v")).addErrback(failures.append)
    reactor.run_until(lambda: len(failures) == 2)
    assert all(f.check(OSError) for f in failures)
    assert settled == []
    _stop(writer, reactor)


def test_files_made_durable_with_the_index_follow_the_commit(nometasync_env):
    """Where make_durable covers the index too (record_files given), a batch
    with files commits first, records the files of its operations that
    succeeded (in its own transaction), then one make_durable makes the
    files and the commit durable: no index sync of its own."""
    env = nometasync_env
    reactor = ThreadedReactor()
    journal = []

    def make_durable(files):
        with env.begin() as txn:
            journal.append(("durable", tuple(files), txn.get(b"a"), txn.get(b"recorded")))

    def record_files(txn, files):
        txn.put(b"recorded", repr(files).encode())

    writer = _writer(env, reactor, make_durable, sync_index=lambda: journal.append("sync"),
                     settle=lambda settled: journal.append(("settled", tuple(settled))),
                     record_files=record_files)
    first = HeldOperation()
    acknowledged, failures = [], []
    first.submit_to(writer).addCallback(acknowledged.append)

    def failing(txn):
        txn.put(b"b", b"1")
        raise ValueError("refused")
    # Both wait behind the first: one batch.
    writer.submit(_put(b"a", b"1"), files=["file a"], slots=["slot a"]).addCallback(
        acknowledged.append)
    writer.submit(failing, files=["file b"], slots=["slot b"]).addErrback(failures.append)
    first.release()
    reactor.run_until(lambda: len(acknowledged) == 2 and failures)
    reactor.run_until(lambda: ("settled", ("file a",)) in journal)
    # The first batch had no files: synced as before (here or in the
    # acknowledging thread).  The second was durable once its files were:
    # committed (with its record) before.
    durable = [e for e in journal if e[0] == "durable"]
    assert durable == [("durable", ("file a", "file b"), b"1",
                        repr([("file a", "slot a")]).encode())]
    assert journal.count("sync") == 1
    assert journal.index(("settled", ("file a",))) > journal.index(durable[0])
    _stop(writer, reactor)


def test_files_that_cannot_be_made_durable_after_the_commit_fail_their_batch(nometasync_env):
    """The commit happened: the clients hear of the failure, nothing is
    settled, and the record names the files for the start-up check."""
    env = nometasync_env
    reactor = ThreadedReactor()
    settled = []

    def make_durable(files):
        raise OSError(5, "Input/output error")

    def record_files(txn, files):
        txn.put(b"recorded", repr(files).encode())

    writer = _writer(env, reactor, make_durable, sync_index=lambda: env.sync(True),
                     settle=settled.extend, record_files=record_files)
    failures = []
    writer.submit(_put(b"a", b"1"), files=["file a"], slots=["slot a"]).addErrback(
        failures.append)
    reactor.run_until(lambda: failures)
    assert failures[0].check(OSError)
    assert settled == []
    with env.begin() as txn:
        assert txn.get(b"recorded") == repr([("file a", "slot a")]).encode()
    # The writer goes on.
    results = []
    writer.submit(_put(b"c", b"1")).addCallback(results.append)
    reactor.run_until(lambda: results)
    _stop(writer, reactor)


def test_an_operation_that_removes_what_was_stored_has_its_files_durable_first(nometasync_env):
    """Where make_durable covers the index too, an operation that removes
    acknowledged data (an overwrite) asks for its files first: they are
    durable before the commit, nothing is recorded, and the commit is
    synced after, as where make_durable does not cover the index."""
    env = nometasync_env
    reactor = ThreadedReactor()
    journal = []

    def make_durable(files):
        with env.begin() as txn:
            journal.append(("durable", tuple(files), txn.get(b"a")))

    writer = _writer(env, reactor, make_durable, sync_index=lambda: journal.append("sync"),
                     record_files=lambda txn, files: journal.append("recorded"))

    def overwriting(txn):
        txn.put(b"a", b"new")
        writer.files_first()
        return "overwritten"
    results = []
    writer.submit(overwriting, files=["new file"], slots=["slot"]).addCallback(results.append)
    reactor.run_until(lambda: results)
    assert journal == [("durable", ("new file",), None), "sync"]
    # The next batch without such an operation goes back to the record.
    writer.submit(_put(b"b", b"1"), files=["other"], slots=["slot b"]).addCallback(
        results.append)
    reactor.run_until(lambda: len(results) == 2)
    assert journal[2:] == ["recorded", ("durable", ("other",), b"new")]
    _stop(writer, reactor)


def test_a_full_batch_or_a_stop_ends_the_wait(env):
    reactor = ThreadedReactor()
    writer = _writer(env, reactor, gather_limit=3600, max_batch=3)
    writer.on_the_way = lambda: 1  # announced, never coming
    results = []
    for key in (b"a", b"b", b"c", b"d"):
        writer.submit(_put(key, b"1")).addCallback(results.append)
    # Three make a full batch: committed without waiting for the limit.
    reactor.run_until(lambda: len(results) == 3, timeout=10)
    assert writer.last_batch_size == 3
    # The fourth waits for more; the stop ends that wait.
    _stop(writer, reactor)
    assert results == [b"a", b"b", b"c", b"d"]
