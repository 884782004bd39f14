"""The jobs that modify stored resources, as Orthanc 1.13.0 runs them:
ResourceModification (modify, anonymize, bulk), SplitStudy and MergeStudy.

ResourceModification handles its instances a few at a time (its
"WorkersCount", from JobsEngineThreadsCount), then re-indexes one new
instance per modified series, then deletes the sources unless KeepSource.
SplitStudy and MergeStudy handle one instance per step, then delete the
sources (their trailing step) unless KeepSource.

Each job saves itself (``serialize``) with what it has done so far,
including the map of new identifiers: after a restart it goes on where it
stopped, and the instances it still has to modify land in the same new
studies and series.
"""
from twisted.internet import defer

from orthancd.dicom import dictionary, modules
from orthancd.dicom.uids import generate_uid
from orthancd.find.lookup import instances_in_creation_order
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel, resource_ids
from orthancd.index.base import MetadataType, UnknownResource
from orthancd.ingest import Origin
from orthancd.jobs import model
from orthancd.logs import logger
from orthancd.modification import files, paths, transcoding, values
from orthancd.modification.modification import (PATIENT_ID, SERIES_INSTANCE_UID,
                                                 SOP_INSTANCE_UID, STUDY_INSTANCE_UID,
                                                 Modification)

log = logger(__name__)

RESOURCE_MODIFICATION = "ResourceModification"
SPLIT_STUDY = "SplitStudy"
MERGE_STUDY = "MergeStudy"

# ThreadedSetOfInstancesJob's steps, numbered as Orthanc saves them.
NOT_STARTED, PROCESSING, POST_PROCESSING, CLEANUP, DONE = range(5)


def _resource(level, public_id, with_path=False):
    out = {"ID": public_id, "Type": level.title}
    if with_path:
        out["Path"] = "/%s/%s" % (level.plural, public_id)
    return out


def _identifiers(edited):
    """The four public IDs the file will have once stored."""
    return resource_ids(edited.string(PATIENT_ID) or "", edited.string(STUDY_INSTANCE_UID) or "",
                        edited.string(SERIES_INSTANCE_UID) or "",
                        edited.string(SOP_INSTANCE_UID) or "")


def _origin(saved):
    return Origin(saved or {})


class _InstancesJob(model.Job):
    """What every job of this module shares: the server, the origin of the
    instances it stores, Permissive, Description, KeepSource."""

    def __init__(self, server, origin):
        super().__init__()
        self.server = server
        self.origin = Origin(origin)
        self.description = ""
        self.permissive = False
        self.failed = set()

    def _saved(self):
        """Let the engine save the job's progress soon (coalesced)."""
        self.server.jobs.changed()

    async def _store(self, data, attached=None, skip_transcoding=False):
        return await self.server.ingest.store(data, self.origin, attached, skip_transcoding)

    async def _delete_sources(self, instances):
        for instance_id in instances:
            try:
                await self.server.delete_resource(instance_id, ResourceLevel.INSTANCE)
            except (UnknownResource, KeyError):
                pass  # gone already


