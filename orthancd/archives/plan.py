"""What goes into an archive, and under which names: Orthanc 1.13.0's
ArchiveJob index, from the resources asked for to the list of files.

Resources are added to a tree whose top is a patient (or, for an archive of
a study or series, the patient as its study recorded it); a resource asked
for whole is expanded later, level by level: children by public ID, the
instances of a series by their index in the series.  Walking the tree gives
the folder and file names (ZIP) or the IMAGES/IMn names (media).

Everything here reads the index (cheap point reads, on the reactor).
"""
import dataclasses

from orthancd.archives import naming
from orthancd.archives.naming import ArchiveLevel
from orthancd.archives.stdsort import libstdcxx_sort
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import ContentType, MetadataType, UnknownResource

MEDIA_IMAGES_FOLDER = "IMAGES"
_MEGABYTE = 1024 * 1024
_GIGABYTE = 1024 * _MEGABYTE


def resource_level(index, public_id):
    """The level of a resource, None when there is none with that ID."""
    for level in ResourceLevel:
        if index.exists(public_id, level):
            return level
    return None


def ancestry(index, public_id):
    """{level: public ID} of a resource and its ancestors (Orthanc's
    ResourceIdentifiers); raises UnknownResource."""
    level = resource_level(index, public_id)
    if level is None:
        raise OrthancError(ErrorCode.UnknownResource)
    chain = {level: public_id}
    while level is not ResourceLevel.PATIENT:
        try:
            public_id = index.get_resource(public_id, level).parent
        except UnknownResource:
            raise OrthancError(ErrorCode.UnknownResource)
        level = level.parent
        chain[level] = public_id
    return chain


class _Node:
    """One level of the tree: children by public ID (None: to expand), or
    for the instance level the instances in the order they go."""

    def __init__(self, archive_level):
        self.level = archive_level
        self.children = {}
        self.instances = []          # (instance ID, index in series, StoredFile)

    def add(self, index, chain):
        public_id = chain[ArchiveLevel.ID_LEVEL[self.level]]
        if self.level == ArchiveLevel.INSTANCE:
            attachment = index.get_attachments(public_id, ResourceLevel.INSTANCE).get(
                ContentType.Dicom)
            if attachment is not None:
                position = naming.parse_index_in_series(index.get_metadata_value(
                    public_id, ResourceLevel.INSTANCE, MetadataType.IndexInSeries))
                self.instances.append((public_id, position, attachment))
        elif max(chain) == ArchiveLevel.RESOURCE_LEVEL[self.level]:
            self.children[public_id] = None   # the whole resource: expanded later
        elif public_id not in self.children:
            child = _Node(ArchiveLevel.CHILD[self.level])
            child.add(index, chain)
            self.children[public_id] = child
        elif self.children[public_id] is not None:
            self.children[public_id].add(index, chain)

    def expand(self, index):
        if self.level == ArchiveLevel.INSTANCE:
            return
        for public_id in sorted(self.children):
            child = self.children[public_id]
            if child is None:
                child = _Node(ArchiveLevel.CHILD[self.level])
                if self.level == ArchiveLevel.SERIES:
                    child.instances = ordered_instances(index, public_id)
                else:
                    level = ArchiveLevel.RESOURCE_LEVEL[self.level]
                    try:
                        below = index.get_children(public_id, level)
                    except UnknownResource:
                        below = []   # deleted meanwhile
                    child.children = dict.fromkeys(below)
                self.children[public_id] = child
            child.expand(index)

    def walk(self, visitor):
        if self.level == ArchiveLevel.INSTANCE:
            for instance_id, position, attachment in self.instances:
                visitor.add_instance(instance_id, position, attachment)
            return
        for public_id in sorted(self.children):
            visitor.open(self.level, public_id)
            self.children[public_id].walk(visitor)
            visitor.close()


def ordered_instances(index, series_id):
    """(instance ID, position, StoredFile) of a series' instances in the
    order of Orthanc's SimpleInstanceOrdering: by IndexInSeries, the
    position being the index in the series, or the rank when two
    instances share an index."""
    found = []
    try:
        children = index.get_children(series_id, ResourceLevel.SERIES)
    except UnknownResource:
        return []
    for instance_id in children:
        try:
            attachment = index.get_attachments(instance_id, ResourceLevel.INSTANCE).get(
                ContentType.Dicom)
        except UnknownResource:
            continue
        if attachment is None:
            continue
        position = naming.parse_index_in_series(index.get_metadata_value(
            instance_id, ResourceLevel.INSTANCE, MetadataType.IndexInSeries))
        found.append((instance_id, position, attachment))
    duplicates = len({position for _, position, _ in found}) != len(found)
    if not duplicates:
        return sorted(found, key=lambda entry: entry[1])
    # Ties are ordered as Orthanc's (unstable) std::sort leaves them, and
    # numbered by rank.
    libstdcxx_sort(found, key=lambda entry: entry[1])
    return [(instance_id, rank, attachment)
            for rank, (instance_id, _, attachment) in enumerate(found)]


