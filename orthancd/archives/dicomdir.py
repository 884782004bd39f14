"""The DICOMDIR of a DICOM media, as Orthanc 1.13.0 writes it (through DCMTK).

Each file added brings an IMAGE record and, the first time they are met,
the SERIES, STUDY and PATIENT records above it (keyed by SeriesInstanceUID,
StudyInstanceUID and PatientID); the values are those of the first file
met, made ASCII.  The "extended" flavour adds the SeriesDescription (a type
3 key, hence "extended SOP class").  The records are written depth first
in one DirectoryRecordSequence, explicit VR little endian, items of
undefined length, with the byte offsets that link them.

``describe_instance`` parses one file (blocking: a worker thread runs it);
``DicomDir`` gathers the records (on the reactor) and ``encode`` writes
the file (a worker thread again).
"""
import dataclasses
import struct
import time

from pydicom.uid import generate_uid

from orthancd.dicom import charsets, elements
from orthancd.dicom.reading import read_dataset
from orthancd.dicom.summary import read_value
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.net.part10 import file_header

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
EXPLICIT_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
FILE_SET_ID = "ORTHANC_MEDIA"
# Orthanc's UID root (DCMTK's), the digit of instances.
_UID_PREFIX = "1.2.276.0.7230010.3.1.4."

SPECIFIC_CHARACTER_SET = 0x00080005
STUDY_DATE, STUDY_TIME = 0x00080020, 0x00080030
ACCESSION_NUMBER, MODALITY = 0x00080050, 0x00080060
STUDY_DESCRIPTION, SERIES_DESCRIPTION = 0x00081030, 0x0008103E
PATIENT_NAME, PATIENT_ID = 0x00100010, 0x00100020
STUDY_INSTANCE_UID, SERIES_INSTANCE_UID = 0x0020000D, 0x0020000E
STUDY_ID, SERIES_NUMBER, INSTANCE_NUMBER = 0x00200010, 0x00200011, 0x00200013
SOP_CLASS_UID, SOP_INSTANCE_UID = 0x00080016, 0x00080018
REFERENCED_FILE_ID = 0x00041500
REFERENCED_SOP_CLASS, REFERENCED_SOP_INSTANCE = 0x00041510, 0x00041511
REFERENCED_TRANSFER_SYNTAX = 0x00041512
TRANSFER_SYNTAX_UID = 0x00020010
DATES = ((STUDY_DATE, (0x00080021, 0x00080022, 0x00080023)),
         (STUDY_TIME, (0x00080031, 0x00080032, 0x00080033)))

# The dictionary VR of each key a record may hold.
_VR = {
    SPECIFIC_CHARACTER_SET: b"CS", STUDY_DATE: b"DA", STUDY_TIME: b"TM",
    ACCESSION_NUMBER: b"SH", MODALITY: b"CS", STUDY_DESCRIPTION: b"LO",
    SERIES_DESCRIPTION: b"LO", PATIENT_NAME: b"PN", PATIENT_ID: b"LO",
    STUDY_INSTANCE_UID: b"UI", SERIES_INSTANCE_UID: b"UI", STUDY_ID: b"SH",
    SERIES_NUMBER: b"IS", INSTANCE_NUMBER: b"IS", REFERENCED_FILE_ID: b"CS",
    REFERENCED_SOP_CLASS: b"UI", REFERENCED_SOP_INSTANCE: b"UI",
    REFERENCED_TRANSFER_SYNTAX: b"UI",
}
_RECORD_TYPES = {ResourceLevel.PATIENT: "PATIENT", ResourceLevel.STUDY: "STUDY",
                 ResourceLevel.SERIES: "SERIES", ResourceLevel.INSTANCE: "IMAGE"}


def _ascii(text):
    """What Orthanc writes of a UTF-8 value: its ASCII characters."""
    return charsets.to_ascii(text.encode("utf-8", "surrogateescape"))


