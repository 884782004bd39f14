"""/modalities: the remote DICOM nodes, and orthancd acting as their SCU.

Echo, find, query and store-straight answer when the DICOM exchange is over;
store, move and get are jobs (orthancd.jobs), run synchronously unless the
body asks otherwise, as in Orthanc 1.13.0.
"""
import json

from orthancd.automation import find_filters
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.config import parse_modality
from orthancd.modalities import check_description, modality_registry, normalized_description
from orthancd.lazy_modules import LazyModule
from orthancd.rest.http import (
    bool_argument, read_body, render_bytes, render_json, render_text, sized)
from orthancd.rest.scu_requests import option, read_unsigned, submit_commands_job
from orthancd.serialization import read_field
from orthancd.jobs.dicom_retrieve import retrieve_job
from orthancd.jobs.dicom_store import DicomModalityStoreJob
from orthancd.jobs.instances import (
    log_exported_resource, ordered_child_instances, resource_level)
from orthancd.dicom import main_tags
from orthancd.find import tags as find_tags
from orthancd.rest.queries import (
    answer_json, create_query, query_retrieve_size, query_to_dataset)

# DICOM networking (pynetdicom, pydicom): imported by the first request
# that uses it (orthancd.lazy_modules).
scu = LazyModule("orthancd.net.scu")

# What GET /modalities/{id} lists in Orthanc 1.13.0.
MODALITY_ROUTES = ["configuration", "echo", "find", "find-instance", "find-patient",
                   "find-series", "find-study", "find-worklist", "get", "move", "query",
                   "storage-commitment", "store", "store-straight"]


def parse_json_value(request, error="Must provide a JSON value"):
    """Any JSON value, with Orthanc's error for a body that is not JSON."""
    raw = read_body(request)
    try:
        return json.loads(raw)
    except ValueError:
        raise OrthancError(ErrorCode.BadFileFormat, error) from None


def parse_json_body(request, empty=None):
    """The JSON body of the routes that parse it strictly (echo); an empty
    body stands for ``empty`` when given."""
    raw = read_body(request)
    if empty is not None and not raw.strip():
        return empty
    try:
        return json.loads(raw)
    except ValueError:
        raise OrthancError(ErrorCode.BadFileFormat, "Cannot parse the JSON body") from None


def render_empty(request):
    """Orthanc's answer of a PUT or DELETE that succeeded: an empty text."""
    return render_text(request, b"")


def render_echo_success(request):
    return render_bytes(request, b"{}", b"application/json")


def is_tag_name(key):
    """Does Orthanc know this tag name (a dictionary name or gggg,eeee)?"""
    try:
        scu.set_element(scu.identifier_dataset(ResourceLevel.STUDY, {}), key, "")
    except OrthancError:
        return False
    return True


def parse_level(value):
    if not isinstance(value, str):
        raise OrthancError(ErrorCode.BadFileFormat, "The JSON body must contain field Level")
    try:
        return ResourceLevel.parse(value)
    except (ValueError, KeyError):
        raise OrthancError(ErrorCode.ParameterOutOfRange,
                           "Invalid resource type '%s'" % value) from None


async def instances_to_export(server, resources, remote):
    """(instances in sending order, [(resource, level)]) of the resources
    named in a store request; with LogExportedResources, each resource is
    logged as exported to ``remote`` as it is listed (Orthanc's
    GetInstancesToExport)."""
    instances, parents = [], []
    log_exports = server.configuration.get("LogExportedResources", False)
    for public_id in resources:
        level = resource_level(server.index, public_id)
        if level is None:
            # What Orthanc 1.13.0 answers for an unknown resource here.
            raise OrthancError(ErrorCode.InternalError,
                               "ErrorCode_InternalError triggered from ServerContext.cpp:2148")
        parents.append((public_id, level))
        instances.extend(ordered_child_instances(server.index, public_id, level))
        if log_exports:
            await log_exported_resource(server, public_id, level, remote)
    return instances, parents


def parse_store_body(request):
    """The body of a store request: JSON, or a bare identifier as text."""
    raw = read_body(request).strip()
    try:
        return json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
        if not _looks_like_identifier(body):
            raise OrthancError(ErrorCode.BadFileFormat, "Must provide a JSON value") from None
        return body


