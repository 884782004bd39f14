"""From the body of a modification request to what runs: a Modification
for one instance, or a job, with Orthanc 1.13.0's checks and errors, in its
order (a refused request changes nothing).
"""
import os

from orthancd.dicom.main_tags import MAIN_DICOM_TAGS, normalize_for_find
from orthancd.errors import ErrorCode, OrthancError
from orthancd.find.lookup import instances_in_creation_order
from orthancd.ids import ResourceLevel
from orthancd.index.base import UnknownResource
from orthancd.modification import files, jobs, paths, transcoding
from orthancd.modification.dataset import EditedFile
from orthancd.modification.modification import (PATIENT_ID, PATIENT_NAME, SERIES_INSTANCE_UID,
                                                 SOP_INSTANCE_UID, STUDY_INSTANCE_UID,
                                                 Modification)

def _modification(server):
    modification = Modification()
    modification.private_creator = server.configuration.get("DefaultPrivateCreator", "")
    return modification


def detect_modify_level(modification):
    """The level an instance-level or bulk modification works at: the
    highest identifier it replaces."""
    if modification.is_replaced(PATIENT_ID):
        return ResourceLevel.PATIENT
    if modification.is_replaced(STUDY_INSTANCE_UID):
        return ResourceLevel.STUDY
    if modification.is_replaced(SERIES_INSTANCE_UID):
        return ResourceLevel.SERIES
    return ResourceLevel.INSTANCE


def parse_modify(server, body):
    """The Modification of a /modify request (its level still to be set)."""
    modification = _modification(server)
    modification.parse_modify_request(body)
    return modification


async def parse_anonymize(server, body):
    """The Modification of an /anonymize request; when the request does not
    name the patient, "AnonymizedN" (N from a counter kept in the index)."""
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BadFileFormat)
    modification = _modification(server)
    name_given = modification.parse_anonymization_request(body)
    if not name_given:
        number = await server.index.increment_global_sequence("AnonymizationSequence")
        modification.replace_tag(PATIENT_NAME, "Anonymized%d" % number, True)
    return modification


async def modify_single_instance(server, instance_id, modification, transcode,
                                 lossy_quality=None):
    """The bytes of a modified copy of one instance (nothing is stored);
    with ``transcode``, the stored file is transcoded first (Orthanc's
    order: the modification then applies to the transcoded file)."""
    files.check_instance(server, instance_id)
    if transcode is None:
        data, _ = await files.modify_instance(server, instance_id, modification.apply)
        return data
    stored = await server.read_attachment(server.dicom_attachment(instance_id))
    transcoded = await server.transcoder.to_syntax(stored, transcode, lossy_quality)

    def work():
        edited = EditedFile.parse(transcoded.data, server.default_encoding)
        modification.apply(edited)
        return edited.serialize()
    return await server.file_io.run(work)


def check_instance_transcoding(uid):
    return transcoding.check_for_instance(uid)


def _workers(configuration):
    counts = configuration.get("JobsEngineThreadsCount") or {}
    workers = counts.get("ResourceModification", 1) if isinstance(counts, dict) else 1
    try:
        workers = int(workers)
    except (TypeError, ValueError):
        workers = 1
    return workers if workers > 0 else (os.cpu_count() or 1)


def modification_job(server, modification, is_anonymization, origin, resources,
                     output_level=None, keep_source=None, transcode=None):
    """ResourceModificationJob over ``resources`` (public IDs); a single
    resource names its ``output_level`` (the route's).  ``transcode``: a
    transfer syntax UID, checked (transcoding.check_for_job)."""
    job = jobs.ResourceModificationJob(server, modification, is_anonymization, origin,
                                       output_level, _workers(server.configuration))
    if keep_source is not None:
        job.keep_source = keep_source
    if transcode is not None:
        job.transcode = transcoding.check_for_job(transcode)
    for public_id in sorted(set(resources)):
        level = files.resource_level(server.index, public_id)
        if level is None:
            raise OrthancError(ErrorCode.ParameterOutOfRange)
        job.add_resource(public_id, level,
                         instances_in_creation_order(server.index, public_id, level))
    _sanity_checks(server, job)
    return job


