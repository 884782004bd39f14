"""The hashes a stored file is known by: SHA-256 for its content address,
MD5 for Orthanc's attachment information.

Both can be fed piece by piece while a file is received, so the bytes are
hashed once, as they pass, instead of being read back afterwards.  Given a
pool, MD5 (about 0.7 ms for 500 kB) is computed there, in a lane beside
the writing and beside what follows the file's last piece (the parse of
its header): only the index commit needs it.  SHA-256 (0.3 ms), the
content address, is needed as soon as the file is complete; it is
computed by the thread that writes, as it writes, which costs less than a
second hand-over per piece (with both hashes in lanes, an upload of 513
KiB took 73 futex calls, against 39 now with the preparation in the
writing thread too).
"""
import dataclasses
import hashlib
import threading

from orthancd.pools import SerialLane


def uuid_from_sha256(hex_digest):
    """A UUID-shaped name from a SHA-256: its first 128 bits."""
    h = hex_digest
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


@dataclasses.dataclass(frozen=True)
class ContentDigests:
    uuid: str   # content address (see uuid_from_sha256)
    md5: str    # hex MD5
    size: int


class LateDigests:
    """ContentDigests whose MD5 is still being computed in a lane: reading
    ``md5`` waits for it (blocking: off the reactor)."""

    def __init__(self, uuid, md5_lane, size):
        self.uuid = uuid
        self._md5_lane = md5_lane
        self.size = size

    @property
    def md5(self):
        return self._md5_lane.hexdigest()


_END = object()


class _HashLane:
    """A hash of pieces fed in order, computed in ``pool`` (a SerialLane).
    Nothing run there ever waits, so a reader waiting for the digest in
    another pool cannot starve it."""

    def __init__(self, pool, digest, hashed=None):
        """``hashed(size)``: called (in the pool) after each piece."""
        self._digest = digest
        self._hashed = hashed
        self._lane = SerialLane(pool, self._take)
        self._done = threading.Event()
        self._hex = None

    def update(self, data):
        self._lane.put(data)

    def close(self):
        self._lane.put(_END)

    def _take(self, piece):
        if piece is _END:
            self._hex = self._digest.hexdigest()
            self._done.set()
        else:
            self._digest.update(piece)
            if self._hashed is not None:
                self._hashed(len(piece))

    def hexdigest(self):
        self._done.wait()
        return self._hex


class ContentHasher:
    """Incremental ContentDigests.  hashlib releases the GIL on big
    updates, so feeding it from a worker thread does not stall the reactor.
    With ``pool``, MD5 is computed there in a lane, SHA-256 by the caller
    (see the module's doc), and ``digests()`` gives LateDigests."""

    def __init__(self, salt=b"", pool=None, hashed=None):
        """``hashed(size)``: with a pool, called as the MD5 lane is done
        with a piece (flow control); SHA-256 is done when ``update`` returns."""
        self._sha256 = hashlib.sha256(salt)
        self._md5 = hashlib.md5()
        if pool is not None:
            # SHA-256 (the content address, needed as soon as the file is
            # complete) is computed by the caller as it goes; MD5 (needed
            # only by the index commit) in a lane beside it.
            self._md5 = _HashLane(pool, self._md5, hashed)
        self._size = 0

    @property
    def in_lane(self):
        """Whether MD5 is computed in a pool's lane."""
        return isinstance(self._md5, _HashLane)

    def update(self, data):
        self._md5.update(data)
        self._sha256.update(data)
        self._size += len(data)

    def digests(self):
        if isinstance(self._md5, _HashLane):
            self._md5.close()
            return LateDigests(uuid_from_sha256(self._sha256.hexdigest()), self._md5,
                               self._size)
        return ContentDigests(uuid_from_sha256(self._sha256.hexdigest()),
                              self._md5.hexdigest(), self._size)


def digests_of(data, salt=b""):
    hasher = ContentHasher(salt)
    hasher.update(data)
    return hasher.digests()
