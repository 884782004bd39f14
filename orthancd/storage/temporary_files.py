"""The files of the storage's temporary folder: their names, and empty
files created ahead of need.

Every upload and every C-STORE creates a file there before it is renamed
into place.  Creating a file allocates an inode: on the machine the figures
of issue #10 come from (ext4), 0.3-0.4 ms of system time on the path of each
answer, in the thread that writes the file.  ``SpareFiles`` keeps a few
empty files created in the background, in the file I/O pool, and hands one
out: as it is (``take``: the REST bodies written at once), or under the name
asked for (``create``: a rename within the folder, about 12 µs, for the
receptions that named their file before it existed).  Each rename out of the
folder waits for a creation in it (the folder's lock), hence ``take``.
With all spares taken (a burst), files are created as before.

Spares carry names of their own (``spare-``...).  A crash leaves them in the
temporary folder, which the storage area empties at start-up.
"""
import collections
import itertools
import os
import threading
import uuid

from orthancd.logs import logger

log = logger(__name__)

# Uploads and C-STOREs in flight at once, and then some: each takes one.
SPARE_FILES = 16
# The names of spares begin so.
SPARE_PREFIX = "spare-"

_names = itertools.count()
_name_base = None  # this process's random part (drawn again in a forked child)


def _forget_name_base():
    global _name_base
    _name_base = None


os.register_at_fork(after_in_child=_forget_name_base)


def new_temporary_path(directory, prefix="", suffix=""):
    """A path no file has in ``directory``, made without a system call: a
    random part drawn once per process and a counter (the file is created
    with O_EXCL where it is written, so a clash would fail, not overwrite)."""
    global _name_base
    if _name_base is None:
        _name_base = uuid.uuid4().hex
    return os.path.join(directory, "%s%s-%x%s" % (prefix, _name_base, next(_names), suffix))


_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def create_file(path, flags=0):
    """A new empty file ``path``, open for reading and writing (and with
    ``flags``): its descriptor."""
    return os.open(path, _FLAGS | flags, 0o600)


class SpareFiles:
    """``take()`` and ``create(path)`` give new empty files in ``directory``,
    open for reading and writing, from the spares when there are.  ``background``
    (``callInThread`` of the file I/O pool) refills them once half are
    taken; without it no spare is made.  ``flags``: more flags they are opened with (O_DIRECT
    for the files written with direct I/O: orthancd.storage.direct_io)."""

    def __init__(self, directory, background=None, count=SPARE_FILES, flags=0):
        self._directory = directory
        self._background = background
        self._count = count
        self._flags = flags
        self._spares = collections.deque()  # (descriptor, path)
        self._lock = threading.Lock()
        self._refilling = False
        self._closed = True

    def open(self, now=True):
        """Once the folder exists and is empty: make the first spares, in
        the caller's thread (at start-up), or in the background when not
        ``now``."""
        with self._lock:
            self._closed = False
            self._refilling = self._background is not None
        if self._background is not None:
            if now:
                self._refill()
            else:
                self._background(self._refill)

    def close(self):
        """Remove the spares left; files are then created on demand."""
        with self._lock:
            self._closed = True
            spares, self._spares = self._spares, collections.deque()
        for fd, path in spares:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass

    def __len__(self):
        return len(self._spares)

    def take(self):
        """A new empty file of the folder, open for reading and writing:
        (descriptor, path), a spare when there is one (no rename: the file
        keeps the spare's name)."""
        spare = self._pop()
        if spare is not None:
            return spare
        path = new_temporary_path(self._directory)
        return create_file(path, self._flags), path

    def create(self, path):
        """The new empty file ``path`` of the folder, open for reading and
        writing: its descriptor, a spare renamed when there is one."""
        spare = self._pop()
        if spare is not None:
            fd, spare_path = spare
            try:
                # Names are unique (new_temporary_path): nothing is replaced.
                os.rename(spare_path, path)
                return fd
            except OSError:
                os.close(fd)
                try:
                    os.unlink(spare_path)
                except OSError:
                    pass
        return create_file(path, self._flags)

    def _pop(self):
        with self._lock:
            spare = self._spares.popleft() if self._spares else None
            # Refilled once half are taken, not after each: a job of the
            # file pool, woken while uploads are prepared, takes the GIL
            # from them.  Measured with 1.5 KiB instances at 4 clients
            # (issue #10, runs alternated): 986-999 -> 1,030-1,060
            # uploads/s; 513 KiB instances unchanged (662 -> 665/s).
            refill = (not self._refilling and not self._closed
                      and self._background is not None
                      and len(self._spares) <= self._count // 2)
            if refill:
                self._refilling = True
        if refill:
            self._background(self._refill)
        return spare

    def _refill(self):
        """(In the file I/O pool.)  Create spares up to the count."""
        try:
            while True:
                with self._lock:
                    if self._closed or len(self._spares) >= self._count:
                        return
                path = new_temporary_path(self._directory, SPARE_PREFIX)
                fd = create_file(path, self._flags)
                with self._lock:
                    if not self._closed:
                        self._spares.append((fd, path))
                        continue
                os.close(fd)
                os.unlink(path)
                return
        except OSError as e:
            # A full disk, a folder gone: files are created on demand.
            log.warn("Cannot create spare temporary files: {error}", error=e)
        finally:
            with self._lock:
                self._refilling = False
