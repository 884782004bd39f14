"""The single path every incoming instance takes, from REST or C-STORE.

parse (pydicom, off the reactor) -> write the content-addressed file (or, for
a file received over DICOM, rename it into place) -> one index operation
through the group-commit writer, which makes the files and the commit
durable before it answers -> the change stream tells its subscribers.  The Deferred returned by ``store`` and
``store_file`` fires only after the index commit, so a success answer always
means "on disk and indexed".
"""
import json
import os

from twisted.internet import defer

from orthancd.dicom import main_tags
from orthancd.dicom.format_error import DicomFormatError
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import ContentType, MetadataType, StorageFull, StoreOutcome
from orthancd.index.base import now_iso
from orthancd.lazy_modules import LazyModule
from orthancd.ingest_workers import MAX_BYTES_REQUEST, ParserRefused, WorkerLost
from orthancd.logs import logger
from orthancd.storage.streaming import ReceivedFile

# The header reading (pydicom): imported with the first instance received
# (orthancd.lazy_modules).
header_scan = LazyModule("orthancd.dicom.header_scan")


class Origin(dict):
    """Where an instance came from: Origin ("RestApi", "DicomProtocol"),
    RemoteIP, RemoteAET, CalledAET, HttpUsername.  The DICOM listener builds
    its own dict with the same keys."""

    @classmethod
    def rest(cls, remote_ip, username=""):
        return cls(Origin="RestApi", RemoteIP=remote_ip, RemoteAET="", HttpUsername=username)

    @classmethod
    def lua(cls):
        """What a Lua script stores (through RestApiPost or ModifyInstance)."""
        return cls(Origin="Lua", RemoteAET="")


_ORIGIN_METADATA = (
    ("RemoteAET", MetadataType.RemoteAET),
    ("Origin", MetadataType.Origin),
    ("RemoteIP", MetadataType.RemoteIP),
    ("CalledAET", MetadataType.CalledAET),
    ("HttpUsername", MetadataType.HttpUsername),
)


def instance_metadata(summary, dataset, origin):
    """{level: {MetadataType: value}}: what Orthanc 1.13.0 records when it
    stores an instance (the levels above the instance only when created).
    ``dataset`` is the parsed header (read_dataset)."""
    instance = {
        MetadataType.ReceptionDate: now_iso(),
        MetadataType.MainDicomTagsSignature: main_tags.signature(ResourceLevel.INSTANCE),
    }
    # Orthanc leaves out what the file does not tell.
    if summary.transfer_syntax:
        instance[MetadataType.TransferSyntax] = summary.transfer_syntax
    if summary.sop_class_uid:
        instance[MetadataType.SopClassUid] = summary.sop_class_uid
    # As Orthanc: the instance's rank comes from InstanceNumber / ImageIndex.
    if summary.index_in_series is not None:
        instance[MetadataType.IndexInSeries] = summary.index_in_series.strip()
    if getattr(dataset, "pixel_data_offset", None) is not None:
        instance[MetadataType.PixelDataOffset] = str(dataset.pixel_data_offset)
    if getattr(dataset, "pixel_data_vr", None):
        instance[MetadataType.PixelDataVR] = dataset.pixel_data_vr
    for key, metadata_type in _ORIGIN_METADATA:
        if key in origin:
            instance[metadata_type] = origin[key]
    series = {
        MetadataType.RemoteAET: origin.get("RemoteAET", ""),
        MetadataType.MainDicomTagsSignature: main_tags.signature(ResourceLevel.SERIES),
    }
    sequences = summary.main_sequences.get(ResourceLevel.SERIES)
    if sequences:
        series[MetadataType.MainDicomSequences] = main_sequences_metadata(sequences)
    return {
        ResourceLevel.PATIENT: {
            MetadataType.MainDicomTagsSignature: main_tags.signature(ResourceLevel.PATIENT)},
        ResourceLevel.STUDY: {
            MetadataType.MainDicomTagsSignature: main_tags.signature(ResourceLevel.STUDY)},
        ResourceLevel.SERIES: series,
        ResourceLevel.INSTANCE: {k: v for k, v in instance.items() if v is not None},
    }