class _Source:
    """The top-level string values of one parsed file, as DCMTK's
    getString() gives them (None: absent, or not a string)."""

    def __init__(self, dataset, default_encoding):
        self.dataset = dataset
        self.encoding = elements.dataset_encoding(dataset, default_encoding)

    def value(self, tag):
        if tag not in self.dataset:
            return None
        return read_value(self.dataset, tag, self.encoding)

    def has_value(self, tag):
        """DCMTK's tagExistsWithValue: present with a non-empty value."""
        if tag not in self.dataset:
            return False
        value = self.dataset.get_item(tag, keep_deferred=True).value
        if value is None:
            return False
        return len(value if isinstance(value, (bytes, str)) else str(value)) > 0

    # Orthanc's CopyString: type 1 and 2 keys are always written (empty
    # when missing), type 1C only when the file has a value, type 3 when
    # the file has the element.

    def copy(self, record, tag, optional, copy_empty):
        if optional and not self.has_value(tag) and not (copy_empty and tag in self.dataset):
            return
        record[tag] = _ascii(self.value(tag) or "")


@dataclasses.dataclass
class DescribedInstance:
    """What one file brings to the DICOMDIR: the keys of its four records
    and their values ({tag: ASCII string})."""
    keys: dict       # ResourceLevel -> key
    records: dict    # ResourceLevel -> {tag: str}


def describe_instance(data, media_id, extended, default_encoding="Latin1", now=None):
    """Parse a DICOM file (bytes or path; blocking) into its DICOMDIR
    records; ``media_id`` is its ReferencedFileID ("IMAGES\\IM0")."""
    dataset = read_dataset(data, stop_before_pixels=True)
    source = _Source(dataset, default_encoding)
    keys = {
        ResourceLevel.PATIENT: source.value(PATIENT_ID) or "",
        ResourceLevel.STUDY: source.value(STUDY_INSTANCE_UID),
        ResourceLevel.SERIES: source.value(SERIES_INSTANCE_UID),
        ResourceLevel.INSTANCE: source.value(SOP_INSTANCE_UID),
    }
    if any(key is None for key in keys.values()):
        raise OrthancError(ErrorCode.BadFileFormat)
    records = {level: {} for level in ResourceLevel}

    patient = records[ResourceLevel.PATIENT]
    source.copy(patient, PATIENT_ID, True, False)
    source.copy(patient, PATIENT_NAME, False, True)

    study = records[ResourceLevel.STUDY]
    stamp = time.gmtime(time.time() if now is None else now)
    defaults = {STUDY_DATE: time.strftime("%Y%m%d", stamp),
                STUDY_TIME: time.strftime("%H%M%S", stamp) + ".000000"}
    for tag, fallbacks in DATES:
        for candidate in (tag,) + fallbacks:
            value = source.value(candidate)
            if value is not None:
                break
        study[tag] = _ascii(value if value is not None else defaults[tag])
    source.copy(study, STUDY_DESCRIPTION, False, True)
    source.copy(study, STUDY_INSTANCE_UID, False, False)
    source.copy(study, STUDY_ID, True, False)
    source.copy(study, ACCESSION_NUMBER, False, True)

    series = records[ResourceLevel.SERIES]
    source.copy(series, MODALITY, False, False)
    source.copy(series, SERIES_INSTANCE_UID, False, False)
    source.copy(series, SERIES_NUMBER, True, False)
    if extended:
        source.copy(series, SERIES_DESCRIPTION, True, True)

    image = records[ResourceLevel.INSTANCE]
    source.copy(image, INSTANCE_NUMBER, False, False)
    meta = getattr(dataset, "file_meta", None)
    transfer_syntax = None
    if meta is not None and TRANSFER_SYNTAX_UID in meta:
        transfer_syntax = read_value(meta, TRANSFER_SYNTAX_UID, source.encoding)
    sop_class, sop_instance = source.value(SOP_CLASS_UID), source.value(SOP_INSTANCE_UID)
    if sop_class is None or sop_instance is None or transfer_syntax is None:
        raise OrthancError(ErrorCode.BadFileFormat)
    image[REFERENCED_FILE_ID] = media_id
    image[REFERENCED_SOP_CLASS] = _ascii(sop_class)
    image[REFERENCED_SOP_INSTANCE] = _ascii(sop_instance)
    image[REFERENCED_TRANSFER_SYNTAX] = _ascii(transfer_syntax)

    for record in records.values():
        source.copy(record, SPECIFIC_CHARACTER_SET, True, False)
    return DescribedInstance(keys, records)


class _Record:
    def __init__(self, level, values):
        self.level = level
        self.values = values
        self.children = []