class ResourceModificationJob(_InstancesJob):
    """Modify or anonymize the instances of some resources."""

    job_type = RESOURCE_MODIFICATION

    def __init__(self, server, modification, is_anonymization, origin, output_level=None,
                 workers=1):
        """``output_level``: the level of the resource the answer names
        (a single resource modified), None for a bulk modification."""
        super().__init__(server, origin)
        self.modification = modification
        self.is_anonymization = is_anonymization
        self.output_level = output_level
        self.workers = max(1, int(workers))
        self.keep_source = True
        self.transcode = None
        self.instances = []           # sorted
        self.parents = {}             # public ID -> ResourceLevel
        self.processed = set()
        self.current_step = NOT_STARTED
        self.error_code = ErrorCode.Success
        self.first = None             # (level ID, patient ID) of the first output
        self.produced = {level: set() for level in ResourceLevel}
        self.modified_series = {}     # new series ID -> one of its new instances

    @property
    def is_single_resource(self):
        return self.output_level is not None

    def add_resource(self, public_id, level, instances):
        self.instances = sorted(set(self.instances) | set(instances))
        self.parents[public_id] = level

    # -- running --

    def reset(self):
        self.modified_series.clear()
        self.processed.clear()
        self.failed.clear()
        self.current_step = NOT_STARTED
        self.error_code = ErrorCode.Success

    def progress(self):
        if not self.instances:
            return 1.0
        total = len(self.instances) + 1 + (0 if self.keep_source else 1)
        done = len(self.processed)
        if self.current_step > POST_PROCESSING:
            done += 1
        if not self.keep_source and self.current_step > CLEANUP:
            done += 1
        return done / total

    async def step(self, job_id):
        if not self.instances:
            return model.SUCCESS
        if self.current_step == NOT_STARTED:
            self.current_step = PROCESSING
        if self.current_step == PROCESSING:
            pending = [i for i in self.instances if i not in self.processed]
            if not pending:
                if self.failed and not self.permissive:
                    return model.failure(self.error_code or ErrorCode.InternalError)
                self.current_step = POST_PROCESSING
                return model.CONTINUE
            batch = pending[:self.workers]
            outcomes = await defer.DeferredList(
                [defer.ensureDeferred(self._handle(i)) for i in batch], consumeErrors=True)
            for instance_id, (ok, result) in zip(batch, outcomes):
                if ok:
                    self.processed.add(instance_id)
                    continue
                error = result.value
                if self.permissive:
                    log.warn("Ignoring an error in a permissive job: {error}", error=error)
                    self.processed.add(instance_id)
                    self.failed.add(instance_id)
                    continue
                log.error("Error in a non-permissive job on instance {id}: {error}",
                          id=instance_id, error=error)
                # As Orthanc's workers, keep the code and lose the details.
                code = error.code if isinstance(error, OrthancError) else ErrorCode.InternalError
                self.error_code = code
                return model.failure(code)
            self._saved()
            return model.CONTINUE
        if self.current_step == POST_PROCESSING:
            # The new resources' tags from one of their instances (the
            # series may have existed before: Keep, Force...).
            for instance_id in sorted(set(self.modified_series.values())):
                try:
                    await self.server.reconstruct(instance_id, ResourceLevel.INSTANCE)
                except (UnknownResource, KeyError, OrthancError):
                    pass  # deleted meanwhile
            self.current_step = CLEANUP
            return model.CONTINUE
        if self.current_step == CLEANUP:
            if not self.keep_source:
                await self._delete_sources(self.instances)
            self.current_step = DONE
            return model.SUCCESS
        return model.SUCCESS

    async def _handle(self, instance_id):
        server = self.server
        try:
            series = server.index.get_resource(instance_id, ResourceLevel.INSTANCE).parent
            study = server.index.get_resource(series, ResourceLevel.SERIES).parent
            patient = server.index.get_resource(study, ResourceLevel.STUDY).parent
        except UnknownResource:
            # Deleted since the job was submitted.
            raise OrthancError(ErrorCode.UnknownResource)
        originals = (patient, study, series, instance_id)
        labels = None
        if self.modification.keep_labels:
            labels = [server.index.get_labels(public_id, level)
                      for level, public_id in zip(ResourceLevel, originals)]

        def edit(edited):
            self.modification.apply(edited)
            return _identifiers(edited)
        data, modified = await files.modify_instance(server, instance_id, edit)
        if self.transcode is not None:
            data = await server.pixel_pool.run(transcoding.for_job, server, data, self.transcode)
        metadata_type = (MetadataType.AnonymizedFrom if self.is_anonymization
                         else MetadataType.ModifiedFrom)

        def attached(summary):
            out = {level: {metadata_type: originals[level]}
                   for level in (ResourceLevel.PATIENT, ResourceLevel.STUDY, ResourceLevel.SERIES)
                   if summary.ids[level] != originals[level]}
            out[ResourceLevel.INSTANCE] = {metadata_type: instance_id}
            return out
        outcome = await self._store(data, attached, self.transcode is not None)
        new_ids = outcome.ids
        if labels is not None:
            # As Orthanc 1.13.0: the labels of the parents follow them, those
            # of the instance stay on the original.
            for level in (ResourceLevel.SERIES, ResourceLevel.STUDY, ResourceLevel.PATIENT):
                for label in labels[level]:
                    await server.index.add_label(new_ids[level], level, label)
        if self.first is None and self.output_level is not None:
            self.first = (modified[self.output_level], modified[ResourceLevel.PATIENT])
        for level in ResourceLevel:
            self.produced[level].add(modified[level])
        self.modified_series.setdefault(modified[ResourceLevel.SERIES], modified[3])

    # -- what the job shows --

    def public_content(self):
        content = {
            "Description": self.description,
            "InstancesCount": len(self.instances),
            "FailedInstancesCount": len(self.failed),
            "IsAnonymization": self.is_anonymization,
        }
        if self.parents:
            content["ParentResources"] = sorted(self.parents)
            content["Resources"] = [_resource(self.parents[i], i) for i in sorted(self.parents)]
        if self.is_single_resource:
            if self.first is not None:
                level_id, patient_id = self.first
                content.update(_resource(self.output_level, level_id, with_path=True))
                content["PatientID"] = patient_id
        else:
            resources = []
            for level in (ResourceLevel.INSTANCE, ResourceLevel.SERIES, ResourceLevel.STUDY,
                          ResourceLevel.PATIENT):
                resources.extend(_resource(level, i, with_path=True)
                                 for i in sorted(self.produced[level]))
            content["Resources"] = resources
        if self.transcode is not None:
            content["Transcode"] = self.transcode
        return content

    # -- saving --

    def serialize(self):
        saved = {
            "Type": self.job_type,
            "Permissive": self.permissive,
            "UserData": self.user_data,
            "CurrentStep": self.current_step,
            "Description": self.description,
            "KeepSource": self.keep_source,
            "WorkersCount": self.workers,
            "Instances": list(self.instances),
            "FailedInstances": sorted(self.failed),
            "IsAnonymization": self.is_anonymization,
            "Origin": dict(self.origin),
            "Modification": self.modification.serialize(),
            "IsSingleResource": self.is_single_resource,
            # What orthancd adds to resume a job where it stopped.
            "ProcessedInstances": sorted(self.processed),
            "ModifiedSeries": self.modified_series,
            "Produced": {level.title: sorted(ids) for level, ids in self.produced.items()},
            "First": list(self.first) if self.first is not None else None,
        }
        if self.parents:
            saved["Resources"] = [_resource(level, i) for i, level in sorted(self.parents.items())]
        if self.is_single_resource:
            saved["OutputLevel"] = self.output_level.title
        if self.transcode is not None:
            saved["Transcode"] = self.transcode
        return saved

    @classmethod
    def unserialize(cls, server, saved):
        modification = Modification.from_serialized(saved["Modification"])
        output_level = None
        if saved.get("IsSingleResource", True):
            output_level = ResourceLevel.parse(saved["OutputLevel"]) if "OutputLevel" in saved \
                else (modification.level if modification.level is not ResourceLevel.INSTANCE
                      else ResourceLevel.PATIENT)
        job = cls(server, modification, bool(saved["IsAnonymization"]), _origin(saved.get("Origin")),
                  output_level, saved.get("WorkersCount", 1))
        job.permissive = bool(saved.get("Permissive", False))
        job.description = saved.get("Description", "")
        job.keep_source = bool(saved.get("KeepSource", True))
        job.transcode = saved.get("Transcode")
        job.instances = sorted(saved.get("Instances", []))
        job.failed = set(saved.get("FailedInstances", []))
        job.processed = set(saved.get("ProcessedInstances", []))
        job.current_step = int(saved.get("CurrentStep", NOT_STARTED))
        job.parents = {r["ID"]: ResourceLevel.parse(r["Type"]) for r in saved.get("Resources", [])}
        job.modified_series = dict(saved.get("ModifiedSeries", {}))
        for title, ids in (saved.get("Produced") or {}).items():
            job.produced[ResourceLevel.parse(title)] = set(ids)
        if saved.get("First"):
            job.first = tuple(saved["First"])
        return job


