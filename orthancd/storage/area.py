"""The StorageArea interface: where attachment bytes live.

The index only records a FileUuid per attachment; a StorageArea turns that
UUID into bytes.  The filesystem implementation is the default; an object
store can stand behind the same interface later.

A file may be stored compressed (StorageCompression, /compress): ``read``
and ``open`` always hand out the content itself, decompressed, so that no
reader has to care; ``read_stored`` and ``open_stored`` give the bytes as
stored (/compressed-data, verify-md5).
"""
import abc
import dataclasses
import hashlib
import os


@dataclasses.dataclass(frozen=True)
class StoredFile:
    """What the index records about one stored attachment.

    An MD5 is None until it is known: the storage area does not compute the
    MD5 of content it writes uncompressed (its SHA-256 names the file
    already); the first reader derives it (orthancd.storage.checksums) and
    the index records it.  "" means that no MD5 is kept at all
    (StoreMD5ForAttachments false), as Orthanc records them."""
    uuid: str
    size: int            # bytes on disk
    md5: str             # hex MD5 of the bytes on disk (None: not known yet)
    uncompressed_size: int
    uncompressed_md5: str  # hex MD5 of the content (None: not known yet)
    compressed: bool = False

    @property
    def md5_pending(self):
        """Whether an MD5 is still to be derived from the content."""
        return self.md5 is None or self.uncompressed_md5 is None

    def with_md5s(self, md5, uncompressed_md5):
        return dataclasses.replace(self, md5=md5, uncompressed_md5=uncompressed_md5)

    def to_record(self):
        return {"uuid": self.uuid, "size": self.size, "md5": self.md5,
                "usize": self.uncompressed_size, "umd5": self.uncompressed_md5,
                "compressed": self.compressed}

    @classmethod
    def from_record(cls, record):
        return cls(record["uuid"], record["size"], record["md5"],
                   record["usize"], record["umd5"], record.get("compressed", False))


def hash_stream(f, *hashes, chunk=1 << 20):
    """Feed every hash in ``hashes`` with the rest of the binary file ``f``,
    a piece at a time; returns them."""
    while True:
        piece = f.read(chunk)
        if not piece:
            return hashes
        for h in hashes:
            h.update(piece)


class StorageError(Exception):
    """The storage area could not write or read a file."""


class ContentCorrupted(StorageError):
    """A stored file's bytes are not those it was stored with."""


class StorageArea(abc.ABC):
    """Durable, content-addressed attachment storage.

    Every method blocks (disk I/O): callers run them off the reactor thread.

    A file written by ``store`` or ``adopt`` is *pending* until ``settle``
    says that the index committed a reference to it: the area remembers
    pending files durably, with the ``owner`` the caller names (the
    attachment slot that will reference it), so that after a crash the
    start-up check only looks at them (``pending``) instead of listing the
    whole storage.
    """

    def prepare(self):
        """Get the area ready for use (at start-up, after twistd has forked)."""

    def close(self):
        """The server stops."""

    @abc.abstractmethod
    def store(self, data, salt=b"", owner=None, compress=None, digests=None, beside=False):
        """Write ``data`` (bytes), compressed when ``compress`` says so (None:
        as the area is configured); return a StoredFile.  The file is complete
        and in place, but durable only after ``make_durable`` (the index calls
        it once per group commit, before committing or, where it covers the
        index too, right after).  ``salt`` keeps equal
        bytes in different slots apart (attachments that are not DICOM files,
        whose content does not determine their owner).  ``owner`` (a short
        string) names what is about to reference the file; it comes back from
        ``pending`` after a crash.  ``digests``: the ContentDigests of ``data`` when they
        were computed (without salt).  ``beside``: the caller is alone and
        wants the answer soon: an area that can write the bytes in another
        thread while it hashes them does (it may ignore it)."""

    def adopt(self, path, digests=None, owner=None, compress=None):
        """Take the complete file at ``path`` (written in
        ``temporary_directory()``) as a stored attachment; return a
        StoredFile.  ``digests`` (a ContentDigests) are its hashes when they
        were computed while it was written.  The file at ``path`` is gone
        afterwards.  Durable only after ``make_durable``, as for ``store``."""
        with open(path, "rb") as f:
            data = f.read()
        stored = self.store(data, owner=owner, compress=compress)
        os.unlink(path)
        return stored

    @abc.abstractmethod
    def settle(self, files):
        """The index committed references to these StoredFiles: they are no
        longer pending."""

    @abc.abstractmethod
    def pending(self):
        """(uuid, owner or None) of every file written and never settled nor
        removed: after a crash, the files the start-up check must look at.
        None when the area cannot tell (it has no record of pending files,
        e.g. one written by an older orthancd): then only a full sweep
        (``list_uuids``) finds orphans."""

    @abc.abstractmethod
    def forget_pending(self, uuids):
        """The start-up check dealt with these pending files."""

    @abc.abstractmethod
    def full_sweep_done(self):
        """A full sweep removed every orphan: from now on ``pending`` is
        complete."""

    @abc.abstractmethod
    def release(self, uuid):
        """The index committed (or gave up on) a file that ``store`` or
        ``adopt`` returned: until then ``remove`` leaves it alone."""

    @abc.abstractmethod
    def make_durable(self, files):
        """Block until the given StoredFiles and their directory entries are on
        stable storage."""

    def durable_with(self, directory):
        """Whether ``make_durable`` also makes durable whatever was written
        in ``directory`` before it (an index there)."""
        return False

    @abc.abstractmethod
    def holds(self, info, salts=(b"",)):
        """True when the file of the StoredFile ``info`` is there and holds
        what it was stored with (``salts``: as for ``derive_md5s``); False
        when it is missing, short or changed."""

    @abc.abstractmethod
    def read(self, uuid):
        """Return the content (decompressed); raise FileNotFoundError if absent."""

    @abc.abstractmethod
    def open(self, uuid):
        """Return a binary file object for streaming the content (decompressed)."""

    @abc.abstractmethod
    def read_stored(self, uuid):
        """Return the bytes as stored (compressed when the file is)."""

    @abc.abstractmethod
    def open_stored(self, uuid):
        """Return a binary file object of the bytes as stored."""

    @abc.abstractmethod
    def remove(self, uuid):
        """Remove the file (and its pending record) unless a store/adopt not
        yet released holds it; a missing file is not an error.  Returns
        whether it was removed."""

    def derive_md5s(self, info, salts=(b"",)):
        """(MD5 of the bytes stored, MD5 of the content) of the StoredFile
        ``info``, read from its file.  An area that names files after their
        content checks it on the way (``salts``: those its name may have
        been made with) and raises ContentCorrupted when it does not match."""
        with self.open_stored(info.uuid) as f:
            stored = hash_stream(f, hashlib.md5())[0].hexdigest()
        if not info.compressed:
            return stored, stored
        with self.open(info.uuid) as f:
            return stored, hash_stream(f, hashlib.md5())[0].hexdigest()

    @abc.abstractmethod
    def exists(self, uuid):
        """True when the file is present."""

    @abc.abstractmethod
    def list_uuids(self):
        """Iterate over every stored UUID (the full sweep, when ``pending`` cannot tell)."""
