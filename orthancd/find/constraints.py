"""Find constraints with the matching semantics of Orthanc 1.10.1.

A query value becomes one constraint (or two, for a range with both ends),
following DatabaseLookup::AddDicomConstraintInternal:
  - DA/DT/TM with a '-': range matching, an inclusive lower and/or upper
    bound compared as byte strings ("-" alone constrains nothing);
  - ModalitiesInStudy, or any value with a '\\': a list of exact values
    (ModalitiesInStudy becomes a list on Modality);
  - '*' or '?' on AE/CS/LO/LT/PN/SH/ST/UC/UR/UT: wildcard matching of the
    whole value (a regex on the UTF-8 bytes, ASCII case folding when case
    insensitive); on other VRs Orthanc refuses the query;
  - anything else: exact matching.
Case-insensitive comparisons upper-case both sides (NormalizedString).  A
constraint on a tag the resource does not have never matches.
"""
import re

from orthancd.errors import ErrorCode, OrthancError
from orthancd.find import tags as T

EQUAL = "Equal"
LIST = "List"
WILDCARD = "Wildcard"
GREATER_OR_EQUAL = "GreaterOrEqual"
SMALLER_OR_EQUAL = "SmallerOrEqual"

_RANGE_VRS = frozenset(("DA", "DT", "TM"))
_WILDCARD_VRS = frozenset(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"))
_REGEX_SPECIALS = "\\^.$|()[]+/{}"


def _normalized(value, case_sensitive):
    return value if case_sensitive else value.upper()


def wildcard_to_regex(pattern):
    """Toolbox::WildcardToRegularExpression: escape, then '?' -> '.', '*' -> '.*'."""
    out = []
    for c in pattern:
        if c in _REGEX_SPECIALS:
            out.append("\\" + c)
        elif c == "?":
            out.append(".")
        elif c == "*":
            out.append(".*")
        else:
            out.append(c)
    return "".join(out)


class Constraint:
    """One condition on one tag.  ``values`` holds one value except for lists."""

    __slots__ = ("tag", "kind", "values", "case_sensitive", "from_modalities_in_study",
                 "_regex", "_references")

    def __init__(self, tag, kind, values, case_sensitive, from_modalities_in_study=False):
        self.tag = tag
        # A list on Modality written as ModalitiesInStudy: at study level it
        # means "one of the study's series has one of these modalities".
        self.from_modalities_in_study = from_modalities_in_study
        self.kind = kind
        self.values = tuple(values)
        self.case_sensitive = case_sensitive
        self._regex = None
        self._references = None
        if kind == WILDCARD:
            flags = re.DOTALL | (0 if case_sensitive else re.IGNORECASE)
            # boost::regex runs on the UTF-8 bytes: '?' is one byte, and case
            # folding only concerns ASCII letters.
            self._regex = re.compile(wildcard_to_regex(self.values[0]).encode("utf-8"), flags)
        else:
            self._references = [_normalized(v, case_sensitive).encode("utf-8")
                                for v in self.values]

    @property
    def value(self):
        return self.values[0]

    def matches(self, value):
        """Does a tag value (str) satisfy the constraint?  None never does."""
        if value is None:
            return False
        if self.kind == WILDCARD:
            return self._regex.fullmatch(value.encode("utf-8")) is not None
        source = _normalized(value, self.case_sensitive).encode("utf-8")
        if self.kind == EQUAL:
            return source == self._references[0]
        if self.kind == LIST:
            return source in self._references
        if self.kind == GREATER_OR_EQUAL:
            return source >= self._references[0]
        return source <= self._references[0]

    def matches_answer(self, value):
        """Orthanc's answer-phase check (DicomTagConstraint::IsMatch): a
        list matches a multi-valued tag by any of its items, and so does a
        single ModalitiesInStudy value; the database phase compares whole
        values."""
        if value is None or self.kind not in (LIST, EQUAL):
            return self.matches(value)
        if self.kind == EQUAL and self.tag != T.MODALITIES_IN_STUDY:
            return self.matches(value)
        items = _normalized(value, self.case_sensitive).split("\\")
        return any(item.encode("utf-8") in self._references for item in items)

    def literal_prefix(self):
        """For wildcards, the text before the first '*' or '?'."""
        value = self.values[0]
        cut = len(value)
        for c in "*?":
            i = value.find(c)
            if i >= 0:
                cut = min(cut, i)
        return value[:cut]

    def __repr__(self):
        return "Constraint(%s %s %r%s)" % (T.format_tag(self.tag), self.kind, self.values,
                                          "" if self.case_sensitive else " icase")


class IdentifierConstraint:
    """A constraint as Orthanc's database evaluates it on an identifier tag
    (its DicomIdentifiers table): the tag's normalized value against the
    normalized query values, whatever the case.  /tools/count-resources
    counts what this matches; /tools/find checks its answers again against
    the tag values themselves."""

    __slots__ = ("tag", "kind", "normalize", "on_normalized")

    def __init__(self, constraint, normalize):
        self.tag = constraint.tag
        self.kind = constraint.kind
        self.normalize = normalize
        # The same test, on values normalized beforehand.
        self.on_normalized = Constraint(constraint.tag, constraint.kind,
                                        [normalize(v) for v in constraint.values], False)

    @property
    def values(self):
        return self.on_normalized.values

    @property
    def value(self):
        return self.on_normalized.value

    def literal_prefix(self):
        return self.on_normalized.literal_prefix()

    def matches(self, value):
        return value is not None and self.on_normalized.matches(self.normalize(value))


def constraints_for(tag, query_value, case_sensitive):
    """The constraints one non-empty query value stands for."""
    vr = T.value_representation(tag)
    if vr in _RANGE_VRS and "-" in query_value:
        lower, _, upper = query_value.partition("-")
        out = []
        if lower:
            out.append(Constraint(tag, GREATER_OR_EQUAL, [lower], case_sensitive))
        if upper:
            out.append(Constraint(tag, SMALLER_OR_EQUAL, [upper], case_sensitive))
        return out
    if tag == T.MODALITIES_IN_STUDY or "\\" in query_value:
        fixed = T.MODALITY if tag == T.MODALITIES_IN_STUDY else tag
        # Orthanc keeps the items in a std::set; empty items are dropped by
        # TokenizeString only at the very end, which we ignore.
        items = list(dict.fromkeys(query_value.split("\\")))
        return [Constraint(fixed, LIST, items, case_sensitive,
                           from_modalities_in_study=tag == T.MODALITIES_IN_STUDY)]
    if "*" in query_value or "?" in query_value:
        if vr not in _WILDCARD_VRS:
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               "Wildcards are not allowed on tag %s" % T.format_tag(tag))
        return [Constraint(tag, WILDCARD, [query_value], case_sensitive)]
    return [Constraint(tag, EQUAL, [query_value], case_sensitive)]