class _CommandsJob(_InstancesJob):
    """Orthanc's SetOfInstancesJob with a trailing step: one instance per
    step, then the sources go unless KeepSource."""

    def __init__(self, server, origin):
        super().__init__(server, origin)
        self.keep_source = False
        self.instances = []
        self.position = 0

    def add_instance(self, instance_id):
        self.instances.append(instance_id)

    def reset(self):
        self.position = 0
        self.failed.clear()

    def progress(self):
        commands = len(self.instances) + 1
        return min(self.position, commands) / commands

    async def step(self, job_id):
        if self.position < len(self.instances):
            instance_id = self.instances[self.position]
            try:
                handled = await self._handle(instance_id)
            except OrthancError as e:
                if not self.permissive:
                    return model.failure(e.code, e.details or "")
                log.warn("Ignoring an error in a permissive job: {error}", error=e)
                handled = True
            if not handled:
                self.failed.add(instance_id)
                if not self.permissive:
                    return model.failure(ErrorCode.InternalError)
            self.position += 1
            self._saved()
            return model.CONTINUE
        if not self.keep_source:
            await self._delete_sources(self.instances)
        self.position = len(self.instances) + 1
        return model.SUCCESS

    async def _handle(self, instance_id):
        """Give one instance its new series (and study), and store it."""
        server = self.server
        try:
            resource = server.index.get_resource(instance_id, ResourceLevel.INSTANCE)
        except UnknownResource:
            log.warn("An instance was removed after the job was issued: {id}", id=instance_id)
            return False
        target_series = self.series_uids.get(resource.parent)
        if target_series is None:
            raise OrthancError(ErrorCode.BadFileFormat)

        def edit(edited):
            for tag in sorted(self.removals):
                edited.remove(tag)
            for tag, value in sorted(self.replacements.items()):
                _replace_plain(edited, tag, value)
            self._rewrite_study(edited)
            _replace_plain(edited, SERIES_INSTANCE_UID, target_series)
            _replace_plain(edited, SOP_INSTANCE_UID, generate_uid(ResourceLevel.INSTANCE))
            return _identifiers(edited)
        try:
            data, ids = await files.modify_instance(server, instance_id, edit)
        except (UnknownResource, KeyError):
            log.warn("An instance was removed after the job was issued: {id}", id=instance_id)
            return False
        self._stored_in(ids[ResourceLevel.STUDY])
        return await self._store_new(data)

    def _rewrite_study(self, edited):
        """Merged instances keep their StudyInstanceUID: the target study's
        modules, among the replacements, give them the target's."""

    def _stored_in(self, study_id):
        pass

    async def _store_new(self, data):
        """False when the instance was not stored as a new one."""
        outcome = await self._store(data)
        return outcome.status == "Success"

    def public_content(self):
        return {
            "Description": self.description,
            "InstancesCount": len(self.instances),
            "FailedInstancesCount": len(self.failed),
        }

    def serialize(self):
        return {
            "Type": self.job_type,
            "Permissive": self.permissive,
            "Position": self.position,
            "Description": self.description,
            "UserData": self.user_data,
            "Commands": list(self.instances) + [None],
            "TrailingStep": True,
            "FailedInstances": sorted(self.failed),
            "KeepSource": self.keep_source,
            "Origin": dict(self.origin),
        }

    def _unserialize_common(self, saved):
        self.permissive = bool(saved.get("Permissive", False))
        self.position = int(saved.get("Position", 0))
        self.description = saved.get("Description", "")
        self.instances = [c for c in saved.get("Commands", []) if isinstance(c, str)]
        self.failed = set(saved.get("FailedInstances", []))
        self.keep_source = bool(saved.get("KeepSource", False))


