"""orthancd as a DICOM SCU: echo, store, find, move and get towards a modality.

Operations get their association from ``association_pool``: as Orthanc,
the association of an operation stays open ``DicomAssociationCloseDelay``
seconds afterwards and serves the next operation to the same modality when
it negotiated what that one needs (``settings.close_delay`` 0 releases it
at once).  Failures become ``OrthancError`` with the codes and details
Orthanc reports, so the REST layer can render them as is.

Instances are sent one by one from their storage files; a data set is
decoded (off the reactor) only when the peer did not accept its transfer
syntax and it must be transcoded.  While one instance is on the wire and
acknowledged, the next one is read in a worker thread.
"""
import logging
import os
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.dsutils import split_dataset
from twisted.internet import defer
from twisted.internet.error import ConnectError, ConnectionRefusedError, DNSLookupError

from orthancd.dicom.reading import dataset_offset
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import MetadataType
from orthancd.net import dimse
from orthancd.net.association_pool import PoolKey, association_pool, can_serve
from orthancd.net.client import (
    DEFAULT_TRANSFER_SYNTAXES,
    AssociationRejected,
    DimseTimeout,
    NoPresentationContext,
    associate,
    normalize_contexts,
)
from orthancd.net.transfer_syntaxes import (
    EXPLICIT_BIG,
    EXPLICIT_LITTLE,
    IMPLICIT_LITTLE,
    UNCOMPRESSED,
    decode_in,
    encode_in,
)
from orthancd.net.upper_layer import AssociationAborted

log = logging.getLogger(__name__)

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
QUERY_SYNTAXES = DEFAULT_TRANSFER_SYNTAXES

# A-ASSOCIATE-RQ carries at most 128 presentation contexts.
MAX_CONTEXTS = 128

UNABLE_TO_PROCESS = 0xC000

# Warnings of C-STORE (PS3.4 B.2.3): the instance was stored.
STORE_WARNINGS = (0x0001, 0xB000, 0xB006, 0xB007)


@dataclass
class ScuSettings:
    """Who we are, how long we wait, and how long the association stays
    open afterwards for the next operation, for one operation."""
    local_aet: str
    timeout: float
    maximum_pdu_length: int = 16384
    close_delay: float = 0.0

    @classmethod
    def for_modality(cls, configuration, modality, body=None):
        """Orthanc 1.13.0's precedence: the request's LocalAet, then the
        modality's, then DicomAet; the request's Timeout, then the
        modality's, then DicomScuTimeout."""
        body = body if isinstance(body, dict) else {}
        local_aet = (body.get("LocalAet") or modality.get("LocalAet")
                     or configuration.get("DicomAet", "ORTHANC"))
        timeout = body.get("Timeout")
        if timeout is None:
            timeout = modality.get("Timeout") or configuration.get("DicomScuTimeout", 10)
        return cls(str(local_aet), float(timeout),
                   int(configuration.get("MaximumPduLength", 16384)),
                   float(configuration.get("DicomAssociationCloseDelay", 5)))


def _network_error(modality, message):
    return OrthancError(ErrorCode.NetworkProtocol,
                        'DicomAssociation - connecting to AET "%s": %s' % (modality["AET"], message))


async def open_association(reactor, settings, modality, contexts, **kwargs):
    """Associate with ``modality``, translating failures to Orthanc's errors."""
    try:
        return await associate(reactor, modality["Host"], int(modality["Port"]),
                               settings.local_aet, modality["AET"], contexts,
                               timeout=settings.timeout or None,
                               maximum_pdu_length=settings.maximum_pdu_length, **kwargs)
    except ConnectionRefusedError:
        # DCMTK's non-blocking connect (Orthanc 1.13.0) words a refusal so.
        raise _network_error(modality,
                             "TCP Initialization Error: Operation now in progress") from None
    except (ConnectError, DNSLookupError) as exc:
        raise _network_error(modality, "TCP Initialization Error: %s" % exc) from None
    except AssociationRejected as exc:
        raise _network_error(modality, "Association Rejected (reason %s)" % exc.reason) from None
    except DimseTimeout:
        raise _network_error(modality, "DUL network read timeout") from None
    except AssociationAborted as exc:
        raise _network_error(modality, "Association aborted: %s" % exc.reason) from None


@asynccontextmanager
async def modality_association(reactor, settings, modality, contexts, usable,
                               scp_roles=(), store_handler=None):
    """An association to ``modality`` for one operation proposing
    ``contexts``: the one kept open by the previous operation when it
    negotiated them and ``usable(association)`` holds, else a new one.

    A normal exit hands it back to the pool (kept ``settings.close_delay``
    seconds, or released); an exception aborts it, since the state of the
    exchange it interrupted is unknown.
    """
    pool = association_pool(reactor)
    key = PoolKey.for_modality(modality, settings.local_aet)
    contexts = normalize_contexts(contexts)
    association = await pool.acquire(
        key, lambda a: can_serve(a, contexts, scp_roles) and usable(a),
        lambda: open_association(reactor, settings, modality, contexts, scp_roles=scp_roles))
    association.timeout = settings.timeout or None
    association.store_handler = store_handler
    try:
        yield association
    except BaseException:
        association.abort()
        raise
    association.store_handler = None
    await pool.give_back(key, association, settings.close_delay)