def reconstruction_metadata(summary, only_level=None):
    """{level: {MetadataType: value or None (removed)}}: what a
    reconstruction rewrites beside the main tags, as Orthanc 1.13.0 does."""
    if only_level is not None:
        return {only_level: {MetadataType.MainDicomTagsSignature: main_tags.signature(only_level)}}
    out = {}
    for level in ResourceLevel:
        sequences = summary.main_sequences.get(level)
        out[level] = {
            MetadataType.MainDicomTagsSignature: main_tags.signature(level),
            MetadataType.MainDicomSequences:
                main_sequences_metadata(sequences) if sequences else None,
        }
    instance = out[ResourceLevel.INSTANCE]
    if summary.transfer_syntax:
        instance[MetadataType.TransferSyntax] = summary.transfer_syntax
    if summary.sop_class_uid:
        instance[MetadataType.SopClassUid] = summary.sop_class_uid
    return out


def main_sequences_metadata(sequences):
    """The MainDicomSequences metadata: Orthanc's compact JSON of the
    sequences kept among the main tags."""
    return json.dumps({"Sequences": sequences, "Version": 1}, sort_keys=True,
                      separators=(",", ":"))


def attachment_slot(level, public_id, content_type):
    """The slot an attachment file is stored for, as the storage area's
    ``owner`` of a pending file: the start-up check asks the index whether
    that slot references the file."""
    return "%d/%s/%d" % (int(level), public_id, int(content_type))


def attachment_salt(public_id, content_type):
    """What the name of an attachment a client stores is made with, beside
    its content (orthancd.storage.filesystem.content_uuid): equal bytes in
    two slots are two files, each removed with its own slot."""
    return ("%s/%d" % (public_id, int(content_type))).encode()


def attachment_salts(level, public_id, content_type):
    """Every salt the name of the file in that slot may have been made with:
    none (a DICOM file), ``attachment_salt`` (an attachment a client
    stored), the slot itself (the DICOM file's header with
    StorageCompression)."""
    return (b"", attachment_salt(public_id, content_type),
            attachment_slot(level, public_id, content_type).encode())


def parse_attachment_slot(owner):
    """(ResourceLevel, public ID, content type) of an ``attachment_slot``,
    or None."""
    try:
        level, public_id, content_type = owner.split("/")
        return ResourceLevel(int(level)), public_id, int(content_type)
    except (AttributeError, ValueError):
        return None


# Up to this size, an instance received (a REST body, a C-STORE data set) is
# kept in memory and stored by one job of the file pool (Ingestor.store):
# hashed, parsed and written directly to the disk.  Larger ones are streamed
# to a temporary file as they arrive (orthancd.storage.streaming), which
# bounds the memory however many large uploads run at once, but costs more
# CPU per byte: the pages of a new file in the page cache, the hand-overs of
# its pieces, reading its header back.  Measured with CT slices padded to
# 2.5 MiB: at c=4, 130 uploads/s streamed against 214/s in memory (CPU per
# instance 11.3 -> 5.2 ms); at c=1, 99 -> 118/s.  Sixteen uploads at once
# hold 64 MiB this way at most; Orthanc keeps every file whole in memory.
IN_MEMORY_LIMIT = 4 * 1024 * 1024


# Uploads smaller than this are parsed and written one at a time, in the
# ``small_files`` pool (see Ingestor).
SMALL_UPLOAD = 64 * 1024


