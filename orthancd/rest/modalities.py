"""/modalities: the remote DICOM nodes, and orthancd acting as their SCU.

Every operation is synchronous (the HTTP answer waits for the DICOM
exchange to end), as Orthanc's ``"Synchronous": true``; asynchronous jobs
need the job engine, which orthancd does not have yet.
"""
import json
import time

from orthancd import storage_commitment
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import UnknownResource
from orthancd.modalities import modality_registry
from orthancd.net import scu
from orthancd.rest.http import bool_argument, read_body, render_json
from orthancd.rest.queries import answer_json, create_query, query_to_dataset

# What GET /modalities/{id} lists in Orthanc 1.10.1.
MODALITY_ROUTES = ["configuration", "echo", "find", "find-instance", "find-patient",
                   "find-series", "find-study", "find-worklist", "move", "query",
                   "storage-commitment", "store", "store-straight"]

# The UIDs a C-MOVE/C-GET identifier carries at each level (as Orthanc sends).
RETRIEVE_KEYS = {
    ResourceLevel.PATIENT: ("PatientID",),
    ResourceLevel.STUDY: ("StudyInstanceUID",),
    ResourceLevel.SERIES: ("StudyInstanceUID", "SeriesInstanceUID"),
    ResourceLevel.INSTANCE: ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}


def parse_json_value(request):
    """Any JSON value, with Orthanc's error for a body that is not JSON."""
    raw = read_body(request)
    try:
        return json.loads(raw)
    except ValueError:
        raise OrthancError(ErrorCode.BadFileFormat, "Must provide a JSON value") from None


def parse_level(value):
    if not isinstance(value, str):
        raise OrthancError(ErrorCode.BadFileFormat, "The JSON body must contain field Level")
    try:
        return ResourceLevel.parse(value)
    except (ValueError, KeyError):
        raise OrthancError(ErrorCode.ParameterOutOfRange) from None


def require_synchronous(body):
    if isinstance(body, dict) and (body.get("Synchronous") is False
                                   or body.get("Asynchronous") is True):
        raise OrthancError(ErrorCode.BadRequest,
                           "Asynchronous jobs are not supported yet by orthancd: "
                           "use \"Synchronous\": true")


def retrieve_identifier(level, fields):
    keys = RETRIEVE_KEYS[level]
    return scu.identifier_dataset(level, {k: fields[k] for k in keys if k in fields})


def _resource_instances(index, public_id):
    """The instances below any-level resource ``public_id`` (Orthanc accepts
    IDs of any level in the store body)."""
    for level in ResourceLevel:
        try:
            return index.get_descendant_instances(public_id, level)
        except UnknownResource:
            continue
    raise OrthancError(ErrorCode.UnknownResource)


def _looks_like_identifier(text):
    parts = text.split("-")
    return len(parts) == 5 and all(len(p) == 8 and all(c in "0123456789abcdef" for c in p)
                                   for p in parts)