def _dimse_error(modality, exc):
    if isinstance(exc, DimseTimeout):
        return OrthancError(ErrorCode.NetworkProtocol,
                            'DicomAssociation - %s to AET "%s": DIMSE No data available '
                            '(timeout in non-blocking mode)' % ("DIMSE", modality["AET"]))
    return OrthancError(ErrorCode.NetworkProtocol,
                        'DicomAssociation - DIMSE with AET "%s": %s' % (modality["AET"], exc))


# -- C-ECHO ------------------------------------------------------------------


async def echo(reactor, settings, modality, check_find=False):
    """C-ECHO; with ``check_find``, then a C-FIND at the study level for a
    UID nobody has, as Orthanc's CheckFind (does the peer know us?)."""
    from orthancd.net.scp_echo import VERIFICATION_SOP_CLASS
    syntaxes = ECHO_CONTEXTS + (FIND_CONTEXTS if check_find else ())
    async with _control_association(reactor, settings, modality, syntaxes) as association:
        if association.find_context(VERIFICATION_SOP_CLASS) is None:
            raise OrthancError(ErrorCode.NoPresentationContext,
                               'Unable to negotiate a presentation context with AET "%s"'
                               % modality["AET"])
        try:
            status = await association.echo()
        except (DimseTimeout, AssociationAborted, NoPresentationContext) as exc:
            raise _dimse_error(modality, exc) from None
        if status != dimse.SUCCESS:
            raise OrthancError(ErrorCode.NetworkProtocol, 'C-ECHO to AET "%s" failed with '
                               'status 0x%04x' % (modality["AET"], status))
        if check_find:
            query = identifier_dataset(ResourceLevel.STUDY, {"StudyInstanceUID": generate_uid()})
            await _find_on(association, modality, ResourceLevel.STUDY, query)


# -- outgoing instances ------------------------------------------------------


@dataclass
class OutgoingInstance:
    """One stored instance about to be sent: what it is and where it lies."""
    instance_id: str
    sop_class: str
    transfer_syntax: str
    path: str = None          # the Part-10 file, when stored uncompressed
    compressed_uuid: str = None
    sop_instance: str = None
    # store-straight sends the bytes as they are, never transcoded (Orthanc).
    may_transcode: bool = True
    # DicomScuPreferredTransferSyntax: proposed too, the first choice when
    # the instance must be transcoded (lossy compression allowed).
    preferred: str = EXPLICIT_LITTLE

    @property
    def proposed_preferred(self):
        """The syntax proposed on a context of its own besides the stored
        one: DicomScuPreferredTransferSyntax when transcoding, else explicit
        little endian (what Orthanc's Store() gives its negotiation)."""
        return self.preferred if self.may_transcode else EXPLICIT_LITTLE


# DicomStoreUserConnection's uncompressed group, in its order.
_UNCOMPRESSED_GROUP = (IMPLICIT_LITTLE, EXPLICIT_LITTLE, EXPLICIT_BIG)


def storage_class_contexts(sop_class, sources, preferred):
    """1.13.0's ProposeStorageClass: a context for each stored syntax of
    the class, one for the preferred syntax when none of them is it, and
    one proposing the uncompressed syntaxes that are left (implicit and
    explicit little endian, explicit big endian)."""
    contexts = [(sop_class, (syntax,)) for syntax in sources]
    if preferred not in sources:
        contexts.append((sop_class, (preferred,)))
    rest = tuple(syntax for syntax in _UNCOMPRESSED_GROUP
                 if syntax not in sources and syntax != preferred)
    if rest:
        contexts.append((sop_class, rest))
    return contexts


class StorageProposal:
    """The presentation contexts of an association carrying several
    instances: each storage class proposed as 1.13.0 proposes it with all
    its stored syntaxes (its registered classes), at most 128 contexts."""

    def __init__(self):
        self._classes = {}     # SOP class -> (stored syntaxes, preferred)
        self._counts = {}      # SOP class -> number of its contexts
        self._total = 0

    def add(self, instance):
        """Propose ``instance`` too; False (and nothing added) when its
        contexts would not fit, unless the proposal is still empty."""
        sources, preferred = self._classes.get(
            instance.sop_class, ([], instance.proposed_preferred))
        if instance.transfer_syntax in sources:
            return True
        count = len(storage_class_contexts(instance.sop_class,
                                           sources + [instance.transfer_syntax], preferred))
        total = self._total - self._counts.get(instance.sop_class, 0) + count
        if self._total and total > MAX_CONTEXTS:
            return False
        self._classes[instance.sop_class] = (sources + [instance.transfer_syntax], preferred)
        self._counts[instance.sop_class] = count
        self._total = total
        return True

    def contexts(self):
        contexts = []
        for sop_class, (sources, preferred) in self._classes.items():
            contexts.extend(storage_class_contexts(sop_class, sources, preferred))
        return contexts


def may_transcode(server, modality):
    """ServerContext::PerformCStoreWithTranscoding: the SCU transcodes when
    TranscodeDicomProtocol is on and the modality's AllowTranscoding too."""
    if not server.configuration.get("TranscodeDicomProtocol", True):
        return False
    return modality is None or bool(modality.get("AllowTranscoding", True))


