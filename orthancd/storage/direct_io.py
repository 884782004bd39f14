"""New files written with direct I/O (O_DIRECT): the bytes go from an
aligned buffer to the disk, not through the page cache.

Why: every file the storage area writes is made durable before the upload
is acknowledged, so its bytes must reach the disk before the answer either
way.  Through the page cache that costs the CPU to populate fresh pages
(1-2 ms per 513 KiB here, where fresh pages are expensive), the kernel's
write-back later, and a longer ``syncfs`` on the answer's path; written
directly it costs a copy into a buffer that stays resident and the device
transfer, during which the thread sleeps and the GIL is free.  Measured on
this project's VM (513 KiB files): 0.6 ms of CPU instead of 0.9-2.2 ms, and
the ``syncfs`` that follows 0.02 ms per file instead of 0.35 ms.

Files are written in chunks of the buffer's size; the last one is padded to
the alignment and the file is then truncated to its size.

Files received piece by piece (C-STORE, uploads above 4 MiB) are not written
this way: their parse reads the header back, from the disk then, and their
bytes reach the page cache while the rest is still being received.  With
direct I/O, C-STORE of 513 KiB instances with storescu was 20-30% slower
(and used more CPU) on this VM.

The storage area opens its spare files for such writes with O_DIRECT
already (``opens_directly``), so that no flag changes while an upload is
prepared.  Where direct I/O is refused (some file systems: EINVAL),
``from_descriptor`` returns None and the caller writes through the page
cache; if a write is refused, the file goes on through the page cache.
"""
import errno
import fcntl
import mmap
import os
import threading

from orthancd.storage.temporary_files import new_temporary_path

ALIGNMENT = 4096  # covers 512-byte and 4 KiB logical sectors
BUFFER_SIZE = 1 << 20
# Smaller files go through the page cache: a few pages cost little there,
# and a direct write makes the writing thread wait for the device.  Measured
# with small instances (8 kB) at c=4: 315 uploads/s written directly against
# 400/s through the page cache.
SMALLEST_FILE = 128 * 1024
_KEPT_BUFFERS = 8  # idle buffers kept for reuse (resident: 8 MiB at most)
_ZEROS = bytes(ALIGNMENT)

O_DIRECT = getattr(os, "O_DIRECT", 0)
_free_buffers = []
_buffers_lock = threading.Lock()
# Folders where direct I/O was refused once (their file system does not
# take it): the next files there go through the page cache at once.
_refused = set()


def _take_buffer():
    with _buffers_lock:
        if _free_buffers:
            return _free_buffers.pop()
    return mmap.mmap(-1, BUFFER_SIZE)


def _give_back(buffer):
    with _buffers_lock:
        if len(_free_buffers) < _KEPT_BUFFERS:
            _free_buffers.append(buffer)
            return
    buffer.close()


def available(directory):
    return bool(O_DIRECT) and directory not in _refused


def refuse(directory):
    """Direct I/O was refused in ``directory``: not tried there again."""
    _refused.add(directory)


def opens_directly(directory):
    """Whether new files of ``directory`` can be opened with O_DIRECT: then
    they can be made ahead of need with it (``O_DIRECT``, for the storage's
    spare files), and ``from_descriptor`` has no flags to change."""
    if not available(directory):
        return False
    path = new_temporary_path(directory, "probe-")
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | O_DIRECT, 0o600))
    except OSError as e:
        if e.errno == errno.EINVAL:
            refuse(directory)
        # Else (a full disk, say) files are opened as they come, as spares
        # are when they cannot be made ahead.
        return False
    try:
        os.unlink(path)
    except OSError:
        pass  # the temporary folder is emptied at the next start
    return True


def from_descriptor(fd, path, opened_direct=False):
    """A DirectFile writing the new, empty file ``path`` open as ``fd``
    (its flags changed to direct I/O, unless ``opened_direct``: it was
    opened with O_DIRECT), or None when direct I/O cannot be used there
    (the descriptor is then without O_DIRECT)."""
    directory = os.path.dirname(path)
    if not available(directory):
        if opened_direct:
            _without_direct_io(fd)
        return None
    if opened_direct:
        # Each system call while an upload is prepared lets another thread
        # take the GIL, which this one must then wait for.  Two fewer here
        # (and one fewer per new storage folder): 630 -> 639 uploads/s of
        # 513 KiB at 4 clients, 391 -> 405/s at 1 (issue #10, runs
        # alternated).
        return DirectFile(fd, directory)
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | O_DIRECT)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        refuse(directory)
        return None
    return DirectFile(fd, directory)


def _without_direct_io(fd):
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~O_DIRECT)


class DirectFile:
    """A binary file being written from its start: ``write`` as many times
    as needed, then ``flush`` (writes what is buffered: the file is then
    complete; no write may follow) and ``close``."""

    def __init__(self, fd, directory):
        self._fd = fd
        self._directory = directory
        self._buffer = _take_buffer()
        self._used = 0  # bytes in the buffer
        self._size = 0  # bytes of the file
        self._direct = True
        self._flushed = False

    def fileno(self):
        return self._fd

    def write(self, data):
        if self._flushed:
            raise ValueError("write after flush")
        view = memoryview(data).cast("B")
        length = len(view)
        offset = 0
        while offset < length:
            room = BUFFER_SIZE - self._used
            count = min(room, length - offset)
            self._buffer[self._used:self._used + count] = view[offset:offset + count]
            self._used += count
            offset += count
            if self._used == BUFFER_SIZE:
                self._write_buffer(BUFFER_SIZE)
        self._size += length
        return length

    def flush(self):
        if self._flushed:
            return
        self._flushed = True
        used = self._used
        if not used:
            return
        padded = -(-used // ALIGNMENT) * ALIGNMENT
        if self._direct and padded != used:
            self._buffer[used:padded] = _ZEROS[:padded - used]
            self._write_buffer(padded)
            os.ftruncate(self._fd, self._size)
        else:
            self._write_buffer(used)

    def close(self):
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            fd, self._fd = self._fd, None
            _give_back(self._buffer)
            self._buffer = None
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _write_buffer(self, count):
        view = memoryview(self._buffer)
        try:
            done = 0
            while done < count:
                try:
                    done += os.write(self._fd, view[done:count])
                except OSError as e:
                    if e.errno != errno.EINVAL or not self._direct or done % ALIGNMENT:
                        raise
                    self._through_page_cache()
                    if count != self._used:  # the padding goes: the file has its size
                        count = self._used
        finally:
            view.release()
        self._used = 0

    def _through_page_cache(self):
        """This file system refused an aligned direct write: no more."""
        refuse(self._directory)
        _without_direct_io(self._fd)
        self._direct = False
