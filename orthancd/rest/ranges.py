"""HTTP Range requests on attachment data, as Orthanc 1.13.0 reads them
(StorageRange): one "bytes=START-END" range, either bound optional, both
inclusive; "bytes=-N" means the first N+1 bytes (Orthanc's reading, not
RFC 9110's suffix range)."""
import dataclasses

from orthancd.errors import ErrorCode, OrthancError

_UINT64_MAX = (1 << 64) - 1


def _parse_bound(text):
    """SerializationToolbox::ParseUnsignedInteger64, or BadRange."""
    value = text.strip(" \t\r\n")
    if value.isdigit() and value.isascii() and int(value) <= _UINT64_MAX:
        return int(value)
    raise OrthancError(ErrorCode.BadRange)


@dataclasses.dataclass(frozen=True)
class ByteRange:
    start: int | None
    end: int | None  # inclusive

    def bounds(self, size):
        """(start, end exclusive) within ``size`` bytes, or BadRange (416)."""
        if (size == 0 or (self.start is not None and self.start >= size)
                or (self.end is not None and self.end >= size)):
            raise OrthancError(ErrorCode.BadRange)
        start = 0 if self.start is None else self.start
        end = size if self.end is None else self.end + 1
        return start, end

    def content_range(self, size):
        start, end = self.bounds(size)
        return ("bytes %d-%d/%d" % (start, end - 1, size)).encode()


def parse_http_range(header):
    """The ByteRange of a Range header (bytes or str)."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if not header.startswith("bytes="):
        raise OrthancError(ErrorCode.BadRange)
    tokens = header[len("bytes="):].split("-")
    if len(tokens) != 2:
        raise OrthancError(ErrorCode.BadRange)
    start = _parse_bound(tokens[0]) if tokens[0] else None
    end = _parse_bound(tokens[1]) if tokens[1] else None
    if start is not None and end is not None and start > end:
        raise OrthancError(ErrorCode.BadSequenceOfCalls)
    return ByteRange(start, end)
