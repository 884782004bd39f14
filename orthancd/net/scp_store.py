"""C-STORE SCP: receive each incoming instance as a Part-10 file, hand it
to the services and answer once it is durably stored.

The data set bytes are kept exactly as received (never re-encoded) after a
file meta group built from the command set and the presentation context.
An instance takes one of two paths:

- In memory: an instance of up to IN_MEMORY_LIMIT bytes (most of them: a
  CT slice is half a MiB) is kept in memory, then stored as REST uploads of
  that size are (``services.store_bytes``): one job of the file pool
  hashes, parses and writes it, directly to the disk.  That costs less CPU
  than streaming it (no new pages in the page cache, no hand-over per
  batch, no header read back), alone as with several senders at once:
  one storescu, 220 -> 260 instances/s (CPU per instance 4.2 -> 3.4 ms).
- Streamed: an instance that outgrows the limit (or when the services
  cannot store bytes) is written and hashed in a worker thread as the PDUs
  arrive (``StreamingFileWriter``), and handed over as a ``ReceivedFile``
  carrying its digests, so the storage area can rename it into place
  without reading it; the writing and hashing overlap the transfer, and
  memory stays bounded.  Ownership of the temporary file passes to
  ``store_file`` for the duration of the call (it may move it into the
  storage area); whatever is left at that path afterwards is deleted.
"""

import fnmatch
import functools
import logging
import os
import zlib
from io import BytesIO

from pydicom.filereader import read_dataset
from twisted.internet import defer

from orthancd.dicom.header_scan import plain_top_elements
from orthancd.ingest import IN_MEMORY_LIMIT
from orthancd.net import access, dimse, part10
from orthancd.net.storage_sop_classes import DCMTK_ALL_STORAGE
from orthancd.net.scu import move_receptions
from orthancd.storage.streaming import StreamingFileWriter
from orthancd.storage.temporary_files import new_temporary_path
from orthancd.net.transfer_syntaxes import DEFLATED, is_implicit_vr, is_little_endian, negotiable

log = logging.getLogger(__name__)


# What Orthanc 1.13.0's C-STORE SCP accepts by default: DCMTK's storage classes.
STORAGE_SOP_CLASSES = frozenset(DCMTK_ALL_STORAGE)


def _matches(uid, patterns):
    return any(fnmatch.fnmatchcase(uid, pattern) for pattern in patterns)


@functools.lru_cache(maxsize=16)
def accepted_sop_classes(accepted=None, rejected=()):
    """The storage SOP classes of Orthanc 1.13.0's AcceptedSopClasses and
    RejectedSopClasses: the default classes matching an accepted pattern
    (all when none is set), plus the accepted UIDs written without
    wildcards, less those matching a rejected pattern."""
    if accepted:
        classes = {uid for uid in STORAGE_SOP_CLASSES if _matches(uid, accepted)}
        classes.update(p for p in accepted if "*" not in p and "?" not in p)
    else:
        classes = set(STORAGE_SOP_CLASSES)
    return frozenset(uid for uid in classes if not _matches(uid, rejected))

# The first bytes of each data set are kept to check its SOP Class/Instance
# UIDs against the command set, as Orthanc does; they sit near the start.
HEAD_LIMIT = 64 * 1024
_SOP_INSTANCE_UID_TAG = 0x00080018


class SopUidsUnreadable(Exception):
    pass


def _format_error_status(exc):
    # orthancd.dicom.reading.DicomFormatError (and pydicom's
    # InvalidDicomError) mean "not DICOM we can understand"; anything else
    # is a failure on our side.
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"DicomFormatError", "InvalidDicomError"}:
        return dimse.ERROR_CANNOT_UNDERSTAND
    return dimse.REFUSED_OUT_OF_RESOURCES


_SOP_CLASS_UID_TAG = 0x00080016


def _plain_sop_uids(head, implicit):
    """(SOPClassUID, SOPInstanceUID) of a little endian data set whose first
    elements are plain (header_scan.plain_top_elements) and whose UIDs are
    single ASCII values; None for anything else, which the full reading
    (pydicom) then decides.  Each C-STORE pays this on the reactor: 0.1 ms
    with pydicom, a few microseconds so."""
    elements = plain_top_elements(head, implicit, _SOP_INSTANCE_UID_TAG)
    if elements is None:
        return None
    uids = []
    for tag in (_SOP_CLASS_UID_TAG, _SOP_INSTANCE_UID_TAG):
        raw = elements.get(tag)
        if raw is None or raw.VR not in (None, "UI"):
            return None
        value = raw.value
        if not isinstance(value, bytes) or not value.isascii() or b"\\" in value:
            return None
        uid = value.decode("ascii").strip("\0 ")
        if not uid:
            return None
        uids.append(uid)
    return tuple(uids)