@dataclasses.dataclass
class PlannedFile:
    path: bytes             # its name in the archive
    instance_id: str
    attachment: object      # the StoredFile of its DICOM file
    step: int               # how many of Orthanc's steps are done once it is written
    media_id: str = None    # its DICOMDIR ReferencedFileID (media), e.g. "IMAGES\\IM0"
    transcode_to: str = None  # the transfer syntax it must be changed to, if any


@dataclasses.dataclass
class ArchivePlan:
    files: list
    steps: int              # Orthanc's number of commands (folders opened, closed, files)
    uncompressed_size: int

    @property
    def instances_count(self):
        return len(self.files)

    @property
    def zip64(self):
        """Whether the archive needs ZIP64 (Orthanc decides it beforehand,
        with a margin for the DICOMDIR)."""
        return (self.uncompressed_size >= 2 * _GIGABYTE - 64 * _MEGABYTE
                or self.instances_count >= 65535 - 10)


class _Commands:
    """Orthanc's list of ZIP commands, replayed at once through the
    folder names: what remains is the files and their step numbers."""

    def __init__(self, allow_utf8):
        self.names = naming.FolderNames(allow_utf8)
        self.files = []
        self.steps = 0
        self.uncompressed_size = 0

    def open_directory(self, name):
        self.names.open_directory(name)
        self.steps += 1

    def close_directory(self):
        self.names.close_directory()
        self.steps += 1

    def add_file(self, name, instance_id, attachment, media_id=None):
        self.steps += 1
        self.files.append(PlannedFile(self.names.file_path(name), instance_id, attachment,
                                      self.steps, media_id))
        self.uncompressed_size += attachment.uncompressed_size

    def plan(self):
        return ArchivePlan(self.files, self.steps, self.uncompressed_size)


class _ArchiveVisitor:
    """Folders named after the resources' main tags (ArchiveIndexVisitor)."""

    def __init__(self, index, commands):
        self.index = index
        self.commands = commands
        self.prefix = b""

    def open(self, archive_level, public_id):
        try:
            resource = self.index.get_resource(public_id, ArchiveLevel.ID_LEVEL[archive_level])
        except UnknownResource:
            tags = None
        else:
            tags = resource.main_tags
            if archive_level == ArchiveLevel.PATIENT_FROM_STUDY:
                tags = resource.patient_tags
                if tags is None:   # an index that did not record them
                    tags = self.index.get_resource(resource.parent, ResourceLevel.PATIENT).main_tags
        name, prefix = naming.folder_name(archive_level, tags)
        if prefix is not None:
            self.prefix = prefix
        self.commands.open_directory(name)

    def close(self):
        self.commands.close_directory()

    def add_instance(self, instance_id, position, attachment):
        self.commands.add_file(naming.instance_file_name(self.prefix, position),
                               instance_id, attachment)


class _MediaVisitor:
    """IMAGES/IM0, IMAGES/IM1...: flat, numbered in the walk's order."""

    def __init__(self, commands):
        self.commands = commands
        self.counter = 0

    def open(self, archive_level, public_id):
        pass

    def close(self):
        pass

    def add_instance(self, instance_id, position, attachment):
        name = naming.media_file_name(self.counter)
        self.commands.add_file(name, instance_id, attachment,
                               MEDIA_IMAGES_FOLDER + "\\" + name.decode("ascii"))
        self.counter += 1


class ArchiveContent:
    """The resources of one archive, added one by one (AddResource), then
    planned (at the start of the job)."""

    def __init__(self, index, job_level):
        self.index = index
        self._top = _Node(ArchiveLevel.of_job(job_level))

    def add(self, public_id, expected_level=None):
        """Add a resource; with ``expected_level``, it must exist at that
        level (the routes of one resource)."""
        if expected_level is not None and not self.index.exists(public_id, expected_level):
            raise OrthancError(ErrorCode.InexistentItem,
                               "Missing resource while creating an archive: " + public_id)
        self._top.add(self.index, ancestry(self.index, public_id))

    def plan(self, is_media, allow_utf8):
        commands = _Commands(allow_utf8)
        self._top.expand(self.index)
        if is_media:
            commands.open_directory(MEDIA_IMAGES_FOLDER)
            self._top.walk(_MediaVisitor(commands))
            commands.close_directory()
        else:
            self._top.walk(_ArchiveVisitor(self.index, commands))
        return commands.plan()
