"""Content-addressed attachment files under StorageDirectory.

A file's UUID is derived from the SHA-256 of its bytes, so the same content
always lands at the same path and a retried write is harmless.  The layout is
Orthanc's (``ab/cd/abcd....``), so existing tooling that walks the folder still
understands it.  Files are written to a temporary name and renamed into place;
``make_durable`` then flushes a whole group of them at once (one ``syncfs`` of
the storage file system instead of an fsync per file and per folder), which
is what lets ingest throughput grow with concurrency.

Files received from the network are written and hashed as they arrive in
``temporary_directory()`` (same file system) and ``adopt`` merely renames them
into place: the bytes are never read back nor copied.

With StorageCompression (or /compress) a file is stored in Orthanc's zlib
format (orthancd.storage.compression) under its UUID plus ".zlib"; the
compressed form of some content has a UUID of its own (``compressed_uuid``).
``read`` and ``open`` find either form and decompress, so readers never ask.

Pending files (written, their index commit not yet done) are marked in the
storage's pending journal (orthancd.storage.pending) before the file
appears, and unmarked once the index references it (``settle``) or the file
is removed.  After a crash the start-up check reads the journal's live marks
instead of listing the whole storage.
"""
import ctypes
import errno
import hashlib
import mmap
import os
import collections
import shutil
import threading

from orthancd.storage import compression, direct_io
from orthancd.storage.area import ContentCorrupted, StorageArea, StoredFile, hash_stream
from orthancd.storage.digests import digests_of, uuid_from_sha256
from orthancd.storage.fsync import fsync_directory
from orthancd.storage.pending import PendingJournal
from orthancd.storage.temporary_files import SpareFiles


def _unlink_quietly(path):
    """Remove a temporary file of ours that may be gone already."""
    try:
        os.unlink(path)
    except OSError:
        pass