def read_sop_uids(head, transfer_syntax, complete):
    """Return (SOPClassUID, SOPInstanceUID) found in the first data set bytes.

    Raises SopUidsUnreadable when the data set is complete and they are
    missing or unparsable; returns None when the head is too short to tell.
    """
    if transfer_syntax not in DEFLATED and is_little_endian(transfer_syntax):
        found = _plain_sop_uids(bytes(head), is_implicit_vr(transfer_syntax))
        if found is not None:
            return found
    data = head
    if transfer_syntax in DEFLATED:
        try:
            data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(head)
        except zlib.error as exc:
            raise SopUidsUnreadable(str(exc)) from exc
    try:
        dataset = read_dataset(
            BytesIO(data), is_implicit_vr(transfer_syntax), is_little_endian(transfer_syntax),
            stop_when=lambda tag, vr, length: tag > _SOP_INSTANCE_UID_TAG)
        sop_class = dataset.get("SOPClassUID")
        sop_instance = dataset.get("SOPInstanceUID")
    except Exception as exc:
        if complete:
            raise SopUidsUnreadable(str(exc)) from exc
        return None
    if not sop_class or not sop_instance:
        if complete or len(data) > 2 * HEAD_LIMIT:
            raise SopUidsUnreadable("no SOP Class/Instance UID in the data set")
        return None
    return str(sop_class).strip("\0 "), str(sop_instance).strip("\0 ")


class IncomingInstance:
    """The data set sink of one C-STORE request."""

    # Fragments are handed to the file pool in batches of this size: a PDU
    # is 16 kB with Orthanc's default MaximumPduLength.
    BATCH_SIZE = 256 * 1024

    def __init__(self, service, request):
        self._service = service
        self._request = request
        command = request.command
        self.sop_class_uid = str(command.get("AffectedSOPClassUID", "")).strip("\0 ")
        self.sop_instance_uid = str(command.get("AffectedSOPInstanceUID", "")).strip("\0 ")
        self.transfer_syntax = request.context.transfer_syntax
        self._head = bytearray()
        self._head_complete = True
        self._writer = None
        self.path = None
        self._open_error = None
        self._write_error = False
        # The file while it is kept in memory: its pieces (the meta group,
        # then slices of the PDUs, which nothing modifies) and their size.
        self._pieces = None
        self._size = 0
        try:
            header = part10.file_header(
                self.sop_class_uid, self.sop_instance_uid, self.transfer_syntax)
        except Exception as exc:
            log.error("cannot make the file meta group for C-STORE: %s", exc)
            self._open_error = exc
            return
        if service.stores_bytes:
            self._pieces = [header]
            self._size = len(header)
        else:
            self._stream([header])

    def _stream(self, pieces):
        """Go on writing the file to a temporary file, from ``pieces``."""
        try:
            # Created by the writer, in the file pool (no system call here).
            self.path = new_temporary_path(self._service.temporary_directory, "cstore-", ".dcm")
            # The association's connection pauses while the disk lags.
            association = self._request.association
            self._writer = StreamingFileWriter(
                self.path, association.clock, self._service.file_io,
                getattr(association, "transport", None), self.BATCH_SIZE,
                self._service.create_temporary_file)
            for piece in pieces:
                self._writer.write(piece)
        except Exception as exc:
            log.error("cannot create a temporary file for C-STORE: %s", exc)
            self._open_error = exc
            self._drop_file()

    def write(self, fragment):
        room = HEAD_LIMIT - len(self._head)
        if room > 0:
            self._head += fragment[:room]
        if len(fragment) > room:
            self._head_complete = False
        if self._pieces is not None:
            self._pieces.append(fragment)
            self._size += len(fragment)
            if self._size > IN_MEMORY_LIMIT:
                pieces, self._pieces = self._pieces, None
                self._stream(pieces)
        elif self._writer is not None:
            self._writer.write(fragment)

    def finish(self):
        if self._open_error is not None:
            self._respond(dimse.REFUSED_OUT_OF_RESOURCES)
            return
        status = self._check_sop_uids()
        if status is not None:
            self._drop_file()
            self._respond(status)
            return
        if self._pieces is not None:
            data, self._pieces = b"".join(self._pieces), None
            self._service.store_bytes(self, data)
            return
        writer, self._writer = self._writer, None
        closed = writer.close()
        if not self._service.store_where_written(self, writer, closed):
            closed.addCallbacks(self._written, self._write_failed)

    def _written(self, received):
        self.path = received
        self._service.store(self)

    def received(self, received):
        """The file is complete (its storage goes on where it was written)."""
        self.path = received

    def received_nothing(self, failure):
        """The file could not be written (its storage fails with it)."""
        log.error("cannot write the C-STORE temporary file: %s", failure.getErrorMessage())
        self._write_error = True

    def _write_failed(self, failure):
        self.received_nothing(failure)
        self._drop_file()
        self._respond(dimse.REFUSED_OUT_OF_RESOURCES)

    def discard(self):
        """The association ended mid-transfer: store nothing."""
        self._drop_file()

    def _check_sop_uids(self):
        try:
            found = read_sop_uids(bytes(self._head), self.transfer_syntax,
                                  complete=self._head_complete)
        except SopUidsUnreadable as exc:
            log.warning("C-STORE of %s: cannot understand the data set (%s)",
                        self.sop_instance_uid, exc)
            return dimse.ERROR_CANNOT_UNDERSTAND
        if found is None:
            return None
        if found != (self.sop_class_uid, self.sop_instance_uid):
            log.warning("C-STORE: data set %s does not match the command %s",
                        found, (self.sop_class_uid, self.sop_instance_uid))
            return dimse.ERROR_DATASET_DOES_NOT_MATCH_SOP_CLASS
        return None

    def _respond(self, status):
        self._request.respond(status, AffectedSOPInstanceUID=self.sop_instance_uid or None)

    def stored(self, result):
        self.cleanup()
        command = self._request.command
        if command.get("MoveOriginatorMessageID") is not None and hasattr(result, "ids"):
            # A sub-operation of a C-MOVE: maybe one we asked for.
            move_receptions.received(command.get("MoveOriginatorApplicationEntityTitle", ""),
                                     command.get("MoveOriginatorMessageID"), result.ids[3])
        status = getattr(result, "cstore_status", None)
        self._respond(dimse.SUCCESS if status is None else status)

    def failed(self, failure):
        self.cleanup()
        if self._write_error:
            self._respond(dimse.REFUSED_OUT_OF_RESOURCES)
            return
        status = _format_error_status(failure.value)
        log.warning("C-STORE of %s failed (status 0x%04x): %s",
                    self.sop_instance_uid, status, failure.getErrorMessage())
        self._respond(status)

    def cleanup(self):
        self._drop_file()

    def _drop_file(self):
        self._pieces = None
        if self._writer is not None:
            self._writer.discard()
            self._writer = None
        elif self.path is not None and not getattr(self.path, "moved", False):
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        self.path = None


