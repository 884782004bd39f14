"""DicomMoveScu and DicomGetScu: retrieve from a modality, one query per
step, by C-MOVE (to a target AET) or C-GET (Orthanc's DicomMoveScuJob and
DicomGetScuJob, on DicomRetrieveScuBaseJob).

Each query keeps its "Details": the DIMSE status of its failure and the
instances that came to us through it.  The progress is that of the
retrieve under way, from the sub-operation counts of its pending responses,
as Orthanc reports it.
"""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.jobs import model
from orthancd.logs import logger
from orthancd.lazy_modules import LazyModule

log = logger(__name__)

MOVE_JOB_TYPE = "DicomMoveScu"
GET_JOB_TYPE = "DicomGetScu"

# DICOM networking (pynetdicom, pydicom): imported by the first use
# (orthancd.lazy_modules).
scu = LazyModule("orthancd.net.scu")
retrieve = LazyModule("orthancd.net.retrieve")


class RetrieveCommand:
    """One query of a retrieve job and what became of it."""

    def __init__(self, query, dimse_status=0, received=()):
        self.query = query                  # a Dataset
        self.dimse_status = dimse_status
        self.received = list(received)      # public IDs of the instances received


def query_from_json(fields):
    """A query Dataset from its short JSON ({"gggg,eeee": value})."""
    from pydicom.dataset import Dataset
    dataset = Dataset()
    for key, value in fields.items():
        scu.set_element(dataset, key, value)
    return dataset


class DicomRetrieveScuJob(model.Job):
    """Retrieve ``queries`` (Datasets carrying QueryRetrieveLevel) from
    ``modality``, one per step."""

    method = None

    def __init__(self, server, modality, local_aet, level, queries, timeout=None,
                 query_format="short", description="", permissive=False):
        super().__init__()
        self._server = server
        self.modality = dict(modality)
        self.local_aet = local_aet
        self.level = level
        self.timeout = timeout
        self.query_format = query_format
        self.description = description
        self.permissive = bool(permissive)
        self.commands = [RetrieveCommand(query) for query in queries]
        self.position = 0
        self._counts = scu.RetrieveCounts()

    def _settings(self):
        body = {"LocalAet": self.local_aet}
        if self.timeout is not None:
            body["Timeout"] = self.timeout
        return scu.ScuSettings.for_modality(self._server.configuration, self.modality, body)

    @property
    def target_aet(self):
        return None

    async def step(self, job_id):
        if not self.commands:
            self.position = 1
            return model.SUCCESS
        if self.position >= len(self.commands):
            raise OrthancError(ErrorCode.BadSequenceOfCalls)
        command = self.commands[self.position]
        counts = self._counts = scu.RetrieveCounts()
        try:
            await retrieve.retrieve_one(self._server, self._settings(), self.modality, self.level,
                               self.method, self.target_aet, command.query, counts)
        except OrthancError as error:
            payload = error.payload or {}
            if payload.get("Type") == "Dimse":
                command.dimse_status = payload["Content"]["DimseErrorStatus"]
            if not self.permissive:
                return model.failure_of(error)
            log.warn("Ignoring an error in a permissive job: {error}", error=error)
        finally:
            command.received.extend(counts.received)
        self.position += 1
        return model.SUCCESS if self.position >= len(self.commands) else model.CONTINUE

    def progress(self):
        counts = self._counts
        total = counts.remaining + counts.completed + counts.failed + counts.warning
        if total == 0:
            return 0.0
        return (counts.completed + counts.failed + counts.warning) / total

    def reset(self):
        self.position = 0

    def details(self):
        return [{"DimseErrorStatus": command.dimse_status,
                 "Query": retrieve.query_json(self._server, command.query, "short"),
                 "ReceivedInstancesIds": list(command.received)} for command in self.commands]

    def public_content(self):
        content = {
            "Description": self.description,
            "LocalAet": self.local_aet,
            "RemoteAet": self.modality["AET"],
            "Query": [retrieve.query_json(self._server, command.query, self.query_format)
                      for command in self.commands],
            "Details": self.details(),
        }
        return content

    def error_payload(self):
        return {"Type": "RetrieveJob", "Content": self.details()}

    def serialize(self):
        return {
            "Type": self.job_type,
            "Permissive": self.permissive,
            "Position": self.position,
            "Description": self.description,
            "Remote": self.modality,
            "LocalAet": self.local_aet,
            "Timeout": self.timeout,
            "Level": self.level.title,
            "QueryFormat": self.query_format,
            "Commands": [{"Query": retrieve.query_json(self._server, command.query, "short"),
                          "DimseErrorStatus": command.dimse_status,
                          "ReceivedInstancesIds": list(command.received)}
                         for command in self.commands],
        }

    @classmethod
    def _unserialize(cls, server, saved, **kwargs):
        job = cls(server, saved["Remote"], saved["LocalAet"], ResourceLevel.parse(saved["Level"]),
                  [], saved.get("Timeout"), saved.get("QueryFormat", "short"),
                  saved.get("Description", ""), saved.get("Permissive", False), **kwargs)
        for item in saved.get("Commands", []):
            query = {key: value for key, value in item["Query"].items()
                     if not key.startswith("0002,")}
            job.commands.append(RetrieveCommand(query_from_json(query),
                                                item.get("DimseErrorStatus", 0),
                                                item.get("ReceivedInstancesIds", [])))
        job.position = int(saved.get("Position", 0))
        if job.position > max(len(job.commands), 1):
            raise OrthancError(ErrorCode.BadFileFormat)
        return job


class DicomMoveScuJob(DicomRetrieveScuJob):
    job_type = MOVE_JOB_TYPE
    method = "C-MOVE"

    def __init__(self, server, modality, local_aet, level, queries, timeout=None,
                 query_format="short", description="", permissive=False, target_aet=""):
        super().__init__(server, modality, local_aet, level, queries, timeout, query_format,
                         description, permissive)
        self._target_aet = target_aet

    @property
    def target_aet(self):
        return self._target_aet

    def public_content(self):
        content = super().public_content()
        content["TargetAet"] = self._target_aet
        return content

    def serialize(self):
        return dict(super().serialize(), TargetAet=self._target_aet)

    @classmethod
    def unserialize(cls, server, saved):
        return cls._unserialize(server, saved, target_aet=saved.get("TargetAet", ""))


class DicomGetScuJob(DicomRetrieveScuJob):
    job_type = GET_JOB_TYPE
    method = "C-GET"

    @classmethod
    def unserialize(cls, server, saved):
        return cls._unserialize(server, saved)


def retrieve_job(method, *args, target_aet="", **kwargs):
    """The job retrieving by ``method`` ("C-MOVE" or "C-GET")."""
    if method == "C-GET":
        return DicomGetScuJob(*args, **kwargs)
    return DicomMoveScuJob(*args, target_aet=target_aet, **kwargs)
