"""Zip archives and gzip bodies, inflated as Orthanc 1.13.0 does but with
bounded memory.

Orthanc refuses an inflated file larger than MaximumFileSizeInArchiveMB
("Uncompressed size exceeds limit"), and reads sizes from the archive's own
metadata (the central directory of a zip, the trailing ISIZE of a gzip
stream): when they lie, the file is refused as a bad file format.  Here the
output goes to a Spool as it is produced, never past the limit, so neither a
bomb nor a lie costs more than a spool file.  Every function blocks: run them
off the reactor.
"""
import struct
import zipfile
import zlib

from orthancd.errors import ErrorCode, OrthancError

_CHUNK = 1 << 20
_GZIP_ROUND = 10 * _CHUNK
_GZIP = 16 + zlib.MAX_WBITS  # a gzip wrapper only, as Orthanc's GzipCompressor
_STORED, _DEFLATED, _BZIP2 = 0, 8, 12
# Compressed patched data (bit 5) and strong encryption (bit 6): members
# neither Orthanc's reader nor zipfile inflate.
_UNREADABLE_FLAGS = 0x20 | 0x40
_UNSUPPORTED_MEMBER = "Invalid file or unsupported compression method (e.g. Deflate64)"


def bad_file_format(details=None):
    return OrthancError(ErrorCode.BadFileFormat, details)


def size_exceeded(limit):
    return bad_file_format("Uncompressed size exceeds limit (%.1fMB)" % (limit / (1024.0 * 1024.0)))


def is_zip(head):
    """Orthanc's test: the body starts with a zip local file header."""
    return bytes(head[:4]) == b"PK\x03\x04"


def gunzip(source, spool, limit):
    """Inflate the first gzip member of the seekable ``source`` into
    ``spool``; ``limit`` is the largest output allowed in bytes (0: none).

    As Orthanc 1.13.0, which inflates in rounds of 10 MB: a stream shorter
    than its own header and trailer, or cut before its end, is "Truncated
    gzip input"; a bad CRC, or an output that disagrees with the announced
    ISIZE, is a bare bad file format when the stream ends within the round;
    a round that ends past ``limit`` stops everything ("Uncompressed size
    exceeds limit").  Trailing bytes after the first member are ignored.
    Output past ``limit`` is inflated but not kept."""
    if source.seek(0, 2) < 18:
        raise bad_file_format("Truncated gzip input")
    source.seek(0)
    inflater = zlib.decompressobj(_GZIP)
    produced = 0
    pending = b""
    while not inflater.eof:
        if limit and produced > limit:
            raise size_exceeded(limit)
        in_round = 0
        while in_round < _GZIP_ROUND and not inflater.eof:
            if not pending:
                pending = source.read(_CHUNK)
                if not pending:
                    raise bad_file_format("Truncated gzip input")
            try:
                data = inflater.decompress(pending, min(_CHUNK, _GZIP_ROUND - in_round))
            except zlib.error:
                raise bad_file_format()
            pending = inflater.unconsumed_tail
            if not limit or produced + len(data) <= limit:
                spool.write(data)
            elif produced < limit:
                spool.write(data[:limit - produced])
            in_round += len(data)
            produced += len(data)
    if limit and produced > limit:
        raise size_exceeded(limit)
    return spool


class ZipMembers:
    """The non-empty members of a zip archive, inflated one by one into
    spools, in the order of the central directory (as Orthanc's reader)."""

    def __init__(self, source, limit, new_spool):
        """``source``: a seekable binary file; ``limit``: the largest member
        allowed in bytes (0: none); ``new_spool()``: an empty Spool."""
        self._source = source
        self._limit = limit
        self._new_spool = new_spool
        try:
            self._archive = zipfile.ZipFile(source)
            infos = self._archive.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
                struct.error):
            raise bad_file_format("Cannot open ZIP archive from memory buffer")
        self._infos = iter(infos)

    def next(self):
        """(name, payload) of the next member, or None after the last."""
        for info in self._infos:
            if self._limit and info.file_size > self._limit:
                raise size_exceeded(self._limit)
            if info.file_size == 0:
                continue  # a folder, or an empty file: Orthanc skips them
            self._check_local_header(info)
            return info.filename, self._inflate(info).payload()
        return None

    def _check_local_header(self, info):
        """The local header must agree with the central directory (unless a
        data descriptor follows the data), and the method must be one
        Orthanc's reader opens."""
        if info.compress_type not in (_STORED, _DEFLATED, _BZIP2):
            raise bad_file_format(_UNSUPPORTED_MEMBER)
        self._source.seek(info.header_offset)
        header = self._source.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise bad_file_format(_UNSUPPORTED_MEMBER)
        flags, method, _time, _date, crc, compressed, size, name_length = struct.unpack(
            "<HHHHIIIH", header[6:28])
        disagree = method != info.compress_type
        if not flags & 0x08:
            disagree = disagree or crc != info.CRC
            disagree = disagree or (compressed != 0xFFFFFFFF and compressed != info.compress_size)
            disagree = disagree or (size != 0xFFFFFFFF and size != info.file_size)
        if disagree or name_length != len(info.orig_filename.encode(
                "utf-8" if info.flag_bits & 0x800 else "cp437", "replace")):
            raise bad_file_format(_UNSUPPORTED_MEMBER)
        if info.compress_type == _BZIP2:
            raise bad_file_format()  # Orthanc's reader opens it but cannot inflate it

    def _inflate(self, info):
        if info.flag_bits & _UNREADABLE_FLAGS:
            raise bad_file_format()
        spool = self._new_spool()
        try:
            with self._archive.open(info) as member:
                while True:
                    data = member.read(_CHUNK)
                    if not data:
                        break
                    spool.write(data)
        except (zipfile.BadZipFile, EOFError, zlib.error, RuntimeError, OSError, ValueError):
            spool.discard()
            raise bad_file_format()
        if spool.size != info.file_size:
            spool.discard()
            raise bad_file_format()
        return spool

    def close(self):
        self._archive.close()