class StoreService:
    request_type = access.STORE
    command_fields = (dimse.C_STORE_RQ,)

    def __init__(self, services):
        self._services = services

    @property
    def temporary_directory(self):
        return self._services.temporary_directory

    @property
    def create_temporary_file(self):
        """What makes the files of temporary_directory, when the services
        say (the storage area's spare files), else None."""
        return getattr(self._services, "create_temporary_file", None)

    @property
    def file_io(self):
        """The pool that writes received files, when the services have one."""
        return getattr(self._services, "file_io", None)

    @property
    def stores_bytes(self):
        """Whether the services store an instance received in memory."""
        return getattr(self._services, "store_bytes", None) is not None

    def abstract_syntaxes(self, settings):
        return accepted_sop_classes(settings.accepted_sop_classes, settings.rejected_sop_classes)

    def transfer_syntaxes(self, settings):
        return negotiable(settings.storage_transfer_syntaxes)

    def start(self, request):
        if not request.has_dataset:
            request.respond(dimse.ERROR_CANNOT_UNDERSTAND)
            return None
        return IncomingInstance(self, request)

    @staticmethod
    def _origin(instance):
        association = instance._request.association
        return {
            "RemoteAET": association.remote_aet,
            "CalledAET": association.called_aet,
            "RemoteIP": association.remote_ip,
            "Origin": "DicomProtocol",
        }

    def store(self, instance):
        """Store the complete file of ``instance``, then answer."""
        self._answer(instance, defer.maybeDeferred(self._services.store_file, instance.path,
                                                   self._origin(instance)))

    def store_bytes(self, instance, data):
        """Store the complete file of ``instance``, received in memory (its
        bytes: ``data``), then answer."""
        self._answer(instance, defer.maybeDeferred(self._services.store_bytes, data,
                                                   self._origin(instance)))

    def store_where_written(self, instance, writer, closed):
        """Whether the file ``writer`` completes (``closed``: its close) is
        stored from the thread that writes it, as soon as it is complete,
        without a trip through the reactor (the services' store_received):
        then the answer follows.  False when the services cannot."""
        store_received = getattr(self._services, "store_received", None)
        stored = store_received(writer, self._origin(instance)) if store_received else None
        if stored is None:
            return False
        closed.addCallbacks(instance.received, instance.received_nothing)
        self._answer(instance, stored)
        return True

    @staticmethod
    def _answer(instance, stored):
        stored.addCallbacks(instance.stored, instance.failed)
        stored.addErrback(lambda failure: log.error("C-STORE response failed: %s", failure))