def store_request(body):
    """(resources, options) from the body of /modalities/{id}/store."""
    if isinstance(body, str):
        resources, options = [body], {}
    elif isinstance(body, list):
        resources, options = body, {}
    elif isinstance(body, dict):
        resources = body.get("Resources", [])
        options = body
        if not isinstance(resources, list):
            raise OrthancError(ErrorCode.BadFileFormat, "Expected a list of resources")
    else:
        raise OrthancError(ErrorCode.BadFileFormat, "Must provide a JSON value")
    for item in resources:
        if not isinstance(item, str) or item.count("-") != 4:
            raise OrthancError(ErrorCode.BadFileFormat,
                               "This string is not a valid Orthanc identifier: %s" % item)
    return resources, options


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
        registry.get_modality(name)
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
        if isinstance(description, dict):
            for key in ("AET", "Host"):
                if not isinstance(description.get(key), str):
                    raise OrthancError(ErrorCode.BadFileFormat,
                                       "String value expected in field: %s" % key)
        try:
            saving = registry.put(name, description)
        except OrthancError as exc:
            raise OrthancError(ErrorCode.BadFileFormat) from exc
        await saving  # answer once the change is durable
        return b""

    @app.route("/modalities/<name>", methods=["DELETE"])
    async def delete_modality(request, name):
        if name not in registry:
            raise OrthancError(ErrorCode.InexistentItem,
                               "Unknown DICOM modality with symbolic name: %s" % name)
        await registry.delete(name)
        return b""

    @app.route("/modalities/<name>/echo", methods=["POST"])
    async def echo(request, name):
        modality = registry.get_modality(name)
        body = json.loads(read_body(request) or b"{}") if read_body(request).strip() else {}
        await scu.echo(server.reactor, settings(modality, body), modality)
        return render_json(request, {})

    @app.route("/modalities/<name>/store", methods=["POST"])
    async def store(request, name):
        modality = registry.get_modality(name)
        raw = read_body(request).strip()
        try:
            body = json.loads(raw)
        except ValueError:
            # A bare identifier, as text/plain.
            body = raw.decode("utf-8", "replace")
            if not _looks_like_identifier(body):
                raise OrthancError(ErrorCode.BadFileFormat, "Must provide a JSON value") from None
        resources, options = store_request(body)
        require_synchronous(options)
        instances = []
        for public_id in resources:
            instances.extend(_resource_instances(server.index, public_id))
        storage_commitment_requested = options.get("StorageCommitment", False)
        if not isinstance(storage_commitment_requested, bool):
            raise OrthancError(ErrorCode.BadParameterType)
        originator = None
        if "MoveOriginatorAet" in options or "MoveOriginatorID" in options:
            originator = (str(options.get("MoveOriginatorAet", "")),
                          int(options.get("MoveOriginatorID", 0)))
        scu_settings = settings(modality, options)
        outcome = await scu.store(server, scu_settings, modality, instances, originator)
        if configuration.get("LogExportedResources", False):
            for instance_id in outcome.sent:
                await log_export(server, instance_id, modality["AET"])
        if outcome.failed and not options.get("Permissive", False):
            instance_id, reason = outcome.failed[0]
            raise OrthancError(ErrorCode.NetworkProtocol,
                               'C-STORE SCU to AET "%s" has failed for instance %s: %s'
                               % (modality["AET"], instance_id, reason))
        answer = {
            "Description": "REST API",
            "FailedInstancesCount": len(outcome.failed),
            "InstancesCount": len(instances),
            "LocalAet": scu_settings.local_aet,
            "ParentResources": resources,
            "RemoteAet": modality["AET"],
        }
        if storage_commitment_requested:
            answer["StorageCommitmentTransactionUID"] = await storage_commitment.after_store(
                server, scu_settings, modality, instances, outcome.sent)
        return render_json(request, answer)

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
            raise OrthancError(ErrorCode.BadFileFormat, "The field Query must be a JSON object")
        normalize = body.get("Normalize", True)
        dataset = query_to_dataset(server, level, fields, normalize)
        answers = await scu.find(server.reactor, settings(modality, body), modality, level, dataset)
        query_id = create_query(name, level, fields, answers, body)
        return render_json(request, {"ID": query_id, "Path": "/queries/%s" % query_id})

    async def do_move(request, name, retrieve):
        modality = registry.get_modality(name)
        body = parse_json_value(request)
        if not isinstance(body, dict):
            raise OrthancError(ErrorCode.BadFileFormat, "Must provide a JSON object")
        require_synchronous(body)
        level = parse_level(body.get("Level"))
        resources = body.get("Resources")
        if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
            raise OrthancError(ErrorCode.BadFileFormat,
                               "The JSON body must contain field Resources, as an array of objects")
        scu_settings = settings(modality, body)
        totals = scu.RetrieveCounts()
        for fields in resources:
            identifier = retrieve_identifier(level, fields)
            if retrieve == "move":
                target = str(body.get("TargetAet") or configuration.get("DicomAet", "ORTHANC"))
                counts = await scu.move(server.reactor, scu_settings, modality, level,
                                        identifier, target)
            else:
                counts = await scu.get(server, scu_settings, modality, level, identifier)
            totals.completed += counts.completed
            totals.failed += counts.failed
            totals.warning += counts.warning
        if retrieve == "move":
            return render_json(request, {})
        return render_json(request, {
            "CompletedSuboperations": totals.completed,
            "FailedSuboperations": totals.failed,
            "WarningSuboperations": totals.warning,
        })

    @app.route("/modalities/<name>/move", methods=["POST"])
    def move(request, name):
        return do_move(request, name, "move")

    @app.route("/modalities/<name>/get", methods=["POST"])
    def get(request, name):
        return do_move(request, name, "get")

    # -- the deprecated C-FIND routes (superseded by /query) --

    async def deprecated_find(request, name, level, parent_keys):
        modality = registry.get_modality(name)
        body = parse_json_value(request)
        if not isinstance(body, dict):
            raise OrthancError(ErrorCode.BadFileFormat, "Must provide a JSON object")
        dataset = query_to_dataset(server, level, body, True)
        answers = await scu.find(server.reactor, settings(modality), modality, level, dataset)
        return render_json(request, [answer_json(server, answer, "simplify", drop_level=True)
                                     for answer in answers])

    for route, level in (("find-patient", ResourceLevel.PATIENT),
                         ("find-study", ResourceLevel.STUDY),
                         ("find-series", ResourceLevel.SERIES),
                         ("find-instance", ResourceLevel.INSTANCE)):
        def handler(request, name, level=level):
            return deprecated_find(request, name, level, ())
        app.route("/modalities/<name>/" + route, methods=["POST"],
                  endpoint="deprecated_" + route)(handler)

    @app.route("/modalities/<name>/find", methods=["POST"])
    async def find_hierarchy(request, name):
        """The whole hierarchy below the patients matching the body."""
        modality = registry.get_modality(name)
        body = parse_json_value(request)
        if not isinstance(body, dict):
            raise OrthancError(ErrorCode.BadFileFormat, "Must provide a JSON object")
        s = settings(modality)

        async def level_answers(level, fields):
            dataset = query_to_dataset(server, level, fields, True)
            answers = await scu.find(server.reactor, s, modality, level, dataset)
            return [answer_json(server, a, "simplify", drop_level=True) for a in answers]

        patients = await level_answers(ResourceLevel.PATIENT, body)
        for patient in patients:
            studies = await level_answers(ResourceLevel.STUDY,
                                          {"PatientID": patient.get("PatientID", "")})
            for study in studies:
                series = await level_answers(ResourceLevel.SERIES, {
                    "PatientID": patient.get("PatientID", ""),
                    "StudyInstanceUID": study.get("StudyInstanceUID", "")})
                study["Series"] = series
            patient["Studies"] = studies
        return render_json(request, patients)


async def log_export(server, instance_id, remote_aet):
    """One /exports entry per instance, as Orthanc logs them."""
    index = server.index
    instance = index.get_resource(instance_id, ResourceLevel.INSTANCE)
    series = index.get_resource(instance.parent, ResourceLevel.SERIES)
    study = index.get_resource(series.parent, ResourceLevel.STUDY)
    patient = index.get_resource(study.parent, ResourceLevel.PATIENT)
    await index.log_export({
        "ResourceType": "Instance",
        "ID": instance_id,
        "Path": "/instances/%s" % instance_id,
        "RemoteModality": remote_aet,
        "Date": time.strftime("%Y%m%dT%H%M%S", time.gmtime()),
        "PatientID": patient.main_tags.get("PatientID", ""),
        "StudyInstanceUID": study.main_tags.get("StudyInstanceUID", ""),
        "SeriesInstanceUID": series.main_tags.get("SeriesInstanceUID", ""),
        "SOPInstanceUID": instance.main_tags.get("SOPInstanceUID", ""),
    })