def _looks_like_identifier(text):
    parts = text.split("-")
    return len(parts) == 5 and all(len(p) == 8 and all(c in "0123456789abcdef" for c in p)
                                   for p in parts)


def store_request(body):
    """(resources, options) from the body of /modalities/{id}/store."""
    strings = "Resources to be exported must be specified as a JSON array of strings"
    if isinstance(body, str):
        resources, options = [body], {}
    elif isinstance(body, list):
        resources, options = body, {}
    elif isinstance(body, dict):
        if "Resources" not in body:
            raise OrthancError(ErrorCode.BadFileFormat, 'Missing field in JSON: "Resources"')
        resources, options = body["Resources"], body
        if not isinstance(resources, list):
            raise OrthancError(ErrorCode.BadFileFormat,
                               'JSON field "Resources" must contain an array')
    else:
        raise OrthancError(ErrorCode.BadFileFormat,
                           "Must provide a JSON object, or a JSON array of strings")
    if not all(isinstance(item, str) for item in resources):
        raise OrthancError(ErrorCode.BadFileFormat, strings)
    for item in resources:
        if item.count("-") != 4:
            raise OrthancError(ErrorCode.BadFileFormat,
                               "This string is not a valid Orthanc identifier: %s" % item)
    return resources, options


# The deprecated /modalities/{id}/find-* routes query the main tags Orthanc
# puts in its find templates (DicomMap::SetupFind*Template), then keep those
# of the level and the identifiers above it (Find* in OrthancRestModalities).
PATIENT_ID, STUDY_UID, SERIES_UID, ACCESSION = "0010,0020", "0020,000d", "0020,000e", "0008,0050"
FIND_TEMPLATES = {
    ResourceLevel.PATIENT: ("0010,0010", PATIENT_ID, "0010,0030", "0010,0040", "0010,1000"),
    ResourceLevel.STUDY: ("0008,0020", "0008,0030", "0020,0010", "0008,1030", ACCESSION,
                          STUDY_UID, "0008,0090", PATIENT_ID),
    ResourceLevel.SERIES: ("0008,0021", "0008,0031", "0008,0060", "0008,103e", "0018,0015",
                           "0018,1030", "0020,0011", SERIES_UID, "0008,1070", "0040,0254",
                           ACCESSION, PATIENT_ID, STUDY_UID),
    ResourceLevel.INSTANCE: ("0008,0012", "0008,0013", "0020,0013", "0008,0018", ACCESSION,
                             PATIENT_ID, STUDY_UID, SERIES_UID),
}
FIND_IDENTIFIERS = {
    ResourceLevel.PATIENT: (),
    ResourceLevel.STUDY: (PATIENT_ID, ACCESSION, "0008,0061"),
    ResourceLevel.SERIES: (PATIENT_ID, STUDY_UID),
    ResourceLevel.INSTANCE: (PATIENT_ID, STUDY_UID, SERIES_UID),
}
# Main tags of the study that its find-* leaves out (InstitutionName,
# RequestingPhysician, RequestedProcedureDescription).
FIND_IGNORED = {ResourceLevel.STUDY: ("0008,0080", "0032,1032", "0032,1060")}
# A find-* without enough identifiers is refused (more than 2 characters).
FIND_REQUIRED = {
    ResourceLevel.STUDY: (PATIENT_ID,),
    ResourceLevel.SERIES: (PATIENT_ID, STUDY_UID),
    ResourceLevel.INSTANCE: (PATIENT_ID, STUDY_UID, SERIES_UID),
}


def deprecated_find_body(request):
    """The JSON object of a find-* body, or None."""
    try:
        body = json.loads(read_body(request))
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _json_as_string(value):
    """Jsoncpp's asString()."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise OrthancError(ErrorCode.BadFileFormat)


def find_fields(level, body):
    """{"gggg,eeee": value} of a find-* query at ``level``: the template
    with the body merged in, reduced to the level's tags and identifiers."""
    merged = {key: "" for key in FIND_TEMPLATES[level]}
    for name, value in body.items():
        try:
            tag = find_tags.parse_tag(name)
        except OrthancError:
            raise OrthancError(ErrorCode.UnknownDicomTag, name, http_status=500) from None
        merged[find_tags.format_tag(tag)] = _json_as_string(value)
    kept = {find_tags.format_tag(tag) for tag in main_tags.MAIN_DICOM_TAGS[level]}
    kept.difference_update(FIND_IGNORED.get(level, ()))
    kept.update(FIND_IDENTIFIERS[level])
    return {key: value for key, value in merged.items() if key in kept}


