"""The index and file reads the finder is built on (orthancd.find.finder).

The index only narrows.  The most selective indexed constraint (an exact
value or list, a date/time range, a wildcard with a literal prefix) gives
candidates at its tag's level; they are lifted to the query level, and every
constraint is then checked exactly against the main DICOM tags of the query
level and its ancestors.  Tags that are not main tags are read from the file
of one instance, off the reactor; that path is slow by nature.
"""
import dataclasses
from typing import Dict, List, Optional


from orthancd.dicom.main_tags import normalize_for_find
from orthancd.find import constraints as C
from orthancd.find import tags as T
from orthancd.ids import ResourceLevel
from orthancd.index.base import Resource, UnknownResource

_RANGE_SAFE = set("0123456789.+-: ")


@dataclasses.dataclass
class Match:
    public_id: str
    # {tag int: value} main DICOM tags of the resource and its ancestors.
    main_tags: Dict[int, str]
    # {tag int: value or None} of the instance file, when it had to be read.
    file_tags: Optional[Dict[int, Optional[str]]] = None
    # The Resource as the find read it (its JSON needs it again).
    resource: Optional[Resource] = None


@dataclasses.dataclass
class FindOutcome:
    matches: List[Match]
    # False when the limit cut the answer short (C-FIND reports it).
    complete: bool

    @property
    def ids(self):
        return [m.public_id for m in self.matches]


class ResourceCache:
    """Resource reads with a per-query cache (ancestors are shared)."""

    def __init__(self, index):
        self.index = index
        self._cache = {}

    def get(self, public_id, level):
        key = (level, public_id)
        if key not in self._cache:
            self._cache[key] = self.index.get_resource(public_id, level)
        return self._cache[key]

    def prefetch(self, public_ids, level):
        """Read the resources ``public_ids`` of ``level`` not cached yet, at
        once (the unknown ones stay unknown: ``get`` raises for them)."""
        cache = self._cache
        missing = [i for i in public_ids if (level, i) not in cache]
        if missing:
            for public_id, resource in self.index.get_resources(missing, level).items():
                cache[(level, public_id)] = resource

    def main_tag(self, public_id, level, tag):
        """The value ``merged_main_tags(public_id, level)`` has for ``tag``,
        without merging the others (a candidate is often refused by its
        first tag)."""
        name = T.MAIN_TAG_NAMES.get(tag)
        if name is None:
            return None
        for tags in self._tags_upwards(self.get(public_id, level), level):
            if name in tags:
                return tags[name]
        return None

    def merged_main_tags(self, public_id, level, resource=None):
        """{tag: value} of the resource's main tags and its ancestors'."""
        out = {}
        for tags in self._tags_upwards(resource or self.get(public_id, level), level):
            for name, value in tags.items():
                tag = T.MAIN_TAG_NUMBERS.get(name)
                if tag is not None:
                    out.setdefault(tag, value)
        return out

    def _tags_upwards(self, resource, level):
        """[The main tags {name: value} of ``resource``, then of each of its
        ancestors]; a study's own copy of its patient's tags stands for the
        patient.  (A list, not a generator: cheaper for the one or two
        levels a query's candidate has.)"""
        chain, current, lv = [resource.main_tags], resource, level
        while lv is not ResourceLevel.STUDY:
            if lv is ResourceLevel.PATIENT or current.parent is None:
                return chain
            lv = lv.parent
            current = self.get(current.parent, lv)
            chain.append(current.main_tags)
        chain.append(current.patient_tags or {})
        return chain


def indexed_level(tag, level):
    """The level, at or above the query level, whose index holds ``tag``
    (patient tags are indexed with the studies too)."""
    levels = [lv for lv in T.MAIN_TAG_LEVELS.get(tag, ()) if lv <= level]
    if not levels:
        return None
    found = max(levels)
    if found is ResourceLevel.PATIENT and level > ResourceLevel.PATIENT:
        return ResourceLevel.STUDY
    return found


def range_bounds(constraints, tag):
    lower = upper = None
    for c in constraints:
        if c.tag != tag or c.kind not in (C.GREATER_OR_EQUAL, C.SMALLER_OR_EQUAL):
            continue
        if not set(c.value) <= _RANGE_SAFE or c.value != c.value.strip():
            return None  # normalization could reorder such values: don't narrow
        if c.kind == C.GREATER_OR_EQUAL:
            lower = c.value.upper()
        else:
            upper = c.value.upper()
    return lower, upper


def _lookup_values(index, level, tag, values):
    out = []
    for value in values:
        out.extend(index.lookup_identifier(level, tag, normalize_for_find(value)))
    return list(dict.fromkeys(out))