def outgoing_instance(server, instance_id, modality=None):
    """Describe a stored instance from the index (cheap reads, reactor thread)."""
    metadata = server.index.get_metadata(instance_id, ResourceLevel.INSTANCE)
    info = server.dicom_attachment(instance_id)
    outgoing = OutgoingInstance(
        instance_id,
        metadata.get(int(MetadataType.SopClassUid), ""),
        metadata.get(int(MetadataType.TransferSyntax), EXPLICIT_LITTLE))
    resource = server.index.get_resource(instance_id, ResourceLevel.INSTANCE)
    outgoing.sop_instance = resource.main_tags.get("SOPInstanceUID", "")
    outgoing.may_transcode = may_transcode(server, modality)
    outgoing.preferred = server.configuration.get("DicomScuPreferredTransferSyntax",
                                                  EXPLICIT_LITTLE) or EXPLICIT_LITTLE
    if info.compressed:
        outgoing.compressed_uuid = info.uuid
    else:
        outgoing.path = server.storage.path(info.uuid)
    return outgoing


def choose_context(association_contexts, instance):
    """The accepted context to send ``instance`` on: its own syntax first,
    else one it can be transcoded to.  None when nothing fits."""
    candidates = candidate_contexts(association_contexts, instance)
    return candidates[0] if candidates else None


def candidate_contexts(association_contexts, instance):
    """The accepted contexts that can carry ``instance``, in Orthanc's order
    (DicomStoreUserConnection::Transcode): its own syntax, else the
    preferred one, else the uncompressed ones."""
    same_class = [c for c in association_contexts if c.abstract_syntax == instance.sop_class]
    own = [c for c in same_class if c.transfer_syntax == instance.transfer_syntax]
    if own or not instance.may_transcode:
        return own[:1]
    preferred = [c for c in same_class if c.transfer_syntax == instance.preferred]
    return preferred[:1] + [c for c in same_class if c.transfer_syntax in UNCOMPRESSED and
                            c.transfer_syntax != instance.preferred]


# Files up to this size are read whole in the worker thread and sent in one
# write; bigger ones are streamed from disk, a PDU at a time.
READ_WHOLE_LIMIT = 32 * 1024 * 1024


def _dataset_start(path):
    """Where the data set starts in a stored file: after its file meta
    group, or at once in a bare data set (uploaded without a Part-10
    header, which Orthanc accepts and sends all the same)."""
    with open(path, "rb") as f:
        f.seek(128)
        if f.read(4) != b"DICM":
            return 0
    return split_dataset(Path(path))[1]


