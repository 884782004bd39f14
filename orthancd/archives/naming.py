"""Names inside Orthanc 1.13.0's ZIP archives.

Folders are named after main DICOM tags ("PatientID - PatientName",
"AccessionNumber - StudyDescription", "SeriesNumber - Modality -
SeriesDescription"), files after the instance's index in its series with a
prefix from the modality ("MR000012.dcm").  Every name goes through
Orthanc's path normalization (characters that break file systems become
spaces, runs of spaces collapse, non-ASCII characters are dropped unless
UTF-8 names are allowed), and a name met twice in one folder gets "-2",
"-3"... appended.
"""
from orthancd.ids import ResourceLevel

# C's isspace() in the "C" locale, and the characters Orthanc turns into
# spaces because some file systems refuse them.
_C_SPACES = frozenset(b" \t\n\v\f\r")
_FORBIDDEN = frozenset(b':*?"<>|')
_SLASHES = frozenset(b"/\\")
_SPACE = 0x20
_SLASH = 0x2F


def _is_ascii_character(byte):
    """Orthanc's IsAsciiCharacter: printable 7-bit characters and line feeds."""
    return byte != 0 and byte <= 127 and (byte == 10 or 32 <= byte < 127)


def strip_spaces(data):
    """Toolbox::StripSpaces on bytes (C isspace at both ends)."""
    start, end = 0, len(data)
    while start < end and data[start] in _C_SPACES:
        start += 1
    while end > start and data[end - 1] in _C_SPACES:
        end -= 1
    return data[start:end]


