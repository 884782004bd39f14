"""DICOM storage commitment, as Orthanc 1.13.0 does it (both roles).

As SCU, orthancd asks a modality to commit instances (``request``): a
"Pending" report is kept under a new Transaction UID before the N-ACTION
goes out, and the modality's N-EVENT-REPORT, whenever it arrives on the
DICOM listener, replaces it (``report_received``).  Reports live in memory
only, the least recently used dropped beyond ``StorageCommitmentReportsSize``.

As SCP, orthancd accepts a request from a known modality
(``accept_request``), checks each instance against what it stores
(``check_instances``: Orthanc's failure reasons 0x0112 and 0x0119) and sends
the report on a new association, calling with the AET the modality called.
"""
import dataclasses
import logging
import uuid
import weakref
from collections import OrderedDict

from twisted.internet import defer

from orthancd.dicom.main_tags import normalize_for_find
from orthancd.errors import ErrorCode, OrthancError
from orthancd.find.lookup import instances_in_creation_order
from orthancd.ids import ResourceLevel
from orthancd.index.base import MetadataType, UnknownResource
from orthancd.modalities import modality_registry
from orthancd.lazy_modules import LazyModule

log = logging.getLogger(__name__)

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
NO_SUCH_OBJECT_INSTANCE = 0x0112
RESOURCE_LIMITATION = 0x0213
REFERENCED_SOP_CLASS_NOT_SUPPORTED = 0x0122
CLASS_INSTANCE_CONFLICT = 0x0119
DUPLICATE_TRANSACTION_UID = 0x0131

# Orthanc's descriptions of the Failure Reasons (PS3.3 C.14.1.1).
FAILURE_DESCRIPTIONS = {
    SUCCESS: "Success",
    PROCESSING_FAILURE: "A general failure in processing the operation was encountered",
    NO_SUCH_OBJECT_INSTANCE: "One or more of the elements in the Referenced SOP Instance "
                             "Sequence was not available",
    RESOURCE_LIMITATION: "The SCP does not currently have enough resources to store the "
                         "requested SOP Instance(s)",
    REFERENCED_SOP_CLASS_NOT_SUPPORTED: "Storage Commitment has been requested for a SOP "
                                        "Instance with a SOP Class that is not supported by "
                                        "the SCP",
    CLASS_INSTANCE_CONFLICT: "The SOP Class of an element in the Referenced SOP Instance "
                             "Sequence did not correspond to the SOP class registered for "
                             "this SOP Instance at the SCP",
    DUPLICATE_TRANSACTION_UID: "The Transaction UID of the Storage Commitment Request is "
                               "already in use",
}

# DICOM networking (pynetdicom, pydicom): imported by the first use
# (orthancd.lazy_modules).
scu = LazyModule("orthancd.net.scu")
commitment = LazyModule("orthancd.net.storage_commitment")


def describe_failure(reason):
    return FAILURE_DESCRIPTIONS.get(reason, "Unknown failure reason")


def new_transaction_uid():
    """A fresh UID under the UUID-derived root, as Orthanc makes them."""
    return "2.25.%d" % uuid.uuid4().int


class Report:
    """What a remote committer answered about one transaction (nothing yet
    while pending)."""

    def __init__(self, remote_aet, successes=None, failures=None):
        self.remote_aet = remote_aet
        self.complete = successes is not None or failures is not None
        self.successes = list(successes or [])
        self.failures = list(failures or [])

    @property
    def status(self):
        if not self.complete:
            return "Pending"
        return "Failure" if self.failures else "Success"

    def to_json(self):
        """The body of GET /storage-commitment/{id}."""
        answer = {"RemoteAET": self.remote_aet, "Status": self.status}
        if self.complete:
            answer["Success"] = [{"SOPClassUID": s.sop_class_uid,
                                  "SOPInstanceUID": s.sop_instance_uid}
                                 for s in self.successes]
            answer["Failures"] = [{"SOPClassUID": f.sop_class_uid,
                                   "SOPInstanceUID": f.sop_instance_uid,
                                   "FailureReason": f.reason,
                                   "Description": describe_failure(f.reason)}
                                  for f in self.failures]
        return answer