def load_payload(server, instance, transfer_syntax):
    """Blocking (run in a thread): the data set bytes of ``instance`` in
    ``transfer_syntax``, or ``(fileobj, length)`` to stream a big file as is."""
    if instance.path is not None and transfer_syntax == instance.transfer_syntax:
        with open(instance.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= READ_WHOLE_LIMIT:
                data = f.read()
                offset = dataset_offset(data)
                if offset is None:
                    offset = _dataset_start(instance.path)
                return memoryview(data)[offset:]
        offset = _dataset_start(instance.path)
        fileobj = open(instance.path, "rb")
        fileobj.seek(offset)
        return fileobj, size - offset
    raw = (open(instance.path, "rb").read() if instance.path is not None
           else server.storage.read(instance.compressed_uuid))
    if transfer_syntax == instance.transfer_syntax:
        dataset = pydicom.dcmread(BytesIO(raw), force=True)
        data = encode_in(dataset, transfer_syntax)
        if data is None:
            raise OrthancError(ErrorCode.BadFileFormat,
                               "Cannot encode instance %s" % instance.instance_id)
        return data
    # DicomStoreUserConnection::Transcode: to an uncompressed syntax the
    # peer accepted, keeping the SOP Instance UID (orthancd.transcoding).
    transcoded = server.transcoder.transcode_blocking(
        raw, {transfer_syntax}, allow_new_uid=transfer_syntax == instance.preferred)
    if transcoded is None:
        raise OrthancError(ErrorCode.NotImplemented,
                           "Cannot transcode instance %s from %s to %s"
                           % (instance.instance_id, instance.transfer_syntax, transfer_syntax))
    offset = dataset_offset(transcoded.data)
    if offset is None:
        raise OrthancError(ErrorCode.BadFileFormat,
                           "Cannot encode instance %s" % instance.instance_id)
    return memoryview(transcoded.data)[offset:]


# -- C-STORE -----------------------------------------------------------------


@dataclass
class StoreOutcome:
    sent: list = field(default_factory=list)      # instance ids stored
    failed: list = field(default_factory=list)    # (instance id, OrthancError)


def store_failed(modality, status):
    """Orthanc's error for a C-STORE the peer refused."""
    return OrthancError(ErrorCode.NetworkProtocol,
                        'C-STORE SCU to AET "%s" has failed with DIMSE status 0x%04X'
                        % (modality["AET"], status),
                        payload={"Content": {"DimseErrorStatus": status}, "Type": "Dimse"})


def no_context(modality, sop_class, transfer_syntax):
    return OrthancError(ErrorCode.NetworkProtocol,
                        "No valid presentation context was negotiated for SOP class UID [%s] "
                        "and transfer syntax [%s] while sending to modality [%s]"
                        % (sop_class, transfer_syntax, modality["AET"]))


def _batches(instances):
    """Split the instances so that each association proposes <= 128 contexts."""
    batch, proposal = [], StorageProposal()
    for instance in instances:
        if not proposal.add(instance):
            yield batch, proposal.contexts()
            batch, proposal = [], StorageProposal()
            proposal.add(instance)
        batch.append(instance)
    if batch:
        yield batch, proposal.contexts()


async def store(server, settings, modality, instance_ids, move_originator=None,
                on_stored=None, should_stop=None, permissive=True):
    """C-STORE ``instance_ids`` to ``modality``; returns a StoreOutcome.

    ``move_originator``: ``(aet, message id)`` when serving a C-MOVE.
    ``on_stored(instance_id, ok)`` is called after each instance (C-MOVE
    pending responses); ``should_stop()`` is polled between instances (a
    C-CANCEL).  Unless ``permissive``, the first failed instance ends the
    operation.  Connection failures raise OrthancError.
    """
    outcome = StoreOutcome()
    instances = []
    for instance_id in instance_ids:
        try:
            instances.append(outgoing_instance(server, instance_id, modality))
        except OrthancError as exc:  # deleted meanwhile
            outcome.failed.append((instance_id, exc))
            if on_stored is not None:
                on_stored(instance_id, False)
        except Exception as exc:
            outcome.failed.append((instance_id, OrthancError(ErrorCode.UnknownResource, str(exc))))
            if on_stored is not None:
                on_stored(instance_id, False)
    if outcome.failed and not permissive:
        return outcome
    return await send_instances(server, settings, modality, instances, outcome,
                                move_originator, on_stored, should_stop, permissive)


async def send_instances(server, settings, modality, instances, outcome,
                         move_originator=None, on_stored=None, should_stop=None,
                         permissive=True):
    """C-STORE OutgoingInstances, recording what happens in ``outcome``."""
    user_stop = should_stop

    def should_stop():
        return (bool(outcome.failed) and not permissive) or (
            user_stop is not None and user_stop())

    for batch, contexts in _batches(instances):
        def carries_all(association, batch=batch):
            return all(choose_context(association.accepted_contexts, instance) is not None
                       for instance in batch)

        async with modality_association(server.reactor, settings, modality, contexts,
                                        carries_all) as association:
            stopped = await _store_batch(server, association, modality, batch,
                                         move_originator, on_stored, should_stop, outcome)
        if stopped:
            break
    return outcome


async def _store_batch(server, association, modality, batch, move_originator, on_stored,
                       should_stop, outcome):
    """Send ``batch`` on ``association``; True when ``should_stop()`` said so."""
    upcoming = None
    try:
        upcoming = _load(server, association, batch[0])
        for position, instance in enumerate(batch):
            if should_stop is not None and should_stop():
                return True
            loading, upcoming = upcoming, None
            if position + 1 < len(batch):
                upcoming = _load(server, association, batch[position + 1])
            ok = await _store_one(association, modality, instance, loading, move_originator,
                                  outcome)
            if on_stored is not None:
                on_stored(instance.instance_id, ok)
            if not association.is_established:
                break
    finally:
        if upcoming is not None:
            upcoming.addCallback(_close_unsent).addErrback(lambda failure: None)
    return False


def _load(server, association, instance):
    """Deferred ``(context, payload)`` for ``instance``, read in a thread;
    ``(None, None)`` when the peer accepted no context for it."""
    candidates = candidate_contexts(association.accepted_contexts, instance)
    if not candidates:
        return defer.succeed((None, None))
    if candidates[0].transfer_syntax == instance.transfer_syntax:
        d = server.file_io.run(load_payload, server, instance, instance.transfer_syntax)
        return d.addCallback(lambda payload: (candidates[0], payload))
    # Transcoding is image work: the pixels pool.
    return server.pixel_pool.run(_transcoded_payload, server, instance, candidates)


def _transcoded_payload(server, instance, candidates):
    """Blocking: ``(context, payload)`` for the first candidate context the
    instance can be transcoded to (the preferred syntax may fail, e.g. a
    lossy JPEG of 16-bit pixels; the uncompressed ones follow)."""
    failure = None
    for context in candidates:
        try:
            return context, load_payload(server, instance, context.transfer_syntax)
        except OrthancError as exc:
            failure = failure or exc
    raise failure


def _close_unsent(loaded):
    payload = loaded[1]
    if isinstance(payload, tuple):
        payload[0].close()


def _removed_meanwhile(failure, instance_id):
    """A file deleted since the instance was described: it is no longer stored."""
    failure.trap(FileNotFoundError)
    raise InstanceRemoved(instance_id)


async def _store_one(association, modality, instance, loading, move_originator, outcome):
    try:
        context, payload = await loading
    except InstanceRemoved:
        raise
    except OrthancError as exc:
        outcome.failed.append((instance.instance_id, exc))
        return False
    except Exception as exc:
        outcome.failed.append((instance.instance_id,
                               OrthancError(ErrorCode.NetworkProtocol, str(exc))))
        return False
    if context is None:
        outcome.failed.append((instance.instance_id, no_context(
            modality, instance.sop_class, instance.transfer_syntax)))
        return False
    fields = {
        "AffectedSOPClassUID": instance.sop_class,
        "CommandField": dimse.C_STORE_RQ,
        "Priority": 0,
        "AffectedSOPInstanceUID": instance.sop_instance,
    }
    if move_originator is not None:
        fields["MoveOriginatorApplicationEntityTitle"] = move_originator[0]
        fields["MoveOriginatorMessageID"] = move_originator[1]
    try:
        if isinstance(payload, tuple):
            response = await association.send_request(context, fields, dataset_file=payload)
        else:
            response = await association.send_request(context, fields, dataset=payload)
    except (DimseTimeout, AssociationAborted) as exc:
        if isinstance(payload, tuple):
            payload[0].close()
        outcome.failed.append((instance.instance_id, _dimse_error(modality, exc)))
        return False
    if response.status == dimse.SUCCESS or response.status in STORE_WARNINGS:
        outcome.sent.append(instance.instance_id)
        return True
    outcome.failed.append((instance.instance_id, store_failed(modality, response.status)))
    return False


class InstanceRemoved(Exception):
    """The instance to send is no longer stored (deleted since the job
    listing it was submitted)."""


class InstanceSender:
    """C-STORE stored instances one at a time, in the order given, as a job
    does (one per step): the association stays open from one instance to the
    next until ``close()``, and proposes the contexts of the instances that
    follow (up to 128), so that one association serves many.  While an
    instance is on the wire, the next one is read in a worker thread.
    """

    def __init__(self, server, settings, modality, instance_ids, move_originator=None):
        self._server = server
        self._settings = settings
        self._modality = modality
        self._ids = list(instance_ids)
        self._move_originator = move_originator
        self._planned = {}       # position -> OutgoingInstance, or OrthancError if removed
        self._contexts = {}      # position -> contexts proposed for its batch
        self._association = None
        self._key = PoolKey.for_modality(modality, settings.local_aet)
        self._prefetch = None    # (position, association, Deferred of (context, payload))

    def _plan(self, position):
        """Describe the instances from ``position`` on until their contexts
        fill an association (cheap index reads)."""
        batch, proposal = [], StorageProposal()
        for index in range(position, len(self._ids)):
            try:
                instance = outgoing_instance(self._server, self._ids[index], self._modality)
            except Exception as exc:
                self._planned[index] = exc
                continue
            if not proposal.add(instance):
                break
            batch.append(index)
            self._planned[index] = instance
        contexts = proposal.contexts()
        for index in batch:
            self._contexts[index] = contexts

    async def _association_for(self, position, instance):
        association = self._association
        if association is not None and association.is_established and choose_context(
                association.accepted_contexts, instance) is not None:
            return association
        await self._give_back()
        contexts = normalize_contexts(self._contexts[position])
        pool = association_pool(self._server.reactor)
        association = await pool.acquire(
            self._key, lambda a: can_serve(a, contexts) and choose_context(
                a.accepted_contexts, instance) is not None,
            lambda: open_association(self._server.reactor, self._settings, self._modality,
                                     contexts))
        association.timeout = self._settings.timeout or None
        self._association = association
        return association

    async def send(self, position):
        """C-STORE the instance at ``position``; returns its OutgoingInstance.
        Raises InstanceRemoved when it is no longer stored, OrthancError
        when the peer cannot be reached or refuses it."""
        if position not in self._planned:
            self._plan(position)
        instance = self._planned[position]
        if isinstance(instance, Exception):
            raise InstanceRemoved(self._ids[position])
        association = await self._association_for(position, instance)
        loading = self._take_prefetch(position, association)
        if loading is None:
            loading = _load(self._server, association, instance)
        following = position + 1
        if following < len(self._ids) and following not in self._planned:
            self._plan(following)
        upcoming = self._planned.get(following)
        if isinstance(upcoming, OutgoingInstance):
            self._prefetch = (following, association, _load(self._server, association, upcoming))
        loading.addErrback(_removed_meanwhile, self._ids[position])
        outcome = StoreOutcome()
        try:
            ok = await _store_one(association, self._modality, instance, loading,
                                  self._move_originator, outcome)
        except InstanceRemoved:
            raise
        except BaseException:
            association.abort()
            raise
        if not ok:
            raise outcome.failed[0][1]
        return instance

    def _take_prefetch(self, position, association):
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is None:
            return None
        if prefetch[0] == position and prefetch[1] is association:
            return prefetch[2]
        prefetch[2].addCallback(_close_unsent).addErrback(lambda failure: None)
        return None

    def _give_back(self):
        association, self._association = self._association, None
        self._take_prefetch(None, None)
        if association is None:
            return defer.succeed(None)
        association.store_handler = None
        pool = association_pool(self._server.reactor)
        return pool.give_back(self._key, association, self._settings.close_delay)

    def close(self):
        """Done for now (the job ends or pauses): the association goes back
        to the pool, kept ``DicomAssociationCloseDelay`` seconds."""
        d = self._give_back()
        d.addErrback(lambda failure: log.debug("release failed: %s", failure.getErrorMessage()))
        return d


def _straight_instance(server, data):
    """Blocking: the OutgoingInstance of DICOM bytes posted to store-straight,
    written to a temporary file (which the caller removes)."""
    from orthancd.dicom.reading import DicomFormatError, read_dataset
    try:
        dataset = read_dataset(data, stop_before_pixels=True)
        sop_class = str(dataset.SOPClassUID)
        sop_instance = str(dataset.SOPInstanceUID)
        transfer_syntax = str(dataset.file_meta.TransferSyntaxUID)
    except (DicomFormatError, AttributeError, ValueError, TypeError):
        raise OrthancError(ErrorCode.BadFileFormat, "Cannot parse an invalid DICOM file "
                           "(size: %d bytes)" % len(data)) from None
    fd, path = tempfile.mkstemp(prefix="straight-", suffix=".dcm",
                                dir=server.temporary_directory)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return OutgoingInstance(None, sop_class, transfer_syntax, path=path, sop_instance=sop_instance,
                            may_transcode=False)


async def store_straight(server, settings, modality, data):
    """C-STORE DICOM bytes that are not stored here; returns their
    (SOPClassUID, SOPInstanceUID)."""
    instance = await server.file_io.run(_straight_instance, server, data)
    try:
        outcome = await send_instances(server, settings, modality, [instance], StoreOutcome(),
                                       permissive=False)
    finally:
        await server.file_io.run(os.unlink, instance.path)
    if outcome.failed:
        raise outcome.failed[0][1]
    return instance.sop_class, instance.sop_instance


# -- C-FIND ------------------------------------------------------------------


WORKLIST_FIND = "1.2.840.10008.5.1.4.31"

_UNAVAILABLE = {PATIENT_ROOT_FIND: ErrorCode.DicomFindUnavailable,
                WORKLIST_FIND: ErrorCode.DicomFindUnavailable,
                STUDY_ROOT_FIND: ErrorCode.DicomFindUnavailable,
                PATIENT_ROOT_MOVE: ErrorCode.DicomMoveUnavailable,
                STUDY_ROOT_MOVE: ErrorCode.DicomMoveUnavailable}


def _context_for(association, abstract_syntax, modality):
    context = association.find_context(abstract_syntax)
    if context is None:
        accepted_any = bool(list(association.accepted_contexts))
        association.abort()
        if not accepted_any:
            raise OrthancError(ErrorCode.NoPresentationContext,
                               'Unable to negotiate a presentation context with AET "%s"'
                               % modality["AET"])
        raise OrthancError(_UNAVAILABLE.get(abstract_syntax, ErrorCode.NetworkProtocol),
                           "Remote AET is %s" % modality["AET"])
    return context


# What Orthanc's DicomControlUserConnection proposes for each operation:
# whether the peer refuses all of them or only the one needed shows in
# the errors (NoPresentationContext, or DicomFind/MoveUnavailable).
ECHO_CONTEXTS = ("1.2.840.10008.1.1",)
FIND_CONTEXTS = (PATIENT_ROOT_FIND, STUDY_ROOT_FIND)
MOVE_CONTEXTS = (PATIENT_ROOT_MOVE, STUDY_ROOT_MOVE)


def _control_association(reactor, settings, modality, abstract_syntaxes):
    """The association of a C-ECHO, C-FIND or C-MOVE proposing ``abstract_syntaxes``."""
    contexts = [(uid, QUERY_SYNTAXES) for uid in abstract_syntaxes]
    return modality_association(
        reactor, settings, modality, contexts,
        lambda a: any(a.find_context(uid) is not None for uid in abstract_syntaxes))


def encode_identifier(dataset, context):
    return encode_in(dataset, context.transfer_syntax)


def decode_identifier(data, context):
    return decode_in(data, context.transfer_syntax)


async def find(reactor, settings, modality, level, query):
    """C-FIND ``query`` (a Dataset with QueryRetrieveLevel) at ``level``;
    returns the answers as Datasets.  Patient level uses the Patient Root
    model, the others the Study Root model, as Orthanc does."""
    async with _control_association(reactor, settings, modality,
                                    FIND_CONTEXTS) as association:
        return await _find_on(association, modality, level, query)


async def _find_on(association, modality, level, query):
    model = PATIENT_ROOT_FIND if level is ResourceLevel.PATIENT else STUDY_ROOT_FIND
    return await _c_find(association, model, modality, query)


async def find_worklist(reactor, settings, modality, query):
    """C-FIND ``query`` against the modality's worklists; the answers as
    Datasets, without SOPInstanceUID (Orthanc drops it from worklist answers
    so as to behave as wlmscpfs)."""
    async with _control_association(reactor, settings, modality,
                                    (WORKLIST_FIND,)) as association:
        answers = await _c_find(association, WORKLIST_FIND, modality, query)
    for answer in answers:
        for tag in (0x00020003, 0x00080018):
            if tag in answer:
                del answer[tag]
    return answers


async def _c_find(association, model, modality, query):
    context = _context_for(association, model, modality)
    answers = []

    def pending(response):
        if response.dataset is not None:
            answers.append(decode_identifier(response.dataset, context))

    try:
        response = await association.send_request(context, {
            "AffectedSOPClassUID": model,
            "CommandField": dimse.C_FIND_RQ,
            "Priority": 0,
        }, dataset=encode_identifier(query, context), on_pending=pending)
    except (DimseTimeout, AssociationAborted) as exc:
        raise _dimse_error(modality, exc) from None
    # A cancelled C-FIND (the peer's limit) still counts as answered.
    if response.status not in (dimse.SUCCESS, dimse.CANCEL):
        unable = response.status == UNABLE_TO_PROCESS
        raise OrthancError(ErrorCode.NetworkProtocol,
                           'C-FIND SCU to AET "%s" has failed with DIMSE status 0x%04X%s'
                           % (modality["AET"], response.status,
                              " (unable to process - invalid query ?)" if unable else ""),
                           http_status=422 if unable else None,
                           payload={"Content": {"DimseErrorStatus": response.status},
                                    "Type": "Dimse"})
    return answers


def with_media_storage_uids(answer):
    """Orthanc keeps each answer as a DICOM file, whose meta header repeats
    its SOP class and instance UIDs: they show among the answer's tags."""
    for meta, tag in ((0x00020002, 0x00080016), (0x00020003, 0x00080018)):
        element = answer.get(tag)
        if element is not None and element.value:
            answer.add_new(meta, "UI", element.value)
    return answer


# -- C-MOVE ------------------------------------------------------------------


@dataclass
class RetrieveCounts:
    status: int = dimse.SUCCESS
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    # Public IDs of the instances that came to us through this retrieve.
    received: list = field(default_factory=list)


class MoveReceptions:
    """Instances arriving by C-STORE on behalf of our own C-MOVEs (their
    MoveOriginator fields name our AET and the C-MOVE's message ID)."""

    def __init__(self):
        self._expected = {}

    def expect(self, aet, message_id):
        return self._expected.setdefault((aet.strip(), message_id), [])

    def forget(self, aet, message_id):
        return self._expected.pop((aet.strip(), message_id), [])

    def received(self, aet, message_id, instance_id):
        expected = self._expected.get((str(aet).strip(), message_id))
        if expected is not None:
            expected.append(instance_id)


move_receptions = MoveReceptions()


def _counts(command, counts):
    counts.status = command.get("Status", dimse.SUCCESS)
    counts.completed = command.get("NumberOfCompletedSuboperations") or counts.completed
    counts.failed = command.get("NumberOfFailedSuboperations") or counts.failed
    counts.warning = command.get("NumberOfWarningSuboperations") or counts.warning
    counts.remaining = command.get("NumberOfRemainingSuboperations") or 0


async def move(reactor, settings, modality, level, identifier, target_aet, check=True,
               counts=None):
    """C-MOVE one identifier to ``target_aet``; returns RetrieveCounts
    (without ``check``, whatever the final status).  ``counts``, when given,
    follows the pending responses as they come (a job's progress)."""
    model = PATIENT_ROOT_MOVE if level is ResourceLevel.PATIENT else STUDY_ROOT_MOVE
    counts = RetrieveCounts() if counts is None else counts
    async with _control_association(reactor, settings, modality,
                                    MOVE_CONTEXTS) as association:
        key = (settings.local_aet, association.next_message_id)
        counts.received = move_receptions.expect(*key)
        try:
            await _retrieve(association, model, modality, identifier, counts,
                            {"CommandField": dimse.C_MOVE_RQ, "MoveDestination": target_aet})
        finally:
            move_receptions.forget(*key)
    return _checked(counts, "C-MOVE", modality) if check else counts


async def _retrieve(association, model, modality, identifier, counts, fields):
    """Send a C-MOVE-RQ or C-GET-RQ and follow its pending counts into ``counts``."""
    context = _context_for(association, model, modality)
    try:
        response = await association.send_request(
            context, dict(fields, AffectedSOPClassUID=model, Priority=0),
            dataset=encode_identifier(identifier, context),
            on_pending=lambda response: _counts(response.command, counts))
    except (DimseTimeout, AssociationAborted) as exc:
        raise _dimse_error(modality, exc) from None
    _counts(response.command, counts)


def _checked(counts, operation, modality):
    if counts.status not in (dimse.SUCCESS, 0xB000):
        raise OrthancError(ErrorCode.NetworkProtocol,
                           '%s SCU to AET "%s" has failed with DIMSE status 0x%04X'
                           % (operation, modality["AET"], counts.status))
    return counts


# -- C-GET -------------------------------------------------------------------


def storage_classes():
    from orthancd.net.scp_store import STORAGE_SOP_CLASSES
    return sorted(STORAGE_SOP_CLASSES)


class _GetStoreSink:
    """Receives one C-STORE sub-operation of our C-GET into a temporary file."""

    def __init__(self, server, protocol, context, command, modality, received, received_ids):
        from orthancd.net import part10
        self._server = server
        self._protocol = protocol
        self._context = context
        self._command = command
        self._modality = modality
        self._received = received
        self._received_ids = received_ids
        self.sop_instance = str(command.get("AffectedSOPInstanceUID", "")).strip("\0 ")
        sop_class = str(command.get("AffectedSOPClassUID", "")).strip("\0 ")
        fd, self._path = tempfile.mkstemp(prefix="cget-", suffix=".dcm",
                                          dir=server.temporary_directory)
        self._file = open(fd, "wb", buffering=256 * 1024)
        self._file.write(part10.file_header(sop_class, self.sop_instance,
                                            context.transfer_syntax))

    def write(self, fragment):
        self._file.write(fragment)

    def discard(self):
        self._file.close()
        self._remove()

    def _remove(self):
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass

    def finish(self):
        self._file.close()
        origin = {"RemoteAET": self._modality["AET"], "CalledAET": self._protocol.request.calling_ae_title.strip(),
                  "RemoteIP": self._modality["Host"], "Origin": "DicomProtocol"}
        d = defer.maybeDeferred(self._server.store_file, self._path, origin)
        d.addCallbacks(self._stored, self._failed)
        d.addCallback(self._answer)
        self._received.append(d)

    def _stored(self, outcome):
        self._received_ids.append(outcome.ids[3])
        return dimse.SUCCESS

    def _failed(self, failure):
        log.warning("C-GET: storing %s failed: %s", self.sop_instance, failure.getErrorMessage())
        return dimse.REFUSED_OUT_OF_RESOURCES

    def _answer(self, status):
        self._remove()
        self._protocol.send_command(self._context.context_id, dimse.response_fields(
            self._command, status, AffectedSOPInstanceUID=self.sop_instance or None))
        return status


async def get(server, settings, modality, level, identifier, check=True, counts=None):
    """C-GET one identifier: the peer sends the instances back on our
    association and they are stored like any C-STORE.  Returns RetrieveCounts
    (``counts``, when given, follows the pending responses)."""
    model = PATIENT_ROOT_GET if level is ResourceLevel.PATIENT else STUDY_ROOT_GET
    contexts = [(model, list(QUERY_SYNTAXES))] + get_storage_contexts()
    received = []

    counts = RetrieveCounts() if counts is None else counts

    def handle_store(protocol, context, command):
        return _GetStoreSink(server, protocol, context, command, modality, received,
                             counts.received)

    async with modality_association(server.reactor, settings, modality, contexts,
                                    lambda a: a.find_context(model) is not None,
                                    scp_roles=[uid for uid, _ in contexts[1:]],
                                    store_handler=handle_store) as association:
        await _retrieve(association, model, modality, identifier, counts,
                        {"CommandField": dimse.C_GET_RQ})
        await defer.DeferredList(received)
    return _checked(counts, "C-GET", modality) if check else counts


# The storage classes proposed for C-GET (128 contexts at most, one taken by
# the query model): the common imaging ones first.
_PREFERRED_GET_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.4",
    "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",
    "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.6.1",
    "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.12.1", "1.2.840.10008.5.1.4.1.1.12.2",
    "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.481.1",
    "1.2.840.10008.5.1.4.1.1.481.2", "1.2.840.10008.5.1.4.1.1.481.3", "1.2.840.10008.5.1.4.1.1.481.5",
    "1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33",
    "1.2.840.10008.5.1.4.1.1.104.1", "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.11.1",
    "1.2.840.10008.5.1.4.1.1.6.2", "1.2.840.10008.5.1.4.1.1.77.1.4", "1.2.840.10008.5.1.4.1.1.13.1.3",
    "1.2.840.10008.5.1.4.1.1.3", "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.9.1.1",
)


