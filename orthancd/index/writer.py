"""The LMDB writer thread and its group commits.

LMDB allows one write transaction at a time, and each commit costs an fsync.
All index writes therefore go through one thread that takes every operation
queued since its last commit (up to ``max_batch``), runs each in a child
transaction - so one failing operation does not sink the batch - and
commits them together.  The files the operations reference must be durable
before the commit: a durability thread syncs them while the writer runs the
operations, so the sync and the operations' work overlap.  Throughput grows
with concurrency instead of being capped by fsyncs per second.  Deferreds
fire on the reactor thread once the commit is durable.

When the index is given a ``sync_index`` (LMDB opened with MDB_NOMETASYNC),
a commit syncs its data pages but not the meta page that makes it current:
a crash could then undo the last commit, never corrupt the index.  A batch
is acknowledged only after a later sync covered that meta page: the
durability thread's, at the start of the next batch (in parallel with the
writer running it), or the writer's own when nothing else is queued.  Under
load one sync per batch leaves the writer's path; alone, a batch costs the
same syncs as before.

The writer is a service: its threads start in ``startService`` (after twistd
has forked, when it daemonizes) and ``stopService`` commits what was queued
before it, then lets the threads end.
"""
import queue
import threading
import time

import lmdb

from twisted.application import service
from twisted.internet import defer
from orthancd import logs
from orthancd.logs import logger
from twisted.python.failure import Failure

_STOP = object()


class IndexStopped(Exception):
    """An index write was submitted after the writer stopped."""


class _Durability:
    """The durability thread's answer for one batch: None once its files
    are durable, else the Failure.  Read as often as the batch is run
    (again after the map grew)."""

    def __init__(self):
        self._answered = threading.Event()
        self._failure = None

    def answer(self, failure):
        self._failure = failure
        self._answered.set()

    def outcome(self):
        self._answered.wait()
        return self._failure


class _NotDurable(Exception):
    """The files of a batch could not be made durable (``failure``)."""

    def __init__(self, failure):
        super().__init__(failure.getErrorMessage())
        self.failure = failure