def find_keys_are_given(level, fields):
    if len(fields.get(ACCESSION, "")) > 2:
        return True
    return all(len(fields.get(key, "")) > 2 for key in FIND_REQUIRED.get(level, ()))


def with_destination_overrides(modality, options):
    """/modalities/{id}/store may aim at another AET, host or port than the
    modality's (CalledAet, Host, Port in the body)."""
    modality = dict(modality)
    called = option(options, "CalledAet", str)
    host = option(options, "Host", str)
    port = option(options, "Port", int)
    if called is not None:
        modality["AET"] = called
    if host is not None:
        modality["Host"] = host
    if port is not None:
        port &= 0xFFFF  # Orthanc keeps it in 16 bits before checking it
        if not 1 <= port <= 65534:
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               "A TCP port number must be in range [1..65534], but found: %d"
                               % port)
        modality["Port"] = port
    return modality


def install(app, server):
    registry = modality_registry(server)
    configuration = server.configuration

    def settings(modality, body=None):
        return scu.ScuSettings.for_modality(configuration, modality, body)

    @app.route("/modalities", methods=["GET"])
    def list_modalities(request):
        if bool_argument(request, "expand"):
            return render_json(request, {name: registry.get_modality(name)
                                         for name in registry.names()})
        return render_json(request, registry.names())

    @app.route("/modalities/<name>", methods=["GET"])
    def modality_routes(request, name):
        if name not in registry:
            # An unknown child of a listing: Orthanc's bare 404.
            request.setResponseCode(404)
            return sized(request, b"")
        return render_json(request, MODALITY_ROUTES)

    @app.route("/modalities/<name>/configuration", methods=["GET"])
    def modality_configuration(request, name):
        return render_json(request, registry.get_modality(name))

    @app.route("/modalities/<name>", methods=["PUT"])
    async def put_modality(request, name):
        try:
            description = json.loads(read_body(request))
        except ValueError:
            raise OrthancError(ErrorCode.BadFileFormat) from None
        await registry.put(name, description)  # answer once the change is durable
        return render_empty(request)

    @app.route("/modalities/<name>", methods=["DELETE"])
    async def delete_modality(request, name):
        if name not in registry:
            raise OrthancError(ErrorCode.InexistentItem,
                               "Unknown DICOM modality with symbolic name: %s" % name)
        await registry.delete(name)
        return render_empty(request)

    async def do_echo(request, modality, options):
        timeout = read_field(options, "Timeout", int)
        check_find = read_field(options, "CheckFind", bool,
                                bool(configuration.get("DicomEchoChecksFind", False)))
        scu_settings = settings(modality, {} if timeout is None else {"Timeout": timeout})
        # Orthanc echoes as DicomAet, whatever the modality's LocalAet.
        scu_settings.local_aet = str(configuration.get("DicomAet", "ORTHANC"))
        await scu.echo(server.reactor, scu_settings, modality, check_find)
        return render_echo_success(request)

    @app.route("/modalities/<name>/echo", methods=["POST"])
    async def echo(request, name):
        modality = registry.get_modality(name)
        return await do_echo(request, modality, parse_json_body(request, empty={}))

    @app.route("/tools/dicom-echo", methods=["POST"])
    async def echo_described_modality(request):
        """C-ECHO to a modality described in the body (either form of a
        DicomModalities entry), registered or not."""
        description = parse_json_body(request)
        check_description(description)
        modality = parse_modality("dicom-echo", normalized_description(description))
        options = description if isinstance(description, dict) else {}
        return await do_echo(request, modality, {k: v for k, v in options.items()
                                                 if k == "CheckFind"})

    @app.route("/modalities/<name>/store", methods=["POST"])
    async def store(request, name):
        resources, options = store_request(parse_store_body(request))
        instances, parents = await instances_to_export(server, resources, name)
        modality = registry.get_modality(name)
        local_aet = option(options, "LocalAet", str, modality.get("LocalAet")
                           or configuration.get("DicomAet", "ORTHANC"))
        originator_aet = option(options, "MoveOriginatorAet", str,
                                configuration.get("DicomAet", "ORTHANC"))
        originator_id = option(options, "MoveOriginatorID", int, 0)
        modality = with_destination_overrides(modality, options)
        if originator_id >= 65536:
            raise OrthancError(ErrorCode.ParameterOutOfRange)
        commitment = option(options, "StorageCommitment", bool, False)
        timeout = read_unsigned(options, "Timeout")
        job = DicomModalityStoreJob(
            server, modality, local_aet, timeout,
            (originator_aet, originator_id) if originator_id else None, commitment,
            instances=instances, parent_resources=parents)
        return await submit_commands_job(request, server, job, options)

    @app.route("/modalities/<name>/store-straight", methods=["POST"])
    async def store_straight(request, name):
        modality = registry.get_modality(name)
        sop_class, sop_instance = await scu.store_straight(
            server, settings(modality), modality, read_body(request))
        return render_json(request, {"SOPClassUID": sop_class, "SOPInstanceUID": sop_instance})

    @app.route("/modalities/<name>/query", methods=["POST"])
    async def query(request, name):
        modality = registry.get_modality(name)
        body = parse_json_value(request)
        if not isinstance(body, dict):
            raise OrthancError(ErrorCode.BadFileFormat, "Must provide a JSON object")
        if "Level" not in body:
            raise OrthancError(ErrorCode.BadFileFormat, "The JSON body must contain field Level")
        level = parse_level(body["Level"])
        fields = body.get("Query", {})
        if not isinstance(fields, dict):
            raise OrthancError(ErrorCode.BadFileFormat,
                               "The field Query must contain a JSON object")
        for key, value in fields.items():
            if not isinstance(value, str) or not is_tag_name(key):
                raise OrthancError(ErrorCode.BadFileFormat, "Associative array of DICOM tags "
                                   "to strings expected in field: Query")
        read_field(body, "Timeout", int)
        for key, kind, word in (("Normalize", bool, "a Boolean"), ("LocalAet", str, "a string")):
            if key in body and (not isinstance(body[key], kind)
                                or (kind is int and isinstance(body[key], bool))):
                raise OrthancError(ErrorCode.BadFileFormat,
                                   "The field %s must contain %s" % (key, word))
        normalize = body.get("Normalize", True)
        sent = await find_filters.filter_outgoing(server, fields, modality["AET"])
        dataset = query_to_dataset(server, level, sent, normalize)
        answers = await scu.find(server.reactor, settings(modality, body), modality, level, dataset)
        query_id = create_query(name, level, fields, answers, body,
                                query_retrieve_size(configuration))
        return render_json(request, {"ID": query_id, "Path": "/queries/%s" % query_id})

    async def do_move(request, name, method):
        body = parse_json_value(request)
        if not isinstance(body, dict) or not isinstance(body.get("Resources"), list) \
                or not isinstance(body.get("Level"), str):
            raise OrthancError(ErrorCode.BadFileFormat,
                               "Must provide a JSON body containing fields Resources and Level")
        level = parse_level(body["Level"])
        modality = registry.get_modality(name)
        local_aet = option(body, "LocalAet", str, modality.get("LocalAet")
                           or configuration.get("DicomAet", "ORTHANC"))
        timeout = read_unsigned(body, "Timeout")
        resources = body["Resources"]
        if not all(isinstance(r, dict) for r in resources):
            raise OrthancError(ErrorCode.BadFileFormat,
                               "Expecting an object in field 'Resources elements'")
        queries = []
        for fields in resources:
            query = scu.identifier_dataset(level, {})
            for key, value in fields.items():
                if not isinstance(value, str):
                    raise OrthancError(ErrorCode.BadFileFormat,
                                       "Expecting a string in field '%s'" % key)
                scu.set_element(query, key, value)
            queries.append(query)
        target = None
        if method == "C-MOVE":
            target = option(body, "TargetAet", str) or configuration.get("DicomAet", "ORTHANC")
        job = retrieve_job(method, server, modality, local_aet, level, queries, timeout,
                           target_aet=target)
        return await submit_commands_job(request, server, job, body)

    @app.route("/modalities/<name>/move", methods=["POST"])
    def move(request, name):
        return do_move(request, name, "C-MOVE")

    @app.route("/modalities/<name>/get", methods=["POST"])
    def get(request, name):
        return do_move(request, name, "C-GET")

    # -- the deprecated C-FIND routes (superseded by /query) --

    async def find_answers(modality, level, fields):
        dataset = query_to_dataset(server, level, fields, True)
        answers = await scu.find(server.reactor, settings(modality), modality, level, dataset)
        return [answer_json(server, scu.with_media_storage_uids(answer), "simplify")
                for answer in answers]

    def bare_bad_request(request):
        # Orthanc answers these routes' unusable bodies with a bare 400.
        request.setResponseCode(400)
        return sized(request, b"")

    async def deprecated_find(request, name, level):
        modality = registry.get_modality(name)
        body = deprecated_find_body(request)
        if body is None:
            return bare_bad_request(request)
        fields = find_fields(level, body)
        if not find_keys_are_given(level, fields):
            return bare_bad_request(request)
        return render_json(request, await find_answers(modality, level, fields))

    for route, level in (("find-patient", ResourceLevel.PATIENT),
                         ("find-study", ResourceLevel.STUDY),
                         ("find-series", ResourceLevel.SERIES),
                         ("find-instance", ResourceLevel.INSTANCE)):
        def handler(request, name, level=level):
            return deprecated_find(request, name, level)
        app.route("/modalities/<name>/" + route, methods=["POST"],
                  endpoint="deprecated_" + route)(handler)

    @app.route("/modalities/<name>/find", methods=["POST"])
    async def find_hierarchy(request, name):
        """The patients matching the body, with their studies and series."""
        modality = registry.get_modality(name)
        body = deprecated_find_body(request)
        if body is None:
            return bare_bad_request(request)
        patients = await find_answers(modality, ResourceLevel.PATIENT,
                                      find_fields(ResourceLevel.PATIENT, body))
        for patient in patients:
            fields = find_fields(ResourceLevel.STUDY, body)
            fields[PATIENT_ID] = patient.get("PatientID", fields.get(PATIENT_ID, ""))
            studies = await find_answers(modality, ResourceLevel.STUDY, fields)
            for study in studies:
                fields = find_fields(ResourceLevel.SERIES, body)
                fields[PATIENT_ID] = study.get("PatientID", fields.get(PATIENT_ID, ""))
                fields[STUDY_UID] = study.get("StudyInstanceUID", fields.get(STUDY_UID, ""))
                study["Series"] = await find_answers(modality, ResourceLevel.SERIES, fields)
            patient["Studies"] = studies
        return render_json(request, patients)

    @app.route("/modalities/<name>/find-worklist", methods=["POST"])
    async def find_worklist(request, name):
        """C-FIND SCU on the modality's worklists: the body (or its "Query")
        is the query, as tags; answers in the Simplify/Short/Full format."""
        modality = registry.get_modality(name)
        body = parse_json_value(request, "Must provide a JSON object")
        if body is None:
            body = {"Query": None}  # JsonCpp's null has no members: a bad query
        elif not isinstance(body, dict):
            # What 1.13.0 answers when JsonCpp refuses to look a member up.
            raise OrthancError(ErrorCode.InternalError,
                               "An unhandled exception was generated inside the HTTP server")
        if "Query" in body:
            fields, mode = body["Query"], worklist_format(body)
        else:
            fields, mode = body, "simplify"  # the form of Orthanc <= 1.9.4
        from orthancd.dicom.from_json import dataset_from_json
        query = dataset_from_json(fields, server.default_encoding)
        answers = await scu.find_worklist(server.reactor, settings(modality, body), modality,
                                          query)
        return render_json(request, [answer_json(server, answer, mode) for answer in answers])


def worklist_format(body):
    """OrthancRestApi::GetDicomFormat: Simplify, then Short, then Full."""
    for key, mode in (("Simplify", "simplify"), ("Short", "short"), ("Full", "full")):
        if key in body and read_field(body, key, bool):
            return mode
    return "simplify"
