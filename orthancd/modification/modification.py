"""What a modification or an anonymization does to each DICOM file, with
Orthanc 1.13.0's rules (its DicomModification).

A ``Modification`` is configured from the JSON body of a request
(``parse_modify_request`` / ``parse_anonymization_request``), then applied
to every file of a job.  It keeps the map from original to new identifiers
(UIDs, and for an anonymization PatientID and PatientName), so that every
instance of a modified study lands in the same new study, every instance of
a series in the same new series, and references between instances
(ReferencedSOPInstanceUID...) follow their target.  It can be saved with the
job and read back (``serialize`` / ``from_serialized``).

Applying it (``apply``), in Orthanc's order:
  1. an anonymization first registers the UIDs the request replaces,
  2. private tags go (except those kept),
  3. tags are emptied, 4. removed, 5. replaced (top level),
  6. StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID get new UIDs
     below the level of the modification (unless kept or replaced),
  7. an anonymization walks the whole file: UIDs (and PatientID/Name) are
     mapped wherever they are, and inside sequences the tags the profile
     removes or empties are removed,
  8. the paths into sequences given in Remove then Replace are applied.
"""
import threading
import uuid

from orthancd.dicom.uids import generate_uid
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.modification import embedding, paths, profiles, values
from orthancd.modification.dataset import KEEP, REMOVE, REPLACE

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SOP_INSTANCE_UID = 0x00080018
SOP_CLASS_UID = 0x00080016
DEIDENTIFICATION_METHOD = 0x00120063
PATIENT_IDENTITY_REMOVED = 0x00120062
REFERENCED_IMAGE_SEQUENCE = 0x00081140
SOURCE_IMAGE_SEQUENCE = 0x00082112
REFERENCED_FRAME_OF_REFERENCE_SEQUENCE = 0x30060010
RT_REFERENCED_STUDY_SEQUENCE = 0x30060012
REFERENCED_SOP_INSTANCE_UID = 0x00081155

DATABASE_KEYS = (PATIENT_ID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID)
_UID_TAG_OF_LEVEL = {ResourceLevel.STUDY: STUDY_INSTANCE_UID,
                     ResourceLevel.SERIES: SERIES_INSTANCE_UID,
                     ResourceLevel.INSTANCE: SOP_INSTANCE_UID}


def strip_spaces(text):
    """Toolbox::StripSpaces (C isspace)."""
    return text.strip(" \t\n\v\f\r")


def _is_private(tag):
    return (tag >> 16) % 2 == 1


def _bad_request(details=None):
    return OrthancError(ErrorCode.BadRequest, details)


def _boolean(body, name, default):
    if name not in body:
        return default
    value = body[name]
    if not isinstance(value, bool):
        raise OrthancError(ErrorCode.BadFileFormat, 'Member "%s" should be a Boolean value' % name)
    return value


