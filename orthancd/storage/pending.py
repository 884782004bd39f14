"""The record of pending files: written to the storage area, not yet
referenced by a committed index transaction.

It is one append-only journal per storage area (``pending/journal``): a line
``+<uuid>\\t<owner>`` when a file is about to appear, ``-<uuid>`` once the
index references it or it is removed.  The journal lies on the same file
system as the files, so the group commit's ``syncfs`` makes a mark durable
together with the file it announces; after a crash, the start-up check reads
the journal's live marks instead of listing the storage.

Why a journal and not one entry per file (a symbolic link, created then
removed, as earlier versions did): on ext4 without a journal, every inode
freed in the last minute is skipped, one by one, by the next inode
allocations of its group.  A link freed per upload made each new file's
allocation walk the links of the last minute: it cost more CPU than the
upload's hashing at a few hundred uploads per second.  Appending a line
allocates nothing.

The journal is rewritten with its live marks only (usually none) once it
outgrows ``COMPACT_AT``.  Marks left as symbolic links by an earlier version
are still read, and removed with the journal's at start-up.
"""
import os
import threading

from orthancd.storage.fsync import fsync_directory

JOURNAL = "journal"
COMPLETE = ".complete"  # the pending record lists every pending file
UNKNOWN_OWNER = "?"


def parse_journal(data):
    """{uuid: owner or None} of the live marks of journal bytes.  A torn
    last line (a crash in the middle of an append) is ignored."""
    live = {}
    for line in data.split(b"\n")[:-1]:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text.startswith("+"):
            uuid, _, owner = text[1:].partition("\t")
            live[uuid] = None if owner in ("", UNKNOWN_OWNER) else owner
        elif text.startswith("-"):
            live.pop(text[1:], None)
    return live


class PendingJournal:
    """The pending marks of one storage area.  Thread-safe: marks come from
    the file pool's threads, settlements from the index writer's."""

    COMPACT_AT = 4 << 20  # bytes: about 30,000 uploads between rewrites

    def __init__(self, folder, fsync=True):
        self.folder = folder
        self.path = os.path.join(folder, JOURNAL)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._live = {}
        self._legacy = set()  # marks of an earlier version: symbolic links
        self._fd = None
        self._size = 0

    # -- start-up --

    def open(self):
        """Read what a previous run left; returns whether the record is
        complete (a full sweep was done once on this storage)."""
        os.makedirs(self.folder, exist_ok=True)
        for name in os.listdir(self.folder):
            if name in (JOURNAL, COMPLETE) or name.startswith(JOURNAL + "."):
                continue
            full = os.path.join(self.folder, name)
            if os.path.islink(full):
                self._legacy.add(name)
                self._live[name] = self._legacy_owner(full)
        try:
            with open(self.path, "rb") as f:
                self._live.update(parse_journal(f.read()))
        except FileNotFoundError:
            pass
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        return os.path.exists(os.path.join(self.folder, COMPLETE))

    @staticmethod
    def _legacy_owner(path):
        try:
            owner = os.readlink(path)
        except OSError:
            return None
        return None if owner == UNKNOWN_OWNER else owner

    def entries(self):
        """(uuid, owner or None) of every live mark."""
        with self._lock:
            return list(self._live.items())

    def forget(self, uuids):
        """The start-up check dealt with these marks."""
        with self._lock:
            for uuid in uuids:
                self._live.pop(uuid, None)
                if uuid in self._legacy:
                    self._legacy.discard(uuid)
                    try:
                        os.unlink(os.path.join(self.folder, uuid))
                    except FileNotFoundError:
                        pass
            self._rewrite()

    def record_complete(self):
        with open(os.path.join(self.folder, COMPLETE), "wb"):
            pass
        if self._fsync:
            fsync_directory(self.folder)

    # -- while running --

    def mark(self, uuid, owner):
        with self._lock:
            if uuid in self._live:
                return  # the same bytes are being stored for the same owner
            self._live[uuid] = owner
            self._append("+%s\t%s\n" % (uuid, owner or UNKNOWN_OWNER))

    def unmark(self, *uuids):
        """The files of ``uuids`` are referenced or removed: one append for
        them all (a group commit settles its files together, while the
        reactor sends their answers)."""
        with self._lock:
            lines = ["-%s\n" % uuid for uuid in uuids if self._live.pop(uuid, False) is not False]
            if not lines:
                return
            self._append("".join(lines))
            if self._size >= self.COMPACT_AT:
                self._rewrite()

    def sync(self):
        """Make the marks durable (where the storage cannot syncfs)."""
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)

    def close(self):
        with self._lock:
            if self._fd is None:
                return
            if not self._live and self._size:
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    # -- internals (the lock held) --

    def _append(self, line):
        if self._fd is None:
            return  # closed: the server stops (a file still being written is an orphan)
        data = line.encode("utf-8")
        os.write(self._fd, data)
        self._size += len(data)

    def _rewrite(self):
        """The journal becomes its live marks: a new file renamed over it,
        so that a crash leaves either the old journal or the new one."""
        data = "".join("+%s\t%s\n" % (uuid, owner or UNKNOWN_OWNER)
                       for uuid, owner in self._live.items() if uuid not in self._legacy)
        data = data.encode("utf-8")
        if not data and self._size == 0:
            return
        fresh = self.path + ".new"
        fd = os.open(fresh, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            if self._fsync:
                os.fsync(fd)
            os.rename(fresh, self.path)
        except BaseException:
            os.close(fd)
            raise
        if self._fsync:
            fsync_directory(self.folder)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._size = len(data)
