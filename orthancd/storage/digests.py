"""The hash a stored file is known by: the SHA-256 of its content, which
names it (its content address, see uuid_from_sha256).

It can be fed piece by piece while a file is received, so the bytes are
hashed once, as they pass, by the thread that writes them.  The MD5s that
Orthanc shows for attachments are not computed here: they are derived from
the content the first time somebody asks (orthancd.storage.checksums).
"""
import dataclasses
import hashlib


def uuid_from_sha256(hex_digest):
    """A UUID-shaped name from a SHA-256: its first 128 bits."""
    h = hex_digest
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


@dataclasses.dataclass(frozen=True)
class ContentDigests:
    uuid: str   # content address (see uuid_from_sha256)
    size: int


class ContentHasher:
    """Incremental ContentDigests.  hashlib releases the GIL on big
    updates, so feeding it from a worker thread does not stall the reactor."""

    def __init__(self, salt=b""):
        self._sha256 = hashlib.sha256(salt)
        self._size = 0

    def update(self, data):
        self._sha256.update(data)
        self._size += len(data)

    def digests(self):
        return ContentDigests(uuid_from_sha256(self._sha256.hexdigest()), self._size)


def digests_of(data, salt=b""):
    hasher = ContentHasher(salt)
    hasher.update(data)
    return hasher.digests()
