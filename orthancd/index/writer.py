"""The LMDB writer thread and its group commits.

LMDB allows one write transaction at a time, and each commit costs syncs.
All index writes therefore go through one thread that takes every operation
queued since its last commit (up to ``max_batch``), makes the files they
reference durable (one ``make_durable`` for the whole batch), runs each
operation in a child transaction - so one failing operation does not sink
the batch - and commits them together.  Throughput grows with concurrency
instead of being capped by syncs per second.  Deferreds fire on the reactor
thread once the commit is durable: LMDB syncs its data pages, then its meta
page, before the commit returns.

Everything happens on this one thread, one step after the other.  A second
thread that synced the next batch's files while the writer ran its
operations, and synced the meta page of each commit beside the next batch
(MDB_NOMETASYNC), saved syncs on paper but cost more in hand-overs between
threads (GIL and wake-ups): measured with 513 KiB uploads from 4 clients on
2 cores, 467 against 500 uploads/s without it (bench notes of issue #10).

The writer is a service: its thread starts in ``startService`` (after twistd
has forked, when it daemonizes) and ``stopService`` commits what was queued
before it, then lets the thread end.
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
                 settle=None, grow_map=None):
        """``grow_map()``: enlarge the LMDB map after a MapFullError (the
        batch is then run again)."""
        self._begin_write = begin_write
        self._grow_map = grow_map
        self._make_durable = make_durable
        self._settle = settle
        self._reactor = reactor
        self._max_batch = max_batch
        self._queue = queue.SimpleQueue()  # submitted operations
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
        """Operations waiting for the writer thread."""
        return self._queue.qsize()

    def startService(self):
        super().startService()
        self._thread = threading.Thread(target=self._run, name="lmdb-writer", daemon=True)
        self._thread.start()

    def stopService(self):
        """Fires once every operation submitted before is committed and the
        thread is gone."""
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
            return operation(txn, *args)

    def _run(self):
        """Take every operation queued (up to ``max_batch``), make their
        files durable, run them in one transaction, then commit: commits
        grow with the load."""
        stopped = None
        while stopped is None:
            batch = [self._queue.get()]
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
                self._commit(batch)
        self._reactor.callFromThread(stopped.callback, None)

    def emit(self, event):
        """Record an event of the operation running now (on this thread);
        it is published once the batch commits, and dropped if the
        operation fails."""
        self._events.append(event)

    def _commit(self, batch):
        started = time.perf_counter()
        try:
            self._files_made_durable(batch)
            while True:
                try:
                    results, events = self._apply(batch)
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
        self._reactor.callFromThread(self._deliver, results, events)
        committed = [f for (_, _, files, _), (_, result) in zip(batch, results)
                     if not isinstance(result, Failure) for f in files]
        if self._settle is not None and committed:
            try:
                self._settle(committed)
            except Exception:
                # Harmless: the start-up check settles what is left.
                self.log.failure("Cannot settle committed files")

    def _files_made_durable(self, batch):
        """Make the files the batch references durable, or raise _NotDurable
        (the whole batch then fails: nothing of it is committed)."""
        files = [f for _, _, batch_files, _ in batch for f in batch_files]
        if not files or self._make_durable is None:
            return
        started = time.perf_counter()
        try:
            self._make_durable(files)
        except BaseException:
            failure = Failure()
            self.log.failure("Cannot make files durable", failure)
            raise _NotDurable(failure)
        if logs.is_verbose("sqlite"):
            self.log.debug("{count} files made durable in {durable:.2f} ms", count=len(files),
                           durable=(time.perf_counter() - started) * 1000)

    def _apply(self, batch):
        """Run the batch in one transaction; ([(Deferred, result or
        Failure)], events) once committed.  MapFullError, from any
        operation or the commit, leaves the whole transaction aborted."""
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