class IndexWriter(service.Service):
    """``begin_write(parent=None)`` opens an LMDB write transaction (a child
    one when ``parent`` is given).  ``make_durable(files)`` runs before each
    commit, ``settle(files)`` after it with the files of the operations that
    committed (their storage no longer needs to remember them as pending)."""
    log = logger(__name__)
    name = "index-writer"

    def __init__(self, begin_write, reactor, max_batch=256, on_commit=None, make_durable=None,
                 settle=None, grow_map=None, sync_index=None):
        """``grow_map()``: enlarge the LMDB map after a MapFullError (the
        batch is then run again).  ``sync_index()``: make the last commit
        durable, when commits leave their meta page unsynced (see above);
        None when each commit is durable by itself."""
        self._begin_write = begin_write
        self._sync_index = sync_index
        self._grow_map = grow_map
        self._make_durable = make_durable
        self._settle = settle
        self._reactor = reactor
        self._max_batch = max_batch
        self._queue = queue.SimpleQueue()  # submitted operations
        self._durable = queue.SimpleQueue()  # (batch, None or Failure) made durable
        self._on_commit = on_commit  # called with the events of each committed batch
        self._events = []
        self._thread = None
        self._accepting = True
        # For the metrics (read from the reactor, written by the writer thread).
        self.last_batch_size = 0
        self.commits = 0
        self.committed_operations = 0

    @property
    def queue_depth(self):
        """Operations waiting for the writer thread (the durability
        thread's queue holds requests for the batch being run)."""
        return self._queue.qsize()

    def startService(self):
        super().startService()
        self._durability_thread = threading.Thread(target=self._run_durability,
                                                   name="lmdb-durability", daemon=True)
        self._thread = threading.Thread(target=self._run, name="lmdb-writer", daemon=True)
        self._durability_thread.start()
        self._thread.start()

    def stopService(self):
        """Fires once every operation submitted before is committed and the
        threads are gone."""
        super().stopService()
        self._accepting = False
        stopped = defer.Deferred()
        if self._thread is None:
            stopped.callback(None)
        else:
            self._queue.put((_STOP, stopped))
        return stopped

    def submit(self, operation, *args, files=()):
        """Run ``operation(txn, *args)`` in a write transaction; a Deferred
        fires with its result once the transaction is durable.  ``files``
        (StoredFiles the operation references) are made durable before the
        commit, together with those of the whole batch."""
        if not self._accepting:
            return defer.fail(IndexStopped("The index is closed"))
        d = defer.Deferred()
        self._queue.put((operation, args, files, d))
        return d

    def run_sync(self, operation, *args):
        """Blocking variant for start-up code, before the thread starts."""
        with self._begin_write() as txn:
            result = operation(txn, *args)
        if self._sync_index is not None:
            self._sync_index()
        return result

    def _run_durability(self):
        """Make the files of each batch durable, on request of the writer
        thread, which meanwhile runs the batch's operations."""
        while True:
            request = self._durable.get()
            if request is _STOP:
                return
            files, durability, unsynced = request
            if unsynced is not None:
                self._acknowledge(unsynced)
            durability.answer(self._made_durable(files))

    def _made_durable(self, files):
        """None once ``files`` are durable, else the Failure."""
        if not files or self._make_durable is None:
            return None
        started = time.perf_counter()
        try:
            self._make_durable(files)
        except BaseException:
            failure = Failure()
            self.log.failure("Cannot make files durable", failure)
            return failure
        if logs.is_verbose("sqlite"):
            self.log.debug("{count} files made durable in {durable:.2f} ms", count=len(files),
                           durable=(time.perf_counter() - started) * 1000)
        return None

    def _run(self):
        """Take every operation queued (up to ``max_batch``), have their
        files made durable by the durability thread while running them in
        one transaction, then commit: commits grow with the load."""
        stopped = None
        unsynced = None  # the last batch committed, not acknowledged yet
        while stopped is None:
            if unsynced is None:
                batch = [self._queue.get()]
            else:
                try:
                    batch = [self._queue.get_nowait()]
                except queue.Empty:
                    # Nothing to sync it with: now, then wait.
                    self._acknowledge(unsynced)
                    unsynced = None
                    continue
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stops = [item for item in batch if item[0] is _STOP]
            batch = [item for item in batch if item[0] is not _STOP]
            if stops:
                stopped = stops[0][1]
            if batch:
                unsynced = self._commit(batch, unsynced)
        if unsynced is not None:
            self._acknowledge(unsynced)
        self._durable.put(_STOP)
        self._reactor.callFromThread(stopped.callback, None)

    def emit(self, event):
        """Record an event of the operation running now (on this thread);
        it is published once the batch commits, and dropped if the
        operation fails."""
        self._events.append(event)

    def _commit(self, batch, unsynced):
        """Commit ``batch``; ``unsynced``: the previous batch, acknowledged
        by the durability thread before it syncs this batch's files.  Returns
        what is left to acknowledge (see _acknowledge), or None."""
        files = [f for _, _, batch_files, _ in batch for f in batch_files]
        if self._make_durable is None:
            files = []
        durability = None
        if files or unsynced is not None:
            durability = _Durability()
            self._durable.put((files, durability, unsynced))
        results = []
        events = []
        started = time.perf_counter()
        try:
            while True:
                try:
                    results, events = self._apply(batch, durability)
                    break
                except lmdb.MapFullError:
                    if self._grow_map is None:
                        raise
                    # Nothing of the batch was committed: grow, then again.
                    self._grow_map()
        except BaseException:
            failure = Failure()
            if not failure.check(_NotDurable):
                self.log.failure("Index commit failed", failure)
            else:
                failure = failure.value.failure
            results = [(d, failure) for _, _, _, d in batch]
            events = []
        self.last_batch_size = len(batch)
        self.commits += 1
        self.committed_operations += sum(1 for _, result in results if not isinstance(result, Failure))
        if logs.is_verbose("sqlite"):
            self.log.debug("group commit: {count} operations, index committed in {commit:.2f} ms",
                           count=len(batch), commit=(time.perf_counter() - started) * 1000)
        committed = [f for (_, _, files, _), (_, result) in zip(batch, results)
                     if not isinstance(result, Failure) for f in files]
        outcome = (results, events, committed)
        if self._sync_index is None or not any(
                not isinstance(result, Failure) for _, result in results):
            self._acknowledge(outcome, synced=True)  # durable already, or nothing to sync
            return None
        return outcome

    def _acknowledge(self, outcome, synced=False):
        """Once the index is synced (unless ``synced``): deliver a committed
        batch's results and events, then settle its files (they no longer
        need to be remembered as pending).  On the writer or the durability
        thread: never both for one batch."""
        results, events, committed = outcome
        if not synced:
            try:
                self._sync_index()
            except BaseException:
                failure = Failure()
                self.log.failure("Cannot sync the index", failure)
                # Committed but maybe not durable: the clients hear of a
                # failure; the start-up check settles the files.
                results = [(d, failure) for d, _ in results]
                self._reactor.callFromThread(self._deliver, results, [])
                return
        self._reactor.callFromThread(self._deliver, results, events)
        if self._settle is not None and committed:
            try:
                self._settle(committed)
            except Exception:
                # Harmless: the start-up check settles what is left.
                self.log.failure("Cannot settle committed files")

    def _apply(self, batch, durability):
        """Run the batch in one transaction; ([(Deferred, result or
        Failure)], events) once committed, which waits for ``durability``
        (a _Durability, or None).
        MapFullError, from any operation or the commit, leaves the whole
        transaction aborted; so do files that could not be made durable
        (_NotDurable)."""
        results = []
        events = []
        with self._begin_write() as txn:
            for operation, args, _, d in batch:
                child = self._begin_write(parent=txn)
                self._events = []
                try:
                    result = operation(child, *args)
                except lmdb.MapFullError:
                    child.abort()
                    raise
                except BaseException:
                    child.abort()
                    results.append((d, Failure()))
                else:
                    child.commit()
                    results.append((d, result))
                    events.extend(self._events)
            if durability is not None:
                failure = durability.outcome()
                if failure is not None:
                    raise _NotDurable(failure)
        return results, events

    def _deliver(self, results, events):
        # The events first: what subscribes to them (the stability monitor,
        # Lua...) sees a change before the client hears of it.
        if self._on_commit is not None and events:
            self._on_commit(events)
        for d, result in results:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