class _Outcome:
    """The result of a function run in another thread, or what it raised,
    waited for by the thread that needs it."""

    def __init__(self):
        self._done = threading.Event()
        self._result = None
        self._error = None

    def run(self, function, *args):
        try:
            self._result = function(*args)
        except BaseException as e:
            self._error = e
        finally:
            self._done.set()

    def wait(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._result


def content_uuid(data, salt=b""):
    """A UUID-shaped name for ``data``: the first 128 bits of its SHA-256."""
    digest = hashlib.sha256(salt)
    digest.update(data)
    return uuid_from_sha256(digest.hexdigest())


def compressed_uuid(uuid):
    """The name of the compressed form of the content named ``uuid``: never
    the name of any uncompressed content, so that both forms of the same
    bytes can live side by side (StorageCompression switched on later,
    /compress)."""
    return uuid_from_sha256(hashlib.sha256(b"zlib/" + uuid.encode("ascii")).hexdigest())


def digests_of_file(path):
    """ContentDigests of a file, hashed from its mapping (no copy)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return digests_of(b"")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return digests_of(data)


def _load_syncfs():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    return syncfs


_syncfs = _load_syncfs()


def _load_sync_file_range():
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return function


_sync_file_range = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


# A file smaller than this is left to the group commit's syncfs: a few pages
# are written as fast there, and each system call while an upload is
# prepared lets another thread take the GIL.  Measured with instances of
# 1.5 KiB (issue #10, runs alternated): 4 clients 965-979 -> 990-1,012
# uploads/s; 1 client 598 -> 605/s.
SMALLEST_WRITEBACK = 64 * 1024


def start_writeback(fd, size=None):
    """Ask the kernel to start writing a just-written file of ``size``
    bytes (None: unknown) out, without waiting: by the time the group
    commit's syncfs runs, most of the data is on its way and the syncfs (on
    the answer's critical path) is shorter.  Durability still comes from
    make_durable only."""
    if _sync_file_range is not None and (size is None or size >= SMALLEST_WRITEBACK):
        _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


# A compressed file (Orthanc's zlib format, orthancd.storage.compression)
# carries this suffix: reading it by its UUID decompresses it.
COMPRESSED_SUFFIX = ".zlib"


class FilesystemStorageArea(StorageArea):

    def __init__(self, root, fsync=True, compression=False, store_md5=True, background=None,
                 write_beside=None):
        """``compression``: whether new files are compressed unless the
        caller says otherwise (StorageCompression); ``store_md5``: whether
        the StoredFiles carry MD5s (StoreMD5ForAttachments: Orthanc leaves
        them empty otherwise): those of content written uncompressed are
        left to be derived when asked (None: orthancd.storage.checksums), a
        compressed file gets those its compression can compute;
        ``background``: ``callInThread`` of the file I/O pool, where spare
        temporary files are made (SpareFiles); ``write_beside``:
        ``callInThread`` of the pool where ``store(..., beside=True)``
        writes the bytes while the caller hashes them (its jobs never wait
        for anything)."""
        self.root = os.path.abspath(root)
        self._fsync = fsync
        self.compression = compression
        self._store_md5 = store_md5
        self._tmp = os.path.join(self.root, "tmp")
        self._background = background
        self._spare_files = SpareFiles(self._tmp, background)
        # Spares opened with O_DIRECT, for the files written directly (see
        # _direct_spare_files).
        self._direct_spares = None
        self._write_beside = write_beside
        self._pending = PendingJournal(os.path.join(self.root, "pending"), fsync)
        self._pending_known = True
        self._known_dirs = set()
        # Files handed out by store/adopt and not yet released: an index
        # commit is about to reference them.  Content addressing means a
        # deletion of identical bytes may race with that; pinned files win.
        self._pins = collections.Counter()
        self._pins_lock = threading.Lock()

    def prepare(self):
        os.makedirs(self._tmp, exist_ok=True)
        # Leftovers from a crash mid-write are never referenced by the index.
        for name in os.listdir(self._tmp):
            try:
                os.unlink(os.path.join(self._tmp, name))
            except OSError:
                pass
        self._spare_files.open()
        self._direct_spares = self._direct_spare_files()
        # Without its mark (a new storage, or one written by an older
        # orthancd), the pending record may miss files: one full sweep first.
        self._pending_known = self._pending.open()

    def _direct_spare_files(self):
        """Spare files opened with O_DIRECT where files are written
        directly (``_direct_write``), so that their flags need not change
        while an upload is prepared; None elsewhere.  Made in the
        background: not on the way to the first answer."""
        if not self._fsync or not direct_io.opens_directly(self._tmp):
            return None
        spares = SpareFiles(self._tmp, self._background, flags=direct_io.O_DIRECT)
        spares.open(now=False)
        return spares

    def close(self):
        self._spare_files.close()
        if self._direct_spares is not None:
            self._direct_spares.close()
        self._pending.close()

    def _mark_pending(self, uuid, owner):
        self._pending.mark(uuid, owner)

    def _unmark_pending(self, *uuids):
        self._pending.unmark(*uuids)

    def settle(self, files):
        self._unmark_pending(*(info.uuid for info in files))

    def pending(self):
        if not self._pending_known:
            return None
        return self._pending.entries()

    def forget_pending(self, uuids):
        self._pending.forget(uuids)

    def full_sweep_done(self):
        self._pending.record_complete()
        self._pending_known = True

    def _pin(self, uuid):
        with self._pins_lock:
            self._pins[uuid] += 1

    def release(self, uuid):
        with self._pins_lock:
            self._pins[uuid] -= 1
            if self._pins[uuid] <= 0:
                del self._pins[uuid]

    def path(self, uuid):
        """Where the uncompressed file ``uuid`` lies (a compressed one lies
        there under COMPRESSED_SUFFIX)."""
        return os.path.join(self.root, uuid[0:2], uuid[2:4], uuid)

    def stored_path(self, info):
        """Where the StoredFile ``info`` lies, as stored."""
        path = self.path(info.uuid)
        return path + COMPRESSED_SUFFIX if info.compressed else path

    def temporary_directory(self):
        """A folder on the same file system, for data streamed in before it is stored."""
        return self._tmp

    def create_temporary_file(self, path):
        """The new empty file ``path`` of the temporary folder (a name of
        temporary_files.new_temporary_path), open for reading and writing: its
        descriptor.  Made ahead of need when possible (SpareFiles)."""
        return self._spare_files.create(path)

    def _target(self, uuid, compressed=False):
        """The path of ``uuid``, its folders created."""
        return self._target_in_folder(uuid, compressed)[0]

    def _target_in_folder(self, uuid, compressed=False):
        """(the path of ``uuid``, whether its folder was just created: the
        file cannot be there yet)."""
        target = self.path(uuid)
        folder = os.path.dirname(target)
        created = False
        if folder not in self._known_dirs:
            # Most often its parent is there: one system call then (each
            # lets another thread take the GIL, to be waited for).
            try:
                os.mkdir(folder)
                created = True
            except FileExistsError:
                pass
            except FileNotFoundError:
                os.makedirs(folder, exist_ok=True)
                created = True
            self._known_dirs.add(folder)
        return (target + COMPRESSED_SUFFIX if compressed else target), created

    @staticmethod
    def _already_stored(target, size):
        try:
            return os.path.getsize(target) == size
        except OSError:
            return False

    def _stored_file(self, uuid, size, md5, uncompressed_size, uncompressed_md5, compressed):
        if not self._store_md5:
            md5 = uncompressed_md5 = ""
        return StoredFile(uuid, size, md5, uncompressed_size, uncompressed_md5, compressed)

    def store(self, data, salt=b"", owner=None, compress=None, digests=None, beside=False):
        """``compress``: store the compressed form (None: as the area's
        ``compression`` says); ``beside``: write the bytes in the
        ``write_beside`` pool while this thread computes their name (see
        _store_written_beside)."""
        compress = compress if compress is not None else self.compression
        if digests is not None and not salt and not compress:
            info, stored_bytes = self._stored_file_of(digests), data
        elif (beside and self._write_beside is not None and not compress
                and self._direct_write(len(data))):
            return self._store_written_beside(data, salt, owner)
        elif compress:
            stored_bytes = compression.compress(data)
            info = self._stored_file(compressed_uuid(content_uuid(data, salt)),
                                     len(stored_bytes), hashlib.md5(stored_bytes).hexdigest(),
                                     len(data), hashlib.md5(data).hexdigest(), True)
        else:
            stored_bytes = data
            info = self._stored_file(content_uuid(data, salt), len(data), None, len(data),
                                     None, False)
        self._place(info, owner, len(stored_bytes), lambda target: self._write_into_place(
            target, lambda f: f.write(stored_bytes), len(stored_bytes)))
        return info

    def _place(self, info, owner, size, place):
        """Put the file of the StoredFile ``info`` (``size`` bytes on disk)
        in place with ``place(target path)``, marked pending first, unless
        the same content is there already; either way it stays pinned until
        released.  Returns whether it was placed."""
        target, new_folder = self._target_in_folder(info.uuid, info.compressed)
        self._pin(info.uuid)  # before looking: a removal can no longer slip in
        # (The same bytes stored at once by another thread, into the folder
        # this one just made, would be renamed over identical bytes.)
        if not new_folder and self._already_stored(target, size):
            return False
        try:
            self._mark_pending(info.uuid, owner)
            place(target)
        except BaseException:
            self.release(info.uuid)
            raise
        return True

    def _stored_file_of(self, digests):
        """The StoredFile of uncompressed content of these ContentDigests
        (its MD5 to be derived when asked)."""
        return self._stored_file(digests.uuid, digests.size, None, digests.size, None, False)

    def adopt(self, path, digests=None, owner=None, compress=None):
        if digests is None:
            digests = digests_of_file(path)
        if compress if compress is not None else self.compression:
            return self._adopt_compressed(path, digests, owner)
        info = self._stored_file_of(digests)
        target = self._target(digests.uuid)
        self._pin(digests.uuid)
        try:
            if self._already_stored(target, digests.size):
                os.unlink(path)  # same content already there
                return info
            self._mark_pending(digests.uuid, owner)
            try:
                os.rename(path, target)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                self._copy_into_place(path, target)
                os.unlink(path)
        except BaseException:
            self.release(digests.uuid)
            raise
        return info

    def _adopt_compressed(self, path, digests, owner):
        """The received file is compressed into its place, then goes."""
        uuid = compressed_uuid(digests.uuid)
        target = self._target(uuid, True)
        self._pin(uuid)
        try:
            self._mark_pending(uuid, owner)
            outcome = {}

            def write(destination):
                with open(path, "rb") as source:
                    outcome["stored"] = compression.compress_file(source, destination,
                                                                  digests.size)
            self._write_into_place(target, write, digests.size)
            os.unlink(path)
        except BaseException:
            self.release(uuid)
            raise
        size, md5, content_md5 = outcome["stored"]
        return self._stored_file(uuid, size, md5, digests.size, content_md5, True)

    def _copy_into_place(self, path, target):
        """``path`` lies on another file system: copy, then rename."""
        def copy(destination):
            with open(path, "rb") as source:
                shutil.copyfileobj(source, destination, 1 << 20)
        self._write_into_place(target, copy)

    def _direct_write(self, size):
        """Whether a new file of ``size`` bytes is written with direct I/O
        (orthancd.storage.direct_io): when files are made durable and it is
        large, since its bytes must reach the disk before the answer anyway."""
        return self._fsync and size is not None and size >= direct_io.SMALLEST_FILE

    def _store_written_beside(self, data, salt, owner):
        """``store`` of uncompressed bytes: they are written to a temporary
        file in the ``write_beside`` pool while this thread computes their
        name (SHA-256, 0.4 ms for 513 KiB), then the file is renamed into
        place.  The write (about 0.5 ms of waiting for the device) and the
        hash overlap: an upload alone is answered sooner.  Under load the
        ingest path does not ask for it: both cores are busy anyway."""
        written = _Outcome()
        self._write_beside(written.run, self._write_temporary,
                           lambda f: f.write(data), len(data))
        try:
            uuid = content_uuid(data, salt)
        except BaseException:
            try:
                _unlink_quietly(written.wait())
            except BaseException:
                pass  # the write failed too: it left nothing
            raise
        tmp = written.wait()  # raises what the write raised
        info = self._stored_file(uuid, len(data), None, len(data), None, False)
        try:
            if not self._place(info, owner, len(data), lambda target: os.rename(tmp, target)):
                _unlink_quietly(tmp)  # same content already there
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return info

    def _write_temporary(self, write, size=None):
        """``write(file)`` into a new temporary file, whose path is returned
        (removed again if the writing fails); written with direct I/O when
        ``_direct_write(size)``."""
        direct_write = self._direct_write(size)
        fd, tmp, opened_direct = self._new_temporary(direct_write)
        try:
            direct = None
            if direct_write:
                try:
                    direct = direct_io.from_descriptor(fd, tmp, opened_direct)
                except BaseException:
                    os.close(fd)
                    raise
            if direct is not None:
                with direct:
                    write(direct)
            else:
                with os.fdopen(fd, "wb") as f:
                    write(f)
                    if self._fsync:
                        f.flush()
                        start_writeback(f.fileno(), size)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return tmp

    def _new_temporary(self, direct_write):
        """(descriptor, path, whether opened with O_DIRECT) of a new empty
        temporary file: a direct spare for a file written directly."""
        if direct_write and self._direct_spares is not None and direct_io.available(self._tmp):
            try:
                return self._direct_spares.take() + (True,)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                # Not made ahead, and O_DIRECT refused now: as from_descriptor does.
                direct_io.refuse(self._tmp)
        return self._spare_files.take() + (False,)

    def _write_into_place(self, target, write, size=None):
        """``write(file)`` into a temporary file, then rename it to ``target``:
        a reader never sees a partial file under a content address."""
        tmp = self._write_temporary(write, size)
        try:
            os.rename(tmp, target)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def durable_with(self, directory):
        # One syncfs covers the whole file system, when the system has it
        # (make_durable then never falls back to a sync per file).
        if not self._fsync or not self._syncfs_works():
            return False
        try:
            return os.stat(directory).st_dev == os.stat(self.root).st_dev
        except OSError:
            return False

    def _syncfs_works(self):
        if _syncfs is None:
            return False
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return _syncfs(fd) == 0
        finally:
            os.close(fd)

    def holds(self, info, salts=(b"",)):
        # The size first (a file cut short is the likely damage), then the
        # content against the name it was stored under.
        if not self._already_stored(self.stored_path(info), info.size):
            return False
        try:
            self.derive_md5s(info, salts)
        except (OSError, ContentCorrupted):
            return False
        return True

    def make_durable(self, files):
        if not self._fsync or not files:
            return
        if _syncfs is not None:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _syncfs(fd) == 0:
                    return
                error = ctypes.get_errno()
            finally:
                os.close(fd)
            # Refused (a sandbox without it): each file instead.  Failed:
            # the files (and the index, see durable_with) may not be on
            # the disk.
            if error not in (errno.ENOSYS, errno.EPERM):
                raise OSError(error, "syncfs: " + os.strerror(error))
        # No syncfs: each file, then each folder level that may hold a new entry.
        folders = set()
        for info in files:
            path = self.stored_path(info)
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            folders.update((os.path.dirname(path), os.path.dirname(os.path.dirname(path))))
        self._pending.sync()
        folders.add(self.root)
        for folder in folders:
            fsync_directory(folder)

    def _open_stored(self, uuid):
        """(open file, compressed?) of ``uuid`` as stored."""
        path = self.path(uuid)
        try:
            return open(path, "rb"), False
        except FileNotFoundError:
            return open(path + COMPRESSED_SUFFIX, "rb"), True

    def derive_md5s(self, info, salts=(b"",)):
        """See StorageArea.  The content is checked against the file's name,
        the SHA-256 of the content (after one of ``salts``) that was stored
        (of its compressed form's name for a compressed file): a file that
        changed on the disk is not given MD5s of what it holds now."""
        with self.open_stored(info.uuid) as f:
            md5 = hashlib.md5()
            if info.compressed:
                hash_stream(f, md5)
                content_md5 = hashlib.md5()
                names = [hashlib.sha256(salt) for salt in salts]
                with self.open(info.uuid) as content:
                    hash_stream(content, content_md5, *names)
            else:
                names = [hashlib.sha256(salt) for salt in salts]
                hash_stream(f, md5, *names)
                content_md5 = md5
        for name in names:
            uuid = uuid_from_sha256(name.hexdigest())
            if (compressed_uuid(uuid) if info.compressed else uuid) == info.uuid:
                return md5.hexdigest(), content_md5.hexdigest()
        raise ContentCorrupted("The stored file %s does not hold the content it was stored with"
                               % info.uuid)

    def read(self, uuid):
        f, compressed = self._open_stored(uuid)
        with f:
            data = f.read()
        return compression.decompress(data) if compressed else data

    def open(self, uuid):
        f, compressed = self._open_stored(uuid)
        return compression.open_decompressed(f) if compressed else f

    def read_stored(self, uuid):
        """The bytes of ``uuid`` as stored (compressed when the file is)."""
        f, _ = self._open_stored(uuid)
        with f:
            return f.read()

    def open_stored(self, uuid):
        """A binary file of the bytes of ``uuid`` as stored."""
        return self._open_stored(uuid)[0]

    def remove(self, uuid):
        with self._pins_lock:
            if uuid in self._pins:
                return False  # an upload of the same bytes is about to be indexed
            path = self.path(uuid)
            for name in (path, path + COMPRESSED_SUFFIX):
                try:
                    os.unlink(name)
                except FileNotFoundError:
                    pass
            self._unmark_pending(uuid)
        return True

    def exists(self, uuid):
        path = self.path(uuid)
        return os.path.exists(path) or os.path.exists(path + COMPRESSED_SUFFIX)

    def list_uuids(self):
        for a in os.listdir(self.root):
            if len(a) != 2:
                continue
            for b in os.listdir(os.path.join(self.root, a)):
                for name in os.listdir(os.path.join(self.root, a, b)):
                    if name.endswith(COMPRESSED_SUFFIX):
                        name = name[:-len(COMPRESSED_SUFFIX)]
                    yield name
