"""Orthanc's "zlib with size" format of compressed attachments.

StorageCompression makes Orthanc store each attachment as the 8-byte
little-endian size of the uncompressed content followed by the zlib stream
(compress2 at level 6), and an empty content as an empty file.  orthancd
writes the same bytes, so that CompressedSize, CompressedMD5 and
/compressed-data agree with Orthanc's.

zlib's output does not depend on how its input is cut into pieces (no flush
is asked for before the end), so a file is compressed piece by piece and
still gives compress2's bytes, without holding the whole file in memory.
"""
import hashlib
import io
import struct
import zlib

from orthancd.errors import ErrorCode, OrthancError

LEVEL = 6  # Orthanc's DeflateBaseCompressor default
_SIZE = struct.Struct("<Q")
_CHUNK = 1 << 20


def corrupted(details=None):
    return OrthancError(ErrorCode.CorruptedFile, details)


def compress(data):
    """The stored form of ``data`` (bytes-like)."""
    if len(data) == 0:
        return b""
    return _SIZE.pack(len(data)) + zlib.compress(data, LEVEL)


def decompress(stored):
    """The content of a stored compressed file; OrthancError(CorruptedFile)
    when it is not one."""
    if len(stored) == 0:
        return b""
    if len(stored) < _SIZE.size:
        raise corrupted("The compressed file is too short to hold its size")
    size = _SIZE.unpack_from(stored)[0]
    try:
        content = zlib.decompress(memoryview(stored)[_SIZE.size:])
    except zlib.error as e:
        raise corrupted(str(e))
    if len(content) != size:
        raise corrupted("The compressed file does not hold the announced size")
    return content


def compress_file(source, target, size):
    """Compress the open binary file ``source`` (``size`` bytes) into the
    open binary file ``target``; returns (stored size, MD5 of the stored
    bytes, MD5 of the content)."""
    md5 = hashlib.md5()
    content_md5 = hashlib.md5()
    written = 0

    def emit(piece):
        nonlocal written
        if piece:
            target.write(piece)
            md5.update(piece)
            written += len(piece)

    if size:
        emit(_SIZE.pack(size))
        compressor = zlib.compressobj(LEVEL)
        while True:
            piece = source.read(_CHUNK)
            if not piece:
                break
            content_md5.update(piece)
            emit(compressor.compress(piece))
        emit(compressor.flush())
    return written, md5.hexdigest(), content_md5.hexdigest()


class DecompressingReader(io.RawIOBase):
    """A read-only binary stream of the content of a stored compressed file
    (an open binary file), decompressed piece by piece as it is read.  Raw:
    a read may return less than asked; ``open_decompressed`` buffers it."""

    def __init__(self, stored):
        self._stored = stored
        self._decompressor = zlib.decompressobj()
        self._chunk = b""
        self._offset = 0
        self._size = None
        self._delivered = 0
        self._eof = False

    def readable(self):
        return True

    def _read_size(self):
        head = self._stored.read(_SIZE.size)
        if not head:
            self._size = 0
        elif len(head) < _SIZE.size:
            raise corrupted("The compressed file is too short to hold its size")
        else:
            self._size = _SIZE.unpack(head)[0]

    def _next_chunk(self):
        """Decompress the next piece; False at the end of the content."""
        if self._size is None:
            self._read_size()
        while not self._eof:
            piece = self._stored.read(_CHUNK)
            try:
                if piece:
                    chunk = self._decompressor.decompress(piece)
                else:
                    chunk = self._decompressor.flush()
                    self._eof = True
                    if self._size and not self._decompressor.eof:
                        raise corrupted("The compressed file is truncated")
            except zlib.error as e:
                raise corrupted(str(e))
            if self._eof and self._delivered + len(chunk) != self._size:
                raise corrupted("The compressed file does not hold the announced size")
            if chunk:
                self._chunk, self._offset = chunk, 0
                return True
        return False

    def readinto(self, buffer):
        if len(buffer) == 0:
            return 0
        if self._offset >= len(self._chunk) and not self._next_chunk():
            return 0
        count = min(len(buffer), len(self._chunk) - self._offset)
        buffer[:count] = memoryview(self._chunk)[self._offset:self._offset + count]
        self._offset += count
        self._delivered += count
        return count

    def close(self):
        if not self.closed:
            self._stored.close()
        super().close()


def open_decompressed(stored):
    """A buffered binary stream of the content of the open stored file."""
    return io.BufferedReader(DecompressingReader(stored), _CHUNK)
