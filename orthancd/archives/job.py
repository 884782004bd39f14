"""The "Archive" and "Media" jobs: one ZIP archive (with a DICOMDIR for a
media) built step by step by the job engine.

A step hands the next piece of the archive (a file, a chunk of a big one,
the DICOMDIR, the central directory) to the job's sink and waits until the
sink takes more: the HTTP answer of a synchronous request (the client sets
the pace), or a temporary file for an asynchronous job, which then becomes
the job's "archive" output.  Meanwhile the following files are deflated in
the pool (orthancd.archives.stream).
"""
import dataclasses
from typing import Optional

from orthancd.archives.outputs import FileSink
from orthancd.archives.stream import ArchiveStream
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import MetadataType
from orthancd.jobs import model
from orthancd.jobs.model import Job, JobOutput, StopReason

_MEGABYTE = 1024 * 1024
ZIP_MIME_TYPE = "application/zip"


@dataclasses.dataclass
class ArchiveOptions:
    is_media: bool = False
    extended: bool = False          # media: the extended DICOMDIR
    allow_utf8: bool = False        # UTF-8 names in the ZIP
    transcode: Optional[str] = None  # transfer syntax UID the files must be in
    lossy_quality: Optional[int] = None
    filename: str = "archive.zip"   # of the "archive" output
    description: str = "REST API"


class ArchiveJob(Job):
    """``sink``: where the archive goes (an object with ``write(parts)``,
    ``finish()`` and ``abort()``), None for a temporary file published as
    the job's output."""

    def __init__(self, archives, content, options, sink=None):
        super().__init__()
        self.job_type = "Media" if options.is_media else "Archive"
        self.archives = archives
        self.content = content
        self.options = options
        self.sink = sink
        self._publish = False           # the archive becomes the job's output
        self.plan = None
        self.stream = None
        self.archive_size = 0

    # -- running --

    def _plan(self):
        """Blocking (many index reads for a big archive): run in a thread."""
        plan = self.content.plan(self.options.is_media, self.options.allow_utf8)
        if self.options.transcode is not None:
            self._check_transcoding(plan)
        return plan

    async def _begin(self):
        self.plan = await self.archives.file_io.run(self._plan)
        self.stream = ArchiveStream(self.plan, self.archives.storage, self.archives.pool,
                                    self.options.is_media, self.options.extended,
                                    self.archives.default_encoding(), self.archives.file_io,
                                    self._transcode)
        if self.sink is None:
            self.sink = FileSink(self.archives.temporary_directory, self.archives.file_io)
            self._publish = True

    def _check_transcoding(self, plan):
        """Which files need another transfer syntax."""
        index = self.archives.index
        for planned in plan.files:
            source = index.get_metadata_value(planned.instance_id, ResourceLevel.INSTANCE,
                                              MetadataType.TransferSyntax)
            if source != self.options.transcode:
                planned.transcode_to = self.options.transcode

    def _transcode(self, data, syntax):
        """Deferred bytes of a file in ``syntax`` (orthancd.transcoding, in
        the pixels pool); None when it cannot be transcoded: as in Orthanc
        1.13.0, the file is left out of the archive."""
        transcoder = self.archives.server.transcoder
        d = transcoder.transcode(data, {syntax}, self.options.lossy_quality)
        return d.addCallback(lambda transcoded: None if transcoded is None else transcoded.data)

    async def step(self, job_id):
        if self.stream is None:
            await self._begin()
        parts = await self.stream.next_parts()
        if parts is None:
            await self.sink.finish()
            self.archive_size = self.stream.size
            if self._publish:
                self._publish_output()
            return model.SUCCESS
        await self.sink.write(parts)
        self.archive_size = self.stream.size
        return model.CONTINUE

    def _publish_output(self):
        sink, media = self.sink, self.archives.media_archive
        key = media.add(lambda: self.delete_output("archive"))

        def open_archive():
            # Called in a worker thread: the LRU order is the reactor's.
            self.archives.reactor.callFromThread(media.touch, key)
            return open(sink.path, "rb")

        def remove_archive():
            media.discard(key)
            self.archives.file_io.run(sink.remove)

        self.outputs["archive"] = JobOutput(ZIP_MIME_TYPE, self.options.filename, sink.size,
                                            open_archive, remove_archive)

    def stop(self, reason):
        if reason in (StopReason.CANCELED, StopReason.FAILURE, StopReason.RETRY):
            if self.stream is not None:
                self.stream.close()
            if self.sink is not None:
                self.sink.abort()

    def reset(self):
        raise OrthancError(ErrorCode.BadSequenceOfCalls,
                           "Cannot resubmit the creation of an archive")

    # -- what the job shows --

    def progress(self):
        if self.stream is None:
            return 0.0
        if self.plan.steps == 0:
            return 1.0 if self.stream.steps_done else 0.0
        return self.stream.steps_done / self.plan.steps

    def public_content(self):
        instances = self.plan.instances_count if self.plan is not None else 0
        uncompressed = self.plan.uncompressed_size if self.plan is not None else 0
        content = {
            "Description": self.options.description,
            "InstancesCount": instances,
            "UncompressedSizeMB": uncompressed // _MEGABYTE,
            "ArchiveSizeMB": self.archive_size // _MEGABYTE,
            "ArchiveSize": str(self.archive_size),
            "UncompressedSize": str(uncompressed),
        }
        if self.options.transcode is not None:
            content["Transcode"] = self.options.transcode
        content["Utf8"] = self.options.allow_utf8
        if self.options.lossy_quality is not None:
            content["LossyQuality"] = self.options.lossy_quality
        return content
