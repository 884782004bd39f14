"""Where archives are written when they are not streamed to a client, and
how many of them are kept.

An asynchronous archive job writes its archive to a temporary file, which
becomes the job's "archive" output.  Orthanc keeps only the
``MediaArchiveSize`` most recently created or downloaded of them: adding
one more drops the least recently used (its job then has no output).
"""
import collections
import os
import tempfile

from orthancd.logs import logger

log = logger(__name__)


class MediaArchive:
    """The kept archives, least recently used first.  Runs on the reactor."""

    def __init__(self, size):
        self.size = max(1, int(size))
        self._entries = collections.OrderedDict()   # key -> callable dropping it
        self._keys = 0

    def add(self, drop):
        """Keep an archive; ``drop()`` is called if it is evicted.  Returns
        its key."""
        while len(self._entries) >= self.size:
            _, evicted = self._entries.popitem(last=False)
            evicted()
        self._keys += 1
        self._entries[self._keys] = drop
        return self._keys

    def touch(self, key):
        """The archive was accessed: it becomes the most recent."""
        if key in self._entries:
            self._entries.move_to_end(key)

    def discard(self, key):
        self._entries.pop(key, None)

    def __len__(self):
        return len(self._entries)


class FileSink:
    """An archive written to a temporary file, in ``pool`` (writes one
    after the other: the job awaits each)."""

    def __init__(self, directory, pool):
        self.directory = directory
        self.pool = pool
        self.path = None
        self.size = 0
        self._file = None

    def _create(self):
        if self.directory:
            os.makedirs(self.directory, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="archive-", suffix=".zip", dir=self.directory)
        return path, os.fdopen(fd, "wb")

    async def write(self, parts):
        if self._file is None:
            self.path, self._file = await self.pool.run(self._create)
        await self.pool.run(self._file.writelines, parts)
        self.size += sum(len(part) for part in parts)

    async def finish(self):
        if self._file is None:
            self.path, self._file = await self.pool.run(self._create)
        await self.pool.run(self._file.close)

    def abort(self):
        """Stop writing and remove the file."""
        stream, self._file = self._file, None
        path, self.path = self.path, None
        if path is not None:
            self.pool.run(_close_and_remove, stream, path).addErrback(
                lambda failure: log.failure("Cannot remove {path}", failure, path=path))

    def remove(self):
        """The archive is no longer wanted (blocking)."""
        path, self.path = self.path, None
        if path is not None:
            _close_and_remove(None, path)


def _close_and_remove(stream, path):
    if stream is not None:
        stream.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
