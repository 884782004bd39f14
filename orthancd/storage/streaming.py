"""Write a received file and hash it in a worker thread, in arrival order.

The reactor only queues the pieces (bytes-like objects it will not modify:
slices of the received PDUs); one drain at a time runs in the thread pool,
writes them and feeds the ContentHasher.  hashlib and file writes release the
GIL, so receiving the next PDUs and hashing the previous ones overlap.
Given a reactor without threads (a test's Clock), it works inline.
"""
import os

from twisted.internet import defer

from orthancd.pools import SerialLane
from orthancd.storage.digests import ContentHasher
from orthancd.storage.filesystem import start_writeback

_WRITE_BUFFER = 256 * 1024
_CLOSE = object()


class ReceivedFile(str):
    """The path of a complete received file, with the ContentDigests computed
    while it was written.  ``moved`` is set once the storage area took the
    file (renamed it into place): the path is then no longer ours to delete."""

    def __new__(cls, path, digests):
        received = super().__new__(cls, path)
        received.digests = digests
        received.moved = False
        return received


class StreamingFileWriter:
    """Create ``path`` and fill it from the reactor with ``write``; ``close``
    returns a Deferred firing (on the reactor) with the ReceivedFile, or
    failing with the first write error.  The writes run in ``pool`` (the
    server's file I/O pool, anything with ``callInThread``), by default in
    the reactor's.  With ``hash_pool``, the file is hashed there, beside
    the writes: the ReceivedFile comes once it is written, with
    orthancd.storage.digests.LateDigests."""

    def __init__(self, path, reactor=None, pool=None, hash_pool=None):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        pool = pool if pool is not None else reactor
        self._threaded = hasattr(pool, "callInThread")
        self.path = path
        self._file = open(path, "wb", buffering=_WRITE_BUFFER)
        self._hasher = ContentHasher(pool=hash_pool)
        self._lane = SerialLane(pool, self._take)
        self._error = None
        self._closed = None

    def write(self, data):
        self._enqueue(data)

    def write_pieces(self, pieces):
        """Several pieces at once: one hand-over to the pool for all."""
        self._enqueue(*pieces)

    def close(self):
        self._closed = defer.Deferred()
        self._enqueue(_CLOSE)
        return self._closed

    def discard(self):
        """Stop writing and remove the file (the transfer was abandoned)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._enqueue(_CLOSE)

    def _enqueue(self, *items):
        self._lane.put(*items)

    def _take(self, item):
        if item is _CLOSE:
            self._finish()
        elif self._error is None and self._file is not None:
            try:
                # Hash lanes (with a hash pool) start on it meanwhile.
                self._hasher.update(item)
                self._file.write(item)
            except Exception as e:
                self._error = e

    def _finish(self):
        if self._file is None:
            return
        complete = self._error is None and self._closed is not None
        if complete:
            try:
                self._file.flush()
            except Exception as e:
                self._error = e
        delivered = complete and self._error is None
        if delivered:
            self._deliver(self._closed.callback, ReceivedFile(self.path, self._hasher.digests()))
            # Only then: the data starts on its way to the disk while the
            # file is parsed, rather than before.
            try:
                start_writeback(self._file.fileno())
            except OSError:
                pass  # a hint: durability comes from make_durable
        try:
            self._file.close()
        except Exception as e:
            if self._error is None:
                self._error = e
        self._file = None
        if self._closed is not None and not delivered:
            self._deliver(self._closed.errback, self._error)

    def _deliver(self, fire, result):
        if self._threaded:
            self._reactor.callFromThread(fire, result)
        else:
            fire(result)