class ReportRegistry:
    """The reports by Transaction UID, least recently used first out."""

    def __init__(self, max_size=100):
        self.max_size = max(0, int(max_size))  # 0: no limit
        self._reports = OrderedDict()

    def __len__(self):
        return len(self._reports)

    def store(self, transaction_uid, report):
        """Add or replace a report; it becomes the most recent."""
        self._reports.pop(transaction_uid, None)
        if self.max_size and len(self._reports) >= self.max_size:
            self._reports.popitem(last=False)
        self._reports[transaction_uid] = report

    def get(self, transaction_uid):
        """The report, made the most recent; Orthanc's 404 when unknown."""
        report = self._reports.get(transaction_uid)
        if report is None:
            raise OrthancError(ErrorCode.InexistentItem,
                               "No storage commitment transaction with UID: %s" % transaction_uid)
        self._reports.move_to_end(transaction_uid)
        return report


_REGISTRIES = weakref.WeakKeyDictionary()


def reports(server):
    """The storage commitment reports of ``server`` (shared by the REST API
    and the DICOM listener)."""
    registry = _REGISTRIES.get(server)
    if registry is None:
        size = server.configuration.get("StorageCommitmentReportsSize", 100)
        registry = _REGISTRIES[server] = ReportRegistry(size)
    return registry


# -- orthancd asks ---------------------------------------------------------------


async def instance_references(server, instance_ids):
    """(SOP Class UID, SOP Instance UID) of stored instances, from the index
    (the stored file when the SOP Class UID metadata is missing)."""
    references = []
    for instance_id in instance_ids:
        resource = server.index.get_resource(instance_id, ResourceLevel.INSTANCE)
        sop_instance = resource.main_tags.get("SOPInstanceUID", "")
        metadata = server.index.get_metadata(instance_id, ResourceLevel.INSTANCE)
        sop_class = metadata.get(int(MetadataType.SopClassUid))
        if not sop_class:
            sop_class, _ = await stored_sop_uids(server, instance_id)
        if not sop_class or not sop_instance:
            raise OrthancError(ErrorCode.InternalError,
                               "Cannot retrieve SOP Class/Instance UID of Orthanc instance: %s"
                               % instance_id)
        references.append(commitment.Reference(sop_class, sop_instance))
    return references


def resource_instances(index, public_id):
    """The instances below a resource of any level (404 when unknown)."""
    try:
        resource = index.get_resource(public_id)
        return instances_in_creation_order(index, public_id, resource.level)
    except UnknownResource:
        raise OrthancError(ErrorCode.UnknownResource) from None


async def request(server, settings, modality, references, transaction_uid=None):
    """Ask ``modality`` to commit ``references``; returns the Transaction UID
    under which its report will show.  The pending report is stored before
    the request goes out, so that an early answer finds it (and it stays,
    pending, if the request fails)."""
    if transaction_uid is None:
        transaction_uid = new_transaction_uid()
    if not references:
        log.warning("Issuing an outgoing storage commitment request that is empty: %s",
                    transaction_uid)
    reports(server).store(transaction_uid, Report(modality["AET"]))
    await commitment.request_commitment(server.reactor, settings, modality, transaction_uid,
                                        references)
    return transaction_uid


async def after_store(server, settings, modality, instance_ids, sent_ids):
    """``"StorageCommitment": true`` in /modalities/{id}/store: once every
    instance went through C-STORE, ask the same modality to commit them (on
    a new association).  The Transaction UID is answered in any case; as in
    Orthanc, nothing is requested when some instance was not sent."""
    transaction_uid = new_transaction_uid()
    if instance_ids and len(sent_ids) == len(instance_ids):
        references = await instance_references(server, instance_ids)
        await request(server, settings, modality, references, transaction_uid)
    return transaction_uid


def report_received(server, remote_aet, transaction_uid, successes, failures):
    """A committer's N-EVENT-REPORT: it becomes the transaction's report,
    whether orthancd asked or not (as Orthanc keeps it)."""
    log.info("Incoming storage commitment report from %s, with transaction UID: %s "
             "(%d successes, %d failures)", remote_aet, transaction_uid,
             len(successes), len(failures))
    reports(server).store(transaction_uid, Report(remote_aet, successes, failures))


async def remove_committed(server, transaction_uid):
    """Delete the instances a fully successful report says the remote
    committed (every local instance with each SOP Instance UID)."""
    report = reports(server).get(transaction_uid)
    if report.status != "Success":
        raise OrthancError(ErrorCode.BadSequenceOfCalls,
                           "Cannot remove DICOM instances after failure in storage "
                           "commitment transaction: %s" % transaction_uid)
    for success in report.successes:
        for instance_id in instances_with_uid(server.index, success.sop_instance_uid):
            log.info("Storage commitment - Removing SOP instance UID / Orthanc ID: %s / %s",
                     success.sop_instance_uid, instance_id)
            try:
                await server.delete_resource(instance_id, ResourceLevel.INSTANCE)
            except UnknownResource:
                pass  # deleted meanwhile


