"""The JSON Orthanc 1.13.0 gives for a patient, study, series or instance.

What goes in follows the response content: ``EXPAND`` is what ``expand``
(and a GET of one resource) gives; ``ResponseContent`` names pick fields
one by one.  DICOM tags come in one of three formats: "human" (names as
keys), "short" ("gggg,eeee" keys) or "full" (Name/Type/Value nodes).
"""
from orthancd.dicom import main_tags as M
from orthancd.lazy_modules import LazyModule
from orthancd.errors import ErrorCode, OrthancError
from orthancd.find import tags as T
from orthancd.find.requested_tags import requested_tags
from orthancd.ids import ResourceLevel
from orthancd.index.base import (ContentType, MetadataType, parse_unsigned,
                                 series_completeness)

# Data sets to JSON (pydicom): imported by the first use (orthancd.lazy_modules).
json_tags = LazyModule("orthancd.dicom.json_tags")

# Orthanc's ResponseContentFlags, by the names ResponseContent accepts.
RESPONSE_CONTENT = ("MainDicomTags", "RequestedTags", "Metadata", "Status", "Parent",
                    "Children", "Labels", "Attachments", "IsStable", "IsProtected")
# "Expand": the legacy metadata and attachment fields, and all of the above
# but the Metadata and Attachments lists.
EXPAND = frozenset(("MainDicomTags", "MetadataLegacy", "AttachmentsLegacy", "Status",
                    "Parent", "Children", "Labels", "IsStable", "IsProtected"))

_CHILDREN_KEY = {
    ResourceLevel.PATIENT: "Studies",
    ResourceLevel.STUDY: "Series",
    ResourceLevel.SERIES: "Instances",
}
_PARENT_KEY = {
    ResourceLevel.STUDY: "ParentPatient",
    ResourceLevel.SERIES: "ParentStudy",
    ResourceLevel.INSTANCE: "ParentSeries",
}


def parse_response_content(names):
    """ResponseContent values -> a set of flags (an unknown one is refused
    as Orthanc refuses it)."""
    flags = set()
    for name in names:
        if name not in RESPONSE_CONTENT:
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               'Unrecognized value for "ResponseContent": %s' % name)
        flags.add(name)
    return frozenset(flags)


def series_status(index, public_id, metadata):
    """(status, expected): Orthanc's series completeness."""
    values = []
    for instance in index.get_children(public_id, ResourceLevel.SERIES):
        value = index.get_metadata_value(instance, ResourceLevel.INSTANCE,
                                         MetadataType.IndexInSeries)
        if value is not None:
            values.append(value)
    return series_completeness(metadata.get(MetadataType.ExpectedNumberOfInstances), values)


def format_tag_value(tag, value, fmt):
    """(key, value) of one tag in the answer's format; ``value`` is a
    string, None, or a sequence in Orthanc's full JSON format."""
    sequence = isinstance(value, dict)
    if fmt == "human":
        key = T.tag_name(tag) if not sequence else value["Name"]
        return key, json_tags.convert_full_node(value, "simplify") if sequence else value
    key = T.format_tag(tag)
    if fmt == "short":
        return key, json_tags.convert_full_node(value, "short") if sequence else value
    if sequence:
        return key, value
    return key, {"Name": T.tag_name(tag), "Type": "Null" if value is None else "String",
                 "Value": value}


def format_tags(values, fmt):
    """{tag int: value} -> a JSON object in the answer's format."""
    return dict(format_tag_value(tag, value, fmt) for tag, value in values.items())


def _level_tags(level, names, sequences):
    """{tag: value} of the main tags of ``level`` among a record's tags
    (only the tags of the active lists, as Orthanc extracts them)."""
    wanted = M.MAIN_DICOM_TAGS[level]
    by_name = {name: tag for tag, name in wanted.items()}
    out = {by_name[name]: value for name, value in names.items() if name in by_name}
    for key, node in sequences.items():
        tag = (int(key[:4], 16) << 16) | int(key[5:], 16)
        if tag in wanted:
            out[tag] = node
    return out


