"""The server's domain objects wired together: what REST, DICOM and Lua share.

``OrthancServer`` owns the index, the storage area, the ingest path, the
stability monitor and the runtime settings that the REST API can change
(default encoding, accepted transfer syntaxes, log level...).  It knows
nothing of HTTP.
"""
import fnmatch
import os

from orthancd.changes import ChangeStream
from orthancd.checksums import AttachmentChecksums
from orthancd.config import ConfigurationError
from orthancd.dicom import dictionary, main_tags
from orthancd.dicom.main_tags import normalize_for_find
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.find.lookup import instances_in_creation_order
from orthancd.index.base import ContentType, MetadataType, UnknownResource
from orthancd.index.lmdb_index import LmdbResourceIndex
from orthancd.index.numbered_names import NumberedNames
from orthancd.jobs.engine import JobsEngine
from orthancd.jobs.transfers import register_transfer_jobs
from orthancd.ingest import (Ingestor, Origin, attachment_salt, attachment_salts,
                             attachment_slot, parse_attachment_slot, reconstruction_metadata)
from orthancd.logs import logger
from orthancd.metrics import ServerMetrics
from orthancd.modification import saved_jobs as modification_jobs
from orthancd.net.transfer_syntaxes import KNOWN, accepted_storage_syntaxes
from orthancd.pools import SerialLane
from orthancd.stability import StabilityMonitor
from orthancd.transcoding.ingest import configured as ingest_transcoding
from orthancd.transcoding.service import Transcoder
from orthancd.storage.area import ContentCorrupted
from orthancd.storage.filesystem import FilesystemStorageArea
from orthancd.storage.metered import MeteredStorageArea

log = logger(__name__)


def _identifier_tags():
    """Every main DICOM tag (but the sequences) is indexed at its level, for
    /tools/find and C-FIND, under the name the resources' main tags use."""
    return {level: sorted((tag, name) for tag, name in tags.items()
                          if tag not in main_tags.SEQUENCE_TAGS)
            for level, tags in main_tags.MAIN_DICOM_TAGS.items()}


_LABEL_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MAXIMUM_LABEL_LENGTH = 64


def check_label(label):
    """Orthanc's rule for labels: 1 to 64 ASCII letters, digits, '_' or '-'."""
    if not label or len(label) > MAXIMUM_LABEL_LENGTH or not set(label) <= _LABEL_CHARACTERS:
        raise OrthancError(ErrorCode.ParameterOutOfRange,
                           "A label must be a non-empty, alphanumeric string, possibly with '_' "
                           "or '-' characters, with maximum %d characters, but got: %s"
                           % (MAXIMUM_LABEL_LENGTH, label))