def _sanity_checks(server, job):
    """ResourceModificationJob::PerformSanityChecks."""
    modification = job.modification
    level = modification.level
    if (level in (ResourceLevel.STUDY, ResourceLevel.PATIENT)
            and not modification.is_replaced(PATIENT_ID)
            and modification.is_kept(STUDY_INSTANCE_UID)
            and modification.is_kept(SERIES_INSTANCE_UID)
            and modification.is_kept(SOP_INSTANCE_UID)):
        if not job.keep_source:
            raise OrthancError(ErrorCode.BadRequest,
                               "When keeping StudyInstanceUID, SeriesInstanceUID and "
                               "SOPInstanceUID tag, you must set KeepSource to true to avoid "
                               "deleting the modified files at the end of the process")
        if server.configuration.overwrite_instances_mode == "Never":
            raise OrthancError(ErrorCode.BadRequest,
                               "When keeping StudyInstanceUID, SeriesInstanceUID and "
                               "SOPInstanceUID tag, you must have the 'OverwriteInstances' "
                               "Orthanc configuration set to true in order to replace the "
                               "modified resources")
    patient_tags = MAIN_DICOM_TAGS[ResourceLevel.PATIENT]
    if level is ResourceLevel.STUDY and any(tag in patient_tags
                                            for tag in modification.replacements):
        for study_id in sorted(job.parents):
            _check_patient_of_study(server, modification, study_id, patient_tags)


def _check_patient_of_study(server, modification, study_id, patient_tags):
    """A study may take new patient tags when its patient has no other
    study, or when they are exactly those of the existing patient it joins."""
    index = server.index
    if modification.is_replaced(PATIENT_ID):
        target_patient_id = modification.replacement_as_string(PATIENT_ID)
    else:
        try:
            study = index.get_resource(study_id, ResourceLevel.STUDY)
        except UnknownResource:
            raise OrthancError(ErrorCode.UnknownResource, "Study not found")
        target_patient_id = (study.patient_tags or {}).get("PatientID", "")
    candidates = [p for p in index.lookup_identifier(ResourceLevel.PATIENT, PATIENT_ID,
                                                     normalize_for_find(target_patient_id))
                  if index.get_resource(p, ResourceLevel.PATIENT).main_tags.get("PatientID")
                  == target_patient_id]
    if not candidates:
        return
    patient = index.get_resource(sorted(candidates)[0], ResourceLevel.PATIENT)
    studies = index.get_children(patient.public_id, ResourceLevel.PATIENT)
    has_other_studies = len(studies) > 1 or (len(studies) == 1 and study_id not in studies)
    if not has_other_studies:
        return
    existing = patient.main_tags
    for tag in sorted(patient_tags):
        name = patient_tags[tag]
        formatted = paths.format_tag(tag)
        replaced = modification.is_replaced(tag)
        if name in existing:
            current = existing.get(name) or ""
            if not isinstance(current, str):
                current = ""
            if (not replaced and current) or \
                    (replaced and modification.replacements[tag] != current):
                if not replaced:
                    raise OrthancError(
                        ErrorCode.BadRequest,
                        "Trying to change patient tags in a study.  The Patient already exists "
                        "and has other studies.  All the 'Replace' tags should match the existing "
                        "patient main dicom tags and you should specify all Patient MainDicomTags "
                        "in your query.  Try using /patients/../modify instead to modify the "
                        "patient. Missing tag in the 'Replace' tags: " + formatted)
                raise OrthancError(
                    ErrorCode.BadRequest,
                    "Trying to change patient tags in a study.  The Patient already exists and "
                    "has other studies.  All the 'Replace' tags should match the existing patient "
                    "main dicom tags and you should specify all Patient MainDicomTags in your "
                    "query.  Try using /patients/../modify instead to modify the patient. "
                    "Failing tag: " + formatted)
        elif replaced:
            raise OrthancError(
                ErrorCode.BadRequest,
                "Trying to change patient tags in a study.  The Patient already exists and has "
                "other studies.  You are trying to replace a tag that is not defined yet in this "
                "patient. Try using /patients/../modify instead to modify the patient. "
                "Failing tag: " + formatted)