def normalize_path(text, allow_utf8, allow_slashes):
    """Toolbox::NormalizePath: ``text`` (str or UTF-8 bytes) as a name safe
    on any file system.  Returns bytes, UTF-8 when ``allow_utf8`` (and then only when
    the text is valid UTF-8), plain ASCII otherwise."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    if not allow_utf8 or not _is_valid_utf8(data):
        data = bytes(b for b in data if _is_ascii_character(b))
    out = bytearray()
    for byte in data:
        collapse = False
        if byte in _C_SPACES or byte <= 31 or byte in _FORBIDDEN:
            byte, collapse = _SPACE, True
        elif byte in _SLASHES:
            byte, collapse = (_SLASH if allow_slashes else _SPACE), True
        if not collapse or not out or out[-1] != byte:
            out.append(byte)
    return strip_spaces(bytes(out))


def _is_valid_utf8(data):
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class ArchiveLevel:
    """Orthanc's ArchiveResourceType: the levels of the archive's folder
    tree, with the patient folder named after the patient's own tags or
    after those its study recorded ("patient info from study", used when
    the archive is of one study or series: of two patients sharing a
    PatientID, the one of that study is named)."""
    PATIENT = "Patient"
    PATIENT_FROM_STUDY = "PatientInfoFromStudy"
    STUDY = "Study"
    SERIES = "Series"
    INSTANCE = "Instance"

    # The level of the resource whose ID names the node, and the level the
    # node stands for.
    ID_LEVEL = {PATIENT: ResourceLevel.PATIENT, PATIENT_FROM_STUDY: ResourceLevel.STUDY,
                STUDY: ResourceLevel.STUDY, SERIES: ResourceLevel.SERIES,
                INSTANCE: ResourceLevel.INSTANCE}
    RESOURCE_LEVEL = {PATIENT: ResourceLevel.PATIENT, PATIENT_FROM_STUDY: ResourceLevel.PATIENT,
                      STUDY: ResourceLevel.STUDY, SERIES: ResourceLevel.SERIES,
                      INSTANCE: ResourceLevel.INSTANCE}
    CHILD = {PATIENT: STUDY, PATIENT_FROM_STUDY: STUDY, STUDY: SERIES, SERIES: INSTANCE}

    @classmethod
    def of_job(cls, level):
        """The top of the tree for an archive of ``level`` (Orthanc's
        GetArchiveResourceType)."""
        return {ResourceLevel.PATIENT: cls.PATIENT, ResourceLevel.STUDY: cls.PATIENT_FROM_STUDY,
                ResourceLevel.SERIES: cls.SERIES, ResourceLevel.INSTANCE: cls.INSTANCE}[level]


def folder_name(archive_level, tags):
    """The name of a folder (bytes, before normalization) from the main
    tags of its resource (``tags``: {name: value}, None when the resource is
    gone), and for a series the prefix of its instances' file names (None
    for the other levels)."""
    parts = []
    instance_prefix = None
    if tags is not None:
        def tag(name):
            return tags.get(name) or ""

        if archive_level in (ArchiveLevel.PATIENT, ArchiveLevel.PATIENT_FROM_STUDY):
            parts.append(tag("PatientID"))
            parts += [tag("PatientName")] if tag("PatientName") else []
        elif archive_level == ArchiveLevel.STUDY:
            parts += [v for v in (tag("AccessionNumber"), tag("StudyDescription")) if v]
        elif archive_level == ArchiveLevel.SERIES:
            modality = tag("Modality")
            parts += [v for v in (tag("SeriesNumber"), modality, tag("SeriesDescription")) if v]
            instance_prefix = instance_name_prefix(modality)
    path = strip_spaces(" - ".join(parts).encode("utf-8", "surrogateescape"))
    # Non-ASCII patient names may leave only their '^' separators.
    if not path or path.count(b"^") == len(path):
        level = ArchiveLevel.RESOURCE_LEVEL[archive_level]
        path = ("Unknown " + level.title).encode("ascii")
    return path, instance_prefix


def instance_name_prefix(modality):
    """The bytes before the number in an instance's file name: the first
    two bytes of the modality, ASCII letters upper-cased (b"" when there is
    no modality)."""
    prefix = modality.encode("utf-8", "surrogateescape")[:2]
    return bytes(b - 32 if 97 <= b <= 122 else b for b in prefix)


def instance_file_name(prefix, index):
    """b"MR000012.dcm": the prefix and the index on 8 characters, the index
    printed as a signed 32-bit number (as Orthanc's printf does)."""
    number = index - (1 << 32) if index >= (1 << 31) else index
    return prefix + b"%0*d.dcm" % (8 - len(prefix), number)


def media_file_name(counter):
    """b"IM0", b"IM1"...: DICOM media file IDs are at most 8 characters."""
    return b"IM%d" % counter


def parse_index_in_series(text):
    """SerializationToolbox::ParseUnsignedInteger32 as ArchiveJob uses it:
    0 when absent or unreadable, the low 32 bits of a larger number (the
    overflow is detected, but the truncated value is kept)."""
    if text is None:
        return 0
    value = strip_spaces(text.encode("utf-8", "surrogateescape"))
    if value.startswith(b"+"):
        value = value[1:]
    if not value or not value.isdigit() or int(value) >= 1 << 64:
        return 0
    return int(value) & 0xFFFFFFFF


class FolderNames:
    """HierarchicalZipWriter's index: the current folder path, and in each
    folder the names already used (a name used again gets "-2", "-3"...)."""

    def __init__(self, allow_utf8):
        self.allow_utf8 = allow_utf8
        self._stack = [({}, None)]   # (uses by normalized name, folder name)

    def _unique(self, name):
        normalized = normalize_path(name, self.allow_utf8, False)
        uses = self._stack[-1][0]
        count = uses.get(normalized, 0) + 1
        uses[normalized] = count
        return normalized if count == 1 else normalized + b"-%d" % count

    def open_directory(self, name):
        self._stack.append(({}, self._unique(name)))

    def close_directory(self):
        if len(self._stack) == 1:
            raise ValueError("Cannot close the root folder of an archive")
        self._stack.pop()

    def file_path(self, name):
        """The path of a new file in the current folder, as it is written
        in the archive (bytes, normalized once more as a whole)."""
        folders = b"".join(folder + b"/" for _, folder in self._stack[1:])
        return normalize_path(folders + self._unique(name), self.allow_utf8, True)
