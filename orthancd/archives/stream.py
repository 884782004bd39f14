"""The bytes of one archive, produced in order while the files are deflated
ahead, in parallel.

The files of the plan are read and deflated in a pool of worker threads
(zlib and file reads release the GIL, so each core deflates its own file);
``next_parts`` hands the finished pieces out in the archive's order.  At
most a few files are in flight at once, and a file too big to hold is
streamed through one compressor, a chunk at a time: memory stays bounded
by the look-ahead, whatever the size of the archive.

For a media, each file is also parsed for its DICOMDIR records (in the same
worker task), and the DICOMDIR is the last file of the archive.
"""
import collections

from orthancd.archives import zipformat
from orthancd.lazy_modules import LazyModule
from orthancd.logs import logger

# DICOMDIR's records read instances with pydicom: imported by the first
# media archive (orthancd.lazy_modules).
media = LazyModule("orthancd.archives.dicomdir")

log = logger(__name__)

# Files up to this size are read and deflated whole, in one task.
WHOLE_FILE_LIMIT = 4 * 1024 * 1024
# Bigger ones go through one compressor, this much at a time.
CHUNK_SIZE = 1024 * 1024
# How far the deflating runs ahead of the writing.
LOOKAHEAD_FILES = 6
LOOKAHEAD_BYTES = 16 * 1024 * 1024


class _Piece:
    """One planned file on its way: a Deferred of its deflated parts when
    deflated whole, or its streaming state."""

    def __init__(self, planned):
        self.planned = planned
        # A file to transcode is re-encoded whole, whatever its size.
        self.whole = planned.attachment.size <= WHOLE_FILE_LIMIT or bool(planned.transcode_to)
        self.deferred = None
        self.streamed = None       # zipformat.StreamedFile, once started
        self.stream = None         # the file object being read


