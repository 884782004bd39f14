"""DicomModalityStore: C-STORE stored instances to a modality, one per step
(Orthanc's DicomModalityStoreJob), optionally followed by a storage
commitment request for all of them.

The association stays open between the steps of a run and goes back to the
association pool when the job stops (success, failure, pause, cancel).
"""
from orthancd import storage_commitment
from orthancd.jobs.instances import InstanceNotStored, SetOfInstancesJob
from orthancd.lazy_modules import LazyModule

JOB_TYPE = "DicomModalityStore"

# DICOM networking (pynetdicom, pydicom): imported by the first use
# (orthancd.lazy_modules).
scu = LazyModule("orthancd.net.scu")
commitment = LazyModule("orthancd.net.storage_commitment")


class DicomModalityStoreJob(SetOfInstancesJob):
    job_type = JOB_TYPE

    def __init__(self, server, modality, local_aet, timeout=None, move_originator=None,
                 storage_commitment_requested=False, **kwargs):
        """``modality``: the destination (a DicomModalities entry, with the
        request's CalledAet/Host/Port applied); ``timeout``: seconds, None
        for the modality's or DicomScuTimeout; ``move_originator``:
        (AET, message ID) when standing for a C-MOVE."""
        super().__init__(**kwargs)
        self._server = server
        self.modality = dict(modality)
        self.local_aet = local_aet
        self.timeout = timeout
        self.move_originator = tuple(move_originator) if move_originator else None
        self.storage_commitment = bool(storage_commitment_requested)
        self.transaction_uid = None
        self.committed = []        # (SOP class, SOP instance) of the instances sent
        self._sender = None
        self._reset_storage_commitment()

    def _settings(self):
        body = {"LocalAet": self.local_aet}
        if self.timeout is not None:
            body["Timeout"] = self.timeout
        return scu.ScuSettings.for_modality(self._server.configuration, self.modality, body)

    def _reset_storage_commitment(self):
        if self.storage_commitment:
            # A Transaction UID is never reused once its report was sent.
            self.transaction_uid = storage_commitment.new_transaction_uid()
            self.committed = []

    async def handle_instance(self, instance_id):
        if self._sender is None:
            self._sender = scu.InstanceSender(self._server, self._settings(), self.modality,
                                              self.instances, self.move_originator)
        try:
            sent = await self._sender.send(self.position)
        except scu.InstanceRemoved:
            raise InstanceNotStored(instance_id) from None
        if self.storage_commitment:
            self.committed.append((sent.sop_class, sent.sop_instance))
            if len(self.committed) == len(self.instances):
                await self._request_commitment()

    async def _request_commitment(self):
        self._close_sender()
        references = [commitment.Reference(sop_class, sop_instance)
                      for sop_class, sop_instance in self.committed]
        await storage_commitment.request(self._server, self._settings(), self.modality,
                                         references, self.transaction_uid)

    def _close_sender(self):
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.close()

    def stop(self, reason):
        self._close_sender()

    def reset(self):
        super().reset()
        self._reset_storage_commitment()

    def public_content(self):
        content = super().public_content()
        content["LocalAet"] = self.local_aet
        content["RemoteAet"] = self.modality["AET"]
        if self.move_originator is not None:
            content["MoveOriginatorAET"], content["MoveOriginatorID"] = self.move_originator
        if self.storage_commitment:
            content["StorageCommitmentTransactionUID"] = self.transaction_uid
        return content

    def serialize(self):
        saved = super().serialize()
        saved.update({
            "Remote": self.modality,
            "LocalAet": self.local_aet,
            "Timeout": self.timeout,
            "MoveOriginatorAet": self.move_originator[0] if self.move_originator else "",
            "MoveOriginatorId": self.move_originator[1] if self.move_originator else 0,
            "StorageCommitment": self.storage_commitment,
            "StorageCommitmentTransactionUID": self.transaction_uid,
            "Committed": [list(pair) for pair in self.committed],
        })
        return saved

    @classmethod
    def unserialize(cls, server, saved):
        originator = None
        if saved.get("MoveOriginatorId"):
            originator = (saved.get("MoveOriginatorAet", ""), int(saved["MoveOriginatorId"]))
        job = cls(server, saved["Remote"], saved["LocalAet"], saved.get("Timeout"), originator,
                  saved.get("StorageCommitment", False))
        job.restore(saved)
        if job.storage_commitment:
            job.transaction_uid = saved.get("StorageCommitmentTransactionUID") or \
                job.transaction_uid
            job.committed = [tuple(pair) for pair in saved.get("Committed", [])]
        return job
