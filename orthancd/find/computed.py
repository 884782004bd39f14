"""Tags Orthanc computes from the index for C-FIND answers (and, since 1.11,
for RequestedTags): counts of related resources, ModalitiesInStudy and
SOPClassesInStudy (sorted, distinct, joined by backslashes)."""
from orthancd.find import tags as T
from orthancd.ids import ResourceLevel
from orthancd.index.base import MetadataType

# The counts: tag -> (the level where it is computed, the level counted).
COUNTS = {
    T.NUMBER_OF_PATIENT_RELATED_STUDIES: (ResourceLevel.PATIENT, ResourceLevel.STUDY),
    T.NUMBER_OF_PATIENT_RELATED_SERIES: (ResourceLevel.PATIENT, ResourceLevel.SERIES),
    T.NUMBER_OF_PATIENT_RELATED_INSTANCES: (ResourceLevel.PATIENT, ResourceLevel.INSTANCE),
    T.NUMBER_OF_STUDY_RELATED_SERIES: (ResourceLevel.STUDY, ResourceLevel.SERIES),
    T.NUMBER_OF_STUDY_RELATED_INSTANCES: (ResourceLevel.STUDY, ResourceLevel.INSTANCE),
    T.NUMBER_OF_SERIES_RELATED_INSTANCES: (ResourceLevel.SERIES, ResourceLevel.INSTANCE),
}

# The computed tags of each level: its counts, and a study's two lists.
_BY_LEVEL = {level: tuple(tag for tag, (at, _) in COUNTS.items() if at is level)
             for level in (ResourceLevel.PATIENT, ResourceLevel.STUDY, ResourceLevel.SERIES)}
_BY_LEVEL[ResourceLevel.STUDY] += (T.MODALITIES_IN_STUDY, T.SOP_CLASSES_IN_STUDY)


def computable(level):
    """The computed tags that make sense at ``level``."""
    return _BY_LEVEL.get(level, ())


def compute_tags(index, level, public_id, wanted):
    """{tag: str} for the computed tags in ``wanted`` that apply at ``level``
    (all from one walk down the resource's descendants)."""
    wanted = [t for t in computable(level) if t in wanted]
    if not wanted:
        return {}
    summary = index.summarize_descendants(
        public_id, level,
        series_main_tag="Modality" if T.MODALITIES_IN_STUDY in wanted else None,
        instance_metadata=(MetadataType.SopClassUid if T.SOP_CLASSES_IN_STUDY in wanted
                           else None))
    out = {}
    for tag in wanted:
        if tag in COUNTS:
            out[tag] = str(summary.counts[COUNTS[tag][1]])
        elif tag == T.MODALITIES_IN_STUDY:
            out[tag] = "\\".join(sorted(summary.series_values))
        elif tag == T.SOP_CLASSES_IN_STUDY:
            out[tag] = "\\".join(sorted(value for value in summary.instance_values if value))
    return out
