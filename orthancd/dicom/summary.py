"""What the index needs to know about an instance, computed like Orthanc 1.13.0.

summarize() reads only the few top-level elements it needs (the main DICOM
tags and identifiers), decoding them from raw bytes, so it stays cheap enough
to run on every upload.
"""
import dataclasses
from typing import Dict, Optional, Tuple

from pydicom.dataset import Dataset

from orthancd.dicom import elements, main_tags
from orthancd.dicom.json_tags import elements_to_json
from orthancd.dicom.format_error import DicomFormatError
from orthancd.ids import ResourceLevel, resource_ids

PATIENT_ID = 0x00100020
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SOP_INSTANCE_UID = 0x00080018
SOP_CLASS_UID = 0x00080016
INSTANCE_NUMBER = 0x00200013
IMAGE_INDEX = 0x00541330
NUMBER_OF_FRAMES = 0x00280008
IMAGES_IN_ACQUISITION = 0x00201002
NUMBER_OF_TEMPORAL_POSITIONS = 0x00200105
NUMBER_OF_SLICES = 0x00540081
NUMBER_OF_TIME_SLICES = 0x00540101
CARDIAC_NUMBER_OF_IMAGES = 0x00181090

# The main DICOM tags (Orthanc 1.13.0's, plus ExtraMainDicomTags), per level.
MAIN_DICOM_TAGS = main_tags.MAIN_DICOM_TAGS

# The identifier tags Orthanc normalizes for case-insensitive lookups.
IDENTIFIER_TAGS = (PATIENT_ID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID,
                   SOP_INSTANCE_UID, 0x00080050)


class MissingTagError(DicomFormatError):
    """A required identifier is absent: Orthanc answers 'Inexistent tag'
    (HTTP 404, OrthancStatus 21) rather than 'Bad file format'."""

    orthanc_error = "InexistentTag"


def _guessed_transfer_syntax(ds):
    """The encoding the parser settled on for a data set without file meta
    information: Orthanc records it as the TransferSyntax metadata."""
    implicit, little = getattr(ds, "original_encoding", None) or (None, None)
    if implicit is None:
        implicit = getattr(ds, "is_implicit_VR", None)
        little = getattr(ds, "is_little_endian", None)
    if implicit is None:
        return None
    if implicit:
        return "1.2.840.10008.1.2"
    return "1.2.840.10008.1.2.1" if little is not False else "1.2.840.10008.1.2.2"


@dataclasses.dataclass
class InstanceSummary:
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    ids: Tuple[str, str, str, str]
    main_tags: Dict[ResourceLevel, Dict[str, str]]
    # The main tags that are sequences, in Orthanc's full JSON format
    # ({"0040,0275": {"Name": ..., "Type": "Sequence", "Value": [...]}}).
    main_sequences: Dict[ResourceLevel, Dict[str, dict]]
    transfer_syntax: Optional[str]
    sop_class_uid: Optional[str]
    expected_instances: Optional[int]
    # Orthanc's IndexInSeries metadata: InstanceNumber, else ImageIndex.
    index_in_series: Optional[str]
    number_of_frames: Optional[int]
    encoding: str

    @property
    def index_in_series_number(self):
        """The integer shown as IndexInSeries in GET /instances/{id}."""
        return _parse_int(self.index_in_series.strip() if self.index_in_series else None)


def _parse_int(text):
    """boost::lexical_cast<int64_t>: the whole string must be an integer."""
    if text is None:
        return None
    body = text[1:] if text[:1] in "+-" else text
    if not body.isdigit() or not body.isascii():
        return None
    return int(text)


def _read_value(ds, tag, encoding):
    """The Orthanc string of a top-level leaf element, None if absent/Null."""
    if tag not in ds:
        return None
    raw = ds.get_item(tag)
    vr = elements._element_vr(raw, tag, None, ds)
    if isinstance(raw, elements.RawDataElement):
        return elements.decode_leaf(raw.value or b"", vr, tag, None, encoding,
                                    raw.is_little_endian)
    if isinstance(raw.value, elements.Sequence):
        return None
    return elements._converted_leaf(raw, vr, tag, None, encoding)


read_value = _read_value


def _read_sequence(ds, tag, encoding):
    """Orthanc's full JSON node of a top-level sequence, None if absent."""
    if tag not in ds:
        return None
    alone = Dataset()
    alone[tag] = ds.get_item(tag)
    # The dataset's own character set decodes the sequence's strings.
    rendered = elements_to_json(elements.iter_elements(alone, encoding), "full")
    node = rendered.get("%04x,%04x" % (tag >> 16, tag & 0xFFFF))
    return node if node is not None and node.get("Type") == "Sequence" else None


