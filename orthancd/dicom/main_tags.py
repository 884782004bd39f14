"""The main DICOM tags: what the index keeps of each resource, per level.

Orthanc 1.13.0's lists (``/system`` shows them as ``MainDicomTags``), plus
the ``ExtraMainDicomTags`` of the configuration.  Strings are stored as they
are; the one sequence of the lists (RequestAttributesSequence, at the series
level) is kept whole, as Orthanc keeps it in its ``MainDicomSequences``
metadata.  Every resource also records the signature of the list it was
indexed with (the ``MainDicomTagsSignature`` metadata), so that a resource
indexed before a change of ``ExtraMainDicomTags`` can be told apart.

The lists are process-wide: the server configures them once at start
(``configure``), before any instance is read; the dictionaries handed out
here are updated in place so that the modules holding them see the change.
"""
from orthancd.dicom import dictionary
from orthancd.ids import ResourceLevel

# Orthanc 1.13.0's main DICOM tags (tag -> name, as MainDicomTags shows them).
# ImageOrientationPatient is at both the series and the instance levels.
ORTHANC_MAIN_DICOM_TAGS = {
    ResourceLevel.PATIENT: {
        0x00100010: "PatientName",
        0x00100020: "PatientID",
        0x00100030: "PatientBirthDate",
        0x00100040: "PatientSex",
        0x00101000: "OtherPatientIDs",
    },
    ResourceLevel.STUDY: {
        0x00080020: "StudyDate",
        0x00080030: "StudyTime",
        0x00080050: "AccessionNumber",
        0x00080080: "InstitutionName",
        0x00080090: "ReferringPhysicianName",
        0x00080201: "TimezoneOffsetFromUTC",
        0x00081030: "StudyDescription",
        0x0020000D: "StudyInstanceUID",
        0x00200010: "StudyID",
        0x00321032: "RequestingPhysician",
        0x00321060: "RequestedProcedureDescription",
    },
    ResourceLevel.SERIES: {
        0x00080021: "SeriesDate",
        0x00080031: "SeriesTime",
        0x00080060: "Modality",
        0x00080070: "Manufacturer",
        0x00080201: "TimezoneOffsetFromUTC",
        0x00081010: "StationName",
        0x0008103E: "SeriesDescription",
        0x00081070: "OperatorsName",
        0x00180010: "ContrastBolusAgent",
        0x00180015: "BodyPartExamined",
        0x00180024: "SequenceName",
        0x00181030: "ProtocolName",
        0x00181090: "CardiacNumberOfImages",
        0x00181400: "AcquisitionDeviceProcessingDescription",
        0x0020000E: "SeriesInstanceUID",
        0x00200011: "SeriesNumber",
        0x00200037: "ImageOrientationPatient",
        0x00200105: "NumberOfTemporalPositions",
        0x00201002: "ImagesInAcquisition",
        0x00400244: "PerformedProcedureStepStartDate",
        0x00400245: "PerformedProcedureStepStartTime",
        0x00400254: "PerformedProcedureStepDescription",
        0x00400275: "RequestAttributesSequence",
        0x00540081: "NumberOfSlices",
        0x00540101: "NumberOfTimeSlices",
        0x00541000: "SeriesType",
    },
    ResourceLevel.INSTANCE: {
        0x00080012: "InstanceCreationDate",
        0x00080013: "InstanceCreationTime",
        0x00080018: "SOPInstanceUID",
        0x00200012: "AcquisitionNumber",
        0x00200013: "InstanceNumber",
        0x00200032: "ImagePositionPatient",
        0x00200037: "ImageOrientationPatient",
        0x00200100: "TemporalPositionIdentifier",
        0x00204000: "ImageComments",
        0x00280008: "NumberOfFrames",
        0x00541330: "ImageIndex",
    },
}

# The sequences among them: kept whole, never matched by find.
SEQUENCE_TAGS = frozenset((0x00400275,))

_LEVEL_NAMES = {"Patient": ResourceLevel.PATIENT, "Study": ResourceLevel.STUDY,
                "Series": ResourceLevel.SERIES, "Instance": ResourceLevel.INSTANCE}

# tag -> name, per level: the active lists (updated in place by configure).
MAIN_DICOM_TAGS = {level: dict(tags) for level, tags in ORTHANC_MAIN_DICOM_TAGS.items()}

_listeners = []


class MainTagsError(ValueError):
    """An ExtraMainDicomTags entry Orthanc would refuse."""


def _parse_extra_tag(text):
    if isinstance(text, str) and len(text) == 9 and text[4] in ",-":
        try:
            return (int(text[:4], 16) << 16) | int(text[5:], 16)
        except ValueError:
            pass
    if isinstance(text, str):
        for tag, entry in dictionary.public_entries().items():
            if entry.name == text and isinstance(tag, int):
                return tag
    raise MainTagsError("Unknown DICOM tag in ExtraMainDicomTags: %r" % (text,))


def lists_with_extra(extra):
    """{level: {tag: name}}: Orthanc's lists plus ``extra`` (the
    ExtraMainDicomTags option: {"Study": ["Rows", "0028,0010"...]...})."""
    lists = {level: dict(tags) for level, tags in ORTHANC_MAIN_DICOM_TAGS.items()}
    for level_name, names in (extra or {}).items():
        level = _LEVEL_NAMES.get(level_name)
        if level is None:
            raise MainTagsError("Unknown level in ExtraMainDicomTags: %r" % (level_name,))
        for name in names or ():
            tag = _parse_extra_tag(name)
            entry = dictionary.lookup(tag)
            if entry is not None and entry.vr == "SQ":
                # As Orthanc: sequences cannot be extra main tags.
                raise MainTagsError("Sequences are not supported in ExtraMainDicomTags: %s"
                                    % name)
            lists[level][tag] = entry.name if entry is not None else name
    return {level: dict(sorted(tags.items())) for level, tags in lists.items()}


def configure(extra):
    """Make Orthanc's lists plus ``extra`` the active ones."""
    lists = lists_with_extra(extra)
    for level, tags in lists.items():
        MAIN_DICOM_TAGS[level].clear()
        MAIN_DICOM_TAGS[level].update(tags)
    for listener in _listeners:
        listener()


def on_change(listener):
    """Call ``listener()`` whenever the lists change (derived maps)."""
    _listeners.append(listener)


def signature(level):
    """The MainDicomTagsSignature of a resource indexed now at ``level``:
    its main tags as "gggg,eeee" joined by ';', in tag order (computed once
    per configuration: every stored instance asks for it)."""
    cached = _signatures.get(level)
    if cached is None:
        cached = _signatures[level] = ";".join(
            "%04x,%04x" % (tag >> 16, tag & 0xFFFF) for tag in sorted(MAIN_DICOM_TAGS[level]))
    return cached


_signatures = {}
on_change(_signatures.clear)


def normalize_for_find(value):
    """Orthanc's NormalizeIdentifier, used for the case-insensitive matching
    of identifier tags (PatientID, the UIDs, AccessionNumber) in the index.

    Only printable ASCII survives (accented letters are dropped, as Orthanc's
    ASCII conversion does), '%' and '_' become spaces so they cannot act as
    SQL wildcards, then the text is upper-cased and trimmed.
    """
    if value is None:
        return ""
    if value.isascii() and value.isprintable() and "%" not in value and "_" not in value:
        return value.upper().strip()  # the usual value, kept whole: no loop over it
    kept = []
    for c in value:
        if c in "%_":
            kept.append(" ")
        elif " " <= c <= "~":
            kept.append(c)
    return "".join(kept).upper().strip()
