"""The LMDB writer thread and its group commits.

LMDB allows one write transaction at a time, and each commit costs syncs.
All index writes therefore go through one thread that takes every operation
queued since its last commit (up to ``max_batch``), makes the files they
reference durable (one ``make_durable`` for the whole batch), runs each
operation in a child transaction - so one failing operation does not sink
the batch - and commits them together.  Throughput grows with concurrency
instead of being capped by syncs per second.  Deferreds fire on the reactor
thread once the commit is durable.

LMDB is opened with MDB_NOMETASYNC: a commit syncs its data pages but not
the meta page that makes it current, so a crash could undo the last commit,
never corrupt the index.  A batch is acknowledged only after a sync that
followed its commit (``sync_index``), or the ``make_durable`` that followed
it (below):

- a batch that referenced files (uploads, whose work is mostly for the CPU)
  is synced and acknowledged by the writer itself, right after its commit;
- a batch that referenced none (deletes, metadata, labels: bound by syncs)
  goes to an acknowledging thread when more operations are queued: its
  sync then overlaps the next batch (one sync covers every batch waiting
  there); alone, the writer syncs and acknowledges it too.
  Acknowledgements keep the order of the commits: while some wait in the
  acknowledging thread, the writer sends it the next ones too.

Measured on 2 cores (issue #10, 513 KiB instances, 4 clients): handing
uploads to the second thread too (and syncing their files there, beside
the operations) cost more in hand-overs between threads (GIL, wake-ups)
than the overlap saved: 467 against 500 uploads/s.  Deletes, bound by
syncs, are the other way round: 1,331/s with every batch synced by the
writer, 1,572/s with the overlap.

Where ``make_durable`` makes the index durable too (``record_files`` is
given: one ``syncfs`` of the file system holding the files and the index), a
batch that references files commits first, then makes its files and its
commit durable with that one call: one sync fewer per batch.  The index may
then name files that a crash kept from reaching the disk, but only those of
its last commit, and only of operations never acknowledged: the batch records
them in its own transaction (``record_files``), and the start-up check looks
at those.  A batch with an operation that removes what was stored and
acknowledged before (an overwrite, a recycled patient, a replaced
attachment: ``files_first``) keeps the first order: that removal must not
reach the disk without the files that replace what it removed.  Measured
on 2 cores (issue #10, runs alternated, 10 or 12 runs of each): 513 KiB
instances at 4 clients 622 -> 632 uploads/s, at 1 client 390 -> 402/s;
1.5 KiB instances at 4 clients 909 -> 935/s, at 1 client 529 -> 555/s.

A batch also waits a moment for the writes known to be on their way
(``on_the_way``: uploads being parsed and written, each followed by its
index write), up to ``gather_limit``: at 4 clients uploading at once, a
commit otherwise took about 1.7 uploads, its syncs then costing each
upload more than that wait.  Measured on 2 cores (513 KiB instances, 4
clients, runs alternated): 548 -> 614 uploads/s, server CPU 2.02 -> 1.70
ms per upload, 3.1 uploads per commit, with a limit of 3 ms (1 ms gave
557/s, 2 ms 599/s, 4 ms 593/s); 2 clients 450 -> 510/s; 16 clients
unchanged (676/670).  One client alone has nothing on its way when its
write comes, and never waits.  Meanwhile the writer sleeps until ``submit``
wakes it, once nothing more is on its way (or the batch is full): woken
once per batch instead of once per write that comes, it leaves the GIL to
the uploads being prepared.  Measured on 2 cores (runs alternated): 513
KiB instances at 4 clients 660 -> 706 uploads/s (server CPU 1.57 -> 1.47 ms
per upload), at 16 clients 695 -> 721/s, at 2 clients 528 -> 535/s; 1.5 KiB
instances at 4 clients 998 -> 1,025/s.

The writer is a service: its threads start in ``startService`` (after
twistd has forked, when it daemonizes) and ``stopService`` commits and
acknowledges what was queued before it, then lets the threads end.
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


def _taken(items, limit=None):
    """The next item of the queue ``items`` (waiting for one) and every
    other one there now, up to ``limit`` in all."""
    taken = [items.get()]
    return taken + _taken_now(items, None if limit is None else limit - 1)


def _taken_now(items, limit=None):
    """The items of the queue ``items`` there now, up to ``limit``."""
    taken = []
    while limit is None or len(taken) < limit:
        try:
            taken.append(items.get_nowait())
        except queue.Empty:
            break
    return taken


def _committed_files(batch, results):
    """(StoredFile, slot) of the files of the batch's operations that
    succeeded."""
    return [(info, slot) for (_, _, files, _), (_, result) in zip(batch, results)
            if not isinstance(result, Failure) for info, slot in zip(files, files.slots)]


def _without_stop(taken):
    """(the items taken but _STOP's, the Deferred of the first _STOP or None)."""
    stops = [item[1] for item in taken if item[0] is _STOP]
    return [item for item in taken if item[0] is not _STOP], (stops[0] if stops else None)


class _Files(tuple):
    """The StoredFiles an operation references, and the slot each fills."""

    def __new__(cls, files, slots=()):
        self = super().__new__(cls, files)
        self.slots = tuple(slots) or (None,) * len(self)
        return self


class _NotDurable(Exception):
    """The files of a batch could not be made durable before its commit
    (``failure``): nothing of it commits."""

    def __init__(self, failure):
        super().__init__(failure.getErrorMessage())
        self.failure = failure


class IndexStopped(Exception):
    """An index write was submitted after the writer stopped."""


class IndexWriter(service.Service):
    """``begin_write(parent=None)`` opens an LMDB write transaction (a child
    one when ``parent`` is given).  ``make_durable(files)`` runs before each
    commit (or right after it, see above), ``settle(files)`` after it with
    the files of the operations that committed (their storage no longer
    needs to remember them as pending)."""
    log = logger(__name__)
    name = "index-writer"

    def __init__(self, begin_write, reactor, max_batch=256, on_commit=None, make_durable=None,
                 settle=None, grow_map=None, sync_index=None, gather_limit=0.003,
                 record_files=None):
        """``grow_map()``: enlarge the LMDB map after a MapFullError (the
        batch is then run again).  ``sync_index()``: make the last commit
        durable, when commits leave their meta page unsynced (see above);
        None when each commit is durable by itself.  ``gather_limit``: how
        long (seconds) a batch may wait for the writes on their way.
        ``record_files(txn, [(StoredFile, slot)])``: given when
        ``make_durable`` makes the last commit durable too (see above);
        records, in the batch's transaction, the files its operations
        reference, with the slot each fills."""
        self._begin_write = begin_write
        # Set (by the index, before the threads start) when make_durable
        # turns out to cover the index too.
        self.record_files = record_files
        # Whether the files of the last batch made durable after its commit
        # may not be on the disk (that make_durable failed).
        self.files_in_doubt = False
        self._op_files_first = False  # files_first() of the operation running
        self._grow_map = grow_map
        self._make_durable = make_durable
        self._settle = settle
        self._sync_index = sync_index
        self._reactor = reactor
        self._max_batch = max_batch
        self._gather_limit = gather_limit
        # () -> how many writes are on their way (read from the writer
        # thread); set by whoever knows (ResourceIndex.expect_writes_from).
        self.on_the_way = None
        self._queue = queue.SimpleQueue()  # submitted operations
        # Set by submit (and stopService) to end a batch's wait for the
        # writes on their way (_gathered).
        self._wake_gathering = threading.Event()
        self._acks = queue.SimpleQueue()  # (outcome, sync?) for the acknowledging thread
        self._handed = 0  # outcomes handed to the acknowledging thread (writer thread)
        self._acknowledged = 0  # of which acknowledged (acknowledging thread)
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
        self._acknowledging = threading.Thread(target=self._run_acknowledgements,
                                               name="lmdb-acknowledge", daemon=True)
        self._acknowledging.start()
        self._thread.start()

    def stopService(self):
        """Fires once every operation submitted before is committed and
        acknowledged, and the threads are gone."""
        super().stopService()
        self._accepting = False
        stopped = defer.Deferred()
        if self._thread is None:
            stopped.callback(None)
        else:
            self._queue.put((_STOP, stopped))
            self._wake_gathering.set()
        return stopped

    def submit(self, operation, *args, files=(), slots=()):
        """Run ``operation(txn, *args)`` in a write transaction; a Deferred
        fires with its result once the transaction is durable.  ``files``
        (StoredFiles the operation references) are made durable together
        with those of the whole batch, before its commit or with it (see
        above).  ``slots``: what each of ``files`` fills, for
        ``record_files``."""
        if not self._accepting:
            return defer.fail(IndexStopped("The index is closed"))
        d = defer.Deferred()
        self._queue.put((operation, args, _Files(files, slots), d))
        on_the_way = self.on_the_way
        if on_the_way is not None and (on_the_way() <= 0
                                       or self._queue.qsize() >= self._max_batch):
            self._wake_gathering.set()  # no system call unless the writer waits
        return d

    def run_sync(self, operation, *args):
        """Blocking variant for start-up code, before the threads start."""
        with self._begin_write() as txn:
            result = operation(txn, *args)
        if self._sync_index is not None:
            self._sync_index()
        return result

    def _run(self):
        """Take every operation queued (up to ``max_batch``), and those
        that come while more are on their way (for ``gather_limit`` at
        most), make their files durable, run them in one transaction,
        commit, then see to their acknowledgement: commits grow with the
        load."""
        stopped = None
        while stopped is None:
            taken = _taken(self._queue, self._max_batch)
            if self.on_the_way is not None and self._gather_limit > 0:
                taken = self._gathered(taken)
            batch, stopped = _without_stop(taken)
            if batch:
                self._acknowledge_later_or_now(batch, self._commit(batch))
        self._acks.put((_STOP, stopped))

    def _gathered(self, taken):
        """``taken`` and what comes into the queue while ``on_the_way()``
        says more is coming, for ``gather_limit`` at most, up to
        ``max_batch`` in all.  The thread sleeps meanwhile until ``submit``
        wakes it (once nothing more is on its way, or the batch is full),
        rather than once per write (see above)."""
        deadline = time.monotonic() + self._gather_limit
        wake = self._wake_gathering
        while True:
            # Cleared before the conditions are read: a submit that changes
            # them sets it again, and the wait then ends at once.
            wake.clear()
            if (self.on_the_way() <= 0 or not self._accepting
                    or len(taken) + self._queue.qsize() >= self._max_batch):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wake.wait(remaining)
        return taken + _taken_now(self._queue, self._max_batch - len(taken))

    def _acknowledge_later_or_now(self, batch, outcome):
        """A batch that referenced files (uploads: work for the CPU) is
        synced and acknowledged here, unless acknowledgements are still
        queued before it (they keep their order).  So is one that
        referenced none (deletes, metadata...: bound by syncs) when no
        other batch waits; else it goes to the acknowledging thread, whose
        sync then overlaps the next batch."""
        results, _, _, durable = outcome
        sync = not durable and self._sync_index is not None and any(
            not isinstance(result, Failure) for _, result in results)
        with_files = any(files for _, _, files, _ in batch)
        if (with_files or self._queue.empty()) and self._acknowledged == self._handed:
            self._acknowledge(self._after_sync(outcome, self._synced()) if sync else outcome)
        else:
            self._handed += 1
            self._acks.put((outcome, sync))

    def _run_acknowledgements(self):
        """Acknowledge committed batches in their order; one sync covers
        every batch waiting (each commit's sync covers those before it)."""
        while True:
            waiting, stopped = _without_stop(_taken(self._acks))
            failure = self._synced() if any(sync for _, sync in waiting) else None
            for outcome, sync in waiting:
                self._acknowledge(self._after_sync(outcome, failure) if sync else outcome)
            self._acknowledged += len(waiting)
            if stopped is not None:
                self._reactor.callFromThread(stopped.callback, None)
                return

    def _synced(self):
        """Sync the index: None once done, else the Failure."""
        try:
            self._sync_index()
        except BaseException:
            failure = Failure()
            self.log.failure("Cannot sync the index", failure)
            return failure
        return None

    @staticmethod
    def _after_sync(outcome, failure):
        """``outcome`` as its clients hear of it after the sync that
        ``failure`` tells of (None: it succeeded)."""
        if failure is None:
            return outcome
        # Committed but maybe not durable: the clients hear of a failure;
        # the start-up check settles the files.
        results = outcome[0]
        return [(d, failure) for d, _ in results], [], [], False

    def _acknowledge(self, outcome):
        """Deliver a batch's results and events, then settle its files (they
        no longer need to be remembered as pending)."""
        results, events, committed, _ = outcome
        self._reactor.callFromThread(self._deliver, results, events)
        if self._settle is not None and committed:
            try:
                self._settle(committed)
            except Exception:
                # Harmless: the start-up check settles what is left.
                self.log.failure("Cannot settle committed files")

    def emit(self, event):
        """Record an event of the operation running now (on this thread);
        it is published once the batch commits, and dropped if the
        operation fails."""
        self._events.append(event)

    def files_first(self):
        """Called by the operation running now (on this thread) when it
        removes what was stored and acknowledged before (an instance
        overwritten, a patient recycled, an attachment replaced): should
        it succeed, its batch's files are made durable before the commit,
        as where make_durable does not cover the index.  A crash must not
        leave that removal on the disk without the files that replace
        what it removed."""
        self._op_files_first = True

    def _commit(self, batch):
        """(results, events, the files of the operations committed, whether
        the commit is durable already)."""
        started = time.perf_counter()
        # With the files after the commit, or before it.  Files that
        # cannot be made durable before fail the whole batch: nothing of
        # it is committed.
        after = self.record_files is not None and any(files for _, _, files, _ in batch)
        failure = None if after else self._durability_failure(batch)
        if failure is None:
            try:
                while True:
                    try:
                        results, events, after = self._apply(batch, record=after)
                        break
                    except lmdb.MapFullError:
                        if self._grow_map is None:
                            raise
                        # Nothing of the batch was committed: grow, then again.
                        self._grow_map()
            except _NotDurable as e:
                failure = e.failure
            except BaseException:
                failure = Failure()
                self.log.failure("Index commit failed", failure)
        if failure is not None:
            results = [(d, failure) for _, _, _, d in batch]
            events = []
        elif after:
            failure = self._durability_failure(batch)
            self.files_in_doubt = failure is not None
            if failure is not None:
                # Committed but maybe not durable: the clients hear of a
                # failure; the start-up check looks at the files recorded.
                return [(d, failure) for _, _, _, d in batch], [], [], False
        self.last_batch_size = len(batch)
        self.commits += 1
        self.committed_operations += sum(1 for _, result in results if not isinstance(result, Failure))
        if logs.is_verbose("sqlite"):
            self.log.debug("group commit: {count} operations, index committed in {commit:.2f} ms",
                           count=len(batch), commit=(time.perf_counter() - started) * 1000)
        committed = [info for info, _ in _committed_files(batch, results)]
        return results, events, committed, after

    def _durability_failure(self, batch):
        """Make the files the batch references durable: None once done,
        else the Failure."""
        files = [f for _, _, batch_files, _ in batch for f in batch_files]
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

    def _apply(self, batch, record=False):
        """Run the batch in one transaction; ([(Deferred, result or
        Failure)], events) once committed.  MapFullError, from any
        operation or the commit, leaves the whole transaction aborted.
        ``record``: the files of the operations that ran go to
        ``record_files`` in the transaction, unless one of them asked for
        its files first (``files_first``): they are then made durable
        before the commit.  The third value says whether the files are
        still to be made durable (after the commit)."""
        results = []
        events = []
        files_first = False
        with self._begin_write() as txn:
            for operation, args, _, d in batch:
                child = self._begin_write(parent=txn)
                self._events = []
                self._op_files_first = False
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
                    files_first = files_first or self._op_files_first
            if record and files_first:
                # The files before the commit, after all (see files_first).
                failure = self._durability_failure(batch)
                if failure is not None:
                    raise _NotDurable(failure)
            elif record:
                referenced = _committed_files(batch, results)
                if referenced:
                    self.record_files(txn, referenced)
        return results, events, record and not files_first

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
