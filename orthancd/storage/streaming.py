"""Write a received file and hash it in a worker thread, in arrival order.

The reactor only queues the pieces (bytes-like objects it will not modify:
slices of the received PDUs); one drain at a time runs in the thread pool,
creates the file, writes them and feeds the ContentHasher.  hashlib and file
writes release the GIL, so receiving the next PDUs and hashing the previous
ones overlap, and the reactor makes no system call for the file.
Given a reactor without threads (a test's Clock), it works inline.
"""
import os

from twisted.internet import defer
from twisted.python.failure import Failure

from orthancd.pools import SerialLane
from orthancd.storage.digests import ContentHasher
from orthancd.storage.filesystem import start_writeback

_WRITE_BUFFER = 256 * 1024
_CLOSE = object()
_DISCARD = object()
# Flow control: past this many bytes received and not yet written and
# hashed, the sender is paused until the backlog is down to the low mark.
# Without it, a client faster than the disk fills the memory (16 uploads of
# 1 GiB at once over loopback: 8 GiB).
BACKLOG_HIGH = 8 * 1024 * 1024
BACKLOG_LOW = 2 * 1024 * 1024


class _After:
    """Work queued behind the close (StreamingFileWriter.after_close)."""

    def __init__(self, work, done):
        self.work = work
        self.done = done


def _is_sentinel(item):
    return item is _CLOSE or item is _DISCARD or isinstance(item, _After)


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
    """Create ``path`` (a new file: see new_temporary_path) and fill it from
    the reactor with ``write``; ``close`` returns a Deferred firing (on the
    reactor) with the ReceivedFile, or failing with the first error (the
    file could not be created or written).  The writes run in ``pool`` (the
    server's file I/O pool, anything with ``callInThread``), by default in
    the reactor's.  Its SHA-256 is computed as it is written."""

    def __init__(self, path, reactor=None, pool=None, producer=None,
                 batch_size=0, create=None):
        """``producer``: what sends the bytes (a transport, an IPushProducer):
        paused while too much of what it sent is neither written nor hashed.
        ``batch_size``: pieces written are handed to the pool once they add
        up to this many bytes (and at the close): waking a pool thread for
        every piece the socket gave (16 kB PDUs, tens of kB when uploads run
        side by side) costs the reactor more than the write itself.
        ``create(path)``: makes the new file (in the pool), its descriptor
        (the storage area's create_temporary_file); by default os.open."""
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        pool = pool if pool is not None else reactor
        self._threaded = hasattr(pool, "callInThread")
        self.path = path
        self._create = create
        self._file = None  # created by the first item the pool takes
        self._done = False  # closed or discarded
        # Flow control: each count has one writer at a time (the reactor,
        # the writing drain), so no lock is needed.  SHA-256 is computed
        # before each write: what is written is hashed by it.
        self._producer = producer
        self._handed = 0
        self._written = 0
        self._paused = False
        self._resume_asked = False
        self._hasher = ContentHasher()
        self._lane = SerialLane(pool, self._take)
        self._batch_size = batch_size
        self._batch = []
        self._batched = 0
        self._error = None
        self._closed = None
        self._received = None  # the ReceivedFile, once complete

    def write(self, data):
        if not self._batch_size:
            self._enqueue(data)
            return
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= self._batch_size:
            self._hand_over()

    def _hand_over(self, *then):
        """The batch (and ``then``) to the pool, in one hand-over."""
        batch, self._batch, self._batched = self._batch, [], 0
        if batch or then:
            self._enqueue(*batch, *then)

    def close(self):
        self._closed = defer.Deferred()
        self._hand_over(_CLOSE)
        return self._closed

    def after_close(self, work):
        """Deferred result of ``work(received_file)``, run in the pool once
        the file is complete, in the drain that completed it (usually the
        same thread): what follows the file (parsing its header, moving it
        into place) then needs no trip to the reactor and back.  Fails as
        ``close`` when the file could not be written.  Call after close."""
        done = defer.Deferred()
        self._enqueue(_After(work, done))
        return done

    def discard(self):
        """Stop writing and remove the file (the transfer was abandoned)."""
        self._batch, self._batched = [], 0
        self._enqueue(_DISCARD)
        if self._paused:
            self._resume()
        self._producer = None

    def _enqueue(self, *items):
        if self._producer is not None:
            self._handed += sum(len(item) for item in items if not _is_sentinel(item))
        self._lane.put(*items)
        if (self._producer is not None and not self._paused
                and self._backlog() > BACKLOG_HIGH):
            self._paused = True
            self._producer.pauseProducing()
            self._maybe_resume()  # all of it may be done already

    def _backlog(self):
        return self._handed - self._written

    def _maybe_resume(self):
        """From any thread: once the backlog is low, resume the sender."""
        if self._paused and not self._resume_asked and self._backlog() <= BACKLOG_LOW:
            self._resume_asked = True
            if self._threaded:
                self._reactor.callFromThread(self._resume)
            else:
                self._resume()

    def _resume(self):
        self._resume_asked = False
        if not self._paused:
            return
        self._paused = False
        producer = self._producer
        if producer is not None:
            producer.resumeProducing()

    def _open(self):
        """Create the file (in the pool); False once that failed."""
        if self._file is None and self._error is None:
            try:
                if self._create is not None:
                    fd = self._create(self.path)
                else:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                self._file = os.fdopen(fd, "wb", buffering=_WRITE_BUFFER)
            except Exception as e:
                self._error = e
        return self._file is not None

    def _take(self, item):
        if isinstance(item, _After):
            self._take_after(item)
            return
        if item is not _CLOSE and item is not _DISCARD:
            try:
                self._take_piece(item)
            finally:
                if self._producer is not None:
                    self._written += len(item)
                    self._maybe_resume()
            return
        self._take_sentinel(item)

    def _take_piece(self, item):
        if self._done or not self._open() or self._error is not None:
            return
        try:
            self._hasher.update(item)
            self._file.write(item)
        except Exception as e:
            self._error = e

    def _take_sentinel(self, item):
        if self._done:
            return
        if item is _DISCARD:
            self._done = True
            if self._file is not None:
                try:
                    self._file.close()
                except Exception:
                    pass
                self._file = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            return
        self._open()
        self._finish()

    def _take_after(self, after):
        received = self._received
        if received is None:
            error = self._error or RuntimeError("The file was not written")
            self._deliver(after.done.errback, error)
            return
        try:
            result = after.work(received)
        except BaseException:
            self._deliver(after.done.errback, Failure())
        else:
            self._deliver(after.done.callback, result)

    def _finish(self):
        """On close (``_closed`` is set): deliver the file, or the error."""
        self._done = True
        if self._file is None:
            # Never created: nothing to remove.
            self._deliver(self._closed.errback, self._error)
            return
        if self._error is None:
            try:
                self._file.flush()
            except Exception as e:
                self._error = e
        delivered = self._error is None
        if delivered:
            self._received = ReceivedFile(self.path, self._hasher.digests())
            self._deliver(self._closed.callback, self._received)
            # Only then: the data starts on its way to the disk while the
            # file is parsed, rather than before.
            try:
                start_writeback(self._file.fileno(), self._received.digests.size)
            except OSError:
                pass  # a hint: durability comes from make_durable
        try:
            self._file.close()
        except Exception as e:
            if self._error is None:
                self._error = e
        self._file = None
        if not delivered:
            self._deliver(self._closed.errback, self._error)

    def _deliver(self, fire, result):
        if self._threaded:
            self._reactor.callFromThread(fire, result)
        else:
            fire(result)
