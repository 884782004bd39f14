"""What POST /instances does with a body, as Orthanc 1.13.0's upload handler.

A body is refused when empty; a zip archive has each member stored (members
that are not DICOM instances, or lack the identifying tags as a DICOMDIR
does, are skipped); otherwise the body, gunzipped when the client says it is
gzip-encoded, is one DICOM file.  An HTML form has each complete part
handled that way in turn, with the part's own headers; the form's answer
carries nothing.

Bodies arrive as bytes (Twisted kept them in memory) or as a seekable
temporary file; whatever is inflated or copied out of them goes through a
Spool, so memory stays bounded whatever the archive claims.  Blocking steps
run in the file I/O pool.
"""
import io
import mmap
import tempfile


from orthancd.errors import ErrorCode, OrthancError
from orthancd.logs import logger
from orthancd.uploads.compressed import ZipMembers, gunzip, is_zip
from orthancd.uploads.multipart import form_parts
from orthancd.uploads.spool import (MEMORY_LIMIT, BodyFile, Spool, StreamedBody,
                                    copy_range, discard_payload)

log = logger(__name__)

MEGABYTE = 1024 * 1024
# Orthanc 1.13.0's defaults (in MB; 0 means no limit).
DEFAULT_MAXIMUM_FILE_SIZE_IN_ARCHIVE = 4096
DEFAULT_MAXIMUM_REQUEST_BODY_SIZE = 8192

# What a zip member may fail with and still be skipped: not DICOM, or
# without its identifiers ("probably a DICOMDIR", in Orthanc's words).
_SKIPPED_IN_ARCHIVES = (ErrorCode.BadFileFormat, ErrorCode.InexistentTag)
# What Uploader._payload answers for a zip archive.
_ZIP = object()


def maximum_request_body_size(configuration):
    """MaximumRequestBodySizeMB in bytes (0: no limit)."""
    return int(configuration.get("MaximumRequestBodySizeMB",
                                 DEFAULT_MAXIMUM_REQUEST_BODY_SIZE)) * MEGABYTE


def _size(body):
    if isinstance(body, (bytes, bytearray, memoryview)):
        return len(body)
    if isinstance(body, StreamedBody):
        return body.size
    return body.seek(0, 2)


def _head(body):
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body[:4])
    if isinstance(body, StreamedBody):
        return body.head
    body.seek(0)
    return body.read(4)


def _as_file(body):
    if isinstance(body, (bytes, bytearray, memoryview)):
        return io.BytesIO(body)
    body.seek(0)
    return body


class Uploader:
    """Stores uploads through ``ingest`` (an Ingestor); spool files go to
    ``temporary_directory`` (the storage area's, so they can be adopted)."""

    def __init__(self, ingest, temporary_directory, configuration, file_io):
        """``file_io``: the pool (orthancd.pools) where bodies are decoded."""
        self.ingest = ingest
        self._run = file_io.run
        self.temporary_directory = temporary_directory
        self.archive_limit = int(configuration.get(
            "MaximumFileSizeInArchiveMB", DEFAULT_MAXIMUM_FILE_SIZE_IN_ARCHIVE)) * MEGABYTE

    def _new_spool(self):
        return Spool(self.temporary_directory)

    async def store_body(self, body, content_encoding, origin):
        """Store what the body holds: the StoreOutcome of its instance, or
        the list of those of a zip archive's instances."""
        if isinstance(body, StreamedBody) and body.size and not is_zip(body.head):
            # One DICOM file, written and hashed as it came: prepared for
            # the index right where it was written, when the ingest allows.
            prepare = self.ingest.preparation_where_received(origin)
            if prepare is not None:
                return await self.ingest.store_prepared(body.complete_then(prepare), origin)
        if isinstance(body, StreamedBody):
            # Written and hashed as it came: its size, its first bytes and
            # the file are known without reading it.
            await body.complete()
            payload = self._payload(body, content_encoding)
        elif isinstance(body, (bytes, bytearray, memoryview)):
            # In memory: nothing to wait for before the ingest path.
            payload = self._payload(body, content_encoding)
        else:
            payload = await self._run(self._payload, body, content_encoding)
        if payload is _ZIP:
            outcomes = await self._store_archive(body, origin)
            if isinstance(body, StreamedBody):
                await self._run(body.remove_read_file)
            return outcomes
        return await self._store(payload, origin)

    def _payload(self, body, content_encoding):
        """The one DICOM file of the body (bytes, or a ReceivedFile), or
        _ZIP for an archive (blocking for a body in a file)."""
        if _size(body) == 0:
            raise OrthancError(ErrorCode.BadFileFormat, "Received an empty DICOM file")
        if is_zip(_head(body)):
            return _ZIP
        if isinstance(body, StreamedBody):
            return body.received  # never encoded (OrthancRequest)
        if (content_encoding or "").strip().lower() == "gzip":
            return self._gunzip(body)
        if isinstance(body, bytes):
            return body
        if isinstance(body, (bytearray, memoryview)):
            return bytes(body)
        if isinstance(body, BodyFile):
            return body.received()  # the stored file will be this one
        spool = self._new_spool()
        try:
            copy_range(body, 0, body.seek(0, 2), spool)
        except BaseException:
            spool.discard()
            raise
        return spool.payload()

    def _gunzip(self, body):
        spool = self._new_spool()
        try:
            gunzip(_as_file(body), spool, self.archive_limit)
        except BaseException:
            spool.discard()
            raise
        return spool.payload()

    async def _store(self, payload, origin):
        try:
            if isinstance(payload, bytes):
                return await self.ingest.store(payload, origin)
            return await self.ingest.store_file(payload, origin)
        finally:
            if not isinstance(payload, bytes) and not payload.moved:
                await self._run(discard_payload, payload)

    async def _store_archive(self, body, origin):
        members = await self._run(
            ZipMembers, _as_file(body), self.archive_limit, self._new_spool)
        outcomes = []
        try:
            while True:
                member = await self._run(members.next)
                if member is None:
                    return outcomes
                name, payload = member
                try:
                    outcomes.append(await self._store(payload, origin))
                except OrthancError as e:
                    if e.code not in _SKIPPED_IN_ARCHIVES:
                        raise
                    log.info("Skipping {name} in a zip archive: {error}", name=name,
                             error=e.details or e.description)
        finally:
            members.close()

    async def store_form(self, body, boundary, origin):
        """Store each complete part of a multipart/form-data body in turn, as
        a body of its own (its Content-Encoding applies)."""
        buffer = await self._run(_buffer_of, body)
        try:
            parts = form_parts(buffer, boundary)
            while True:
                part = await self._run(next, parts, None)
                if part is None:
                    return
                headers, start, length = part
                content = await self._run(_part_content, buffer, start, length,
                                                      self.temporary_directory)
                try:
                    await self.store_body(content, headers.get("content-encoding"), origin)
                finally:
                    if not isinstance(content, bytes):
                        content.close()
        finally:
            if isinstance(buffer, mmap.mmap):
                buffer.close()


def _buffer_of(body):
    """Bytes, or a read-only mapping of a spooled body."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return body
    if body.seek(0, 2) == 0:
        return b""
    return mmap.mmap(body.fileno(), 0, access=mmap.ACCESS_READ)


def _part_content(buffer, start, length, directory):
    if length <= MEMORY_LIMIT or not isinstance(buffer, mmap.mmap):
        return bytes(buffer[start:start + length])
    copy = tempfile.TemporaryFile(dir=directory)
    for offset in range(start, start + length, MEGABYTE):
        copy.write(buffer[offset:min(offset + MEGABYTE, start + length)])
    copy.seek(0)
    return copy
