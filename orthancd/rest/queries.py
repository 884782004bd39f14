"""/queries: the answers of C-FIND queries sent to modalities, and retrieving them.

Queries live in memory (as in Orthanc), the oldest being dropped beyond
``QueryRetrieveSize``.  Retrieving an answer sends a C-MOVE whose
identifier carries the UIDs of the answer's level.
"""
import json
import uuid
from collections import OrderedDict

from orthancd.config import RETRIEVE_METHODS
from orthancd.lazy_modules import LazyModule
from orthancd.automation import find_filters
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.modalities import modality_registry
from orthancd.net import find_modules
from orthancd.jobs.dicom_retrieve import retrieve_job
from orthancd.rest.http import bool_argument, has_argument, read_body, render_json, render_text
from orthancd.rest.scu_requests import submit_commands_job
from orthancd.serialization import read_field

# Data sets to JSON (pydicom): imported by the first use (orthancd.lazy_modules).
json_tags = LazyModule("orthancd.dicom.json_tags")
# DICOM networking (pynetdicom, pydicom): imported by the first use.
scu = LazyModule("orthancd.net.scu")

# Tags Orthanc adds (empty, for universal matching) to a query at each level.
LEVEL_KEYS = {
    ResourceLevel.PATIENT: ("PatientID",),
    ResourceLevel.STUDY: ("AccessionNumber", "PatientID", "StudyInstanceUID"),
    ResourceLevel.SERIES: ("AccessionNumber", "PatientID", "StudyInstanceUID",
                           "SeriesInstanceUID"),
    ResourceLevel.INSTANCE: ("AccessionNumber", "PatientID", "StudyInstanceUID",
                             "SeriesInstanceUID", "SOPInstanceUID"),
}
_LEVEL_KEY_TAGS = {
    "AccessionNumber": "0008,0050", "PatientID": "0010,0020", "StudyInstanceUID": "0020,000d",
    "SeriesInstanceUID": "0020,000e", "SOPInstanceUID": "0008,0018",
}

SPECIFIC_CHARACTER_SETS = {
    "Utf8": "ISO_IR 192", "Latin1": "ISO_IR 100", "Latin2": "ISO_IR 101",
    "Latin3": "ISO_IR 109", "Latin4": "ISO_IR 110", "Latin5": "ISO_IR 148",
    "Cyrillic": "ISO_IR 144", "Arabic": "ISO_IR 127", "Greek": "ISO_IR 126",
    "Hebrew": "ISO_IR 138", "Thai": "ISO_IR 166", "Japanese": "ISO_IR 13",
    "Chinese": "GB18030", "Korean": "ISO 2022 IR 149",
}

QUERY_ROUTES = ["answers", "level", "modality", "query", "retrieve"]
# GET /queries/{id}/answers/{n} per query level (1.13.0 lists "query-study"
# for the route it serves as query-studies).
ANSWER_ROUTES = {
    ResourceLevel.PATIENT: ["content", "retrieve", "query-study", "query-series",
                            "query-instances"],
    ResourceLevel.STUDY: ["content", "retrieve", "query-series", "query-instances"],
    ResourceLevel.SERIES: ["content", "retrieve", "query-instances"],
    ResourceLevel.INSTANCE: ["content", "retrieve"],
}
# The child queries of an answer, and the identifiers they inherit from it.
CHILD_QUERIES = {"query-studies": ResourceLevel.STUDY, "query-series": ResourceLevel.SERIES,
                 "query-instances": ResourceLevel.INSTANCE}
INHERITED_IDENTIFIERS = {
    ResourceLevel.PATIENT: ("PatientID",),
    ResourceLevel.STUDY: ("StudyInstanceUID",),
    ResourceLevel.SERIES: ("StudyInstanceUID", "SeriesInstanceUID"),
}


class QueryRecord:
    def __init__(self, modality, level, fields, answers, options):
        self.modality = modality
        self.level = level
        self.fields = fields
        self.answers = answers
        self.timeout = options.get("Timeout")
        self.local_aet = options.get("LocalAet")
        # Queries for the children of an answer inherit it.
        self.normalize = options.get("Normalize", True)


QUERY_STORE = OrderedDict()


def query_retrieve_size(configuration):
    """How many queries are kept (QueryRetrieveSize), the oldest dropped."""
    return int(configuration.get("QueryRetrieveSize", 100) or 100)


def create_query(modality, level, fields, answers, options, limit=100):
    query_id = str(uuid.uuid4())
    answers = [scu.with_media_storage_uids(answer) for answer in answers]
    QUERY_STORE[query_id] = QueryRecord(modality, level, fields, answers, options)
    while len(QUERY_STORE) > max(limit, 1):
        QUERY_STORE.popitem(last=False)
    return query_id