class Modification:

    def __init__(self):
        self.removals = set()
        self.clearings = set()
        self.replacements = {}              # tag -> JSON value
        self.keep = set()
        self.uids = set()
        self.removed_ranges = []            # (group from, group to, element from, element to)
        self.private_tags_to_keep = set()
        self.keep_sequences = []            # DicomPath
        self.remove_sequences = []          # DicomPath with a prefix
        self.sequence_replacements = []     # (DicomPath with a prefix, JSON value)
        self.remove_private_tags = False
        self.keep_labels = False
        self.level = ResourceLevel.INSTANCE
        self.allow_manual_identifiers = True
        self.keep_study_instance_uid = False
        self.keep_series_instance_uid = False
        self.keep_sop_instance_uid = False
        self.update_referenced_relationships = True
        self.is_anonymization = False
        self.private_creator = ""
        self.uid_map = {}                   # (level, original) -> new
        # Jobs apply one modification to several files at once, in threads.
        self._lock = threading.Lock()

    # -- the operations (DicomModification's Keep, Remove, Clear, Replace) --

    def _mark_not_orthanc_anonymization(self):
        current = self.replacements.get(DEIDENTIFICATION_METHOD)
        if current in profiles.PROFILE_METHODS:
            self.replacements[DEIDENTIFICATION_METHOD] = profiles.ORTHANC_VERSION_TEXT

    def keep_tag(self, tag):
        self.keep.add(tag)
        self.removals.discard(tag)
        self.clearings.discard(tag)
        self.uids.discard(tag)
        self.replacements.pop(tag, None)
        if tag == STUDY_INSTANCE_UID:
            self.keep_study_instance_uid = True
        elif tag == SERIES_INSTANCE_UID:
            self.keep_series_instance_uid = True
        elif tag == SOP_INSTANCE_UID:
            self.keep_sop_instance_uid = True
        elif _is_private(tag):
            self.private_tags_to_keep.add(tag)
        self._mark_not_orthanc_anonymization()

    def remove_tag(self, tag):
        self.removals.add(tag)
        self.clearings.discard(tag)
        self.uids.discard(tag)
        self.replacements.pop(tag, None)
        self.private_tags_to_keep.discard(tag)
        self._mark_not_orthanc_anonymization()

    def replace_tag(self, tag, value, safe_for_anonymization=False):
        self.clearings.discard(tag)
        self.removals.discard(tag)
        self.uids.discard(tag)
        self.private_tags_to_keep.discard(tag)
        self.replacements[tag] = value
        if not safe_for_anonymization:
            self._mark_not_orthanc_anonymization()

    def keep_path(self, path):
        if path.is_top_level:
            self.keep_tag(path.final)
        self.keep_sequences.append(path)
        self._mark_not_orthanc_anonymization()

    def remove_path(self, path):
        if path.is_top_level:
            self.remove_tag(path.final)
        else:
            self.remove_sequences.append(path)
            self._mark_not_orthanc_anonymization()

    def replace_path(self, path, value, safe_for_anonymization=False):
        if path.is_top_level:
            self.replace_tag(path.final, value, safe_for_anonymization)
        else:
            self.sequence_replacements.append((path, value))
            if not safe_for_anonymization:
                self._mark_not_orthanc_anonymization()

    def set_remove_private_tags(self, removed):
        self.remove_private_tags = removed
        if not removed:
            self._mark_not_orthanc_anonymization()

    def set_level(self, level):
        self.uid_map.clear()
        self.level = level
        if level is not ResourceLevel.PATIENT:
            self._mark_not_orthanc_anonymization()

    def is_removed(self, tag):
        if tag in self.removals:
            return True
        group, element = tag >> 16, tag & 0xFFFF
        return any(gf <= group <= gt and ef <= element <= et
                   for gf, gt, ef, et in self.removed_ranges)

    def is_cleared(self, tag):
        return tag in self.clearings

    def is_replaced(self, tag):
        return tag in self.replacements

    def is_kept(self, tag):
        return tag in self.keep

    def replacement_as_string(self, tag):
        value = self.replacements.get(tag)
        if tag not in self.replacements:
            raise OrthancError(ErrorCode.InexistentItem)
        if not isinstance(value, str):
            raise OrthancError(ErrorCode.BadParameterType)
        return value

    # -- the anonymization profiles --

    def setup_anonymization(self, version):
        profile = profiles.PROFILES.get(version)
        if profile is None:
            raise OrthancError(ErrorCode.ParameterOutOfRange)
        self.is_anonymization = True
        self.keep.clear()
        self.removals = set(profile.removed)
        self.clearings = set(profile.cleared)
        self.removed_ranges = list(profile.removed_ranges)
        self.uids = set(profile.uids)
        self.replacements = {DEIDENTIFICATION_METHOD: profiles.deidentification_method(profile)}
        self.sequence_replacements = []
        self.remove_private_tags = True
        self.level = ResourceLevel.PATIENT
        self.uid_map.clear()
        self.private_tags_to_keep.clear()
        self.keep_sequences = []
        self.remove_sequences = []
        self.replacements[PATIENT_IDENTITY_REMOVED] = "YES"
        # PatientID and PatientName are mapped like UIDs (to random values).
        self.uids.add(PATIENT_ID)
        self.uids.add(PATIENT_NAME)

    # -- reading requests --

    def _parse_list_of_tags(self, query, keep, force):
        if not isinstance(query, list):
            raise _bad_request()
        for name in query:
            if not isinstance(name, str):
                raise _bad_request()
            path = paths.parse(name)
            if path.is_top_level and not force and path.final in DATABASE_KEYS:
                raise _bad_request('Marking tag "%s" as to be %s requires the "Force" option '
                                   'to be set to true' % (name, "kept" if keep else "removed"))
            if keep:
                self.keep_path(path)
            else:
                self.remove_path(path)

    def _parse_replacements(self, replacements, force):
        if not isinstance(replacements, dict):
            raise _bad_request()
        # JsonCpp hands the members over sorted by name.
        for name in sorted(replacements):
            path = paths.parse(name)
            if path.is_top_level and not force and path.final in DATABASE_KEYS:
                raise _bad_request('Marking tag "%s" as to be replaced requires the "Force" '
                                   'option to be set to true' % name)
            self.replace_path(path, replacements[name])

    def _read_private_creator(self, request):
        if "PrivateCreator" in request:
            value = request["PrivateCreator"]
            if not isinstance(value, str):
                raise OrthancError(ErrorCode.BadFileFormat,
                                   "String value expected in field: PrivateCreator")
            self.private_creator = value

    def _parse_common_options(self, request, force):
        """KeepLabels, Remove, Replace and Keep, which modification and
        anonymization read alike (in this order, as Orthanc does)."""
        if _boolean(request, "KeepLabels", False):
            self.keep_labels = True
        if "Remove" in request:
            self._parse_list_of_tags(request["Remove"], False, force)
        if "Replace" in request:
            self._parse_replacements(request["Replace"], force)
        if "Keep" in request:
            self._parse_list_of_tags(request["Keep"], True, force)

    def parse_modify_request(self, request):
        """DicomModification::ParseModifyRequest."""
        if not isinstance(request, dict):
            raise OrthancError(ErrorCode.BadFileFormat)
        force = _boolean(request, "Force", False)
        if _boolean(request, "RemovePrivateTags", False):
            self.set_remove_private_tags(True)
        self._parse_common_options(request, force)
        self._read_private_creator(request)
        if not force:
            self._check_identifiers_of_level()

    def _check_identifiers_of_level(self):
        """The identifiers a request may not replace at the level of the
        modification (checked, as in Orthanc, against the level known when
        the request is read)."""
        patient_id = self.is_replaced(PATIENT_ID) or PATIENT_ID in self.uids
        level = self.level
        checks = (
            (level is ResourceLevel.PATIENT and not patient_id,
             "When modifying a patient, her PatientID is required to be modified."),
            (level is ResourceLevel.STUDY and patient_id,
             "When modifying a study, the parent PatientID cannot be manually modified"),
            (level is ResourceLevel.SERIES and patient_id,
             "When modifying a series, the parent PatientID cannot be manually modified"),
            (level is ResourceLevel.SERIES and self.is_replaced(STUDY_INSTANCE_UID),
             "When modifying a series, the parent StudyInstanceUID cannot be manually modified"),
            (level is ResourceLevel.INSTANCE and patient_id,
             "When modifying an instance, the parent PatientID cannot be manually modified"),
            (level is ResourceLevel.INSTANCE and self.is_replaced(STUDY_INSTANCE_UID),
             "When modifying an instance, the parent StudyInstanceUID cannot be manually "
             "modified"),
            (level is ResourceLevel.INSTANCE and self.is_replaced(SERIES_INSTANCE_UID),
             "When modifying an instance, the parent SeriesInstanceUID cannot be manually "
             "modified"),
        )
        for failed, message in checks:
            if failed:
                raise _bad_request(message)

    def parse_anonymization_request(self, request):
        """DicomModification::ParseAnonymizationRequest; returns whether the
        request gives the PatientName itself."""
        if not isinstance(request, dict):
            raise OrthancError(ErrorCode.BadFileFormat, "The payload should be a JSON object.")
        force = _boolean(request, "Force", False)
        version = profiles.DEFAULT_VERSION
        if "DicomVersion" in request:
            if not isinstance(request["DicomVersion"], str):
                raise OrthancError(ErrorCode.BadFileFormat, "DicomVersion should be a string")
            version = request["DicomVersion"]
            if version not in profiles.PROFILES:
                raise OrthancError(ErrorCode.ParameterOutOfRange,
                                   "Unknown specific version of the DICOM standard: " + version)
        self.setup_anonymization(version)
        if _boolean(request, "KeepPrivateTags", False):
            self.set_remove_private_tags(False)
        self._parse_common_options(request, force)
        name_given = PATIENT_NAME not in self.uids
        self._read_private_creator(request)
        return name_given

    # -- identifiers --

    def map_identifier(self, original, level):
        """The new identifier standing for ``original`` at ``level``
        (the same every time it is asked)."""
        stripped = strip_spaces(original)
        key = (level, stripped)
        mapped = self.uid_map.get(key)
        if mapped is None:
            mapped = str(uuid.uuid4()) if level is ResourceLevel.PATIENT else generate_uid(level)
            self.uid_map[key] = mapped
        return mapped

    def _register_identifier(self, original, mapped, level):
        self.uid_map.setdefault((level, strip_spaces(original)), mapped)

    def _map_top_level_uid(self, edited, level):
        tag = _UID_TAG_OF_LEVEL[level]
        original = edited.string(tag) or ""
        mapped = self.map_identifier(original, level)
        edited.put(values.string_element(tag, mapped, edited.encoding, self.private_creator,
                                         decode_data_uri_scheme=False))

    def is_altered_tag(self, tag):
        """Whether a modification changes ``tag`` (DicomModification::IsAlteredTag)."""
        return (tag in self.uids or self.is_cleared(tag) or self.is_removed(tag)
                or self.is_replaced(tag)
                or (_is_private(tag) and self.remove_private_tags
                    and tag not in self.private_tags_to_keep)
                or (self.is_anonymization and tag in (PATIENT_NAME, PATIENT_ID))
                or (tag == STUDY_INSTANCE_UID and not self.keep_study_instance_uid)
                or (tag == SERIES_INSTANCE_UID and not self.keep_series_instance_uid)
                or (tag == SOP_INSTANCE_UID and not self.keep_sop_instance_uid))

    # -- applying --

    def apply(self, edited):
        """Modify the EditedFile ``edited`` in place."""
        with self._lock:
            self._apply(edited)

    def _apply(self, edited):
        if any(self.is_removed(tag) for tag in DATABASE_KEYS):
            raise _bad_request("It is forbidden to remove one of the main Dicom identifiers")
        if not self.allow_manual_identifiers:
            self._check_manual_identifiers()

        # (1) The UIDs the request sets are the new identifiers of the
        # original ones, for the references that point to them.
        if self.is_anonymization and self.update_referenced_relationships:
            for tag, level in ((STUDY_INSTANCE_UID, ResourceLevel.STUDY),
                               (SERIES_INSTANCE_UID, ResourceLevel.SERIES),
                               (SOP_INSTANCE_UID, ResourceLevel.INSTANCE)):
                if self.is_replaced(tag):
                    self._register_identifier(edited.string(tag) or "",
                                              self.replacement_as_string(tag), level)

        # (2) Private tags.
        if self.remove_private_tags:
            edited.remove_private_tags(self.private_tags_to_keep)

        # (3) Emptied tags, (4) removed tags, (5) replaced tags.
        for tag in sorted(self.clearings):
            edited.clear_path(paths.DicomPath((), tag), only_if_exists=True)
        for tag in sorted(self.removals):
            edited.remove(tag)
        for tag in sorted(self.replacements):
            # A new SpecificCharacterSet (replaced first, its tag is the
            # smallest) decides how the values replaced after it are encoded.
            self._replace_top_level(edited, tag, self.replacements[tag], edited.encoding)

        # (6) New identifiers below the level of the modification.
        if self.level <= ResourceLevel.STUDY and not self.is_replaced(STUDY_INSTANCE_UID) \
                and not self.keep_study_instance_uid:
            self._map_top_level_uid(edited, ResourceLevel.STUDY)
        if self.level <= ResourceLevel.SERIES and not self.is_replaced(SERIES_INSTANCE_UID) \
                and not self.keep_series_instance_uid:
            self._map_top_level_uid(edited, ResourceLevel.SERIES)
        if not self.is_replaced(SOP_INSTANCE_UID) and not self.keep_sop_instance_uid:
            self._map_top_level_uid(edited, ResourceLevel.INSTANCE)

        # (7) References, everywhere in the file.
        if self.is_anonymization:
            if self.update_referenced_relationships:
                edited.walk(RelationshipsVisitor(self))
            else:
                self._remove_relationships(edited)

        # (8) Paths into sequences.
        for path in self.remove_sequences:
            edited.remove_path(path)
        encoding = edited.encoding
        for path, value in self.sequence_replacements:
            edited.replace_path(path, lambda value=value, tag=path.final: values.json_element(
                tag, value, encoding, self.private_creator))

    def _check_manual_identifiers(self):
        rules = (
            (ResourceLevel.PATIENT, STUDY_INSTANCE_UID,
             "When modifying a patient, the StudyInstanceUID cannot be manually modified"),
            (ResourceLevel.PATIENT, SERIES_INSTANCE_UID,
             "When modifying a patient, the SeriesInstanceUID cannot be manually modified"),
            (ResourceLevel.PATIENT, SOP_INSTANCE_UID,
             "When modifying a patient, the SopInstanceUID cannot be manually modified"),
            (ResourceLevel.STUDY, SERIES_INSTANCE_UID,
             "When modifying a study, the SeriesInstanceUID cannot be manually modified"),
            (ResourceLevel.STUDY, SOP_INSTANCE_UID,
             "When modifying a study, the SopInstanceUID cannot be manually modified"),
            (ResourceLevel.SERIES, SOP_INSTANCE_UID,
             "When modifying a series, the SopInstanceUID cannot be manually modified"),
        )
        for level, tag, message in rules:
            if self.level is level and self.is_replaced(tag):
                raise _bad_request(message)

    def _replace_top_level(self, edited, tag, value, encoding):
        """ParsedDicomFile::Replace (insert if absent)."""
        if tag & 0xFFFF == 0:
            return  # group lengths are DCMTK's business
        if isinstance(value, str):
            if tag in (values.PIXEL_DATA, values.ENCAPSULATED_DOCUMENT):
                edited.remove(tag)
                if embedding.embed(edited, value, encoding):
                    return
            element = values.string_element(tag, value, encoding, self.private_creator)
        else:
            if tag in (SOP_CLASS_UID, SOP_INSTANCE_UID):
                raise OrthancError(ErrorCode.BadParameterType)
            element = values.json_element(tag, value, encoding, self.private_creator)
        edited.put(element)

    def _remove_relationships(self, edited):
        def manually_modified(tag):
            return self.is_cleared(tag) or self.is_removed(tag) or self.is_replaced(tag)
        for tag in sorted(self.uids):
            if not manually_modified(tag):
                edited.remove(tag)
        for tag in (REFERENCED_IMAGE_SEQUENCE, SOURCE_IMAGE_SEQUENCE):
            if not manually_modified(tag):
                edited.remove(tag)

    # -- saving with a job --

    def serialize(self):
        """DicomModification::Serialize (the same fields, the same shapes)."""
        maps = {level: {} for level in ResourceLevel}
        for (level, original), mapped in self.uid_map.items():
            maps[level][original] = mapped
        return {
            "RemovePrivateTags": self.remove_private_tags,
            "Level": self.level.title,
            "AllowManualIdentifiers": self.allow_manual_identifiers,
            "KeepStudyInstanceUID": self.keep_study_instance_uid,
            "KeepSeriesInstanceUID": self.keep_series_instance_uid,
            "KeepSOPInstanceUID": self.keep_sop_instance_uid,
            "UpdateReferencedRelationships": self.update_referenced_relationships,
            "IsAnonymization": self.is_anonymization,
            "PrivateCreator": self.private_creator,
            "Removals": _tags(self.removals),
            "Clearings": _tags(self.clearings),
            "PrivateTagsToKeep": _tags(self.private_tags_to_keep),
            "Replacements": {paths.format_tag(tag): value
                             for tag, value in sorted(self.replacements.items())},
            "MapPatients": maps[ResourceLevel.PATIENT],
            "MapStudies": maps[ResourceLevel.STUDY],
            "MapSeries": maps[ResourceLevel.SERIES],
            "MapInstances": maps[ResourceLevel.INSTANCE],
            "Uids": _tags(self.uids),
            "RemovedRanges": [list(r) for r in self.removed_ranges],
            "KeepSequences": [p.format() for p in self.keep_sequences],
            "RemoveSequences": [p.format() for p in self.remove_sequences],
            "SequenceReplacements": {p.format(): v for p, v in self.sequence_replacements},
            # Not in Orthanc's: read back as Orthanc reads its own jobs.
            "KeepLabels": self.keep_labels,
        }

    @classmethod
    def from_serialized(cls, saved):
        self = cls()
        self.remove_private_tags = bool(saved["RemovePrivateTags"])
        self.level = ResourceLevel.parse(saved["Level"])
        self.allow_manual_identifiers = bool(saved["AllowManualIdentifiers"])
        self.keep_study_instance_uid = bool(saved["KeepStudyInstanceUID"])
        self.keep_series_instance_uid = bool(saved["KeepSeriesInstanceUID"])
        self.keep_sop_instance_uid = bool(saved.get("KeepSOPInstanceUID", False))
        self.update_referenced_relationships = bool(saved["UpdateReferencedRelationships"])
        self.is_anonymization = bool(saved["IsAnonymization"])
        self.private_creator = saved.get("PrivateCreator", "")
        self.keep_labels = bool(saved.get("KeepLabels", False))
        self.removals = _read_tags(saved["Removals"])
        self.clearings = _read_tags(saved["Clearings"])
        self.private_tags_to_keep = _read_tags(saved["PrivateTagsToKeep"])
        self.replacements = {int(key.replace(",", ""), 16): value
                             for key, value in saved["Replacements"].items()}
        for level, field in ((ResourceLevel.PATIENT, "MapPatients"),
                             (ResourceLevel.STUDY, "MapStudies"),
                             (ResourceLevel.SERIES, "MapSeries"),
                             (ResourceLevel.INSTANCE, "MapInstances")):
            for original, mapped in saved[field].items():
                self.uid_map[(level, original)] = mapped
        if "Uids" in saved:
            self.uids = _read_tags(saved["Uids"])
        else:
            self.uids = set(profiles.UIDS_OF_ORTHANC_1_9_3) | {PATIENT_ID, PATIENT_NAME}
            self.removals -= self.uids
        self.removed_ranges = [tuple(r) for r in saved.get("RemovedRanges", [])]
        self.keep_sequences = [paths.parse(p) for p in saved.get("KeepSequences", [])]
        self.remove_sequences = [paths.parse(p) for p in saved.get("RemoveSequences", [])]
        self.sequence_replacements = [(paths.parse(p), v)
                                      for p, v in saved.get("SequenceReplacements", {}).items()]
        self.keep = set()
        return self


