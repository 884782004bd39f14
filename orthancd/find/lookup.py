"""find_resources: the one lookup behind POST /tools/find and the C-FIND SCP.

The index only narrows.  The most selective indexed constraint (an exact
value or list, a date/time range, a wildcard with a literal prefix) gives
candidates at its tag's level; they are lifted to the query level, ordered
like Orthanc 1.13.0 (by public ID, at every level), and every
constraint is then checked exactly against the main DICOM tags of the query
level and its ancestors, stopping early at the limit.

When a constraint names a tag that is not a main DICOM tag, Orthanc matches
the whole query against the file of one instance of each candidate; so do we,
reading files off the reactor.  That path is slow by nature.
"""
import dataclasses
from typing import Dict, List, Optional

from twisted.internet import threads

from orthancd.dicom.json_tags import dataset_to_json
from orthancd.dicom.reading import read_dataset
from orthancd.dicom.summary import normalize_for_find
from orthancd.find import computed
from orthancd.find import constraints as C
from orthancd.find import tags as T
from orthancd.ids import ResourceLevel
from orthancd.index.base import UnknownResource

_RANGE_SAFE = set("0123456789.+-: ")


@dataclasses.dataclass
class Match:
    public_id: str
    # {tag int: value} main DICOM tags of the resource and its ancestors.
    main_tags: Dict[int, str]
    # {tag int: value or None} of the instance file, when it had to be read.
    file_tags: Optional[Dict[int, Optional[str]]] = None


@dataclasses.dataclass
class FindOutcome:
    matches: List[Match]
    # False when the limit cut the answer short (C-FIND reports it).
    complete: bool

    @property
    def ids(self):
        return [m.public_id for m in self.matches]


class _Resources:
    """Resource reads with a per-query cache (ancestors are shared)."""

    def __init__(self, index):
        self.index = index
        self._cache = {}

    def get(self, public_id, level):
        key = (level, public_id)
        if key not in self._cache:
            self._cache[key] = self.index.get_resource(public_id, level)
        return self._cache[key]

    def merged_main_tags(self, public_id, level, resource=None):
        """{tag: value} of the resource's main tags and its ancestors'."""
        out = {}
        current, lv = resource or self.get(public_id, level), level
        while True:
            for name, value in current.main_tags.items():
                tag = T.MAIN_TAG_NUMBERS.get(name)
                if tag is not None:
                    out.setdefault(tag, value)
            if lv is ResourceLevel.STUDY:
                for name, value in (current.patient_tags or {}).items():
                    tag = T.MAIN_TAG_NUMBERS.get(name)
                    if tag is not None:
                        out.setdefault(tag, value)
                return out
            if lv is ResourceLevel.PATIENT or current.parent is None:
                return out
            lv = lv.parent
            current = self.get(current.parent, lv)


def _indexed_level(tag, level):
    """The level, at or above the query level, whose index holds ``tag``."""
    levels = [lv for lv in T.MAIN_TAG_LEVELS.get(tag, ()) if lv <= level]
    return max(levels) if levels else None


def _range_bounds(constraints, tag):
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


def _narrow(index, level, constraints):
    """(index level, candidate IDs) from the most selective indexed
    constraint, or None when nothing is indexed."""
    exact, scans = [], []
    for c in constraints:
        lv = _indexed_level(c.tag, level)
        if lv is None:
            continue
        if c.kind in (C.EQUAL, C.LIST):
            exact.append((lv, _lookup_values(index, lv, c.tag, c.values)))
        elif c.kind == C.WILDCARD:
            prefix = normalize_for_find(c.literal_prefix())
            if prefix:
                scans.append((lv, "prefix", c.tag, prefix))
        elif T.value_representation(c.tag) in ("DA", "DT", "TM"):
            bounds = _range_bounds(constraints, c.tag)
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


def _lift(index, ids, from_level, to_level):
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


def _studies_with_modalities(index, constraint):
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


def representative_instance(index, public_id, level):
    """The instance whose file stands for a resource (its first one)."""
    while level is not ResourceLevel.INSTANCE:
        children = index.get_children(public_id, level)
        if not children:
            return None
        public_id, level = children[0], level.child
    return public_id


