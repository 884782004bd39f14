"""Naming DICOM tags in find queries, and where Orthanc keeps their values.

Queries name tags as Orthanc's FromDcmtkBridge::ParseTag accepts them: a DCMTK
dictionary name ("PatientName", case-sensitive) or "gggg,eeee" / "gggg-eeee"
in hexadecimal.  The main DICOM tags of each level are what the index holds;
anything else can only be matched by opening a file.
"""
from orthancd.dicom import dictionary, main_tags
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel

SPECIFIC_CHARACTER_SET = 0x00080005
QUERY_RETRIEVE_LEVEL = 0x00080052
RETRIEVE_AE_TITLE = 0x00080054
MODALITY = 0x00080060
MODALITIES_IN_STUDY = 0x00080061
SOP_CLASSES_IN_STUDY = 0x00080062
TIMEZONE_OFFSET_FROM_UTC = 0x00080201
NUMBER_OF_PATIENT_RELATED_STUDIES = 0x00201200
NUMBER_OF_PATIENT_RELATED_SERIES = 0x00201202
NUMBER_OF_PATIENT_RELATED_INSTANCES = 0x00201204
NUMBER_OF_STUDY_RELATED_SERIES = 0x00201206
NUMBER_OF_STUDY_RELATED_INSTANCES = 0x00201208
NUMBER_OF_SERIES_RELATED_INSTANCES = 0x00201209
INSTANCE_AVAILABILITY = 0x00080056

# Tags Orthanc computes from the index rather than reading them anywhere.
COMPUTED_TAGS = frozenset((
    MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY,
    NUMBER_OF_PATIENT_RELATED_STUDIES, NUMBER_OF_PATIENT_RELATED_SERIES,
    NUMBER_OF_PATIENT_RELATED_INSTANCES, NUMBER_OF_STUDY_RELATED_SERIES,
    NUMBER_OF_STUDY_RELATED_INSTANCES, NUMBER_OF_SERIES_RELATED_INSTANCES))

_NAMES = None


def _names():
    global _NAMES
    if _NAMES is None:
        names = {}
        for tag, entry in dictionary.public_entries().items():
            names.setdefault(entry.name, tag)
        _NAMES = names
    return _NAMES


def parse_tag(text):
    """'PatientName', '0010,0010', '0010-0010' or '00100010' -> 0x00100010.
    Unknown names raise Orthanc's UnknownDicomTag (answered 500, the name as
    details, by 1.13.0)."""
    if len(text) == 9 and text[4] in ",-":
        try:
            return (int(text[:4], 16) << 16) | int(text[5:], 16)
        except ValueError:
            pass
    if len(text) == 8:
        try:
            return int(text, 16)
        except ValueError:
            pass
    tag = _names().get(text)
    if tag is None:
        raise OrthancError(ErrorCode.UnknownDicomTag, text, http_status=500)
    return tag


def parse_tag_list(text):
    """FromDcmtkBridge::ParseListOfTags: ';'-separated names or numbers,
    as a sorted list without duplicates."""
    return sorted({parse_tag(item) for item in text.split(";") if item})


def format_tag(tag):
    return "%04x,%04x" % (tag >> 16, tag & 0xFFFF)


def tag_name(tag):
    return dictionary.tag_name(tag)


def value_representation(tag):
    entry = dictionary.lookup(tag)
    return entry.vr if entry is not None else "UN"


# tag -> the levels whose main tags include it (ImageOrientationPatient is at two).
MAIN_TAG_LEVELS = {}
# tag -> the name the index stores it under, whatever the level.
MAIN_TAG_NAMES = {}
MAIN_TAG_NUMBERS = {}
# level -> {name: tag} of the main tags a resource of that level holds,
# sequences included (a study holds its patient's too).
LEVEL_TAG_NUMBERS = {}


def _rebuild():
    """Derive the maps above from the active main tags (sequences are kept
    whole for display, never matched)."""
    MAIN_TAG_LEVELS.clear()
    MAIN_TAG_NAMES.clear()
    for level, tags in main_tags.MAIN_DICOM_TAGS.items():
        for tag, name in tags.items():
            if tag in main_tags.SEQUENCE_TAGS:
                continue
            MAIN_TAG_LEVELS.setdefault(tag, []).append(ResourceLevel(level))
            MAIN_TAG_NAMES[tag] = name
    MAIN_TAG_NUMBERS.clear()
    MAIN_TAG_NUMBERS.update({name: tag for tag, name in MAIN_TAG_NAMES.items()})
    LEVEL_TAG_NUMBERS.clear()
    for level, tags in main_tags.MAIN_DICOM_TAGS.items():
        LEVEL_TAG_NUMBERS[ResourceLevel(level)] = {name: tag for tag, name in tags.items()}
    LEVEL_TAG_NUMBERS[ResourceLevel.STUDY].update(LEVEL_TAG_NUMBERS[ResourceLevel.PATIENT])


_rebuild()
main_tags.on_change(_rebuild)


def is_main_tag(tag):
    return tag in MAIN_TAG_LEVELS


def main_tags_up_to(level):
    """The main tags visible from a resource of ``level``: its own and its
    ancestors' (what Orthanc 1.6+ matches a query of that level against)."""
    return {tag for tag, levels in MAIN_TAG_LEVELS.items() if min(levels) <= level}
