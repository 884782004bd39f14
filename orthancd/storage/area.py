"""The StorageArea interface: where attachment bytes live.

The index only records a FileUuid per attachment; a StorageArea turns that
UUID into bytes.  The filesystem implementation is the default; an object
store can stand behind the same interface later.
"""
import abc
import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class StoredFile:
    """What the index records about one stored attachment."""
    uuid: str
    size: int            # bytes on disk
    md5: str             # hex MD5 of the bytes on disk
    uncompressed_size: int
    uncompressed_md5: str
    compressed: bool = False

    def to_record(self):
        return {"uuid": self.uuid, "size": self.size, "md5": self.md5,
                "usize": self.uncompressed_size, "umd5": self.uncompressed_md5,
                "compressed": self.compressed}

    @classmethod
    def from_record(cls, record):
        return cls(record["uuid"], record["size"], record["md5"],
                   record["usize"], record["umd5"], record.get("compressed", False))


class StorageError(Exception):
    """The storage area could not write or read a file."""


class StorageArea(abc.ABC):
    """Durable, content-addressed attachment storage.

    Every method blocks (disk I/O): callers run them off the reactor thread.
    """

    @abc.abstractmethod
    def store(self, data, salt=b""):
        """Write ``data`` (bytes); return a StoredFile.  The file is complete
        and in place, but durable only after ``make_durable`` (the index calls
        it once per group commit, before committing).  ``salt`` keeps equal
        bytes in different slots apart (attachments that are not DICOM files,
        whose content does not determine their owner)."""

    def adopt(self, path, digests=None):
        """Take the complete file at ``path`` (written in
        ``temporary_directory()``) as a stored attachment; return a
        StoredFile.  ``digests`` (a ContentDigests) are its hashes when they
        were computed while it was written.  The file at ``path`` is gone
        afterwards.  Durable only after ``make_durable``, as for ``store``."""
        with open(path, "rb") as f:
            data = f.read()
        stored = self.store(data)
        os.unlink(path)
        return stored

    @abc.abstractmethod
    def release(self, uuid):
        """The index committed (or gave up on) a file that ``store`` or
        ``adopt`` returned: until then ``remove`` leaves it alone."""

    @abc.abstractmethod
    def make_durable(self, files):
        """Block until the given StoredFiles and their directory entries are on
        stable storage."""

    @abc.abstractmethod
    def read(self, uuid):
        """Return the stored bytes; raise FileNotFoundError if absent."""

    @abc.abstractmethod
    def open(self, uuid):
        """Return a binary file object for streaming the stored bytes."""

    @abc.abstractmethod
    def remove(self, uuid):
        """Remove the file unless a store/adopt not yet released holds it;
        a missing file is not an error.  Returns whether it was removed."""

    @abc.abstractmethod
    def exists(self, uuid):
        """True when the file is present."""

    @abc.abstractmethod
    def list_uuids(self):
        """Iterate over every stored UUID (used by the start-up consistency check)."""
