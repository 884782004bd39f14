"""Bytes gathered piece by piece: in memory while small, then in a file.

The file lives in the storage area's temporary directory and is hashed as it
is written, so the ingest path can adopt it (rename it into place) as it does
for files received over DICOM, without reading it back.
"""
import io
import os
import tempfile

from twisted.internet import defer
from twisted.python.failure import Failure

from orthancd.storage.digests import ContentHasher
from orthancd.storage.filesystem import start_writeback
from orthancd.storage.streaming import ReceivedFile, StreamingFileWriter
from orthancd.storage.temporary_files import new_temporary_path

# Beyond this, the bytes go to a file: inflated archive members can reach
# gigabytes, and so can the parts of a form.
MEMORY_LIMIT = 16 * 1024 * 1024
_HASH_PIECE = 1024 * 1024


class Spool:
    """Write with ``write``; ``payload()`` gives the bytes, or a ReceivedFile
    once they outgrew ``memory_limit``.  Blocking: use it off the reactor."""

    def __init__(self, directory, memory_limit=MEMORY_LIMIT):
        self._directory = directory
        self._memory_limit = memory_limit
        self._memory = io.BytesIO()
        self._file = None
        self._path = None
        self._hasher = None
        self.size = 0

    def write(self, data):
        if not data:
            return
        self.size += len(data)
        if self._file is None and self.size > self._memory_limit:
            self._spill()
        if self._file is None:
            self._memory.write(data)
        else:
            self._file.write(data)
            self._hasher.update(data)

    def _spill(self):
        fd, self._path = tempfile.mkstemp(dir=self._directory, suffix=".upload")
        self._file = os.fdopen(fd, "wb")
        self._hasher = ContentHasher()
        buffered = self._memory.getbuffer()
        self._file.write(buffered)
        self._hasher.update(buffered)
        del buffered
        self._memory = None

    def payload(self):
        """The bytes, or the closed spool file as a ReceivedFile (then owned
        by the caller, who removes it unless the storage area adopted it)."""
        if self._file is None:
            return self._memory.getvalue()
        self._file.close()
        received = ReceivedFile(self._path, self._hasher.digests())
        self._file = None
        self._path = None
        return received

    def discard(self):
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            discard_payload(ReceivedFile(self._path, None))
            self._path = None
        self._memory = None


def discard_payload(payload):
    """Remove a spooled payload the storage area did not take."""
    if isinstance(payload, ReceivedFile) and not payload.moved:
        try:
            os.unlink(payload)
        except FileNotFoundError:
            pass


def copy_range(source, start, length, spool, chunk_size=1 << 20):
    """Copy ``length`` bytes of the seekable ``source`` from ``start`` into ``spool``."""
    source.seek(start)
    while length > 0:
        data = source.read(min(chunk_size, length))
        if not data:
            break
        spool.write(data)
        length -= len(data)
    return spool