def _parent(index, public_id, level):
    try:
        return index.get_resource(public_id, level).parent
    except UnknownResource:
        return None


# The tags SplitStudy may change, and those MergeStudy copies from the target
# study: the patient and general study modules (DicomTag::AddTagsForModule).
MERGE_MODULE_TAGS = (modules.MODULE_TAGS[ResourceLevel.PATIENT]
                     | modules.MODULE_TAGS[ResourceLevel.STUDY])
SPLIT_ALLOWED_TAGS = MERGE_MODULE_TAGS - {STUDY_INSTANCE_UID, SERIES_INSTANCE_UID}


def _module_replacements(saved):
    return {int(key.replace(",", ""), 16): value for key, value in saved.items()}


def _format_replacements(replacements):
    return {paths.format_tag(tag): value for tag, value in sorted(replacements.items())}


def _replace_plain(edited, tag, value):
    """ParsedDicomFile::ReplacePlainString."""
    edited.put(values.string_element(tag, value, edited.encoding, "",
                                     decode_data_uri_scheme=False))


class SplitStudyJob(_CommandsJob):
    """Move series or instances of a study into a new study."""

    job_type = SPLIT_STUDY

    def __init__(self, server, source_study, origin):
        super().__init__(server, origin)
        self.source_study = source_study
        self.target_study = ""
        self.target_study_uid = generate_uid(ResourceLevel.STUDY)
        self.series_uids = {}          # source series ID -> new SeriesInstanceUID
        self.replacements = {}         # tag -> string
        self.removals = set()

    @classmethod
    def create(cls, server, study_id, origin):
        if not server.index.exists(study_id, ResourceLevel.STUDY):
            raise OrthancError(ErrorCode.UnknownResource, "Cannot split unknown study " + study_id)
        return cls(server, study_id, origin)

    def register_series(self, series_id):
        if series_id not in self.series_uids:
            self.series_uids[series_id] = generate_uid(ResourceLevel.SERIES)

    def add_source_series(self, series_id):
        index = self.server.index
        if _parent(index, series_id, ResourceLevel.SERIES) != self.source_study:
            raise OrthancError(ErrorCode.UnknownResource,
                               "This series does not belong to the study to be split: "
                               + series_id)
        self.register_series(series_id)
        for instance_id in index.get_children(series_id, ResourceLevel.SERIES):
            self.add_instance(instance_id)

    def add_source_instance(self, instance_id):
        index = self.server.index
        series_id = _parent(index, instance_id, ResourceLevel.INSTANCE)
        if series_id is None or _parent(index, series_id, ResourceLevel.SERIES) != self.source_study:
            raise OrthancError(ErrorCode.UnknownResource,
                               "This instance does not belong to the study to be split: "
                               + instance_id)
        self.register_series(series_id)
        self.add_instance(instance_id)

    @staticmethod
    def _check_allowed(tag):
        if tag not in SPLIT_ALLOWED_TAGS:
            entry = dictionary.lookup(tag)
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               "Cannot modify the following tag while splitting a study (not in "
                               "the patient/study modules): %s (%s)"
                               % (entry.name if entry is not None else "", paths.format_tag(tag)))

    def remove(self, tag):
        self._check_allowed(tag)
        self.removals.add(tag)

    def replace(self, tag, value):
        self._check_allowed(tag)
        self.replacements[tag] = value

    def _rewrite_study(self, edited):
        _replace_plain(edited, STUDY_INSTANCE_UID, self.target_study_uid)

    def _stored_in(self, study_id):
        if not self.target_study:
            self.target_study = study_id

    def public_content(self):
        content = super().public_content()
        if self.target_study:
            content["TargetStudy"] = self.target_study
        content["TargetStudyUID"] = self.target_study_uid
        return content

    def serialize(self):
        saved = super().serialize()
        saved.update({
            "SourceStudy": self.source_study,
            "TargetStudy": self.target_study,
            "TargetStudyUID": self.target_study_uid,
            "SeriesUIDMap": dict(self.series_uids),
            "Replacements": _format_replacements(self.replacements),
            "Removals": [paths.format_tag(t) for t in sorted(self.removals)],
        })
        return saved

    @classmethod
    def unserialize(cls, server, saved):
        job = cls(server, saved["SourceStudy"], _origin(saved.get("Origin")))
        job._unserialize_common(saved)
        job.target_study = saved.get("TargetStudy", "")
        job.target_study_uid = saved["TargetStudyUID"]
        job.series_uids = dict(saved.get("SeriesUIDMap", {}))
        job.replacements = _module_replacements(saved.get("Replacements", {}))
        job.removals = {int(t.replace(",", ""), 16) for t in saved.get("Removals", [])}
        return job