# A C-GET SCP sends an instance on a context of exactly its stored syntax
# (or transcodes it, which Orthanc cannot do for most compressed ones), and
# the acceptor picks a single syntax per context: so the common imaging
# classes get one context per usual compressed syntax.
_COMPRESSED_FOR_GET = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
                       "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
                       "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
                       "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
                       "1.2.840.10008.1.2.5")
_COMPRESSED_CLASSES_FOR_GET = 10


def get_storage_contexts():
    """The storage contexts (with the SCP role) proposed by our C-GET SCU:
    at most 127, the query model taking the last one."""
    available = set(storage_classes())
    classes = [uid for uid in _PREFERRED_GET_CLASSES if uid in available]
    contexts = []
    for position, uid in enumerate(classes):
        contexts.append((uid, [EXPLICIT_LITTLE, IMPLICIT_LITTLE]))
        if position < _COMPRESSED_CLASSES_FOR_GET:
            contexts.extend((uid, [ts]) for ts in _COMPRESSED_FOR_GET)
    return contexts[:MAX_CONTEXTS - 1]


def identifier_dataset(level, fields):
    """A query/retrieve identifier from ``{keyword or "gggg,eeee": value}``."""
    dataset = Dataset()
    dataset.QueryRetrieveLevel = "IMAGE" if level is ResourceLevel.INSTANCE else level.name
    for key, value in fields.items():
        set_element(dataset, key, value)
    return dataset


def set_element(dataset, key, value):
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    tag = tag_for_keyword(key)
    if tag is None:
        try:
            group, element = key.split(",")
            tag = (int(group, 16) << 16) | int(element, 16)
        except ValueError:
            raise OrthancError(ErrorCode.UnknownDicomTag, "Unknown DICOM tag: %s" % key) from None
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        vr = "LO"
    if isinstance(value, list):
        dataset.add_new(tag, "SQ", [])
        return
    dataset.add_new(tag, vr, "" if value is None else str(value))