class BodyFile:
    """A request body written, as it arrives, into a new file of the storage
    area's temporary directory: a large upload then never sits in memory,
    and a DICOM body becomes the stored file by a mere rename (``received``)
    instead of being copied.  It reads like the temporary file Twisted
    would use; ``close`` (Twisted calls it once the request is done)
    removes the file unless the storage area took it."""

    def __init__(self, directory):
        fd, self.path = tempfile.mkstemp(dir=directory, suffix=".upload")
        self._file = os.fdopen(fd, "w+b")
        self._received = None

    def __getattr__(self, name):
        # write, read, seek, tell, seekable, fileno...: the file's own.
        return getattr(self._file, name)

    def received(self):
        """The complete body as a ReceivedFile, hashed (blocking: off the
        reactor).  Once the storage area moved it, closing leaves it be."""
        self._file.flush()
        fd = self._file.fileno()
        start_writeback(fd)
        # Read back in pieces rather than mapped: a mapping of a large
        # upload would count, whole, in the daemon's resident memory.
        hasher = ContentHasher()
        offset = 0
        while True:
            piece = os.pread(fd, _HASH_PIECE, offset)
            if not piece:
                break
            hasher.update(piece)
            offset += len(piece)
        self._received = ReceivedFile(self.path, hasher.digests())
        return self._received

    def close(self):
        self._file.close()
        if self._received is None or not self._received.moved:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class StreamedBody:
    """The body of a DICOM upload (POST /instances), written and hashed in
    the file I/O pool as it arrives, in order, as the C-STORE SCP writes
    what it receives (orthancd.storage.streaming): hashing overlaps with
    receiving instead of following it, and the reactor only hands pieces
    over.  ``complete()`` fires once the file is whole; it then becomes
    the stored file by a rename.  Its size and first bytes are known
    without reading it back; anything else that reads it (a zip archive)
    does so off the reactor, once it is complete."""

    HEAD_SIZE = 4
    BATCH_SIZE = 256 * 1024  # bytes handed to the file pool at once

    def __init__(self, directory, pool, reactor=None, producer=None, create=None):
        """``producer``: the connection the body comes on, paused while the
        writes and hashes lag too far behind (StreamingFileWriter)."""
        # Created by the writer, in the pool: the reactor makes no system call.
        self.path = new_temporary_path(directory, suffix=".upload")
        self._writer = StreamingFileWriter(self.path, reactor, pool, producer,
                                           self.BATCH_SIZE, create)
        self.head = b""
        self.size = 0
        self._completion = None
        self._outcome = None  # the ReceivedFile or the Failure, once written
        self._reader = None
        self._closed = False
        self._waiters = []

    def write(self, data):
        if len(self.head) < self.HEAD_SIZE:
            self.head = (self.head + bytes(data[:self.HEAD_SIZE]))[:self.HEAD_SIZE]
        self.size += len(data)
        self._writer.write(data)

    def complete(self):
        """Deferred firing with the whole body as a ReceivedFile (hashed)."""
        if self._completion is None:
            self._completion = self._writer.close()
            self._completion.addBoth(self._completed)
        if self._outcome is not None:
            return defer.fail(self._outcome) if isinstance(self._outcome, Failure) \
                else defer.succeed(self._outcome)
        d = defer.Deferred()
        self._waiters.append(d)
        return d

    def complete_then(self, work):
        """Deferred result of ``work(received_file)``, run where the file
        was written as soon as it is complete (StreamingFileWriter.after_close):
        for work that would otherwise wait for ``complete()`` on the reactor
        and then go back to a pool.  ``complete()`` still gives the file."""
        self.complete().addErrback(lambda failure: None)  # reported by the work's Deferred
        return self._writer.after_close(work)

    def _completed(self, outcome):
        self._outcome = outcome
        if self._closed:
            discard_payload(ReceivedFile(self.path, None))
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)

    @property
    def received(self):
        """The ReceivedFile, once ``complete()`` fired (None before, or if
        it could not be written)."""
        return None if isinstance(self._outcome, Failure) else self._outcome

    def tell(self):
        if self._reader is None:
            return self.size  # where the writes are
        return self._reader.tell()

    def seek(self, offset, whence=0):
        # Twisted rewinds the body once it is received; nothing reads it
        # before it is complete.
        if self._reader is None and offset == 0 and whence == 0:
            return 0
        return self._read_side().seek(offset, whence)

    def __getattr__(self, name):
        # read, tell, fileno...: of a read handle on the complete file
        # (blocking: off the reactor).
        return getattr(self._read_side(), name)

    def _read_side(self):
        if self.received is None:
            raise ValueError("The body is not complete yet")
        if self._reader is None:
            self._reader = open(self.path, "rb")
        return self._reader

    def remove_read_file(self):
        """Remove the complete file once it has been read (a zip archive),
        before the answer goes: a client that sees the answer sees no file
        left (blocking: off the reactor)."""
        self._closed = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        discard_payload(self.received or ReceivedFile(self.path, None))

    def close(self):
        """Once the request is done: the file goes, unless the storage area
        took it (or it is still being written: it goes once written)."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.close()
        if self._completion is None:
            self._writer.discard()
        elif self._outcome is not None:
            # Removed once written, by _completed, otherwise.
            discard_payload(self.received or ReceivedFile(self.path, None))
