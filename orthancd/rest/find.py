"""POST /tools/find and /tools/count-resources, as Orthanc 1.13.0 answers
them (extended find: labels, parents, metadata, ordering, ResponseContent).

The body is checked in Orthanc's order, with its messages; the query then
goes to the finder (orthancd.find.finder), and the answer is rendered as the
resource listings are.
"""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.find import constraints as C
from orthancd.find import finder
from orthancd.find import tags as T
from orthancd.find.lookup import database_limit
from orthancd.find.requested_tags import check_requested
from orthancd.ids import ResourceLevel
from orthancd.rest.http import json_body, render_json
from orthancd.rest.resource_json import EXPAND, expand, parse_response_content


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def parse_level(text):
    """StringToResourceType: Patient(s), Study/Studies, Series, Instance(s),
    Image, in any case."""
    key = text.strip().upper()
    if key == "IMAGE":
        return ResourceLevel.INSTANCE
    try:
        return ResourceLevel.parse(key)
    except ValueError:
        raise OrthancError(ErrorCode.ParameterOutOfRange, "Invalid resource type '%s'" % text)


def _field_error(message, *names):
    return OrthancError(ErrorCode.BadRequest, message % names)


def check_body(body, counting):
    """Orthanc's checks of a find body, in its order."""
    if not isinstance(body, dict):
        raise OrthancError(ErrorCode.BadRequest, "The body must contain a JSON object")
    if not isinstance(body.get("Level"), str):
        raise _field_error('Field "%s" is missing, or should be a string', "Level")
    if "Query" not in body:
        raise _field_error('Field "%s" is missing, or should be a JSON object', "Query")
    checks = (
        ("CaseSensitive", bool, 'Field "%s" must be a Boolean'),
        ("Labels", list, 'Field "%s" must be an array of strings'),
        ("LabelsConstraint", str, 'Field "%s" must be an array of strings'),
        ("MetadataQuery", dict, 'Field "%s" must be an JSON object'),
        ("ParentPatient", str, 'Field "%s" must be a string'),
        ("ParentStudy", str, 'Field "%s" must be a string'),
        ("ParentSeries", str, 'Field "%s" must be a string'),
    )
    for name, kind, message in checks:
        if name in body and not isinstance(body[name], kind):
            raise _field_error(message, name)
    if counting:
        return
    for name, kind, message in (("Limit", int, 'Field "%s" must be an integer'),
                                ("Since", int, 'Field "%s" must be an integer'),
                                ("RequestedTags", list, 'Field "%s" must be an array'),
                                ("ResponseContent", list, 'Field "%s" must be an array'),
                                ("OrderBy", list, 'Field "%s" must be an array')):
        if name in body and not (_is_int(body[name]) if kind is int else
                                 isinstance(body[name], kind)):
            raise _field_error(message, name)