def narrow(index, level, constraints):
    """(index level, candidate IDs) from the most selective indexed
    constraint, or None when nothing is indexed."""
    exact, scans = [], []
    for c in constraints:
        lv = indexed_level(c.tag, level)
        if lv is None:
            continue
        if c.kind in (C.EQUAL, C.LIST):
            exact.append((lv, _lookup_values(index, lv, c.tag, c.values)))
        elif c.kind == C.WILDCARD:
            prefix = normalize_for_find(c.literal_prefix())
            if prefix:
                scans.append((lv, "prefix", c.tag, prefix))
        elif T.value_representation(c.tag) in ("DA", "DT", "TM"):
            bounds = range_bounds(constraints, c.tag)
            if bounds is not None and ("range", c.tag) not in [(s[1], s[2]) for s in scans]:
                scans.append((lv, "range", c.tag, bounds))
    if exact:
        return min(exact, key=lambda pair: len(pair[1]))
    best = None
    for lv, kind, tag, arg in scans:
        cap = 0 if best is None else len(best[1])
        if kind == "prefix":
            found = index.scan_identifier_prefix(lv, tag, arg, cap)
        else:
            found = index.scan_identifier_range(lv, tag, arg[0], arg[1], cap)
        if found is not None and (best is None or len(found) < len(best[1])):
            best = (lv, list(dict.fromkeys(found)))
    return best


def lift(index, ids, from_level, to_level):
    """Descendants at ``to_level`` of resources at ``from_level``."""
    level = from_level
    while level < to_level:
        children = []
        for public_id in ids:
            try:
                children.extend(index.get_children(public_id, level))
            except UnknownResource:
                continue  # deleted meanwhile
        ids, level = children, level.child
    return ids


def studies_with_modalities(index, constraint):
    """ModalitiesInStudy at study level: studies owning a series whose
    Modality is in the list."""
    series = sorted(_lookup_values(index, ResourceLevel.SERIES, T.MODALITY, constraint.values))
    studies = []
    for series_id in series:
        try:
            resource = index.get_resource(series_id, ResourceLevel.SERIES)
        except UnknownResource:
            continue
        if constraint.matches(resource.main_tags.get("Modality")):
            studies.append(resource.parent)
    return list(dict.fromkeys(studies))


def instances_in_creation_order(index, public_id, level):
    """The instances at or below a resource as Orthanc's GetChildInstances
    lists them: depth first, children in the order they were created."""
    if level is ResourceLevel.INSTANCE:
        return [public_id]
    children = index.get_children(public_id, level)
    children.sort(key=lambda child: index.get_resource(child, level.child).seq)
    out = []
    for child in children:
        out.extend(instances_in_creation_order(index, child, level.child))
    return out


def representative_instance(index, public_id, level):
    """The instance whose file stands for a resource: the oldest one, as
    Orthanc's database hands it out (the first child created, level by
    level)."""
    while level is not ResourceLevel.INSTANCE:
        children = index.get_children(public_id, level)
        if not children:
            return None
        if len(children) > 1:
            children.sort(key=lambda child: index.get_resource(child, level.child).seq)
        public_id, level = children[0], level.child
    return public_id


def file_tags_of(dataset, default_encoding="Latin1"):
    """{tag: str or None} of the top-level elements of a dataset, as Orthanc's
    DicomMap::FromDicomAsJson sees them (strings only; binary, too long and
    sequences are null)."""
    from orthancd.dicom.json_tags import dataset_to_json
    out = {}
    for key, node in dataset_to_json(dataset, "full", default_encoding).items():
        tag = (int(key[:4], 16) << 16) | int(key[5:], 16)
        out[tag] = node["Value"] if node.get("Type") == "String" else None
    return out


def read_instance_tags(server, instance_id):
    """Deferred (file tags, dataset) of an instance, parsed off the reactor."""
    info = server.dicom_attachment(instance_id)
    encoding = getattr(server, "default_encoding", "Latin1")

    def load():
        from orthancd.dicom.reading import read_dataset
        ds = read_dataset(server.storage.read(info.uuid), stop_before_pixels=True)
        return file_tags_of(ds, encoding), ds
    return server.file_io.run(load)


async def file_tags_for(server, public_id, level):
    """The file tags of the instance standing for a resource; None when it
    has no instance or its file cannot be read (no match, as Orthanc)."""
    instance_id = representative_instance(server.index, public_id, level)
    if instance_id is None:
        return None
    try:
        file_tags, _ = await read_instance_tags(server, instance_id)
    except Exception:
        return None
    return file_tags


def database_limit(configuration, level):
    """LimitFindInstances / LimitFindResults (0: none)."""
    name = "LimitFindInstances" if level is ResourceLevel.INSTANCE else "LimitFindResults"
    return int(configuration.get(name, 0) or 0)


async def find_resources(server, level, constraints, since=0, limit=0, db_limit=0):
    """Matches of ``constraints`` at ``level`` (the C-FIND SCP's entry):
    a FindOutcome in Orthanc's order, ``since`` of them skipped, at most
    ``limit``; ``db_limit`` is LimitFindResults/LimitFindInstances."""
    from orthancd.find import finder
    query = finder.FindQuery(level, list(constraints), database_limit=db_limit,
                             since=since if since else None, limit=limit or None)
    return await finder.find(server, query)
