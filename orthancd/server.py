"""The server's domain objects wired together: what REST, DICOM and Lua share.

``OrthancServer`` owns the index, the storage area, the ingest path, the
stability monitor and the runtime settings that the REST API can change
(default encoding, accepted transfer syntaxes, log level...).  It knows
nothing of HTTP.
"""
import fnmatch
import os

from twisted.internet import threads

from orthancd.dicom import dictionary
from orthancd.dicom.reading import read_dataset
from orthancd.dicom.summary import MAIN_DICOM_TAGS, normalize_for_find
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import ContentType
from orthancd.index.lmdb_index import LmdbResourceIndex
from orthancd.ingest import Ingestor, Origin
from orthancd.logs import logger
from orthancd.net.transfer_syntaxes import KNOWN, accepted_storage_syntaxes
from orthancd.stability import StabilityMonitor
from orthancd.storage.filesystem import FilesystemStorageArea

log = logger(__name__)


def _identifier_tags():
    """Every main DICOM tag is indexed at its level, for /tools/find and C-FIND,
    under the name the resources' main tags use."""
    return {level: sorted(tags.items()) for level, tags in MAIN_DICOM_TAGS.items()}


class OrthancServer:

    def __init__(self, configuration, reactor):
        self.configuration = configuration
        self.reactor = reactor
        # Orthanc extends DCMTK's global dictionary; so does orthancd, once.
        dictionary.register_configured(configuration.get("Dictionary", {}))
        storage_dir = configuration.storage_directory
        index_dir = configuration.index_directory
        self.storage = FilesystemStorageArea(
            storage_dir, fsync=bool(configuration.get("SyncStorageArea", True)))
        self.index = LmdbResourceIndex(os.path.join(index_dir, "index.lmdb"), reactor,
                                       identifier_tags=_identifier_tags(),
                                       make_durable=self.storage.make_durable)
        self.index.set_normalizer(normalize_for_find)
        self.ingest = Ingestor(self.index, self.storage, configuration)
        self.stability = StabilityMonitor(self.index, configuration.get("StableAge", 60), reactor)
        self.ingest.listeners.append(self.stability.instance_stored)
        # Runtime settings the REST API may change (not persisted, as in Orthanc).
        self.default_encoding = configuration.get("DefaultEncoding", "Latin1")
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

    def store_file(self, path, origin):
        """Store a received Part-10 file through the same path as REST uploads."""
        return self.ingest.store_file(path, Origin(origin))

    # -- deletes: the index removes entries, then the files go --

    async def delete_resource(self, public_id, level):
        outcome = await self.index.delete_resource(public_id, level)
        for deleted_level, deleted_id in outcome.deleted:
            self.stability.forget(deleted_level, deleted_id)
        # Once the index no longer references the files, the deletion is
        # durable: the files go in the background (a crash leaves orphans,
        # which the start-up sweep removes).
        self.ingest.remove_files(outcome.obsolete_files).addErrback(
            lambda failure: log.failure("Cannot remove deleted files", failure))
        return outcome

    def read_attachment(self, info):
        """Deferred bytes of a stored attachment (read off the reactor)."""
        return threads.deferToThread(self.storage.read, info.uuid)

    async def store_attachment(self, public_id, level, content_type, data):
        salt = ("%s/%d" % (public_id, content_type)).encode()
        stored = await threads.deferToThread(self.storage.store, data, salt)
        try:
            previous = await self.index.set_attachment(public_id, level, content_type, stored)
        finally:
            self.storage.release(stored.uuid)
        if previous is not None and previous.uuid != stored.uuid:
            await self.ingest.remove_files([previous])
        return stored

    async def delete_attachment(self, public_id, level, content_type):
        previous = await self.index.delete_attachment(public_id, level, content_type)
        await self.ingest.remove_files([previous])

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
            data = self.storage.read(info.uuid)
            return render(read_dataset(data, stop_before_pixels=stop_before_pixels))
        return threads.deferToThread(load)

    def check_consistency(self):
        """Start-up sweep: remove files the index does not reference (left by a
        crash between the file write and the index commit)."""
        referenced = self.index.referenced_uuids()
        removed = 0
        for name in list(self.storage.list_uuids()):
            if name not in referenced:
                self.storage.remove(name)
                removed += 1
        if removed:
            log.info("Removed {n} orphan file(s) from the storage area", n=removed)
        return removed

    def close(self):
        self.index.close()
