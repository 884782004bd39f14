"""Tags Orthanc computes from the index for C-FIND answers (and, since 1.11,
for RequestedTags): counts of related resources, ModalitiesInStudy and
SOPClassesInStudy (sorted, distinct, joined by backslashes)."""
from orthancd.find import tags as T
from orthancd.ids import ResourceLevel
from orthancd.index.base import MetadataType

_BY_LEVEL = {
    ResourceLevel.PATIENT: (T.NUMBER_OF_PATIENT_RELATED_STUDIES,
                            T.NUMBER_OF_PATIENT_RELATED_SERIES,
                            T.NUMBER_OF_PATIENT_RELATED_INSTANCES),
    ResourceLevel.STUDY: (T.NUMBER_OF_STUDY_RELATED_SERIES, T.NUMBER_OF_STUDY_RELATED_INSTANCES,
                          T.MODALITIES_IN_STUDY, T.SOP_CLASSES_IN_STUDY),
    ResourceLevel.SERIES: (T.NUMBER_OF_SERIES_RELATED_INSTANCES,),
}


def computable(level):
    """The computed tags that make sense at ``level``."""
    return _BY_LEVEL.get(level, ())


def _below(index, ids, level):
    out = []
    for public_id in ids:
        out.extend(index.get_children(public_id, level))
    return out


def compute_tags(index, level, public_id, wanted):
    """{tag: str} for the computed tags in ``wanted`` that apply at ``level``."""
    wanted = [t for t in computable(level) if t in wanted]
    if not wanted:
        return {}
    out = {}
    if level is ResourceLevel.PATIENT:
        studies = index.get_children(public_id, level)
        out[T.NUMBER_OF_PATIENT_RELATED_STUDIES] = str(len(studies))
        if T.NUMBER_OF_PATIENT_RELATED_SERIES in wanted or \
                T.NUMBER_OF_PATIENT_RELATED_INSTANCES in wanted:
            series = _below(index, studies, ResourceLevel.STUDY)
            out[T.NUMBER_OF_PATIENT_RELATED_SERIES] = str(len(series))
            if T.NUMBER_OF_PATIENT_RELATED_INSTANCES in wanted:
                out[T.NUMBER_OF_PATIENT_RELATED_INSTANCES] = str(
                    sum(index.count_children(s, ResourceLevel.SERIES) for s in series))
    elif level is ResourceLevel.STUDY:
        series = index.get_children(public_id, level)
        out[T.NUMBER_OF_STUDY_RELATED_SERIES] = str(len(series))
        if T.MODALITIES_IN_STUDY in wanted:
            modalities = set()
            for series_id in series:
                value = index.get_resource(series_id, ResourceLevel.SERIES).main_tags.get("Modality")
                if value is not None:
                    modalities.add(value)
            out[T.MODALITIES_IN_STUDY] = "\\".join(sorted(modalities))
        if T.NUMBER_OF_STUDY_RELATED_INSTANCES in wanted or T.SOP_CLASSES_IN_STUDY in wanted:
            instances = _below(index, series, ResourceLevel.SERIES)
            out[T.NUMBER_OF_STUDY_RELATED_INSTANCES] = str(len(instances))
            if T.SOP_CLASSES_IN_STUDY in wanted:
                classes = set()
                for instance_id in instances:
                    value = index.get_metadata(instance_id, ResourceLevel.INSTANCE).get(
                        MetadataType.SopClassUid)
                    if value:
                        classes.add(value)
                out[T.SOP_CLASSES_IN_STUDY] = "\\".join(sorted(classes))
    else:
        out[T.NUMBER_OF_SERIES_RELATED_INSTANCES] = str(index.count_children(public_id, level))
    return {tag: value for tag, value in out.items() if tag in wanted}