def resource_to_json(server, level, public_id, fmt="human", content=EXPAND,
                     metadata_names=None, attachments=None, resource=None):
    """``attachments``: {content type: StoredFile} with their MD5s known
    (expand derives them), for "Attachments"; ``resource``: the Resource,
    when the caller read it already (a find)."""
    with server.index.reading_together():
        return _resource_json(server, level, public_id, fmt, content, metadata_names,
                              attachments, resource)


def _resource_json(server, level, public_id, fmt, content, metadata_names, attachments,
                   resource=None):
    index = server.index
    if resource is None:
        resource = index.get_resource(public_id, level)
    out = {"ID": public_id, "Type": level.title}
    metadata = None
    if content & {"MetadataLegacy", "Metadata", "Status"}:
        metadata = index.get_metadata(public_id, level)
    if "Parent" in content and level in _PARENT_KEY:
        out[_PARENT_KEY[level]] = resource.parent
    if "Children" in content and level in _CHILDREN_KEY:
        out[_CHILDREN_KEY[level]] = index.get_children(public_id, level)
    if level is ResourceLevel.SERIES and content & {"Status", "MetadataLegacy"}:
        status, expected = series_status(index, public_id, metadata)
        if "Status" in content:
            out["Status"] = status
        if "MetadataLegacy" in content:
            out["ExpectedNumberOfInstances"] = expected
    if level is ResourceLevel.INSTANCE:
        if "AttachmentsLegacy" in content:
            dicom = index.get_attachments(public_id, level).get(ContentType.Dicom)
            if dicom is None:
                raise OrthancError(ErrorCode.InternalError)
            out["FileSize"] = dicom.uncompressed_size
            out["FileUuid"] = dicom.uuid
        if "MetadataLegacy" in content:
            out["IndexInSeries"] = parse_unsigned(metadata.get(MetadataType.IndexInSeries))
    if "MetadataLegacy" in content:
        for key, metadata_type in (("AnonymizedFrom", MetadataType.AnonymizedFrom),
                                   ("ModifiedFrom", MetadataType.ModifiedFrom)):
            if metadata_type in metadata:
                out[key] = metadata[metadata_type]
        if level is not ResourceLevel.INSTANCE and MetadataType.LastUpdate in metadata:
            out["LastUpdate"] = metadata[MetadataType.LastUpdate]
    if "IsStable" in content and level is not ResourceLevel.INSTANCE:
        out["IsStable"] = server.stability.is_stable(level, public_id)
    if "IsProtected" in content and level is ResourceLevel.PATIENT:
        out["IsProtected"] = resource.protected
    if "MainDicomTags" in content:
        out["MainDicomTags"] = format_tags(
            _level_tags(level, resource.main_tags, resource.main_sequences), fmt)
        if level is ResourceLevel.STUDY:
            out["PatientMainDicomTags"] = format_tags(
                _level_tags(ResourceLevel.PATIENT, resource.patient_tags or {}, {}), fmt)
    if "Labels" in content:
        out["Labels"] = index.get_labels(public_id, level)
    if "Metadata" in content:
        name = metadata_names.name if metadata_names is not None else str
        out["Metadata"] = {name(k): v for k, v in metadata.items()}
    if "Attachments" in content:
        out["Attachments"] = [{
            "CompressedMD5": info.md5,
            "CompressedSize": info.size,
            "ContentType": content_type,
            "UncompressedMD5": info.uncompressed_md5,
            "UncompressedSize": info.uncompressed_size,
            "Uuid": info.uuid,
        } for content_type, info in sorted((attachments if attachments is not None else
                                            index.get_attachments(public_id, level)).items())]
    return out


async def expand(server, level, public_id, fmt="human", content=EXPAND, requested=(),
                 resource=None):
    """The JSON of one resource, with its RequestedTags when any are asked
    (``resource``: as resource_to_json)."""
    attachments = None
    if "Attachments" in content:
        attachments = server.index.get_attachments(public_id, level)
        if any(info.md5_pending for info in attachments.values()):
            attachments = await server.checksums.complete_all(public_id, level, attachments)
    out = resource_to_json(server, level, public_id, fmt, content,
                           getattr(server, "metadata_names", None), attachments, resource)
    if requested:
        values = await requested_tags(server, level, public_id, requested, resource)
        out["RequestedTags"] = format_tags(values, fmt)
    return out
