"""One search over the index, as Orthanc 1.13.0's ResourceFinder runs it.

Every listing goes through here: GET /patients (and the other levels),
GET /{level}/{id}, the child routes, /tools/find, /tools/count-resources and
the C-FIND SCP.  A ``FindQuery`` says what to look for; ``find`` runs it in
two phases, as Orthanc does:

1. the database phase selects candidates from what the index holds (the
   resource or its parent, labels, constraints on main DICOM tags, with a
   constraint one level below meaning "some child matches", metadata
   constraints), orders them (by public ID, or by the ``orderings``, missing
   values last and ties in creation order) and applies Since/Limit;
2. the answer phase re-checks the whole DICOM query against the main tags
   of the resource and its ancestors plus the tags the query needs from a
   file (constraints on tags that are not main tags), as Orthanc's
   ``lookup->IsMatch`` does.

``count`` runs the database phase only, as Orthanc's database does (identifier
tags compared by their normalized values), and refuses queries that cannot be
answered from the index; a count constraining one main tag reads the
identifiers entries alone when they decide it.
"""
import dataclasses
import itertools
from typing import List, Optional

from orthancd.errors import ErrorCode, OrthancError
from orthancd.find import computed
from orthancd.find import constraints as C
from orthancd.find import lookup as L
from orthancd.find import tags as T
from orthancd.ids import ResourceLevel
from orthancd.index.base import METADATA_VALUE_LEVELS, UnknownResource

ALL, ANY, NONE = "All", "Any", "None"

# Candidates whose resources a walk reads at once: the first chunk, and the
# size the chunks double up to.
_FIRST_PREFETCH = 16
_LAST_PREFETCH = 256

# The tags Orthanc 1.13.0 also keeps normalized (upper-case ASCII, '_' and
# '%' as spaces, see normalize_for_find) in its DicomIdentifiers table: it
# orders by these normalized values, and cannot match them case-sensitively
# in its database.
NORMALIZED_TAGS = frozenset((
    0x00100020, 0x00100010, 0x00100030,                          # PatientID, Name, BirthDate
    0x0020000D, 0x00080050, 0x00081030, 0x00080020,              # StudyInstanceUID, Accession...
    0x0020000E,                                                  # SeriesInstanceUID
    0x00080018))                                                 # SOPInstanceUID


@dataclasses.dataclass
class Ordering:
    kind: str            # "tag" or "metadata"
    key: int             # the tag, or the metadata type
    cast: str = "string"  # "string", "int" or "float" (SQLite's CAST)
    descending: bool = False


@dataclasses.dataclass
class FindQuery:
    level: ResourceLevel
    constraints: List[C.Constraint] = dataclasses.field(default_factory=list)
    # The resource itself, or the ancestor whose descendants are wanted.
    scope: Optional[tuple] = None           # (ResourceLevel, public ID)
    labels: List[str] = dataclasses.field(default_factory=list)
    labels_constraint: str = ALL
    # Constraints on metadata: Constraint objects whose "tag" is the type.
    metadata_constraints: List[C.Constraint] = dataclasses.field(default_factory=list)
    orderings: List[Ordering] = dataclasses.field(default_factory=list)
    since: Optional[int] = None
    limit: Optional[int] = None
    database_limit: int = 0


@dataclasses.dataclass
class Plan:
    """How the constraints of a query split between the phases."""
    on_tags: list         # main tags of the query level and above
    on_children: list     # main tags of the level just below: "some child has"
    on_files: list        # neither: read from one instance's file
    on_computed: list     # tags computed from the index at the query level
    beyond: bool          # a main tag two levels below or more
    fully_in_index: bool  # Orthanc's canBeFullyPerformedInDb
    # A computed tag the query level does not have (ModalitiesInStudy on
    # series, say): missing, so the answer phase rejects every candidate.
    unanswerable: bool = False


def _computed_at(level):
    if level is ResourceLevel.INSTANCE:
        return (T.INSTANCE_AVAILABILITY,)
    return computed.computable(level)


