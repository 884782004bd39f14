"""POST /tools/find: look for local resources, as Orthanc 1.10.1 answers it
(plus RequestedTags of Orthanc 1.11, and a clear refusal of labels)."""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.find import computed, parse_rest_query
from orthancd.find import tags as T
from orthancd.find.lookup import (database_limit, find_resources, read_instance_tags,
                                  representative_instance)
from orthancd.ids import ResourceLevel
from orthancd.rest.http import json_body, render_json
from orthancd.rest.resource_json import resource_to_json

_FIELD_MISSING = 'Field "%s" is missing, or should be a %s'


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def parse_level(text):
    """StringToResourceType: Patient(s), Study/Studies, Series, Instance(s), Image."""
    if text.strip().upper() == "IMAGE":
        return ResourceLevel.INSTANCE
    try:
        return ResourceLevel.parse(text)
    except ValueError:
        raise OrthancError(ErrorCode.ParameterOutOfRange)


def _non_negative(body, key):
    if key not in body:
        return 0
    if not _is_int(body[key]):
        raise OrthancError(ErrorCode.BadRequest, 'Field "%s" should be an integer' % key)
    if body[key] < 0:
        raise OrthancError(ErrorCode.ParameterOutOfRange,
                           'Field "%s" should be a positive integer' % key)
    return body[key]


class FindRequest:
    """A validated /tools/find body (checks in Orthanc's order, same messages)."""

    def __init__(self, body):
        if not isinstance(body.get("Level"), str):
            raise OrthancError(ErrorCode.BadRequest, _FIELD_MISSING % ("Level", "string"))
        if "Query" not in body:
            raise OrthancError(ErrorCode.BadRequest, _FIELD_MISSING % ("Query", "JSON object"))
        if "CaseSensitive" in body and not isinstance(body["CaseSensitive"], bool):
            raise OrthancError(ErrorCode.BadRequest, 'Field "CaseSensitive" should be a Boolean')
        self.limit = _non_negative(body, "Limit")
        self.since = _non_negative(body, "Since")
        self.level = parse_level(body["Level"])
        query = body["Query"]
        if not isinstance(query, dict):
            # Orthanc 1.10.1 lets JsonCpp throw on a non-object Query.
            raise OrthancError(ErrorCode.InternalError,
                               "An unhandled exception was generated inside the HTTP server")
        labels = body.get("Labels", [])
        if labels != []:
            raise OrthancError(ErrorCode.BadRequest,
                               "Labels are not supported yet by orthancd: "
                               '"Labels" must be absent or empty')
        self.constraints = parse_rest_query(query, bool(body.get("CaseSensitive", False)))
        self.expand = bool(body.get("Expand", False))
        self.format = "human"
        if body.get("Short") is True:
            self.format = "short"
        elif body.get("Full") is True:
            self.format = "full"
        requested = body.get("RequestedTags", [])
        if not isinstance(requested, list) or not all(isinstance(t, str) for t in requested):
            raise OrthancError(ErrorCode.BadRequest,
                               'Field "RequestedTags" should be a list of strings')
        self.requested_tags = [T.parse_tag(t) for t in requested]


def format_tags(main_tags, fmt):
    """MainDicomTags {name: value} in Orthanc's human, short or full format."""
    if fmt == "human":
        return dict(main_tags)
    out = {}
    for name, value in main_tags.items():
        tag = T.MAIN_TAG_NUMBERS.get(name)
        key = T.format_tag(tag) if tag is not None else name
        out[key] = value if fmt == "short" else {"Name": name, "Type": "String", "Value": value}
    return out


def _format_tag_map(values, fmt):
    """{tag int: value} -> JSON object keyed as ``fmt`` wants."""
    out = {}
    for tag, value in values.items():
        if fmt == "human":
            out[T.tag_name(tag)] = value
        elif fmt == "short":
            out[T.format_tag(tag)] = value
        else:
            out[T.format_tag(tag)] = {"Name": T.tag_name(tag),
                                      "Type": "String" if value is not None else "Null",
                                      "Value": value}
    return out


async def requested_tags_of(server, level, match, requested):
    """RequestedTags of one match: main tags of the resource and its
    ancestors, computed tags, and the rest from one instance's file."""
    values = {}
    missing = []
    wanted_computed = set(requested) & T.COMPUTED_TAGS
    computed_values = computed.compute_tags(server.index, level, match.public_id, wanted_computed)
    for tag in requested:
        if tag in computed_values:
            values[tag] = computed_values[tag]
        elif tag in match.main_tags:
            values[tag] = match.main_tags[tag]
        elif match.file_tags is not None and tag in match.file_tags:
            values[tag] = match.file_tags[tag]
        elif tag not in T.COMPUTED_TAGS:
            missing.append(tag)
    if missing:
        instance_id = representative_instance(server.index, match.public_id, level)
        if instance_id is not None:
            file_tags, _ = await read_instance_tags(server, instance_id)
            for tag in missing:
                if tag in file_tags:
                    values[tag] = file_tags[tag]
    return values


def _expanded(server, level, public_id, fmt):
    out = resource_to_json(server, level, public_id)
    for key in ("MainDicomTags", "PatientMainDicomTags"):
        if key in out:
            out[key] = format_tags(out[key], fmt)
    return out


def install(app, server):

    @app.route("/tools/find", methods=["POST"])
    async def tools_find(request):
        find = FindRequest(json_body(request))
        outcome = await find_resources(server, find.level, find.constraints,
                                       since=find.since, limit=find.limit,
                                       db_limit=database_limit(server.configuration, find.level))
        if not find.expand:
            return render_json(request, outcome.ids)
        answer = []
        for match in outcome.matches:
            item = _expanded(server, find.level, match.public_id, find.format)
            if find.requested_tags:
                values = await requested_tags_of(server, find.level, match, find.requested_tags)
                item["RequestedTags"] = _format_tag_map(values, find.format)
            answer.append(item)
        return render_json(request, answer)
