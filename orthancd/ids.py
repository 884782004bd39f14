"""Resource levels and Orthanc public identifiers.

Orthanc names every resource by the SHA-1 of its DICOM identifier chain
(PatientID, then StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID joined by
'|'), printed as five dash-separated groups of eight hex digits.  Computing
them the same way is what lets scripts written for Orthanc keep working.
"""
import enum
import hashlib


class ResourceLevel(enum.IntEnum):
    PATIENT = 0
    STUDY = 1
    SERIES = 2
    INSTANCE = 3

    @property
    def title(self):
        """'Patient', 'Study', ... as Orthanc spells the level in JSON."""
        return _TITLES[self]

    @property
    def plural(self):
        """'patients', 'studies', ... as in the REST URIs."""
        return _PLURALS[self]

    @property
    def parent(self):
        return None if self is ResourceLevel.PATIENT else ResourceLevel(self - 1)

    @property
    def child(self):
        return None if self is ResourceLevel.INSTANCE else ResourceLevel(self + 1)

    @classmethod
    def parse(cls, text):
        """Accept 'Patient', 'patients', 'STUDY', 'Series'... like Orthanc does."""
        key = text.strip().lower()
        for level in cls:
            if key in (_TITLES[level].lower(), _PLURALS[level]):
                return level
        raise ValueError("Unknown resource level: %s" % text)


_TITLES = {0: "Patient", 1: "Study", 2: "Series", 3: "Instance"}
_PLURALS = {0: "patients", 1: "studies", 2: "series", 3: "instances"}


def format_public_id(digest):
    """20 raw SHA-1 bytes -> 'xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxxxxx'."""
    # Called for every ID listed or found: written for speed.
    return bytes(digest).hex("-", 4)


def parse_public_id(public_id):
    """The inverse of format_public_id; raises ValueError on anything else."""
    if (not isinstance(public_id, str) or len(public_id) != 44
            or public_id[8::9] != "----"):
        raise ValueError("Not an Orthanc identifier: %r" % (public_id,))
    raw = bytes.fromhex(public_id.replace("-", ""))
    if len(raw) != 20:  # fromhex skips whitespace: count what it decoded
        raise ValueError("Not an Orthanc identifier: %r" % (public_id,))
    return raw


def hash_chain(*uids):
    """SHA-1 digest of the '|'-joined identifier chain."""
    return hashlib.sha1("|".join(uids).encode("utf-8")).digest()


def public_id(*uids):
    return format_public_id(hash_chain(*uids))


def resource_ids(patient_id, study_uid, series_uid, sop_uid):
    """The four public IDs of an instance, patient first."""
    return (
        public_id(patient_id),
        public_id(patient_id, study_uid),
        public_id(patient_id, study_uid, series_uid),
        public_id(patient_id, study_uid, series_uid, sop_uid),
    )