class MergeStudyJob(_CommandsJob):
    """Move studies, series or instances into an existing study, whose
    patient and study modules they take."""

    job_type = MERGE_STUDY

    def __init__(self, server, target_study, origin):
        super().__init__(server, origin)
        self.target_study = target_study
        self.series_uids = {}
        self.replacements = {}
        self.removals = set()
        self.module_source = None

    @classmethod
    def create(cls, server, study_id, origin):
        """The job, with the instance whose patient and study modules the
        merged instances will take (read by ``read_target_modules``)."""
        index = server.index
        if not index.exists(study_id, ResourceLevel.STUDY):
            raise OrthancError(ErrorCode.UnknownResource,
                               "Cannot merge into an unknown study: " + study_id)
        job = cls(server, study_id, origin)
        instances = instances_in_creation_order(index, study_id, ResourceLevel.STUDY)
        if not instances:
            raise OrthancError(ErrorCode.UnknownResource)
        job.module_source = instances[0]
        return job

    async def read_target_modules(self):
        """The tags of the patient and study modules the target study has
        become replacements; those it has not, removals."""
        def read():
            return files.read_instance(self.server, self.module_source).module_strings(
                MERGE_MODULE_TAGS)
        found = await self.server.file_io.run(read)
        self.removals = set(MERGE_MODULE_TAGS) - set(found)
        self.replacements = found

    def register_series(self, series_id):
        if series_id not in self.series_uids:
            self.series_uids[series_id] = generate_uid(ResourceLevel.SERIES)

    def _add_series(self, series_id):
        self.register_series(series_id)
        for instance_id in self.server.index.get_children(series_id, ResourceLevel.SERIES):
            self.add_instance(instance_id)

    def add_source(self, public_id):
        index = self.server.index
        level = files.resource_level(index, public_id)
        target = self.target_study
        if level is None:
            raise OrthancError(ErrorCode.UnknownResource, "Cannot find this resource: " + public_id)
        if level is ResourceLevel.STUDY:
            if public_id == target:
                raise OrthancError(ErrorCode.UnknownResource,
                                   "Cannot merge a study into the same study: " + public_id)
            for series_id in index.get_children(public_id, ResourceLevel.STUDY):
                self._add_series(series_id)
        elif level is ResourceLevel.SERIES:
            if _parent(index, public_id, ResourceLevel.SERIES) == target:
                raise OrthancError(ErrorCode.UnknownResource,
                                   "Cannot merge series %s into its parent study %s"
                                   % (public_id, target))
            self._add_series(public_id)
        elif level is ResourceLevel.INSTANCE:
            series_id = _parent(index, public_id, ResourceLevel.INSTANCE)
            if _parent(index, series_id, ResourceLevel.SERIES) == target:
                raise OrthancError(ErrorCode.UnknownResource,
                                   "Cannot merge instance %s into its parent study %s"
                                   % (public_id, target))
            self.register_series(series_id)
            self.add_instance(public_id)
        else:
            raise OrthancError(ErrorCode.UnknownResource,
                               "This resource is neither a study, nor a series, nor an instance: "
                               "%s is a %s" % (public_id, level.title))

    def public_content(self):
        content = super().public_content()
        content["TargetStudy"] = self.target_study
        return content

    def serialize(self):
        saved = super().serialize()
        saved.update({
            "TargetStudy": self.target_study,
            "Replacements": _format_replacements(self.replacements),
            "Removals": [paths.format_tag(t) for t in sorted(self.removals)],
            "SeriesUIDMap": dict(self.series_uids),
        })
        return saved

    @classmethod
    def unserialize(cls, server, saved):
        job = cls(server, saved["TargetStudy"], _origin(saved.get("Origin")))
        job._unserialize_common(saved)
        job.series_uids = dict(saved.get("SeriesUIDMap", {}))
        job.replacements = _module_replacements(saved.get("Replacements", {}))
        job.removals = {int(t.replace(",", ""), 16) for t in saved.get("Removals", [])}
        return job