def file_tags_of(dataset, default_encoding="Latin1"):
    """{tag: str or None} of the top-level elements of a dataset, as Orthanc's
    DicomMap::FromDicomAsJson sees them (strings only; binary, too long and
    sequences are null)."""
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
        ds = read_dataset(server.storage.read(info.uuid), stop_before_pixels=True)
        return file_tags_of(ds, encoding), ds
    return threads.deferToThread(load)


def _all_match(constraints, values):
    return all(c.matches(values.get(c.tag)) for c in constraints)


def database_limit(configuration, level):
    """LimitFindInstances / LimitFindResults: Orthanc's database lookup
    returns at most that many rows plus one, before any further matching."""
    name = "LimitFindInstances" if level is ResourceLevel.INSTANCE else "LimitFindResults"
    return int(configuration.get(name, 0) or 0)


async def find_resources(server, level, constraints, since=0, limit=0, db_limit=0):
    """Matches of ``constraints`` at ``level``: a FindOutcome whose matches
    are in Orthanc's order, ``since`` of them skipped, at most ``limit``.
    ``db_limit`` caps the resources matching the main tags (see
    database_limit)."""
    index = server.index
    resources = _Resources(index)
    modalities = None
    if level is ResourceLevel.STUDY:
        modalities = next((c for c in constraints if c.from_modalities_in_study), None)
    elif any(c.from_modalities_in_study for c in constraints):
        # Orthanc 1.13.0 matches ModalitiesInStudy at the study level only.
        return FindOutcome([], True)
    # SOPClassesInStudy at the study level: one of the study's instances
    # must have one of the listed SOP classes (checked after the main tags).
    sop_classes = []
    if level is ResourceLevel.STUDY:
        sop_classes = [c for c in constraints if c.tag == T.SOP_CLASSES_IN_STUDY]
    rest = [c for c in constraints if c is not modalities and c not in sop_classes]
    file_mode = any(not T.is_main_tag(c.tag) for c in rest)
    visible = T.main_tags_up_to(level)
    # Checked against the index: main tags of the query level and above.
    on_index = [c for c in rest if c.tag in visible]
    if not file_mode and len(on_index) != len(rest):
        # A main tag of a lower level is not among the tags a resource of
        # this level is matched against: Orthanc never matches it.
        return FindOutcome([], True)

    if modalities is not None:
        candidates = _studies_with_modalities(index, modalities)
    else:
        narrowed = _narrow(index, level, on_index)
        candidates = None if narrowed is None else _lift(index, narrowed[1], narrowed[0], level)

    # Orthanc 1.13.0 answers every level by public ID.
    if candidates is None:
        walk = index.iter_level(level)
    else:
        walk = ((i, None) for i in sorted(set(candidates)))

    matches, skipped, rows = [], 0, 0
    complete = True
    for public_id, resource in walk:
        try:
            main_tags = resources.merged_main_tags(public_id, level, resource)
        except UnknownResource:
            continue
        if not _all_match(on_index, main_tags):
            continue
        if sop_classes and not _has_sop_classes(index, public_id, sop_classes):
            continue
        rows += 1
        if db_limit and rows > db_limit + 1:
            complete = False
            break
        if db_limit and rows > db_limit:
            complete = False
        file_tags = None
        if file_mode:
            instance_id = representative_instance(index, public_id, level)
            if instance_id is None:
                continue
            try:
                file_tags, _ = await read_instance_tags(server, instance_id)
            except Exception:
                continue  # the file is gone or unreadable: no match, like Orthanc
            if not _all_match(rest, file_tags):
                continue
        if skipped < since:
            skipped += 1
            continue
        if limit and len(matches) >= limit:
            return FindOutcome(matches, False)
        matches.append(Match(public_id, main_tags, file_tags))
    return FindOutcome(matches, complete)


def _has_sop_classes(index, study_id, constraints):
    """SOPClassesInStudy as Orthanc 1.13.0 matches it: a single value is
    compared with the study's whole value (its classes, sorted, joined by
    backslashes); a list wants one of the study's classes among its items."""
    try:
        found = computed.compute_tags(index, ResourceLevel.STUDY, study_id,
                                      {T.SOP_CLASSES_IN_STUDY})
    except UnknownResource:
        return False
    joined = found.get(T.SOP_CLASSES_IN_STUDY, "")
    classes = [uid for uid in joined.split("\\") if uid]
    return all(c.matches(joined) if c.kind == C.EQUAL else any(c.matches(uid) for uid in classes)
               for c in constraints)