def extract_main_tags(ds, encoding):
    """({level: {name: value}}, {level: {"gggg,eeee": sequence node}}) for
    the main tags present in the dataset.

    Binary (Null) values are left out; strings too long for Orthanc's
    summary (256 bytes) are left out as well.
    """
    strings, sequences = {}, {}
    for level, tags in MAIN_DICOM_TAGS.items():
        level_tags, level_sequences = {}, {}
        for tag, name in tags.items():
            if tag in main_tags.SEQUENCE_TAGS:
                node = _read_sequence(ds, tag, encoding)
                if node is not None:
                    level_sequences["%04x,%04x" % (tag >> 16, tag & 0xFFFF)] = node
                continue
            value = _read_value(ds, tag, encoding)
            if value is not None and len(value.encode("utf-8")) <= 256:
                level_tags[name] = value
        strings[level] = dict(sorted(level_tags.items()))
        sequences[level] = level_sequences
    return strings, sequences


def compute_expected_instances(values):
    """Orthanc's ExpectedNumberOfInstances from the series' main tags
    ({name: string}); None when it cannot be computed or is not positive."""
    def number(name):
        return _parse_int(values.get(name))

    images, temporal = number("ImagesInAcquisition"), number("NumberOfTemporalPositions")
    if values.get("ImagesInAcquisition") is not None and \
            values.get("NumberOfTemporalPositions") is not None:
        target = images * temporal if images is not None and temporal is not None else None
    elif values.get("NumberOfSlices") is not None and \
            values.get("NumberOfTimeSlices") is not None:
        slices, time_slices = number("NumberOfSlices"), number("NumberOfTimeSlices")
        target = slices * time_slices if slices is not None and time_slices is not None else None
    elif values.get("CardiacNumberOfImages") is not None:
        target = number("CardiacNumberOfImages")
    else:
        target = None
    return target if target is not None and target > 0 else None


def _identifier(ds, tag, encoding, required):
    value = _read_value(ds, tag, encoding)
    if value is None and tag not in ds and required:
        raise MissingTagError(None)  # Orthanc 1.13.0 gives no details
    return value or ""


def summarize(ds, default_encoding="Latin1"):
    """Everything the index stores about one instance (see InstanceSummary)."""
    encoding = elements.dataset_encoding(ds, default_encoding)
    patient_id = _identifier(ds, PATIENT_ID, encoding, required=False)
    study_uid = _identifier(ds, STUDY_INSTANCE_UID, encoding, required=True)
    series_uid = _identifier(ds, SERIES_INSTANCE_UID, encoding, required=True)
    sop_uid = _identifier(ds, SOP_INSTANCE_UID, encoding, required=True)
    if not study_uid or not series_uid or not sop_uid:
        raise DicomFormatError("missing StudyInstanceUID, SeriesInstanceUID or SOPInstanceUID")
    main_tags, main_sequences = extract_main_tags(ds, encoding)
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = None
    if meta is not None and 0x00020010 in meta:
        transfer_syntax = str(meta[0x00020010].value).rstrip("\0 ") or None
    if transfer_syntax is None:
        transfer_syntax = _guessed_transfer_syntax(ds)
    series_values = {name: _read_value(ds, tag, encoding)
                     for tag, name in ((IMAGES_IN_ACQUISITION, "ImagesInAcquisition"),
                                       (NUMBER_OF_TEMPORAL_POSITIONS, "NumberOfTemporalPositions"),
                                       (NUMBER_OF_SLICES, "NumberOfSlices"),
                                       (NUMBER_OF_TIME_SLICES, "NumberOfTimeSlices"),
                                       (CARDIAC_NUMBER_OF_IMAGES, "CardiacNumberOfImages"))}
    index = _read_value(ds, INSTANCE_NUMBER, encoding)
    if index is None:
        index = _read_value(ds, IMAGE_INDEX, encoding)
    frames = _parse_int((_read_value(ds, NUMBER_OF_FRAMES, encoding) or "").strip() or None)
    return InstanceSummary(
        patient_id=patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        ids=resource_ids(patient_id, study_uid, series_uid, sop_uid),
        main_tags=main_tags,
        main_sequences=main_sequences,
        transfer_syntax=transfer_syntax,
        sop_class_uid=_read_value(ds, SOP_CLASS_UID, encoding),
        expected_instances=compute_expected_instances(series_values),
        index_in_series=index,
        number_of_frames=frames,
        encoding=encoding,
    )