class DicomDir:
    """The records gathered so far (DicomDirWriter)."""

    def __init__(self):
        self._patients = []
        self._index = {}      # (level, key) -> _Record

    def add(self, described):
        instance = self._create(ResourceLevel.INSTANCE, described)
        if instance is None:
            return   # the same SOP instance was met before: not listed twice
        below = instance
        for level in (ResourceLevel.SERIES, ResourceLevel.STUDY, ResourceLevel.PATIENT):
            record = self._create(level, described)
            if record is None:
                self._index[(level, described.keys[level])].children.append(below)
                return
            record.children.append(below)
            below = record
        self._patients.append(below)

    def _create(self, level, described):
        """A new record, or None when one with the same key exists."""
        key = (level, described.keys[level])
        if key in self._index:
            return None
        record = _Record(level, described.records[level])
        self._index[key] = record
        return record

    def encode(self):
        """The DICOMDIR file (bytes)."""
        header = file_header(MEDIA_STORAGE_DIRECTORY, generate_uid(prefix=_UID_PREFIX),
                             EXPLICIT_LITTLE_ENDIAN)
        file_set_id = _text(0x00041130, b"CS", FILE_SET_ID)
        consistency = _element(0x00041212, b"US", struct.pack("<H", 0))
        # The two root offsets (12 bytes each) and the sequence header come
        # before the first record.
        first_offset = len(header) + len(file_set_id) + 12 + 12 + len(consistency) + 12
        linear = []
        _linearize(self._patients, linear)
        offsets, position = {}, first_offset
        sizes = {}
        for record in linear:
            sizes[id(record)] = _record_size(record)
            offsets[id(record)] = position
            position += sizes[id(record)]
        next_offsets = {}
        _siblings(self._patients, offsets, next_offsets)
        items = []
        for record in linear:
            lower = offsets[id(record.children[0])] if record.children else 0
            item = _encode_record(record, next_offsets[id(record)], lower)
            assert len(item) == sizes[id(record)]
            items.append(item)
        root_first = offsets[id(self._patients[0])] if self._patients else 0
        root_last = offsets[id(self._patients[-1])] if self._patients else 0
        return b"".join([
            header, file_set_id,
            _element(0x00041200, b"UL", struct.pack("<I", root_first)),
            _element(0x00041202, b"UL", struct.pack("<I", root_last)),
            consistency,
            struct.pack("<HH2sHI", 0x0004, 0x1220, b"SQ", 0, 0xFFFFFFFF),
            b"".join(items),
            struct.pack("<HHI", 0xFFFE, 0xE0DD, 0),
        ])


def _linearize(records, out):
    """Depth first, as DCMTK writes the records."""
    for record in records:
        out.append(record)
        _linearize(record.children, out)


def _siblings(records, offsets, next_offsets):
    for position, record in enumerate(records):
        following = records[position + 1] if position + 1 < len(records) else None
        next_offsets[id(record)] = offsets[id(following)] if following is not None else 0
        _siblings(record.children, offsets, next_offsets)


_MAX_SHORT_VALUE = 0xFFFE   # the longest even value a 16-bit length can announce


def _element(tag, vr, data):
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(data)) + data


def _text(tag, vr, value):
    """A text element, padded to an even length (UIDs with NUL, the others
    with a space)."""
    data = value.encode("ascii")[:_MAX_SHORT_VALUE]
    if len(data) % 2:
        data += b"\0" if vr == b"UI" else b" "
    return _element(tag, vr, data)


def _record_elements(record, next_offset, lower_offset):
    fixed = [
        _element(0x00041400, b"UL", struct.pack("<I", next_offset)),
        _element(0x00041410, b"US", struct.pack("<H", 0xFFFF)),
        _element(0x00041420, b"UL", struct.pack("<I", lower_offset)),
        _text(0x00041430, b"CS", _RECORD_TYPES[record.level]),
    ]
    keys = [_text(tag, _VR[tag], value) for tag, value in sorted(record.values.items())]
    return fixed + keys


def _encode_record(record, next_offset, lower_offset):
    return b"".join([struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)]
                    + _record_elements(record, next_offset, lower_offset)
                    + [struct.pack("<HHI", 0xFFFE, 0xE00D, 0)])


def _record_size(record):
    return len(_encode_record(record, 0, 0))