def query_to_dataset(server, level, fields, normalize=True):
    """The C-FIND identifier of a REST query, normalized like Orthanc's:
    the level's keys added for universal matching, and (``normalize``) only
    the tags the level allows kept."""
    dataset = scu.identifier_dataset(level, {})
    charset = SPECIFIC_CHARACTER_SETS.get(server.default_encoding)
    if charset:
        dataset.SpecificCharacterSet = charset
    for key in LEVEL_KEYS[level]:
        scu.set_element(dataset, key, "")
    allowed = find_modules.allowed_tags(level) if normalize else None
    for key, value in fields.items():
        if not isinstance(value, (str, list)):
            raise OrthancError(ErrorCode.BadFileFormat,
                               "Value of tag %s must be a string" % key)
        probe = scu.identifier_dataset(level, {})
        scu.set_element(probe, key, value)
        tag = [int(t) for t in probe.keys() if int(t) != 0x00080052][0]
        if allowed is not None and tag not in allowed:
            continue
        scu.set_element(dataset, key, value)
    return dataset


def answer_json(server, answer, mode="full"):
    return json_tags.dataset_to_json(answer, mode, server.default_encoding)


def retrieve_options(raw):
    """(options, TargetAet or None) of a retrieve body: a JSON object, or
    the target AET as plain text."""
    raw = raw.strip()
    if not raw:
        return {}, None
    try:
        body = json.loads(raw)
    except ValueError:
        return {}, raw.decode("utf-8", "replace")
    if not isinstance(body, dict):
        # What Orthanc 1.13.0 answers to any other JSON value.
        raise OrthancError(ErrorCode.InternalError,
                           "An unhandled exception was generated inside the HTTP server")
    target = body.get("TargetAet")
    if target is not None and not isinstance(target, str):
        raise OrthancError(ErrorCode.BadParameterType)
    return body, target


def retrieve_method(options, modality, configuration):
    """C-MOVE or C-GET: the body's RetrieveMethod, else the modality's,
    else DicomDefaultRetrieveMethod."""
    method = read_field(options, "RetrieveMethod", str)
    if method is not None and method not in RETRIEVE_METHODS:
        raise OrthancError(ErrorCode.ParameterOutOfRange,
                           'RetrieveMethod can be "C-MOVE", "C-GET" or "SystemDefault": %s'
                           % method)
    for candidate in (method, modality.get("RetrieveMethod")):
        if candidate in ("C-MOVE", "C-GET"):
            return candidate
    default = configuration.get("DicomDefaultRetrieveMethod", "C-MOVE")
    return default if default in ("C-MOVE", "C-GET") else "C-MOVE"


def answer_mode(request):
    if has_argument(request, "simplify"):
        return "simplify"
    if has_argument(request, "short"):
        return "short"
    return "full"


