"""The LMDB writer thread and its group commits.

LMDB allows one write transaction at a time, and each commit costs an fsync.
All index writes therefore go through one thread that takes every operation
queued since its last commit (up to ``max_batch``), runs each in a child
transaction - so one failing operation does not sink the batch - and commits
them together.  Throughput grows with concurrency instead of being capped by
fsyncs per second.  Deferreds fire on the reactor thread after the commit.
"""
import queue
import threading
import time

from twisted.internet import defer
from orthancd.logs import logger
from twisted.python.failure import Failure

_STOP = object()


class IndexWriter:
    log = logger(__name__)

    def __init__(self, env, reactor, max_batch=256, on_commit=None, make_durable=None):
        self._env = env
        self._make_durable = make_durable
        self._reactor = reactor
        self._max_batch = max_batch
        self._queue = queue.SimpleQueue()
        self._on_commit = on_commit
        self._thread = threading.Thread(target=self._run, name="lmdb-writer", daemon=True)
        self._thread.start()

    def submit(self, operation, *args, files=()):
        """Run ``operation(txn, *args)`` in a write transaction; a Deferred
        fires with its result once the transaction is durable.  ``files``
        (StoredFiles the operation references) are made durable before the
        commit, together with those of the whole batch."""
        d = defer.Deferred()
        self._queue.put((operation, args, files, d))
        return d

    def run_sync(self, operation, *args):
        """Blocking variant for start-up code that runs before the reactor."""
        with self._env.begin(write=True) as txn:
            return operation(txn, *args)

    def stop(self):
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self):
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
            if batch:
                self._commit(batch)

    def _commit(self, batch):
        results = []
        started = time.perf_counter()
        durable = started
        try:
            files = [f for _, _, batch_files, _ in batch for f in batch_files]
            if files and self._make_durable is not None:
                self._make_durable(files)
            durable = time.perf_counter()
            with self._env.begin(write=True) as txn:
                for operation, args, _, d in batch:
                    child = self._env.begin(write=True, parent=txn)
                    try:
                        result = operation(child, *args)
                    except BaseException:
                        child.abort()
                        results.append((d, Failure()))
                    else:
                        child.commit()
                        results.append((d, result))
        except BaseException:
            failure = Failure()
            self.log.failure("Index commit failed", failure)
            results = [(d, failure) for _, _, _, d in batch]
        self.log.debug("group commit: {count} operations, files made durable in {durable:.2f} ms, "
                       "index committed in {commit:.2f} ms", count=len(batch),
                       durable=(durable - started) * 1000,
                       commit=(time.perf_counter() - durable) * 1000)
        self._reactor.callFromThread(self._deliver, results)

    def _deliver(self, results):
        if self._on_commit is not None:
            self._on_commit([r for _, r in results if not isinstance(r, Failure)])
        for d, result in results:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)
