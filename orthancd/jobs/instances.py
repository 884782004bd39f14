"""Jobs that handle a list of stored instances, one per step: Orthanc's
SetOfCommandsJob / SetOfInstancesJob, the base of the store jobs.

The job walks its instances in order (``position``); its progress is the
share already handled.  An instance that is no longer stored counts as
failed ("FailedInstancesCount"); a failing step ends the job unless it is
permissive, where the error is only logged (and, as in Orthanc, the
instance is not counted as failed).  A resubmitted job starts over.
"""
import abc
import time

from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import MetadataType, UnknownResource
from orthancd.jobs import model
from orthancd.logs import logger

log = logger(__name__)


class InstanceNotStored(Exception):
    """The instance of a step is no longer stored (deleted after the job was
    submitted): the step fails without an error of its own."""


def ordered_child_instances(index, public_id, level):
    """The instances of a resource in the order Orthanc 1.13.0 sends them
    (GetOrderedChildInstances): series after series in the order they were
    created, each series' instances by their index in the series."""
    if level is ResourceLevel.INSTANCE:
        return [public_id]
    children = index.get_children(public_id, level)
    children.sort(key=lambda child: index.get_resource(child, level.child).seq)
    if level is not ResourceLevel.SERIES:
        out = []
        for child in children:
            out.extend(ordered_child_instances(index, child, level.child))
        return out

    def index_in_series(instance_id):
        value = index.get_metadata(instance_id, ResourceLevel.INSTANCE).get(
            int(MetadataType.IndexInSeries), "")
        return int(value) if value.isdigit() else 0

    return sorted(children, key=index_in_series)


def resource_level(index, public_id):
    """The level of a stored resource of any level, or None."""
    try:
        return index.get_resource(public_id).level
    except UnknownResource:
        return None


class SetOfInstancesJob(model.Job):
    """Handle ``instances`` one per step (``handle_instance``)."""

    def __init__(self, instances=(), parent_resources=(), description="", permissive=False):
        super().__init__()
        self.instances = list(instances)
        # (public ID, level) of the resources the request named.
        self.parent_resources = list(parent_resources)
        self.description = description
        self.permissive = bool(permissive)
        self.position = 0
        self.failed_instances = set()

    @abc.abstractmethod
    async def handle_instance(self, instance_id):
        """Handle one instance; raise InstanceNotStored or OrthancError."""

    async def step(self, job_id):
        if not self.instances:
            self.position = 1
            return model.SUCCESS
        if self.position >= len(self.instances):
            raise OrthancError(ErrorCode.BadSequenceOfCalls)
        instance_id = self.instances[self.position]
        try:
            await self.handle_instance(instance_id)
        except InstanceNotStored:
            log.warn("An instance was removed after the job was issued: {id}", id=instance_id)
            self.failed_instances.add(instance_id)
            if not self.permissive:
                return model.failure(ErrorCode.InternalError)
        except OrthancError as error:
            if not self.permissive:
                return model.failure_of(error)
            log.warn("Ignoring an error in a permissive job: {error}", error=error)
        self.position += 1
        return model.SUCCESS if self.position >= len(self.instances) else model.CONTINUE

    def progress(self):
        if not self.instances:
            return 1.0
        return self.position / len(self.instances)

    def reset(self):
        self.position = 0
        self.failed_instances.clear()

    def public_content(self):
        content = {
            "Description": self.description,
            "InstancesCount": len(self.instances),
            "FailedInstancesCount": len(self.failed_instances),
        }
        if self.parent_resources:
            # Orthanc keeps them in a map, hence sorted by ID.
            parents = dict(self.parent_resources)
            content["Resources"] = [{"ID": public_id, "Type": parents[public_id].title}
                                    for public_id in sorted(parents)]
            content["ParentResources"] = sorted(parents)
        return content

    def serialize(self):
        return {
            "Type": self.job_type,
            "Permissive": self.permissive,
            "Position": self.position,
            "Description": self.description,
            "Commands": list(self.instances),
            "FailedInstances": sorted(self.failed_instances),
            "Resources": [{"ID": public_id, "Type": level.title}
                          for public_id, level in self.parent_resources],
        }

    def restore(self, saved):
        """Take back what ``serialize`` saved (after a restart)."""
        self.permissive = bool(saved.get("Permissive", False))
        self.position = int(saved.get("Position", 0))
        self.description = saved.get("Description", "")
        self.instances = list(saved.get("Commands", []))
        self.failed_instances = set(saved.get("FailedInstances", []))
        self.parent_resources = [(item["ID"], ResourceLevel.parse(item["Type"]))
                                 for item in saved.get("Resources", [])]
        if self.position > max(len(self.instances), 1):
            raise OrthancError(ErrorCode.BadFileFormat)


async def log_exported_resource(server, public_id, level, remote):
    """One /exports entry for a resource sent to ``remote`` (the symbolic
    name of the modality or peer), as Orthanc logs it when the job is
    submitted: the UIDs of the resource's level and the levels above."""
    index = server.index
    entry = {"ResourceType": level.title, "ID": public_id,
             "Path": "/%s/%s" % (level.plural, public_id), "RemoteModality": remote,
             "Date": time.strftime("%Y%m%dT%H%M%S", time.gmtime())}
    keys = {ResourceLevel.PATIENT: "PatientID", ResourceLevel.STUDY: "StudyInstanceUID",
            ResourceLevel.SERIES: "SeriesInstanceUID", ResourceLevel.INSTANCE: "SOPInstanceUID"}
    current, current_level = public_id, level
    while current is not None:
        resource = index.get_resource(current, current_level)
        entry[keys[current_level]] = resource.main_tags.get(keys[current_level], "")
        if current_level is ResourceLevel.PATIENT:
            break
        current, current_level = resource.parent, ResourceLevel(int(current_level) - 1)
    await index.log_export(entry)