def plan(query):
    on_tags, on_children, on_files, on_computed = [], [], [], []
    beyond = unanswerable = False
    fully = True
    for c in query.constraints:
        if c.from_modalities_in_study:
            if query.level is ResourceLevel.STUDY:
                # Orthanc turns it into "a series has this Modality".
                on_children.append(c)
            else:
                unanswerable, fully = True, False
            continue
        if c.tag in T.COMPUTED_TAGS or c.tag == T.INSTANCE_AVAILABILITY:
            fully = False
            if c.tag in _computed_at(query.level):
                on_computed.append(c)
            else:
                unanswerable = True
            continue
        levels = T.MAIN_TAG_LEVELS.get(c.tag)
        if not levels:
            on_files.append(c)
            fully = False
            continue
        if min(levels) <= query.level:
            on_tags.append(c)
            # Identifiers are indexed upper-cased: a case-sensitive match
            # on them needs the answer phase.
            if c.case_sensitive and c.tag in NORMALIZED_TAGS:
                fully = False
        elif min(levels) == query.level + 1:
            on_children.append(c)
        else:
            beyond = True
    return Plan(on_tags, on_children, on_files, on_computed, beyond, fully, unanswerable)


class _Candidates:
    """The database phase."""

    def __init__(self, server, query, plan_):
        self.server = server
        self.index = server.index
        self.query = query
        self.plan = plan_
        self.resources = L.ResourceCache(self.index)

    def as_database_counts(self):
        """Check the constraints on identifier tags as Orthanc's database
        does (normalized values), which is what /tools/count-resources
        counts."""
        self.plan = dataclasses.replace(self.plan, on_tags=[
            C.IdentifierConstraint(c, L.normalize_for_find) if c.tag in NORMALIZED_TAGS else c
            for c in self.plan.on_tags])

    # -- candidate sources, each giving public IDs of the query level by ID --

    def _scope_ids(self):
        level, public_id = self.query.scope
        try:
            if level is self.query.level:
                self.index.get_resource(public_id, level)
                return [public_id]
            return self.index.get_descendants(public_id, level, self.query.level)
        except UnknownResource:
            return []

    def _label_ids(self):
        level = self.query.level
        sets = [set(self.index.resources_with_label(level, label))
                for label in dict.fromkeys(self.query.labels)]
        if self.query.labels_constraint == ALL:
            found = set.intersection(*sets)
        else:
            found = set.union(*sets)
        return sorted(found)

    def initial(self):
        """Candidate IDs from the most selective source, sorted by ID; None
        for the whole level."""
        query = self.query
        if query.scope is not None:
            return self._scope_ids()
        if query.labels and query.labels_constraint in (ALL, ANY):
            return self._label_ids()
        narrowed = L.narrow(self.index, query.level, self.plan.on_tags)
        if narrowed is not None:
            level, ids = narrowed
            return sorted(set(L.lift(self.index, ids, level, query.level)))
        if self.plan.on_children and query.level is ResourceLevel.STUDY:
            modalities = [c for c in self.plan.on_children if c.tag == T.MODALITY
                          and c.kind in (C.EQUAL, C.LIST)]
            if modalities:
                return sorted(set(L.studies_with_modalities(self.index, modalities[0])))
        return None

    def count_from_identifiers(self):
        """The count of a query constraining one main tag alone, read from
        the identifiers entries the constraints allow (no resource is
        read), or None when they cannot decide it.  They decide constraints
        on identifier tags (as_database_counts: Orthanc's database compares
        their normalized values, which the entries hold), and case
        insensitive constraints on a tag whose values the index holds
        exactly as they are, upper-cased (``indexes_exactly``)."""
        query, plan_ = self.query, self.plan
        if (query.scope is not None or query.labels or query.labels_constraint == NONE
                or plan_.on_children or query.metadata_constraints or not plan_.on_tags):
            return None
        tag = plan_.on_tags[0].tag
        level = L.indexed_level(tag, query.level)
        if (any(c.tag != tag for c in plan_.on_tags) or level is None
                or len(T.MAIN_TAG_LEVELS.get(tag, ())) != 1):
            return None
        on_identifier = isinstance(plan_.on_tags[0], C.IdentifierConstraint)
        if on_identifier:
            tests = [c.on_normalized for c in plan_.on_tags]
        elif any(c.case_sensitive for c in plan_.on_tags) or \
                not self.index.indexes_exactly(level, tag):
            return None
        else:
            tests = plan_.on_tags
        ranges = _identifier_ranges(tests)
        if ranges is None:
            return None

        def whole_value_matches(public_id):
            # A value the index may have cut: the resource's decides.
            try:
                tags = self.resources.merged_main_tags(public_id, level)
            except UnknownResource:
                return False
            return all(c.matches(tags.get(tag)) for c in plan_.on_tags)

        if level is query.level:
            test = _entry_test(tests, ranges, self.index.indexed_value_limit)
            total = 0
            for lower, upper, prefix in ranges:
                counted, cut = self.index.count_identifier_entries(level, tag, lower, upper,
                                                                   prefix, test)
                total += counted + sum(1 for public_id in cut if whole_value_matches(public_id))
            return total
        ids = []
        for lower, upper, prefix in ranges:
            for value, public_id in self.index.identifier_entries(level, tag, lower, upper,
                                                                  prefix):
                if len(value.encode("utf-8")) >= self.index.indexed_value_limit:
                    if whole_value_matches(public_id):
                        ids.append(public_id)
                elif all(c.matches(value) for c in tests):
                    ids.append(public_id)
        return len(L.lift(self.index, ids, level, query.level))

    def decided_by_index(self):
        """Are the candidates ``initial`` gives exactly the matches, so that
        none needs checking (counting them reads no resource)?"""
        query, plan_ = self.query, self.plan
        if plan_.on_children or query.metadata_constraints or query.labels_constraint == NONE:
            return False
        if query.scope is not None:
            return not (plan_.on_tags or query.labels)
        return bool(query.labels) and not plan_.on_tags

    def walk(self, ids):
        if ids is None:
            ids = self.index.iter_ids(self.query.level)
        if not self.plan.on_tags or (isinstance(ids, list) and len(ids) < 2):
            return iter(ids)  # nothing to read, or one read anyway
        return self._prefetched(ids)

    def _prefetched(self, ids):
        """``ids``, their resources read a chunk at a time as the walk
        reaches them, since ``matches`` checks their tags next: one read
        transaction per chunk instead of one per candidate.  The chunks
        grow, so that a walk stopped early (a Limit) read few in vain."""
        ids = iter(ids)
        level, size = self.query.level, _FIRST_PREFETCH
        while True:
            chunk = list(itertools.islice(ids, size))
            if not chunk:
                return
            self.resources.prefetch(chunk, level)
            yield from chunk
            size = min(size * 2, _LAST_PREFETCH)

    def filters(self):
        """Does anything but the level restrict the candidates?"""
        query = self.query
        return bool(query.scope is not None or self.plan.on_tags or self.plan.on_children
                    or query.labels or query.labels_constraint == NONE
                    or query.metadata_constraints)

    # -- filters --

    def _labels_match(self, public_id):
        query = self.query
        if not query.labels:
            if query.labels_constraint == NONE:
                return not self.index.get_labels(public_id, query.level)
            return True
        mine = set(self.index.get_labels(public_id, query.level))
        wanted = set(query.labels)
        if query.labels_constraint == ALL:
            return wanted <= mine
        if query.labels_constraint == ANY:
            return bool(wanted & mine)
        return not (wanted & mine)

    def _metadata_match(self, public_id):
        metadata = None
        for c in self.query.metadata_constraints:
            if metadata is None:
                metadata = self.index.get_metadata(public_id, self.query.level)
            if not c.matches(metadata.get(c.tag)):
                return False
        return True

    def _children_match(self, public_id):
        level = self.query.level
        children = None
        for c in self.plan.on_children:
            if children is None:
                children = [self.resources.get(child, level.child)
                            for child in self.index.get_children(public_id, level)]
            name = T.MAIN_TAG_NAMES.get(c.tag)
            if not any(c.matches(child.main_tags.get(name)) for child in children):
                return False
        return True

    def _matches_everything(self):
        """Whether ``matches`` is true of any resource of the level."""
        query = self.query
        return not (self.plan.on_tags or self.plan.on_children or query.labels
                    or query.labels_constraint == NONE or query.metadata_constraints)

    def matches(self, public_id):
        """Does a candidate satisfy everything the index can check?"""
        try:
            if self.plan.on_tags:
                level, resources = self.query.level, self.resources
                if not all(c.matches(resources.main_tag(public_id, level, c.tag))
                           for c in self.plan.on_tags):
                    return False
            if self.plan.on_children and not self._children_match(public_id):
                return False
            if (self.query.labels or self.query.labels_constraint == NONE) and \
                    not self._labels_match(public_id):
                return False
            return self._metadata_match(public_id)
        except UnknownResource:
            return False  # deleted meanwhile

    # -- ordering --

    def sort_key(self, public_id):
        key = []
        for ordering in self.query.orderings:
            value = self._ordering_value(public_id, ordering)
            if value is None:
                key.append((1, 0))  # NULLS LAST, whatever the direction
                continue
            value = _cast(value, ordering.cast)
            key.append((0, _Descending(value) if ordering.descending else value))
        # Ties keep the order of creation, as SQLite's scan gives them.
        key.append(self.resources.get(public_id, self.query.level).seq)
        return key

    def _ordering_value(self, public_id, ordering):
        level = self.query.level
        if ordering.kind == "metadata":
            return self.index.get_metadata_value(public_id, level, ordering.key)
        tag_levels = T.MAIN_TAG_LEVELS.get(ordering.key, ())
        if not tag_levels:
            return None
        tag_level = min(tag_levels)
        if tag_level is ResourceLevel.PATIENT and level is not ResourceLevel.PATIENT:
            tag_level = ResourceLevel.STUDY  # patient tags are copied at the study level
        if tag_level > level:
            return None
        resource = self.resources.get(public_id, level)
        lv = level
        while lv > tag_level:
            resource = self.resources.get(resource.parent, lv.parent)
            lv = lv.parent
        name = T.MAIN_TAG_NAMES[ordering.key]
        tags = resource.main_tags
        if tag_level is ResourceLevel.STUDY and name not in tags:
            tags = resource.patient_tags or {}
        value = tags.get(name)
        if value is not None and ordering.key in NORMALIZED_TAGS:
            value = L.normalize_for_find(value)
        return value

    # -- the phase --

    def select(self):
        """Matching candidate IDs, ordered, paged (Since/Limit)."""
        query = self.query
        ids = self.initial()
        since, limit = query.since or 0, query.limit or 0
        # Orthanc's UpdateRequestLimits: LimitFindResults/LimitFindInstances
        # cap an explicit Limit, or stand for it when neither Since nor
        # Limit is given.
        if query.since is not None or query.limit:
            if query.database_limit and limit > query.database_limit:
                limit = query.database_limit
        elif query.database_limit:
            limit = query.database_limit
        if not query.orderings and not self.filters():
            return self.index.list_resources(query.level, since, limit)
        if query.orderings:
            fast = self._ordered_by_metadata_index(ids, since, limit)
            if fast is not None:
                return fast
            matched = [i for i in self.walk(ids) if self.matches(i)]
            matched.sort(key=self.sort_key)
            return _page(matched, since, limit)
        out, skipped = [], 0
        for public_id in self.walk(ids):
            if not self.matches(public_id):
                continue
            if skipped < since:
                skipped += 1
                continue
            out.append(public_id)
            if limit and len(out) >= limit:
                break
        return out

    def _ordered_by_metadata_index(self, ids, since, limit):
        """Orthanc Explorer 2 pages its study list by LastUpdate: walk the
        metadata index in value order and stop once the page is full,
        instead of sorting the whole level.  None when not applicable."""
        query = self.query
        if len(query.orderings) != 1 or not limit:
            return None
        ordering = query.orderings[0]
        if (ordering.kind != "metadata" or ordering.cast != "string"
                or query.level not in METADATA_VALUE_LEVELS):
            return None
        total = self.index.count_resources(query.level)
        members = None
        if ids is not None:
            if len(ids) * 8 < total:
                return None  # few candidates: sorting them is cheaper
            members = set(ids)
        out, skipped, seen = [], 0, 0
        group_value, group = None, []
        everything_matches = self._matches_everything()

        def flush():
            nonlocal skipped
            if everything_matches and skipped + len(group) <= since:
                # Skipped whole: their order among themselves does not matter.
                skipped += len(group)
                group.clear()
                return
            # Ties in creation order, whatever the direction.
            group.sort(key=lambda i: self.resources.get(i, query.level).seq)
            for public_id in group:
                if not self.matches(public_id):
                    continue
                if skipped < since:
                    skipped += 1
                    continue
                out.append(public_id)
            group.clear()

        for value, public_id in self.index.iter_metadata_values(
                query.level, ordering.key, reverse=ordering.descending):
            seen += 1
            if members is not None and public_id not in members:
                continue
            if value != group_value:
                flush()
                if len(out) >= limit:
                    return out[:limit]
                group_value = value
            group.append(public_id)
        flush()
        if len(out) < limit and seen < total:
            # Resources without the metadata come last (NULLS LAST).
            with_value = {i for _, i in self.index.iter_metadata_values(query.level,
                                                                           ordering.key)}
            for public_id in self.walk(ids):
                if public_id in with_value or not self.matches(public_id):
                    continue
                if skipped < since:
                    skipped += 1
                    continue
                out.append(public_id)
                if len(out) >= limit:
                    break
        return out[:limit]


