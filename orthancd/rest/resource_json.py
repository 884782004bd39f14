"""The JSON Orthanc gives for a patient, study, series or instance."""
from orthancd.ids import ResourceLevel
from orthancd.index.base import ContentType, MetadataType

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


def series_status(index, public_id, expected):
    """Orthanc's series completeness: Unknown / Complete / Missing / Inconsistent."""
    if expected is None:
        return "Unknown"
    seen = set()
    for instance in index.get_children(public_id, ResourceLevel.SERIES):
        value = index.get_metadata(instance, ResourceLevel.INSTANCE).get(MetadataType.IndexInSeries)
        try:
            position = int(value)
        except (TypeError, ValueError):
            return "Inconsistent"
        if position < 1 or position > expected or position in seen:
            return "Inconsistent"
        seen.add(position)
    return "Complete" if len(seen) == expected else "Missing"


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def resource_to_json(server, level, public_id):
    index = server.index
    resource = index.get_resource(public_id, level)
    metadata = index.get_metadata(public_id, level)
    out = {
        "ID": public_id,
        "Type": level.title,
        "MainDicomTags": dict(resource.main_tags),
        "Labels": [],
    }
    if level in _PARENT_KEY:
        out[_PARENT_KEY[level]] = resource.parent
    if level in _CHILDREN_KEY:
        out[_CHILDREN_KEY[level]] = index.get_children(public_id, level)
        out["IsStable"] = server.stability.is_stable(level, public_id)
        out["LastUpdate"] = metadata.get(MetadataType.LastUpdate, "")
    if level is ResourceLevel.STUDY:
        out["PatientMainDicomTags"] = dict(resource.patient_tags or {})
    elif level is ResourceLevel.SERIES:
        expected = _int_or_none(metadata.get(MetadataType.ExpectedNumberOfInstances))
        out["ExpectedNumberOfInstances"] = expected
        out["Status"] = series_status(index, public_id, expected)
    elif level is ResourceLevel.INSTANCE:
        dicom = index.get_attachments(public_id, level).get(ContentType.Dicom)
        out["FileSize"] = dicom.uncompressed_size if dicom else 0
        out["FileUuid"] = dicom.uuid if dicom else ""
        out["IndexInSeries"] = _int_or_none(metadata.get(MetadataType.IndexInSeries))
    return out
