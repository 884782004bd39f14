"""The ResourceIndex interface and the records it hands out.

The index holds the Patient/Study/Series/Instance hierarchy, the main DICOM
tags, metadata, attachments and the change/export logs.  Reads are cheap and
synchronous (they run on the reactor thread); every write returns a Deferred
because it runs on a writer thread and fires only once committed to disk.
"""
import abc
import dataclasses
import enum
import time

from orthancd.ids import ResourceLevel


class MetadataType(enum.IntEnum):
    """Orthanc's numbering of the core metadata (the names show in /metadata)."""
    IndexInSeries = 1
    ReceptionDate = 2
    RemoteAET = 3
    ExpectedNumberOfInstances = 4
    ModifiedFrom = 5
    AnonymizedFrom = 6
    LastUpdate = 7
    Origin = 8
    TransferSyntax = 9
    SopClassUid = 10
    RemoteIP = 11
    CalledAET = 12
    HttpUsername = 13
    PixelDataOffset = 14
    MainDicomTagsSignature = 15
    MainDicomSequences = 16
    PixelDataVR = 17


USER_METADATA_START = 1024


class ContentType(enum.IntEnum):
    Dicom = 1
    DicomAsJson = 2
    DicomUntilPixelData = 3


USER_CONTENT_START = 1024

CONTENT_TYPE_NAMES = {
    ContentType.Dicom: "dicom",
    ContentType.DicomAsJson: "dicom-as-json",
    ContentType.DicomUntilPixelData: "dicom-until-pixel-data",
}


class ChangeType(enum.Enum):
    """Orthanc's change types, with its numbers; those from Deleted on are
    events that are never written to the changes log."""
    CompletedSeries = 1
    NewInstance = 2
    NewPatient = 3
    NewSeries = 4
    NewStudy = 5
    AnonymizedStudy = 6
    AnonymizedSeries = 7
    ModifiedStudy = 8
    ModifiedSeries = 9
    AnonymizedPatient = 10
    ModifiedPatient = 11
    StablePatient = 12
    StableStudy = 13
    StableSeries = 14
    UpdatedAttachment = 15
    UpdatedMetadata = 16
    Deleted = 4096
    NewChildInstance = 4097