class _Descending:
    """Reverses the comparison of a value inside a sort key."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __lt__(self, other):
        return other.value < self.value

    def __eq__(self, other):
        return self.value == other.value


def _cast(value, cast):
    """SQLite's CAST(value AS INTEGER / REAL): the longest numeric prefix, 0
    when there is none.  Strings compare as UTF-8 bytes (SQLite's BINARY)."""
    if cast == "string":
        return value.encode("utf-8")
    text = value.strip()
    end = 0
    allowed = "0123456789"
    if text[:1] in "+-":
        end = 1
    seen_digit = False
    seen_dot = False
    while end < len(text):
        ch = text[end]
        if ch in allowed:
            seen_digit = True
        elif ch == "." and cast == "float" and not seen_dot:
            seen_dot = True
        else:
            break
        end += 1
    number = text[:end]
    if not seen_digit:
        return 0
    return float(number) if cast == "float" else int(float(number) if seen_dot else int(number))


def _computed_values(index, level, public_id, wanted):
    if not wanted:
        return {}
    if level is ResourceLevel.INSTANCE:
        return {T.INSTANCE_AVAILABILITY: "ONLINE"}
    return computed.compute_tags(index, level, public_id, wanted)


def _identifier_ranges(constraints):
    """The (lower, upper, prefix) ranges of identifiers entries holding
    every value that satisfies ``constraints`` (on one tag), as
    ``identifier_entries`` takes them; None for other constraints."""
    kinds = sorted(c.kind for c in constraints)
    if kinds in ([C.EQUAL], [C.LIST]):
        values = dict.fromkeys(L.normalize_for_find(v) for v in constraints[0].values)
        return [(value, value, None) for value in values]
    if kinds == [C.WILDCARD]:
        return [("", None, L.normalize_for_find(constraints[0].literal_prefix()))]
    if kinds in ([C.GREATER_OR_EQUAL], [C.SMALLER_OR_EQUAL],
                 [C.GREATER_OR_EQUAL, C.SMALLER_OR_EQUAL]):
        # Case-insensitive bounds compare upper-cased values, as indexed.
        bounds = {c.kind: c.value.upper() for c in constraints}
        return [(bounds.get(C.GREATER_OR_EQUAL, ""), bounds.get(C.SMALLER_OR_EQUAL), None)]
    return None


def _entry_test(tests, ranges, limit):
    """The test of an entry's value, or None when every entry of the
    ranges passes: the ranges are the matching values themselves (exact
    values and bounds as indexed, shorter than ``limit`` bytes, or a
    "literal*" wildcard scanned by its literal)."""
    kinds = [c.kind for c in tests]
    if kinds == [C.WILDCARD]:
        literal = tests[0].literal_prefix()
        if tests[0].value == literal + "*" and ranges[0][2] == literal:
            return None
    elif C.WILDCARD not in kinds and all(
            L.normalize_for_find(v) == v.upper() and len(v.encode("utf-8")) < limit
            for c in tests for v in c.values):
        return None
    if len(tests) == 1:
        return tests[0].matches
    return lambda value: all(c.matches(value) for c in tests)


def _page(ids, since, limit):
    ids = ids[since:]
    return ids[:limit] if limit else ids


def _check(query, plan_):
    if query.scope is not None and query.scope[0] > query.level:
        # A parent below the level looked for (ParentSeries for studies).
        raise OrthancError(ErrorCode.BadSequenceOfCalls, http_status=500)
    if plan_.beyond:
        # Orthanc 1.13.0 builds SQL that SQLite refuses for a main tag two
        # levels below the query level.
        raise OrthancError(ErrorCode.SQLitePrepareStatement, http_status=500)


def count(server, query):
    """How many resources match (the database phase only)."""
    plan_ = plan(query)
    if not plan_.fully_in_index:
        raise OrthancError(ErrorCode.BadRequest,
                           "Unable to count resources when querying tags that are not stored as "
                           "MainDicomTags in the Database or when using case sensitive queries.")
    _check(query, plan_)
    with server.index.reading_together():
        return _count(server, query, plan_)


def _count(server, query, plan_):
    candidates = _Candidates(server, query, plan_)
    candidates.as_database_counts()
    counted = candidates.count_from_identifiers()
    if counted is not None:
        return counted
    ids = candidates.initial()
    if ids is None and not (plan_.on_tags or plan_.on_children or query.labels
                            or query.labels_constraint == NONE or query.metadata_constraints):
        return server.index.count_resources(query.level)
    if ids is not None and candidates.decided_by_index():
        return len(ids)
    return sum(1 for public_id in candidates.walk(ids) if candidates.matches(public_id))


def select(server, query):
    """The IDs of the matches of a query that the index answers alone (no
    constraint needs a file), ordered and paged: synchronous."""
    plan_ = plan(query)
    if not plan_.fully_in_index:
        raise ValueError("This query needs files: use find()")
    _check(query, plan_)
    if any(not c.from_modalities_in_study for c in plan_.on_children):
        return []  # see find()
    with server.index.reading_together():
        return _Candidates(server, query, plan_).select()


async def find(server, query):
    """A FindOutcome: the matches (public ID, merged main tags, and the tags
    read from a file when the query needed them), in order."""
    plan_ = plan(query)
    if query.since and not plan_.fully_in_index:
        raise OrthancError(ErrorCode.BadRequest,
                           "Unable to use 'Since' when finding resources when querying against "
                           "Dicom Tags that are not in the MainDicomTags or when using "
                           "CaseSenstive queries.")
    _check(query, plan_)
    if any(not c.from_modalities_in_study for c in plan_.on_children):
        # The index finds studies having such a child, but the answer phase
        # checks the query against the study's own tags, which lack it: as
        # in Orthanc 1.13.0, nothing is found (/tools/count-resources counts
        # them, though).
        return L.FindOutcome([], True)
    if plan_.unanswerable:
        return L.FindOutcome([], True)
    candidates = _Candidates(server, query, plan_)
    with server.index.reading_together():
        selected = candidates.select()
    checked = [c for c in query.constraints if not c.from_modalities_in_study]
    wanted_computed = {c.tag for c in plan_.on_computed}
    matches = []
    for public_id in selected:
        try:
            main_tags = candidates.resources.merged_main_tags(public_id, query.level)
            values = _computed_values(server.index, query.level, public_id, wanted_computed)
        except UnknownResource:
            continue
        file_tags = None
        if not plan_.fully_in_index:
            # Orthanc's lookup->IsMatch, against the main tags, the computed
            # tags and, when the query needs tags that are neither, the
            # tags of one instance's file.
            tags = {}
            if plan_.on_files:
                file_tags = await L.file_tags_for(server, public_id, query.level)
                if file_tags is None:
                    continue
                tags.update(file_tags)
            tags.update(main_tags)
            tags.update(values)
            if not all(c.matches_answer(tags.get(c.tag)) for c in checked):
                continue
        matches.append(L.Match(public_id, main_tags, file_tags,
                               candidates.resources.get(public_id, query.level)))
    return L.FindOutcome(matches, True)