class OrthancServer:
    """Built by makeService, before twistd forks: nothing here opens a file
    or starts a thread; ``open`` does at start-up.  ``file_io`` is the pool
    (orthancd.pools) that reads, writes and parses files; ``pixel_pool``
    the one that decodes and encodes images (file_io when not given);
    ``storage_writes`` the one where the storage area writes a file while
    the thread storing it hashes it (none: one after the other);
    ``small_files`` the one where small uploads are parsed and written, one
    at a time (orthancd.ingest.Ingestor; file_io when not given)."""

    def __init__(self, configuration, reactor, file_io, pixel_pool=None, storage_writes=None,
                 small_files=None):
        self.configuration = configuration
        # Orthanc extends DCMTK's global dictionary; so does orthancd, once
        # (before the main tags, which may name the tags it declares).
        dictionary.register_configured(configuration.get("Dictionary", {}))
        try:
            main_tags.configure(configuration.get("ExtraMainDicomTags"))
        except main_tags.MainTagsError as e:
            raise ConfigurationError(str(e))
        self.metadata_names = NumberedNames({m.name: int(m) for m in MetadataType},
                                            configuration.get("UserMetadata"),
                                            (ErrorCode.InexistentItem, None))
        self.reactor = reactor
        self.file_io = file_io
        self.pixel_pool = pixel_pool or file_io
        storage_dir = configuration.storage_directory
        index_dir = configuration.index_directory
        self.metrics = ServerMetrics(self, reactor, bool(configuration.get("MetricsEnabled", True)))
        self.storage = MeteredStorageArea(FilesystemStorageArea(
            storage_dir, fsync=bool(configuration.get("SyncStorageArea", True)),
            compression=bool(configuration.get("StorageCompression", False)),
            store_md5=bool(configuration.get("StoreMD5ForAttachments", True)),
            background=getattr(file_io, "callInThread", None),
            write_beside=getattr(storage_writes, "callInThread", None)),
            self.metrics.registry)
        # Every committed change, and every job event, goes through here.
        self.changes = ChangeStream()
        self.index = LmdbResourceIndex(os.path.join(index_dir, "index.lmdb"), reactor,
                                       identifier_tags=_identifier_tags(),
                                       make_durable=self.storage.make_durable,
                                       settle_files=self.storage.settle,
                                       changes=self.changes,
                                       durable_with_files=self.storage.durable_with)
        self.index.set_normalizer(normalize_for_find)
        self.ingest = Ingestor(self.index, self.storage, configuration, file_io, small_files)
        self.ingest.timed = self.metrics.timed
        # The MD5s of attachments, derived when first asked.
        self.checksums = AttachmentChecksums(self.storage, self.index, file_io)
        # The files deletes released, removed one burst at a time: a run of
        # deletes costs a few hand-offs to the pool, not one per delete.
        self._removals = SerialLane(file_io, self._remove_now)
        self.stability = StabilityMonitor(self.index, configuration.get("StableAge", 60), reactor,
                                          self.changes)
        concurrent = int(configuration.get("ConcurrentJobs", 2)) or os.cpu_count() or 1
        self.jobs = JobsEngine(reactor, concurrent, int(configuration.get("JobsHistorySize", 10)),
                               store=self.index if configuration.get("SaveJobs", True) else None,
                               changes=self.changes)
        modification_jobs.register(self)
        register_transfer_jobs(self)
        # Runtime settings the REST API may change (not persisted, as in Orthanc).
        self.default_encoding = configuration.get("DefaultEncoding", "Latin1")
        self.transcoder = Transcoder(self.pixel_pool, configuration,
                                     lambda: self.default_encoding)
        self.ingest.transcoding = ingest_transcoding(configuration, self.transcoder)
        self.unknown_sop_class_accepted = bool(configuration.get("UnknownSopClassAccepted", False))
        self.accepted_transfer_syntaxes = [
            uid for uid in KNOWN if uid in set(accepted_storage_syntaxes(configuration))]
        # Called with (accepted transfer syntaxes, unknown SOP class accepted)
        # when the REST API changes them: the DICOM listener applies them to
        # the associations that follow.
        self.dicom_settings_listeners = []
        self.lua = None  # set by the service maker when Lua is wired in

    def set_accepted_transfer_syntaxes(self, patterns):
        """Accept the known transfer syntaxes matching ``patterns`` (wildcards
        allowed, as Orthanc's AcceptedTransferSyntaxes); returns them."""
        self.accepted_transfer_syntaxes = [
            uid for uid in KNOWN if any(fnmatch.fnmatchcase(uid, p) for p in patterns)]
        self._dicom_settings_changed()
        return self.accepted_transfer_syntaxes

    def set_unknown_sop_class_accepted(self, accepted):
        self.unknown_sop_class_accepted = bool(accepted)
        self._dicom_settings_changed()

    def _dicom_settings_changed(self):
        for listener in self.dicom_settings_listeners:
            listener(self.accepted_transfer_syntaxes, self.unknown_sop_class_accepted)

    def set_default_encoding(self, encoding):
        self.default_encoding = encoding
        self.ingest.default_encoding = encoding

    # -- what the DICOM services need (orthancd.net) --

    @property
    def temporary_directory(self):
        """Where the C-STORE SCP streams datasets before they are stored."""
        return self.storage.temporary_directory()

    def create_temporary_file(self, path):
        """The new file ``path`` of temporary_directory: its descriptor
        (FilesystemStorageArea.create_temporary_file)."""
        return self.storage.create_temporary_file(path)

    def store_file(self, path, origin):
        """Store a received Part-10 file through the same path as REST uploads."""
        return self.ingest.store_file(path, Origin(origin))

    def store_bytes(self, data, origin):
        """Store a Part-10 file received in memory (the C-STORE SCP's, up to
        orthancd.ingest.IN_MEMORY_LIMIT) through the same path as REST uploads."""
        return self.ingest.store(data, Origin(origin))

    def store_received(self, writer, origin):
        """Store the Part-10 file that ``writer`` (a closed
        StreamingFileWriter) completes, parsed and moved into place by the
        thread that writes it (Ingestor.preparation_where_received); None
        when the ingest must take it the usual way (store_file)."""
        origin = Origin(origin)
        prepare = self.ingest.preparation_where_received(origin)
        if prepare is None:
            return None
        return self.ingest.store_prepared(writer.after_close(prepare), origin)

    # -- deletes: the index removes entries, then the files go --

    def delete_resource(self, public_id, level):
        """A Deferred DeleteOutcome, once the index committed the delete."""
        deleted = self.index.delete_resource(public_id, level)
        deleted.addCallback(self._remove_released)
        return deleted

    def _remove_released(self, outcome):
        # Once the index no longer references the files, the deletion is
        # durable: the files go in the background (a crash leaves them
        # listed as released, and the start-up check removes them).
        if outcome.obsolete_files:
            self._removals.put(outcome.obsolete_files)
        return outcome

    def _remove_now(self, files):
        """(In the file-io pool.)  Remove released files, then let the index
        forget them (the next delete does, in its own transaction)."""
        removed = []
        for info in files:
            try:
                if self.storage.remove(info.uuid):
                    removed.append(info.uuid)
            except Exception:
                log.failure("Cannot remove the deleted file {uuid}", uuid=info.uuid)
        if removed:
            self.index.forget_released(removed)

    # -- reconstruction: the index rebuilt from the files --

    async def reconstruct(self, public_id, level, only_this_level=False, files=False):
        """Index the main tags of a resource's instances (and their
        ancestors) anew from their files; with ``only_this_level``, the
        tags of the resource itself, from one of its instances; with
        ``files``, store the files anew, compressed or not as
        StorageCompression says."""
        # In Orthanc's order: the last instance gives its ancestors their tags.
        instances = instances_in_creation_order(self.index, public_id, level)
        if only_this_level:
            instances = instances[:1]
        for instance_id in instances:
            if files:
                await self.change_attachment_compression(
                    instance_id, ResourceLevel.INSTANCE, ContentType.Dicom,
                    self.storage.compression)
            info = self.dicom_attachment(instance_id)
            summary = await self.file_io.run(self.ingest.summarize_stored, info)
            only = level if only_this_level else None
            await self.index.reconstruct_instance(summary, reconstruction_metadata(summary, only),
                                                  only)

    async def reconstruct_all(self, files=False):
        for study in self.index.list_resources(ResourceLevel.STUDY):
            await self.reconstruct(study, ResourceLevel.STUDY, files=files)

    # -- labels --

    def add_label(self, public_id, level, label):
        check_label(label)
        return self.index.add_label(public_id, level, label)

    def remove_label(self, public_id, level, label):
        check_label(label)
        return self.index.remove_label(public_id, level, label)

    def read_attachment(self, info):
        """Deferred content of a stored attachment, decompressed (read off
        the reactor)."""
        return self.file_io.run(self.storage.read, info.uuid)

    def read_stored_attachment(self, info):
        """Deferred bytes of a stored attachment as stored (compressed when
        it is)."""
        return self.file_io.run(self.storage.read_stored, info.uuid)

    def read_attachment_range(self, info, start, end, stored=False):
        """Deferred bytes ``start`` to ``end`` (exclusive) of an attachment's
        content (or of its stored bytes): only those are read from an
        uncompressed file."""
        def read():
            with (self.storage.open_stored if stored else self.storage.open)(info.uuid) as f:
                if f.seekable():
                    f.seek(start)
                else:
                    skipped = 0
                    while skipped < start:
                        skipped += len(f.read(min(start - skipped, 1 << 20)) or b"")
                return f.read(end - start)
        return self.file_io.run(read)

    async def store_attachment(self, public_id, level, content_type, data):
        return (await self.put_attachment(public_id, level, content_type, data))[0]

    async def put_attachment(self, public_id, level, content_type, data, expected=None,
                             compress=None):
        """Store ``data`` as an attachment (compressed as StorageCompression
        says, unless ``compress``); fires (StoredFile, new revision).
        ``expected``: the If-Match (revision, MD5), checked by the index."""
        if expected is not None:
            await self._md5s_recorded(public_id, level, content_type)
        stored = await self.file_io.run(self.storage.store, data,
                                        attachment_salt(public_id, content_type),
                                        owner=attachment_slot(level, public_id, content_type),
                                        compress=compress)
        try:
            previous, revision = await self.index.set_attachment(
                public_id, level, content_type, stored, expected)
        except BaseException:
            self.storage.release(stored.uuid)
            # Refused (If-Match): the new file goes, unless it is the very
            # file the slot holds (same content).
            if self._slot_file(public_id, level, content_type) != stored.uuid:
                await self.file_io.run(self.storage.remove, stored.uuid)
            raise
        self.storage.release(stored.uuid)
        if previous is not None and previous.uuid != stored.uuid:
            await self.ingest.remove_files([previous])
        return stored, revision

    def _slot_file(self, public_id, level, content_type):
        try:
            found = self.index.attachment_with_revision(public_id, level, content_type)
        except UnknownResource:
            return None
        return None if found is None else found[0].uuid

    async def _md5s_recorded(self, public_id, level, content_type):
        """Before a write that an If-Match guards: the MD5 it names is in
        the index, derived now if it was not yet (orthancd.checksums)."""
        try:
            found = self.index.attachment_with_revision(public_id, level, content_type)
        except UnknownResource:
            return
        if found is not None and found[0].md5_pending:
            try:
                await self.checksums.complete(public_id, level, content_type, found[0])
            except (ContentCorrupted, FileNotFoundError):
                pass  # no MD5 to match: the If-Match fails in the index

    async def delete_attachment(self, public_id, level, content_type, expected=None):
        if expected is not None:
            await self._md5s_recorded(public_id, level, content_type)
        previous = await self.index.delete_attachment(public_id, level, content_type, expected)
        await self.ingest.remove_files([previous])

    async def change_attachment_compression(self, public_id, level, content_type, compress):
        """/compress and /uncompress: store the attachment anew in the
        other form (a new revision), as Orthanc's
        ChangeAttachmentCompression."""
        found = self.index.attachment_with_revision(public_id, level, content_type)
        if found is None:
            raise OrthancError(ErrorCode.UnknownResource)
        info, revision = found
        if info.compressed == compress:
            return
        info = await self.checksums.complete(public_id, level, content_type, info)
        data = await self.read_attachment(info)
        await self.put_attachment(public_id, level, content_type, data,
                                  expected=(revision, info.uncompressed_md5), compress=compress)

    def dicom_attachment(self, instance_id):
        info = self.index.get_attachments(instance_id, ResourceLevel.INSTANCE).get(ContentType.Dicom)
        if info is None:
            raise OrthancError(ErrorCode.InexistentFile, "No DICOM file for instance %s" % instance_id)
        return info

    def read_dataset(self, instance_id, stop_before_pixels=False):
        """Deferred pydicom dataset of an instance, read and parsed off the reactor."""
        return self.render_dataset(instance_id, lambda dataset: dataset, stop_before_pixels)

    def render_dataset(self, instance_id, render, stop_before_pixels=False):
        """Deferred ``render(dataset)`` of an instance: reading, parsing and
        rendering all happen in one worker thread."""
        info = self.dicom_attachment(instance_id)

        def load():
            from orthancd.dicom.reading import read_dataset
            data = self.storage.read(info.uuid)
            return render(read_dataset(data, stop_before_pixels=stop_before_pixels))
        return self.file_io.run(load)

    # -- start-up and shutdown (orthancd.tap.IndexService) --

    def open(self):
        """Open the storage area and the index, then remove what a crash may
        have left unreferenced.  Blocking: runs once, before any request."""
        self.storage.prepare()
        self.index.open()
        self.check_consistency()

    def check_consistency(self):
        """Remove the files the index does not reference, left by a crash
        between a file write and its index commit, or between a commit that
        released files and their removal.  Only those files are looked at:
        the storage area lists the pending ones, the index the released ones.
        Start-up time does not grow with the number of stored files (but
        for one full sweep of a storage written by an older orthancd).
        First, the files of the last commit made durable together with
        them: an instance (or attachment) whose file a crash kept from the
        disk leaves the index (it was never acknowledged)."""
        self._check_unsettled()
        pending = self.storage.pending()
        if pending is None:
            removed = self._full_sweep()
            self.storage.full_sweep_done()
        else:
            removed = self._check_pending(pending)
        released = self.index.released_files()
        removed += sum(1 for uuid in released if self.storage.remove(uuid))
        if released:
            self.index.forget_released_now(released)
        if removed:
            log.info("Removed {n} orphan file(s) from the storage area", n=removed)
        return removed

    def _check_unsettled(self):
        unsettled = self.index.unsettled_files()
        if not unsettled:
            return
        missing = [(level, public_id, content_type, info)
                   for level, public_id, content_type, info in unsettled
                   if not self.storage.holds(info, attachment_salts(level, public_id,
                                                                    content_type))]
        for level, public_id, content_type, info in missing:
            log.warn("The file {uuid} of {kind} {id} (content type {type}) did not reach the "
                     "disk before the server stopped: its upload was never acknowledged, "
                     "it leaves the index", uuid=info.uuid, kind=level.name.lower(),
                     id=public_id, type=int(content_type))
        self.index.settle_unsettled_now(missing)

    def _full_sweep(self):
        log.info("Checking every file of the storage area once")
        referenced = self.index.referenced_uuids()
        return sum(1 for name in list(self.storage.list_uuids())
                   if name not in referenced and self.storage.remove(name))

    def _check_pending(self, pending):
        referenced = None  # every referenced UUID, only for a pending file of unknown owner
        removed = 0
        for uuid, owner in pending:
            slot = parse_attachment_slot(owner)
            if slot is not None:
                kept = self._slot_holds(slot, uuid)
            else:
                if referenced is None:
                    referenced = self.index.referenced_uuids()
                kept = uuid in referenced
            if not kept and self.storage.remove(uuid):
                removed += 1
        self.storage.forget_pending([uuid for uuid, _ in pending])
        return removed

    def _slot_holds(self, slot, uuid):
        level, public_id, content_type = slot
        try:
            info = self.index.get_attachments(public_id, level).get(content_type)
        except UnknownResource:
            return False
        return info is not None and info.uuid == uuid

    def close(self):
        """Once the index writer has stopped."""
        self.index.close()
        self.storage.close()