def now_iso():
    """The time of a change, as Orthanc writes it (UTC, to the second)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime())


def parse_unsigned(text):
    """SerializationToolbox::ParseUnsignedInteger32; None when invalid."""
    if text is None:
        return None
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    return value if value < (1 << 32) else None


def series_completeness(expected_text, index_values):
    """(status, expected) of a series, as Orthanc's GetSeriesStatus: from its
    ExpectedNumberOfInstances metadata and the distinct IndexInSeries values
    of its instances.  Status: Unknown, Complete, Missing or Inconsistent."""
    expected = parse_unsigned(expected_text)
    if expected is None:
        return "Unknown", None
    seen = set()
    for value in set(index_values):
        body = value.strip()
        digits = body[1:] if body[:1] in "+-" else body
        if not digits.isdigit() or not digits.isascii():
            return "Unknown", None
        position = int(body)
        if position <= 0 or position > expected or position in seen:
            return "Inconsistent", expected
        seen.add(position)
    return ("Complete" if len(seen) == expected else "Missing"), expected


class UnknownResource(KeyError):
    """No resource with this identifier (at this level)."""


class StorageFull(Exception):
    """MaximumStorageSize / MaximumPatientCount reached and nothing can be recycled."""


@dataclasses.dataclass
class Resource:
    level: ResourceLevel
    public_id: str
    parent: str | None
    main_tags: dict
    patient_tags: dict | None  # study level only: the patient's tags as seen by that study
    protected: bool = False
    # Main tags that are sequences: {"gggg,eeee": Orthanc's full JSON node}.
    main_sequences: dict = dataclasses.field(default_factory=dict)
    # Creation order: Orthanc's internal ID, which breaks ties when ordering.
    seq: int = 0


@dataclasses.dataclass
class Change:
    seq: int | None            # None for the changes Orthanc never logs
    change_type: str
    level: ResourceLevel
    public_id: str
    date: str
    # What subscribers of the change stream may need beside the change
    # (e.g. the ancestors of a new instance, a label).
    details: dict = dataclasses.field(default_factory=dict)

    def to_json(self):
        return {
            "ChangeType": self.change_type,
            "Date": self.date,
            "ID": self.public_id,
            "Path": "/%s/%s" % (self.level.plural, self.public_id),
            "ResourceType": self.level.title,
            "Seq": self.seq,
        }


@dataclasses.dataclass
class StoreOutcome:
    status: str                      # "Success", "AlreadyStored" or "FilteredOut"
    ids: tuple                       # patient, study, series, instance public IDs
    new_levels: tuple = ()           # levels created by this store, instance first
    obsolete_files: list = dataclasses.field(default_factory=list)
    recycled: list = dataclasses.field(default_factory=list)
    # The C-STORE status of an instance a filter left out (0: success).
    cstore_status: int | None = None


@dataclasses.dataclass
class DescendantsSummary:
    counts: dict                                   # ResourceLevel -> how many below
    series_values: set = dataclasses.field(default_factory=set)
    instance_values: set = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class DeleteOutcome:
    remaining_ancestor: Resource | None
    deleted: list                    # (level, public_id) of every removed resource
    obsolete_files: list


# The levels whose metadata the index keeps by value too (ordering by a
# metadata, such as Orthanc Explorer 2's study pages by LastUpdate).  Not
# instances: each one brings ten metadata, set once at its reception, and
# indexing them by value would cost every store and delete of an instance
# ten more index entries; ordering instances by a metadata reads them, as
# Orthanc's SQL does.
METADATA_VALUE_LEVELS = (ResourceLevel.PATIENT, ResourceLevel.STUDY, ResourceLevel.SERIES)


class ResourceIndex(abc.ABC):
    """What the REST layer, ingest and the DICOM services need from an index.

    Lists are ordered by public ID, as Orthanc 1.13.0 orders them.
    """

    # -- reads (synchronous, cheap) --
    @abc.abstractmethod
    def snapshot(self):
        """An ID of the committed state that changes with every commit:
        what was read at one snapshot holds until the next."""

    @abc.abstractmethod
    def get_resource(self, public_id, level=None):
        """Return the Resource, or raise UnknownResource."""

    @abc.abstractmethod
    def reading_together(self):
        """A context manager within which the calling thread's reads see
        one state of the index, read at once (one read transaction for the
        many reads of a resource's JSON, say): for synchronous code only,
        never held across a Deferred or an await, and no lazy iterator
        begun inside may be read after it."""

    @abc.abstractmethod
    def get_resources(self, public_ids, level):
        """{public ID: Resource} of those of ``public_ids`` that exist at
        ``level``, read together (a query checking many candidates reads
        them at once, not one read each)."""

    @abc.abstractmethod
    def exists(self, public_id, level):
        """Is there such a resource?"""

    @abc.abstractmethod
    def list_resources(self, level, since=0, limit=0):
        """Public IDs at ``level`` by ID, ``since`` skipped, at most ``limit`` (0: all)."""

    @abc.abstractmethod
    def iter_ids(self, level):
        """The public IDs of ``level``, by ID, lazily."""

    @abc.abstractmethod
    def count_resources(self, level):
        """How many resources of ``level``."""

    @abc.abstractmethod
    def iter_level(self, level):
        """(public ID, Resource) of every resource of ``level``, by ID."""

    @abc.abstractmethod
    def get_children(self, public_id, level):
        """Public IDs of the children, by ID."""

    @abc.abstractmethod
    def count_children(self, public_id, level):
        """Number of direct children."""

    @abc.abstractmethod
    def get_descendants(self, public_id, level, target):
        """Public IDs at ``target`` level at or below a resource, by ID."""

    # What the computed tags (ModalitiesInStudy, NumberOfStudyRelatedInstances,
    # SOPClassesInStudy...) read of a resource's descendants: Orthanc
    # Explorer 2 asks for them for every study of its list.
    @abc.abstractmethod
    def summarize_descendants(self, public_id, level, series_main_tag=None,
                              instance_metadata=None):
        """A DescendantsSummary of the resources below a resource, from one
        walk down in one reading: how many at each level below, and the
        distinct values of the series' main tag ``series_main_tag`` and of
        the instances' metadata ``instance_metadata`` (those asked for;
        resources without them are left out)."""

    @abc.abstractmethod
    def get_metadata(self, public_id, level):
        """{MetadataType int: str}."""

    @abc.abstractmethod
    def get_metadata_value(self, public_id, level, metadata_type):
        """One metadata value, or None."""

    @abc.abstractmethod
    def get_attachments(self, public_id, level):
        """{content type int: StoredFile}."""

    @abc.abstractmethod
    def get_labels(self, public_id, level):
        """The labels of a resource, sorted."""

    @abc.abstractmethod
    def all_labels(self):
        """Every label in use, sorted."""

    @abc.abstractmethod
    def resources_with_label(self, level, label):
        """Public IDs of ``level`` carrying ``label``, by ID."""

    @abc.abstractmethod
    def iter_metadata_values(self, level, metadata_type, reverse=False):
        """(value, public ID) of the resources having a metadata, by value;
        for the levels of METADATA_VALUE_LEVELS only."""

    @abc.abstractmethod
    def lookup_metadata(self, level, metadata_type, value):
        """Public IDs whose metadata equals ``value``; for the levels of
        METADATA_VALUE_LEVELS only."""

    @abc.abstractmethod
    def lookup_identifier(self, level, tag, normalized_value):
        """Public IDs whose normalized identifier tag equals the value."""

    @abc.abstractmethod
    def scan_identifier_prefix(self, level, tag, normalized_prefix, cap=0):
        """Public IDs whose normalized tag starts with the prefix (None past ``cap``)."""

    @abc.abstractmethod
    def scan_identifier_range(self, level, tag, lower, upper, cap=0):
        """Public IDs whose normalized tag lies in [lower, upper] (None past ``cap``)."""

    @abc.abstractmethod
    def read_changes(self, since=0, to=None, count=None, types=None, newest_first=False):
        """Changes with since < seq <= to, of some types, at most ``count``
        from the oldest or the newest end, returned oldest first."""

    @abc.abstractmethod
    def get_changes(self, since=0, limit=100):
        """(list of Change, done): the page after ``since``."""

    @abc.abstractmethod
    def last_change_seq(self):
        """The newest sequence number ever logged, 0 if none."""

    @abc.abstractmethod
    def get_last_change(self):
        """The newest Change or None."""

    @abc.abstractmethod
    def get_exports(self, since=0, limit=100):
        """(list of export dicts, done, last seq)."""

    @abc.abstractmethod
    def get_last_export(self):
        """The newest export or None."""

    @abc.abstractmethod
    def get_statistics(self):
        """Global counts and sizes."""

    @abc.abstractmethod
    def resource_statistics(self, public_id, level):
        """Counts and sizes below one resource."""

    @abc.abstractmethod
    def referenced_uuids(self):
        """Every attachment UUID the index points at."""

    # -- the start-up check (blocking: before the writes start) --
    @abc.abstractmethod
    def released_files(self):
        """UUIDs of the files the index stopped referencing and whose
        removal was not confirmed."""

    @abc.abstractmethod
    def forget_released_now(self, uuids):
        """These released files are gone."""

    @abc.abstractmethod
    def unsettled_files(self):
        """(level, public ID, content type, StoredFile) of the files
        referenced by the last commit that was made durable together with
        its files: those a crash may have kept from the disk though the
        index names them (an index whose commits always follow their
        files' durability has none).  The StoredFiles tell the UUID, the size on disk and whether
        the file is compressed, not the MD5s."""

    @abc.abstractmethod
    def settle_unsettled_now(self, missing):
        """Forget the unsettled files, after removing what refers to the
        ``missing`` ones among them (an instance whose file is missing is
        deleted, with the ancestors it leaves empty; another attachment
        is)."""

    # -- writes (each returns a Deferred fired after commit) --
    def expect_writes_from(self, on_the_way):
        """``on_the_way()``: how many writes are coming soon (instances
        being parsed and written, whose store_instance follows).  An index
        that commits writes in groups may wait a moment for them, so that
        one commit covers them too; others need not ask."""

    @abc.abstractmethod
    def store_instance(self, summary, stored, metadata, overwrite, limits, attached=None,
                       extra=()):
        """Index one instance whose file is written (it is made durable
        before the Deferred fires, with the commit or before it); fires
        StoreOutcome.
        ``metadata``: {level: {MetadataType: value}} (levels other than the
        instance's are written only when the resource is created);
        ``attached``: the same, written whether the resources are new or not;
        ``extra``: (content type, StoredFile) of its other attachments."""

    @abc.abstractmethod
    def delete_resource(self, public_id, level):
        """Cascade delete; fires DeleteOutcome."""

    @abc.abstractmethod
    def metadata_with_revision(self, public_id, level, metadata_type):
        """(value, revision) of one metadata, or None."""

    @abc.abstractmethod
    def attachment_with_revision(self, public_id, level, content_type):
        """(StoredFile, revision) of one attachment, or None."""

    @abc.abstractmethod
    def set_metadata(self, public_id, level, metadata_type, value, expected=None):
        """Set one metadata value; fires its new revision.  ``expected``: the
        (revision, MD5) an If-Match names, checked when the metadata exists."""

    @abc.abstractmethod
    def delete_metadata(self, public_id, level, metadata_type, expected=None):
        """Remove one metadata value (``expected`` as for set_metadata)."""

    @abc.abstractmethod
    def add_label(self, public_id, level, label):
        """Attach a label (no-op when already there)."""

    @abc.abstractmethod
    def remove_label(self, public_id, level, label):
        """Detach a label (no-op when absent)."""

    @abc.abstractmethod
    def set_attachment(self, public_id, level, content_type, stored, expected=None):
        """Record (or replace) an attachment; fires (the replaced StoredFile
        or None, the new revision).  ``expected``: the (revision, MD5) an
        If-Match names, checked when the attachment exists."""

    @abc.abstractmethod
    def delete_attachment(self, public_id, level, content_type, expected=None):
        """Remove an attachment; fires the removed StoredFile."""

    @abc.abstractmethod
    def record_attachment_md5s(self, public_id, level, content_type, derived):
        """Record the MD5s derived from an attachment's content (``derived``:
        its StoredFile with them) while it is still that file; no revision
        nor change.  Fires whether it was recorded."""

    @abc.abstractmethod
    def reconstruct_instance(self, summary, metadata, only_level=None):
        """Index the main tags of an instance and its ancestors anew."""

    @abc.abstractmethod
    def log_changes(self, changes):
        """Append (change_type, level, public_id) triples to the changes log."""

    @abc.abstractmethod
    def clear_changes(self):
        """DELETE /changes."""

    @abc.abstractmethod
    def log_export(self, entry):
        """Append one export to the exports log."""

    @abc.abstractmethod
    def clear_exports(self):
        """DELETE /exports."""

    @abc.abstractmethod
    def save_jobs(self, serialized):
        """Keep the serialized jobs (a string); fires once committed."""

    @abc.abstractmethod
    def load_jobs(self):
        """The serialized jobs saved last, or None."""

    @abc.abstractmethod
    def set_global_property(self, name, value):
        """Keep the text ``value`` under ``name`` (Orthanc's global
        properties, e.g. the peers of OrthancPeersInDatabase); fires once
        committed."""

    @abc.abstractmethod
    def get_global_property(self, name):
        """The text kept under ``name``, or None."""

    # -- key-value stores (1.13.0's StoreKeyValue/GetKeyValue/DeleteKeyValue) --
    @abc.abstractmethod
    def store_key_value(self, store_id, key, value):
        """Set ``key`` of the store ``store_id`` to ``value`` (bytes); fires
        once committed."""

    @abc.abstractmethod
    def get_key_value(self, store_id, key):
        """The bytes kept under ``key`` in the store ``store_id``, or None."""

    @abc.abstractmethod
    def delete_key_value(self, store_id, key):
        """Forget ``key`` of the store ``store_id`` (nothing if absent); fires
        once committed."""

    @abc.abstractmethod
    def increment_global_sequence(self, name):
        """Fires the next value (from 1) of a named counter kept in the index."""

    @abc.abstractmethod
    def set_protected(self, patient_id, protected):
        """Protect a patient against recycling (or lift the protection)."""