def install(app, server):
    registry = modality_registry(server)

    def query_of(query_id):
        record = QUERY_STORE.get(query_id)
        if record is None:
            raise OrthancError(ErrorCode.UnknownResource)
        return record

    def answer_of(record, index):
        if not index.lstrip("-").isdigit():
            raise OrthancError(ErrorCode.BadParameterType,
                               "Syntax error in some user-supplied data")
        position = int(index)
        if not 0 <= position < len(record.answers):
            raise OrthancError(ErrorCode.ParameterOutOfRange)
        return record.answers[position]

    @app.route("/queries", methods=["GET"])
    def list_queries(request):
        return render_json(request, list(QUERY_STORE))

    @app.route("/queries/<query_id>", methods=["GET"])
    def query_routes(request, query_id):
        query_of(query_id)
        return render_json(request, QUERY_ROUTES)

    @app.route("/queries/<query_id>", methods=["DELETE"])
    def delete_query(request, query_id):
        # Orthanc answers the same, empty, whether the query existed or not.
        QUERY_STORE.pop(query_id, None)
        return render_text(request, b"")

    @app.route("/queries/<query_id>/level", methods=["GET"])
    def query_level(request, query_id):
        return render_text(request, query_of(query_id).level.title)

    @app.route("/queries/<query_id>/modality", methods=["GET"])
    def query_modality(request, query_id):
        return render_text(request, query_of(query_id).modality)

    @app.route("/queries/<query_id>/query", methods=["GET"])
    def query_fields(request, query_id):
        record = query_of(query_id)
        dataset = scu.identifier_dataset(record.level, {})
        for key, value in record.fields.items():
            scu.set_element(dataset, key, value)
        del dataset.QueryRetrieveLevel
        return render_json(request, answer_json(server, dataset, answer_mode(request)))

    @app.route("/queries/<query_id>/answers", methods=["GET"])
    def answers(request, query_id):
        record = query_of(query_id)
        if bool_argument(request, "expand"):
            mode = answer_mode(request)
            return render_json(request, [answer_json(server, a, mode) for a in record.answers])
        return render_json(request, [str(i) for i in range(len(record.answers))])

    @app.route("/queries/<query_id>/answers/<index>", methods=["GET"])
    def answer_routes(request, query_id, index):
        record = query_of(query_id)
        answer_of(record, index)
        return render_json(request, ANSWER_ROUTES[record.level])

    async def child_query(request, query_id, index, level):
        """A C-FIND for the children of one answer, at ``level``: the
        body's Query plus the identifiers the answer carries."""
        record = query_of(query_id)
        if int(level) <= int(record.level):
            raise OrthancError(ErrorCode.UnknownResource)
        answer = answer_of(record, index)
        try:
            body = json.loads(read_body(request))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise OrthancError(ErrorCode.BadFileFormat, "Must provide a JSON object")
        fields = body.get("Query", {})
        if not isinstance(fields, dict):
            raise OrthancError(ErrorCode.BadFileFormat, "The field Query must be a JSON object")
        fields = dict(fields)
        for keyword in INHERITED_IDENTIFIERS[record.level]:
            value = answer.get(keyword)
            if value is not None and str(value):
                fields[keyword] = str(value)
        options = {"Timeout": body["Timeout"]} if "Timeout" in body else {}
        options["Normalize"] = record.normalize
        modality = registry.get_modality(record.modality)
        sent = await find_filters.filter_outgoing(server, fields, modality["AET"])
        dataset = query_to_dataset(server, level, sent, record.normalize)
        settings = scu.ScuSettings.for_modality(server.configuration, modality, options)
        answers = await scu.find(server.reactor, settings, modality, level, dataset)
        child_id = create_query(record.modality, level, fields, answers, options,
                                query_retrieve_size(server.configuration))
        return render_json(request, {"ID": child_id, "Path": "/queries/%s" % child_id})

    for route, level in CHILD_QUERIES.items():
        def handler(request, query_id, index, level=level):
            return child_query(request, query_id, index, level)
        app.route("/queries/<query_id>/answers/<index>/" + route, methods=["POST"],
                  endpoint="child_" + route)(handler)

    @app.route("/queries/<query_id>/answers/<index>/content", methods=["GET"])
    def answer_content(request, query_id, index):
        answer = answer_of(query_of(query_id), index)
        return render_json(request, answer_json(server, answer, answer_mode(request)))

    async def retrieve(request, record, answers):
        """``answers()``: the answers to retrieve (checked once the body
        was read, as Orthanc does)."""
        modality = registry.get_modality(record.modality)
        options, target = retrieve_options(read_body(request))
        target = target or modality.get("LocalAet") or \
            server.configuration.get("DicomAet", "ORTHANC")
        timeout = options.get("Timeout", -1)
        if not isinstance(timeout, int) or isinstance(timeout, bool):
            raise OrthancError(ErrorCode.BadParameterType)
        if timeout < 0:
            timeout = record.timeout
        method = retrieve_method(options, modality, server.configuration)
        mode = "simplify" if read_field(options, "Simplify", bool, False) else (
            "full" if read_field(options, "Full", bool, False) else "short")
        settings = scu.ScuSettings.for_modality(
            server.configuration, modality,
            {"LocalAet": record.local_aet} if record.local_aet else {})
        queries = []
        for answer in answers():
            query = scu.identifier_dataset(record.level, {})
            for key in LEVEL_KEYS[record.level]:
                if key in answer:
                    scu.set_element(query, key, str(answer.get(key)))
            queries.append(query)
        job = retrieve_job(method, server, modality, settings.local_aet, record.level, queries,
                           timeout, query_format=mode, target_aet=target)
        return await submit_commands_job(request, server, job, options)

    @app.route("/queries/<query_id>/answers/<index>/retrieve", methods=["POST"])
    def retrieve_answer(request, query_id, index):
        record = query_of(query_id)
        if not index.lstrip("-").isdigit():
            raise OrthancError(ErrorCode.BadParameterType,
                               "Syntax error in some user-supplied data")
        return retrieve(request, record, lambda: [answer_of(record, index)])

    @app.route("/queries/<query_id>/retrieve", methods=["POST"])
    def retrieve_all(request, query_id):
        record = query_of(query_id)
        return retrieve(request, record, lambda: list(record.answers))