# -- orthancd commits ------------------------------------------------------------


def instances_with_uid(index, sop_instance_uid):
    """The local instances whose SOP Instance UID is exactly this one."""
    found = []
    for instance_id in index.lookup_identifier(ResourceLevel.INSTANCE, 0x00080018,
                                               normalize_for_find(sop_instance_uid)):
        try:
            resource = index.get_resource(instance_id, ResourceLevel.INSTANCE)
        except UnknownResource:
            continue
        # The index holds normalized values: it only narrows.
        if resource.main_tags.get("SOPInstanceUID", "").strip() == sop_instance_uid:
            found.append(instance_id)
    return found


def stored_sop_uids(server, instance_id):
    """Deferred (SOP Class UID, SOP Instance UID) read from the stored file
    (in a worker thread)."""
    def uids(dataset):
        return (str(dataset.get("SOPClassUID", "")).strip("\0 "),
                str(dataset.get("SOPInstanceUID", "")).strip("\0 "))
    return server.render_dataset(instance_id, uids, stop_before_pixels=True)


async def check_instance(server, reference):
    """Orthanc's verdict on one requested instance: it must be stored once,
    its file readable, and its SOP Class UID the requested one."""
    found = instances_with_uid(server.index, reference.sop_instance_uid)
    if len(found) != 1:
        return NO_SUCH_OBJECT_INSTANCE
    try:
        sop_class, sop_instance = await stored_sop_uids(server, found[0])
    except Exception as exc:
        log.warning("Storage commitment: cannot read instance %s: %s", found[0], exc)
        return NO_SUCH_OBJECT_INSTANCE
    if sop_instance != reference.sop_instance_uid:
        return NO_SUCH_OBJECT_INSTANCE
    if sop_class != reference.sop_class_uid:
        return CLASS_INSTANCE_CONFLICT
    return SUCCESS


async def check_instances(server, references):
    """``(successes, failures)`` for a commitment request, in its order."""
    successes, failures = [], []
    for reference in references:
        reason = await check_instance(server, reference)
        log.info("Storage commitment SCP: %s while looking for %s / %s",
                 "Success" if reason == SUCCESS else "Failure",
                 reference.sop_class_uid, reference.sop_instance_uid)
        if reason == SUCCESS:
            successes.append(reference)
        else:
            failures.append(commitment.Failure(reference.sop_class_uid,
                                               reference.sop_instance_uid, reason))
    return successes, failures


@dataclasses.dataclass
class CommitmentJob:
    """One accepted request: check the instances, then report."""
    server: object
    modality: dict
    called_aet: str
    transaction_uid: str
    references: list

    async def run(self):
        successes, failures = await check_instances(self.server, self.references)
        settings = scu.ScuSettings.for_modality(self.server.configuration, self.modality)
        # Orthanc answers as the AET the modality called.
        settings.local_aet = self.called_aet
        await commitment.send_report(self.server.reactor, settings, self.modality,
                                     self.transaction_uid, successes, failures)

    def start(self):
        """Run in the background; failures are logged (Orthanc's job fails)."""
        d = defer.ensureDeferred(self.run())
        d.addErrback(self._failed)
        return d

    def _failed(self, failure):
        error = failure.value
        details = error.details if isinstance(error, OrthancError) else None
        log.error("Storage commitment SCP job for transaction %s failed: %s",
                  self.transaction_uid, details or failure.getErrorMessage())


def accept_request(server, remote_aet, called_aet, transaction_uid, references):
    """A commitment request from ``remote_aet``: the job answering it, to
    start once the N-ACTION is acknowledged.  Raises Orthanc's error when
    the AET is not a known modality (nowhere to send the report)."""
    log.info("Incoming storage commitment request from %s, with transaction UID: %s "
             "(%d instances)", remote_aet, transaction_uid, len(references))
    found = modality_registry(server).lookup_aet(remote_aet)
    if found is None:
        raise OrthancError(ErrorCode.InexistentItem,
                           "Unknown remote modality for storage commitment SCP: %s" % remote_aet)
    return CommitmentJob(server, found[1], called_aet, transaction_uid, list(references))