def parse_rest_query(query, case_sensitive):
    """/tools/find "Query": {tag: string}.  Empty strings are universal
    matching (dropped); CaseSensitive applies to every tag."""
    constraints = []
    for name, value in query.items():
        if not isinstance(value, str):
            raise OrthancError(ErrorCode.BadRequest,
                               'Tag "%s" should be associated with a string' % name)
        tag = T.parse_tag(name)
        if value:
            constraints.extend(rest_constraints_for(tag, value, case_sensitive))
    return constraints


def rest_constraints_for(tag, query_value, case_sensitive):
    """constraints_for, for a query of the REST API: a sequence cannot be
    matched ("Bad type for a parameter", as Orthanc 1.13.0 answers)."""
    if T.value_representation(tag) == "SQ":
        raise OrthancError(ErrorCode.BadParameterType)
    return constraints_for(tag, query_value, case_sensitive)


def parse_dicom_query(elements, case_sensitive_pn):
    """C-FIND identifiers: [(tag, str value or None)].  Matching is
    case-sensitive except on PN, which follows CaseSensitivePN."""
    constraints = []
    for tag, value in elements:
        if value is None or not value or tag in (
                T.QUERY_RETRIEVE_LEVEL, T.SPECIFIC_CHARACTER_SET, T.TIMEZONE_OFFSET_FROM_UTC):
            continue
        sensitive = case_sensitive_pn if T.value_representation(tag) == "PN" else True
        constraints.extend(constraints_for(tag, value, sensitive))
    return constraints