def _tags(tags):
    return [paths.format_tag(tag) for tag in sorted(tags)]


def _read_tags(items):
    return {int(item.replace(",", "").replace("-", ""), 16) for item in items}


class RelationshipsVisitor:
    """What an anonymization does to each element of a file, nested ones
    included (DicomModification::RelationshipsVisitor)."""

    def __init__(self, modification):
        self.m = modification

    def _manually_modified(self, tag):
        m = self.m
        return m.is_cleared(tag) or m.is_removed(tag) or m.is_replaced(tag)

    def _kept_sequence(self, parent_tags, parent_indexes, tag):
        return any(path.matches(parent_tags, parent_indexes, tag)
                   for path in self.m.keep_sequences)

    def visit_other(self, parent_tags, parent_indexes, tag):
        """Sequences, binary values, numbers: only removed inside sequences
        (private tags, tags the profile removes or empties)."""
        m = self.m
        if not parent_tags or not m.is_anonymization:
            return KEEP
        if self._kept_sequence(parent_tags, parent_indexes, tag):
            return KEEP
        if m.remove_private_tags and _is_private(tag):
            return REMOVE
        if m.is_cleared(tag) or m.is_removed(tag):
            return REMOVE
        return KEEP

    def visit_string(self, parent_tags, parent_indexes, tag, value):
        """(action, new value) for a text element."""
        m = self.m
        if not parent_tags:
            if tag in m.uids and not self._manually_modified(tag):
                level = ResourceLevel.PATIENT if tag in (PATIENT_ID, PATIENT_NAME) \
                    else ResourceLevel.INSTANCE
                return REPLACE, m.map_identifier(value, level)
            return KEEP, None
        if self._kept_sequence(parent_tags, parent_indexes, tag):
            return KEEP, None
        if m.is_anonymization:
            if m.remove_private_tags and _is_private(tag):
                return REMOVE, None
            if m.is_removed(tag):
                return REMOVE, None
            if m.is_cleared(tag):
                return REPLACE, ""
        if tag == STUDY_INSTANCE_UID:
            return REPLACE, m.map_identifier(value, ResourceLevel.STUDY)
        if tag == SERIES_INSTANCE_UID:
            return REPLACE, m.map_identifier(value, ResourceLevel.SERIES)
        if tag == SOP_INSTANCE_UID:
            return REPLACE, m.map_identifier(value, ResourceLevel.INSTANCE)
        if tag in m.uids:
            if tag in (PATIENT_ID, PATIENT_NAME):
                return REPLACE, m.map_identifier(value, ResourceLevel.PATIENT)
            if (len(parent_tags) == 2
                    and parent_tags[0] == REFERENCED_FRAME_OF_REFERENCE_SEQUENCE
                    and parent_tags[1] == RT_REFERENCED_STUDY_SEQUENCE
                    and tag == REFERENCED_SOP_INSTANCE_UID):
                # In RT-STRUCT files, this reference is a StudyInstanceUID.
                return REPLACE, m.map_identifier(value, ResourceLevel.STUDY)
            return REPLACE, m.map_identifier(value, ResourceLevel.INSTANCE)
        return KEEP, None