def _members(value):
    """JsonCpp's getMemberNames of a value that may not be an object."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        # JsonCpp asserts on the member names of a non-object.
        raise OrthancError(ErrorCode.InternalError,
                           "An unhandled exception was generated inside the HTTP server")
    return value


def _metadata_constraint(server, name, value, case_sensitive):
    metadata_type = server.metadata_names.number(name)
    if "\\" in value:
        items = [item for item in value.split("\\") if item]
        return C.Constraint(metadata_type, C.LIST, items, case_sensitive)
    if "*" in value or "?" in value:
        return C.Constraint(metadata_type, C.WILDCARD, [value], case_sensitive)
    return C.Constraint(metadata_type, C.EQUAL, [value], case_sensitive)


def _orderings(server, body):
    out = []
    for order in body.get("OrderBy", []):
        if not isinstance(order, dict):
            raise _field_error('Field "%s" must contain objects', "OrderBy")
        if not isinstance(order.get("Key"), str):
            raise _field_error('Field "%s" must be a string', "Key")
        direction = order.get("Direction")
        if not isinstance(direction, str) or direction.lower() not in ("asc", "desc"):
            raise _field_error('Field "%s" must be "ASC" or "DESC"', "Direction")
        kind = order.get("Type")
        if not isinstance(kind, str):
            raise _field_error('Field "%s" must be "DicomTag" or "Metadata"', "Type")
        kind = kind.lower()
        descending = direction.lower() == "desc"
        if kind.startswith("dicomtag"):
            cast = {"dicomtagasint": "int", "dicomtagasfloat": "float"}.get(kind, "string")
            out.append(finder.Ordering("tag", T.parse_tag(order["Key"]), cast, descending))
        elif kind.startswith("metadata"):
            # As in Orthanc 1.13.0, only "MetadataAsInt" casts: "MetadataAsFloat"
            # orders as strings.
            cast = "int" if kind == "metadataasint" else "string"
            out.append(finder.Ordering("metadata", server.metadata_names.number(order["Key"]),
                                       cast, descending))
        else:
            raise _field_error('Field "%s" must be "DicomTag", "DicomTagAsInt", '
                               '"DicomTagAsFloat" or "Metadata", "MetadataAsInt", '
                               '"MetadataAsFloat"', "Type")
    return out


def build_query(server, body, counting):
    """A validated find body -> (FindQuery, response content, format, requested tags)."""
    check_body(body, counting)
    content = None
    if not counting:
        if "ResponseContent" in body:
            content = parse_response_content(str(n) for n in body["ResponseContent"])
        elif body.get("Expand") is True:
            content = EXPAND
    level = parse_level(body["Level"])
    case_sensitive = bool(body.get("CaseSensitive", False))
    if counting and case_sensitive:
        raise OrthancError(ErrorCode.ParameterOutOfRange,
                           'Setting "CaseSensitive" to "true" is not supported by '
                           '/tools/count-resources')
    query = finder.FindQuery(level)
    # Orthanc asks for the tags of the query it cannot take from the index
    # (computed tags, tags that are not main tags): they show in the answer.
    lookup_tags = set()
    for name, value in _members(body["Query"]).items():
        if not isinstance(value, str):
            raise OrthancError(ErrorCode.BadRequest,
                               'Tag "%s" must be associated with a string' % name)
        if value:
            tag = T.parse_tag(name)
            query.constraints.extend(C.rest_constraints_for(tag, value, case_sensitive))
            if tag in T.COMPUTED_TAGS or not T.is_main_tag(tag):
                lookup_tags.add(tag)
    for name, value in _members(body.get("MetadataQuery")).items():
        if not isinstance(value, str):
            raise OrthancError(ErrorCode.BadRequest,
                               'Tag "%s" must be associated with a string' % name)
        if value:
            query.metadata_constraints.append(
                _metadata_constraint(server, name, value, case_sensitive))
    for label in body.get("Labels", []):
        if not isinstance(label, str):
            raise _field_error('Field "%s" must contain strings', "Labels")
        query.labels.append(label)
    if "LabelsConstraint" in body:
        if body["LabelsConstraint"] not in (finder.ALL, finder.ANY, finder.NONE):
            raise _field_error('Field "%s" must be "All", "Any", or "None"', "LabelsConstraint")
        query.labels_constraint = body["LabelsConstraint"]
    for name, parent in (("ParentPatient", ResourceLevel.PATIENT),
                         ("ParentStudy", ResourceLevel.STUDY),
                         ("ParentSeries", ResourceLevel.SERIES)):
        if name in body:
            query.scope = (parent, body[name])
            break
    requested = sorted(lookup_tags)
    fmt = "human"
    if not counting:
        for key, name in (("Simplify", "human"), ("Short", "short"), ("Full", "full")):
            if body.get(key) is True:
                fmt = name
                break
        query.database_limit = database_limit(server.configuration, level)
        if body.get("Since", 0) != 0 and not finder.plan(query).fully_in_index:
            raise OrthancError(ErrorCode.BadRequest,
                               "Unable to use 'Since' in tools/find when querying tags that are "
                               "not stored as MainDicomTags in the Database")
        if "Limit" in body:
            if body["Limit"] < 0:
                raise _field_error('Field "%s" must be a positive integer', "Limit")
            if body["Limit"] != 0:  # 0 means no limit, as in Orthanc 1.12.4
                query.limit = body["Limit"]
        if "Since" in body:
            if body["Since"] < 0:
                raise _field_error('Field "%s" must be a positive integer', "Since")
            query.since = body["Since"]
        if "RequestedTags" in body:
            requested = sorted(lookup_tags | {T.parse_tag(str(t)) for t in body["RequestedTags"]})
        query.orderings = _orderings(server, body)
        check_requested(level, requested)
    return query, content, fmt, requested


def _out_of_range(error):
    """Orthanc reports a negative Limit or Since as out of range."""
    return OrthancError(ErrorCode.ParameterOutOfRange, error.details)


def install(app, server):

    @app.route("/tools/find", methods=["POST"])
    async def tools_find(request):
        body = json_body(request)
        try:
            query, content, fmt, requested = build_query(server, body, counting=False)
        except OrthancError as e:
            if e.details and e.details.endswith("must be a positive integer"):
                raise _out_of_range(e)
            raise
        outcome = await finder.find(server, query)
        if content is None:
            return render_json(request, outcome.ids)
        answer = [await expand(server, query.level, match.public_id, fmt, content, requested,
                               resource=match.resource)
                  for match in outcome.matches]
        return render_json(request, answer)

    @app.route("/tools/count-resources", methods=["POST"])
    def count_resources(request):
        query, _, _, _ = build_query(server, json_body(request), counting=True)
        return render_json(request, {"Count": finder.count(server, query)})