class Ingestor:
    log = logger(__name__)

    def __init__(self, index, storage, configuration, file_io, small_files=None):
        """``file_io``: the pool (orthancd.pools) where files are parsed,
        written and removed.  ``small_files``: a pool of one thread where
        uploads below SMALL_UPLOAD are parsed and written (file_io when not
        given).  Preparing a small instance is mostly Python (the header
        scan, the name, a few short system calls): side by side, such
        preparations only pass the GIL to each other, each system call a
        hand-over between threads.  Measured on 2 cores, 4 clients (issue
        #10; runs alternated), uploads/s with the preparations in one
        thread against up to 10: 1.5 KiB instances 920 against 788 (16
        clients: 1,028 against 917), 33 KiB 843 against 755, 65 KiB 762
        against 742, 129 KiB 712 against 747, 513 KiB 513 against 620
        (their hashing and direct writes, outside the GIL, use both
        cores)."""
        self.index = index
        self.storage = storage
        self._file_io = file_io
        self._small_files = small_files or file_io
        self.overwrite = configuration.overwrite_instances_mode  # "Never", "Always", "IfChanged"
        self.limits = (int(configuration.get("MaximumStorageSize", 0)) * 1024 * 1024,
                       int(configuration.get("MaximumPatientCount", 0)))
        self.default_encoding = configuration.get("DefaultEncoding", "Latin1")
        # (dataset, summary, origin) -> None when no filter applies, or a
        # Deferred firing None (keep the instance) or the C-STORE status of
        # a refusal (the Lua filters, orthancd.lua_service).
        self.instance_filter = None
        # name -> what to call once the timed operation is over (the
        # server's metrics), or None.
        self.timed = None
        # Set by the server: orthancd.transcoding.ingest.IngestTranscoding
        # when "IngestTranscoding" is configured.
        self.transcoding = None
        # origin -> whether instance_filter needs the dataset of instances
        # from there (None: always).
        self.instance_filter_needed = None
        # The helper processes that parse headers (orthancd.ingest_workers),
        # when the daemon runs them.
        self.parser_pool = None
        self._preparing = 0  # instances being parsed and written now
        # Each is indexed right after: a group commit may wait for them.
        index.expect_writes_from(lambda: self._preparing)

    def _prepare(self, data, dataset_needed=True):
        summary, dataset = header_scan.read_instance_header(data, self.default_encoding,
                                                            dataset_needed)
        # Held until released after the commit.
        extra = self._store_header(summary, dataset, lambda size: data[:size])
        # Alone, the bytes are written while their name is computed (the
        # storage area's write_beside pool); side by side, uploads keep both
        # cores busy anyway and the hand-over would cost more than it saves.
        stored = self.storage.store(data, owner=self._slot_of(summary),
                                    beside=self._preparing <= 1)
        return summary, stored, dataset, extra

    def _prepare_file(self, path, dataset_needed=True):
        # Only the header is parsed; the file becomes the stored attachment
        # as it is, hashed already when it was received (ReceivedFile).
        summary, dataset = header_scan.read_instance_header(path, self.default_encoding,
                                                            dataset_needed)

        def head(size):
            with open(path, "rb") as f:
                return f.read(size)
        extra = self._store_header(summary, dataset, head)
        stored = self.storage.adopt(path, getattr(path, "digests", None),
                                    owner=self._slot_of(summary))
        if isinstance(path, ReceivedFile):
            path.moved = True
        return summary, stored, dataset, extra

    def preparation_where_received(self, origin):
        """A function preparing a received file (a ReceivedFile) for the
        index in the thread that wrote it (see store_prepared), or None
        when its preparation must go through the usual path: transcoding,
        a filter that reads the dataset, worker processes."""
        if self.transcoding is not None or (self.parser_pool is not None
                                            and self.parser_pool.size > 0):
            return None
        if self.instance_filter is not None and (
                self.instance_filter_needed is None or self.instance_filter_needed(origin)):
            return None
        return self._prepare_received

    def _prepare_received(self, path):
        try:
            return self._prepare_file(path, False)
        except BaseException:
            # Refused: the file goes before the answer does.
            if not path.moved:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            raise

    def store_prepared(self, prepared, origin):
        """Store a received file whose preparation (of
        preparation_where_received) ``prepared`` fires with."""
        return self._store(None, None, origin, prepared=prepared)

    def _store_header(self, summary, dataset, head):
        """As Orthanc with StorageCompression: the file up to its pixel data
        is stored too (DicomUntilPixelData), so that reading the tags does
        not decompress the pixels.  ``head(size)``: the first bytes."""
        offset = getattr(dataset, "pixel_data_offset", None)
        if not self.storage.compression or not offset:
            return ()
        instance_id = summary.ids[3]
        slot = attachment_slot(ResourceLevel.INSTANCE, instance_id,
                               ContentType.DicomUntilPixelData)
        stored = self.storage.store(head(offset), salt=slot.encode(), owner=slot)
        return ((ContentType.DicomUntilPixelData, stored),)

    def _adopt_parsed(self, summary, facts, path, digests, spooled):
        """Store a file a worker parsed (``spooled``: the worker wrote it
        from the bytes sent, and it is ours to remove if not adopted)."""
        try:
            def head(size):
                with open(path, "rb") as f:
                    return f.read(size)
            extra = self._store_header(summary, facts, head)
            stored = self.storage.adopt(path, digests, owner=self._slot_of(summary))
        except BaseException:
            if spooled:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            raise
        if isinstance(path, ReceivedFile):
            path.moved = True
        return summary, stored, facts, extra

    def _prepared(self, prepare, source, origin):
        """Deferred (summary, StoredFile, dataset or HeaderFacts, extra
        attachments): parsed in a worker process when one is ready and no
        filter needs the whole dataset, else in the file I/O pool."""
        self._preparing += 1
        d = self._prepared_somewhere(prepare, source, origin)
        d.addBoth(self._prepared_one)
        return d

    def _prepared_one(self, result):
        self._preparing -= 1
        return result

    def _prepared_somewhere(self, prepare, source, origin):
        workers = self.parser_pool
        needs_dataset = self.instance_filter is not None and (
            self.instance_filter_needed is None or self.instance_filter_needed(origin))
        in_memory = isinstance(source, (bytes, bytearray, memoryview))
        pool = (self._small_files if in_memory and len(source) < SMALL_UPLOAD
                else self._file_io)
        # Alone, an instance is parsed here: one hand-over fewer.  Workers
        # take the parses that would otherwise share the daemon's CPU.
        if (workers is None or needs_dataset or self._preparing < 2
                or (in_memory and len(source) > MAX_BYTES_REQUEST)):
            # Without a filter that reads the dataset, plain headers get
            # the quick reading (orthancd.dicom.header_scan).
            return pool.run(prepare, source, needs_dataset)
        parsing = workers.parse(source, self.default_encoding)
        if parsing is None:
            return pool.run(prepare, source, needs_dataset)

        def parsed(answer):
            summary, facts, spooled = answer
            if spooled is None:
                path, digests = source, getattr(source, "digests", None)
            else:
                path, digests = spooled
            return self._file_io.run(self._adopt_parsed, summary, facts, path, digests,
                                     spooled is not None)

        def failed(failure):
            if failure.check(ParserRefused):
                error = DicomFormatError(failure.value.details)
                error.orthanc_error = failure.value.code
                raise error
            failure.trap(WorkerLost)
            self.log.warn("An ingest worker failed ({error}): parsing here",
                          error=failure.getErrorMessage())
            return self._file_io.run(self._parse_after_lost_worker, prepare, source,
                                     failure.value.spool_path, needs_dataset)
        parsing.addCallbacks(parsed, failed)
        return parsing

    @staticmethod
    def _parse_after_lost_worker(prepare, source, spool_path, dataset_needed):
        if spool_path is not None:
            try:
                os.unlink(spool_path)  # what the worker may have written
            except FileNotFoundError:
                pass
        return prepare(source, dataset_needed)

    @staticmethod
    def _slot_of(summary):
        return attachment_slot(ResourceLevel.INSTANCE, summary.ids[3], ContentType.Dicom)

    def _remove_files(self, files):
        """UUIDs of the files removed (not those an upload holds meanwhile)."""
        return [info.uuid for info in files if self.storage.remove(info.uuid)]

    def store(self, data, origin, attached_metadata=None, skip_transcoding=False):
        """Store one DICOM file (bytes).  Fires with the index StoreOutcome;
        fails with OrthancError(BadFileFormat) or OrthancError(FullStorage).
        ``attached_metadata(summary)`` -> {level: {MetadataType: value}}
        gives metadata the instance brings to its resources, new or not
        (Orthanc's DicomInstanceToStore::AddMetadata: ModifiedFrom...).
        ``skip_transcoding``: no IngestTranscoding (a modification that
        chose its transfer syntax)."""
        if self.transcoding is not None and not skip_transcoding:
            return self._transcode_and_store(data, origin, attached_metadata)
        return self._store(self._prepare, data, origin, attached_metadata)

    def store_file(self, path, origin):
        """Store a Part-10 file already on disk (the C-STORE SCP's temporary
        file, in the storage area's temporary directory): it is moved into
        the storage area, unless it is refused (or transcoded: its
        transcoded copy is stored, the file stays the caller's)."""
        if self.transcoding is not None:
            return self._transcode_and_store(path, origin)
        return self._store(self._prepare_file, path, origin)

    @defer.inlineCallbacks
    def _transcode_and_store(self, source, origin, attached_metadata=None):
        """ServerContext::TranscodeAndStore: the file in the IngestTranscoding
        syntax when it applies and works, else as it came."""
        transcoded = yield self.transcoding.transcode(source)
        if transcoded is not None:
            outcome = yield self._store(self._prepare, transcoded, origin, attached_metadata)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            outcome = yield self._store(self._prepare, source, origin, attached_metadata)
        else:
            outcome = yield self._store(self._prepare_file, source, origin, attached_metadata)
        return outcome

    def _store(self, prepare, source, origin, attached_metadata=None, prepared=None):
        d = self._store_timed(prepare, source, origin, attached_metadata, prepared)
        if self.timed is not None:
            d.addBoth(self.timed("orthanc_store_dicom_duration_ms"))
        return d

    @defer.inlineCallbacks
    def _store_timed(self, prepare, source, origin, attached_metadata=None, prepared=None):
        """``prepared``: the Deferred preparation, when it is already under
        way (store_prepared)."""
        if prepared is None:
            prepared = self._prepared(prepare, source, origin)
        try:
            summary, stored, dataset, extra = yield prepared
        except DicomFormatError as e:
            # A file without its UIDs is an "inexistent tag" for Orthanc (404).
            code = ErrorCode[getattr(e, "orthanc_error", "BadFileFormat")]
            raise OrthancError(code, e.details)
        if self.instance_filter is not None:
            refused = yield self._filtered_out(summary, stored, dataset, origin)
            if refused is not None:
                return refused
        metadata = instance_metadata(summary, dataset, origin)
        attached = attached_metadata(summary) if attached_metadata is not None else None
        files = [stored] + [info for _, info in extra]

        def release():
            for info in files:
                self.storage.release(info.uuid)
        try:
            outcome = yield self.index.store_instance(summary, stored, metadata,
                                                      self.overwrite, self.limits,
                                                      attached=attached, extra=extra)
        except StorageFull as e:
            release()
            yield self._file_io.run(self._remove_files, files)
            raise OrthancError(ErrorCode.FullStorage, str(e))
        except BaseException:
            release()
            raise
        release()
        obsolete = outcome.obsolete_files
        if obsolete:
            self.remove_files(obsolete).addErrback(
                lambda f: self.log.failure("Cannot remove obsolete files", f))
        return outcome

    @defer.inlineCallbacks
    def _filtered_out(self, summary, stored, dataset, origin):
        """The FilteredOut outcome when a filter refuses the instance (its
        file is removed), None to go on.  Like Orthanc, an instance that is
        kept as it is already stored is not filtered."""
        if self.overwrite == "Never" and self.index.exists(summary.ids[3], ResourceLevel.INSTANCE):
            return None
        try:
            verdict = self.instance_filter(dataset, summary, origin)
            status = (yield verdict) if verdict is not None else None
        except BaseException:
            self.storage.release(stored.uuid)
            yield self._file_io.run(self._remove_files, [stored])
            raise
        if status is None:
            return None
        self.log.info("An incoming instance has been discarded by the filter")
        self.storage.release(stored.uuid)
        yield self._file_io.run(self._remove_files, [stored])
        return StoreOutcome("FilteredOut", summary.ids, cstore_status=status)

    def summarize_stored(self, info):
        """The summary of a stored DICOM file (blocking: run off the reactor)."""
        from orthancd.dicom.reading import read_dataset
        from orthancd.dicom.summary import summarize
        dataset = read_dataset(self.storage.read(info.uuid), stop_before_pixels=True)
        return summarize(dataset, self.default_encoding)

    def remove_files(self, files):
        """Remove files the index released (no longer references), then let
        the index forget them."""
        d = self._file_io.run(self._remove_files, files)
        d.addCallback(lambda removed: self.index.forget_released(removed) if removed else None)
        return d