class ArchiveStream:
    """``next_parts()`` gives the archive as lists of bytes, in order, and
    None after the last one.  Blocking work goes to ``pool`` (anything with
    ``run(function, *args)`` returning a Deferred)."""

    def __init__(self, plan, storage, pool, is_media=False, extended=False,
                 default_encoding="Latin1", reader=None, transcode=None):
        """``reader``: the pool that reads the files deflated whole (the
        file I/O pool: several reads in flight keep a disk busy), by
        default ``pool``.  ``transcode(data, syntax)``: Deferred bytes of a
        file in another transfer syntax (for the files planned so)."""
        self.plan = plan
        self.storage = storage
        self.pool = pool
        self.reader = reader or pool
        self.is_media = is_media
        self.extended = extended
        self.default_encoding = default_encoding
        self.transcode = transcode
        self.directory = zipformat.ZipDirectory(plan.zip64)
        self.dicomdir = media.DicomDir() if is_media else None
        self.steps_done = 0        # Orthanc's steps, for the progress
        self.size = 0              # bytes of the archive handed out so far
        self._queue = collections.deque()
        self._next = 0             # index of the next planned file to queue
        self._finished = False
        self._closed = False

    # -- look-ahead --

    def _fill(self):
        """Queue the next files, deflating those held whole, while fewer
        than LOOKAHEAD_FILES of them (and LOOKAHEAD_BYTES) wait."""
        in_flight = [piece for piece in self._queue if piece.whole]
        ahead = sum(piece.planned.attachment.size for piece in in_flight)
        while (self._next < len(self.plan.files) and len(self._queue) < 4 * LOOKAHEAD_FILES
               and len(in_flight) < LOOKAHEAD_FILES
               and (not in_flight or ahead < LOOKAHEAD_BYTES)):
            piece = _Piece(self.plan.files[self._next])
            self._next += 1
            if piece.whole:
                piece.deferred = self.reader.run(self._read, piece.planned)
                piece.deferred.addCallback(self._deflate_read, piece.planned)
                in_flight.append(piece)
                ahead += piece.planned.attachment.size
            self._queue.append(piece)

    def _read(self, planned):
        """In a worker thread: the bytes of a file, None when it is gone."""
        try:
            return self.storage.read(planned.attachment.uuid)
        except FileNotFoundError:
            return None

    def _deflate_read(self, data, planned):
        if data is None:
            return None
        if planned.transcode_to:
            transcoded = self.transcode(data, planned.transcode_to)
            return transcoded.addCallback(
                lambda data: None if data is None
                else self.pool.run(self._deflate_whole, planned, data))
        return self.pool.run(self._deflate_whole, planned, data)

    def _deflate_whole(self, planned, data):
        """In a worker thread: the local header and deflated bytes of a
        file, and its DICOMDIR records."""
        entry = zipformat.new_entry(planned.path)
        parts = zipformat.deflate_whole(entry, data, self.plan.zip64)
        described = None
        if self.is_media:
            described = media.describe_instance(data, planned.media_id, self.extended,
                                          self.default_encoding)
        return entry, parts, described

    # -- output --

    async def next_parts(self):
        """The next pieces of the archive (a list of bytes), None at the end."""
        if self._closed:
            return None
        parts = await self._next_parts()
        if parts is not None:
            self.size += sum(len(part) for part in parts)
        return parts

    async def _next_parts(self):
        while True:
            self._fill()
            if not self._queue:
                return await self._finish()
            piece = self._queue[0]
            if piece.whole:
                outcome = await piece.deferred
                self._queue.popleft()
                self._fill()
                self._file_done(piece)
                if outcome is None:
                    log.warn("An instance was removed after the job was issued: {id}",
                             id=piece.planned.instance_id)
                    continue
                entry, parts, described = outcome
                self.directory.record(entry, sum(len(part) for part in parts))
                if described is not None:
                    self.dicomdir.add(described)
                return parts
            parts = await self._stream_piece(piece)
            if parts is not None:
                return parts

    def _file_done(self, piece):
        self.steps_done = piece.planned.step

    async def _stream_piece(self, piece):
        """The next pieces of a big file: its header first, then a chunk
        at a time, its data descriptor last; None once it is gone (the
        file was removed)."""
        if piece.streamed is None:
            try:
                piece.stream = await self.pool.run(self.storage.open, piece.planned.attachment.uuid)
            except FileNotFoundError:
                self._queue.popleft()
                self._file_done(piece)
                log.warn("An instance was removed after the job was issued: {id}",
                         id=piece.planned.instance_id)
                return None
            entry = zipformat.new_entry(piece.planned.path)
            piece.streamed = zipformat.StreamedFile(entry, self.plan.zip64)
            self.directory.record(entry, 0)
            header = piece.streamed.header()
            self.directory.skip(len(header))
            return [header]
        chunk, last = await self.pool.run(self._deflate_chunk, piece)
        self.directory.skip(len(chunk))
        if not last:
            return [chunk]
        descriptor = piece.streamed.descriptor()
        self.directory.skip(len(descriptor))
        self._queue.popleft()
        self._file_done(piece)
        if self.is_media:
            described = await self.pool.run(self._describe_stored, piece.planned)
            self.dicomdir.add(described)
        return [chunk, descriptor]

    def _deflate_chunk(self, piece):
        data = piece.stream.read(CHUNK_SIZE)
        last = len(data) < CHUNK_SIZE
        if last:
            piece.stream.close()
            piece.stream = None
        return piece.streamed.deflate(data, last), last

    def _describe_stored(self, planned):
        source = self.storage.path(planned.attachment.uuid) if hasattr(self.storage, "path") \
            else self.storage.read(planned.attachment.uuid)
        return media.describe_instance(source, planned.media_id, self.extended, self.default_encoding)

    async def _finish(self):
        if self._finished:
            return None
        self._finished = True
        parts = []
        if self.is_media:
            entry = zipformat.new_entry(b"DICOMDIR")
            deflated = await self.pool.run(self._deflate_dicomdir, entry)
            self.directory.record(entry, sum(len(part) for part in deflated))
            parts += deflated
        parts.append(self.directory.end())
        self.steps_done = self.plan.steps + 1
        return parts

    def _deflate_dicomdir(self, entry):
        return zipformat.deflate_whole(entry, self.dicomdir.encode(), self.plan.zip64)

    def close(self):
        """Stop: nothing more is handed out; what runs in the pool finishes
        and is dropped."""
        self._closed = True
        for piece in self._queue:
            if piece.stream is not None:
                stream, piece.stream = piece.stream, None
                self.pool.run(stream.close)
            if piece.deferred is not None:
                piece.deferred.addErrback(lambda failure: None)
        self._queue.clear()
