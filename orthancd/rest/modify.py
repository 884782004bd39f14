"""Modification, anonymization, split and merge routes:
/{level}/{id}/modify, /{level}/{id}/anonymize, /tools/bulk-modify,
/tools/bulk-anonymize, /studies/{id}/split, /studies/{id}/merge.

The body is read in Orthanc 1.13.0's order, so that a request with several
mistakes gets the error Orthanc gives; the work is done by
orthancd.modification (an instance is modified and sent back; anything
larger runs as a job).
"""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.lazy_modules import LazyModule
from orthancd.modification import paths
from orthancd.rest import fields
from orthancd.rest.http import render_bytes
from orthancd.rest.instances import request_origin
from orthancd.rest.submit import UNHANDLED_EXCEPTION, parse_json_body, submit_job

# Modification and its jobs (pydicom): imported by the first request that
# uses them (orthancd.lazy_modules).
jobs = LazyModule("orthancd.modification.jobs")
requests = LazyModule("orthancd.modification.requests")


def _instance_transcoding(body):
    """The Transcode and LossyQuality of an instance-level request."""
    if "Transcode" not in body:
        return None, None
    uid = requests.check_instance_transcoding(fields.read_string(body, "Transcode"))
    quality = None
    if "LossyQuality" in body:
        quality = fields.read_integer(body, "LossyQuality")
        if quality < 0:
            raise OrthancError(ErrorCode.BadParameterType,
                               "Negative value found while expecting an unsigned int in field "
                               "'LossyQuality'")
    return uid, quality


def _job_options(body):
    """KeepSource and Transcode, read before the resources are looked up."""
    keep_source = fields.read_boolean(body, "KeepSource") if "KeepSource" in body else None
    transcode = fields.read_string(body, "Transcode") if "Transcode" in body else None
    return keep_source, transcode


def _bulk_level(modification, body):
    if "Level" not in body:
        return requests.detect_modify_level(modification)
    level = body["Level"]
    if not isinstance(level, str):
        raise OrthancError(ErrorCode.InternalError, UNHANDLED_EXCEPTION)
    try:
        return ResourceLevel.parse(level) if level.upper() != "IMAGE" and \
            level.upper() != "IMAGES" else ResourceLevel.INSTANCE
    except ValueError:
        raise OrthancError(ErrorCode.ParameterOutOfRange, "Invalid resource type '%s'" % level)


def install(app, server):
    engine = server.jobs

    async def send_instance(request, public_id, modification, body):
        transcode, quality = _instance_transcoding(body)
        data = await requests.modify_single_instance(server, public_id, modification, transcode,
                                                     quality)
        return render_bytes(request, data, b"application/dicom")

    @app.route("/instances/<public_id>/modify", methods=["POST"])
    async def modify_instance(request, public_id):
        body = parse_json_body(request)
        modification = requests.parse_modify(server, body)
        modification.set_level(requests.detect_modify_level(modification))
        return await send_instance(request, public_id, modification, body)

    @app.route("/instances/<public_id>/anonymize", methods=["POST"])
    async def anonymize_instance(request, public_id):
        body = parse_json_body(request)
        modification = await requests.parse_anonymize(server, body)
        return await send_instance(request, public_id, modification, body)

    async def submit_modification(request, body, modification, is_anonymization, resources,
                                  output_level):
        keep_source, transcode = _job_options(body)
        job = requests.modification_job(server, modification, is_anonymization,
                                        request_origin(request), resources, output_level,
                                        keep_source, transcode)
        return await submit_job(request, engine, job, body)

    def resource_routes(level):
        plural = level.plural

        @app.route("/%s/<public_id>/modify" % plural, methods=["POST"],
                   endpoint="modify_" + plural)
        async def modify(request, public_id):
            body = parse_json_body(request)
            modification = requests.parse_modify(server, body)
            modification.set_level(level)
            return await submit_modification(request, body, modification, False, [public_id],
                                             level)

        @app.route("/%s/<public_id>/anonymize" % plural, methods=["POST"],
                   endpoint="anonymize_" + plural)
        async def anonymize(request, public_id):
            body = parse_json_body(request)
            modification = await requests.parse_anonymize(server, body)
            return await submit_modification(request, body, modification, True, [public_id],
                                             level)

    for level in (ResourceLevel.PATIENT, ResourceLevel.STUDY, ResourceLevel.SERIES):
        resource_routes(level)

    @app.route("/tools/bulk-modify", methods=["POST"])
    async def bulk_modify(request):
        body = parse_json_body(request)
        modification = requests.parse_modify(server, body)
        modification.set_level(_bulk_level(modification, body))
        resources = fields.read_list_of_strings(body, "Resources")
        return await submit_modification(request, body, modification, False, resources, None)

    @app.route("/tools/bulk-anonymize", methods=["POST"])
    async def bulk_anonymize(request):
        body = parse_json_body(request)
        modification = await requests.parse_anonymize(server, body)
        resources = fields.read_list_of_strings(body, "Resources")
        return await submit_modification(request, body, modification, True, resources, None)

    @app.route("/studies/<public_id>/split", methods=["POST"])
    async def split(request, public_id):
        body = parse_json_body(request)
        job = jobs.SplitStudyJob.create(server, public_id, request_origin(request))
        if body is not None and not isinstance(body, dict):
            raise OrthancError(ErrorCode.InternalError, UNHANDLED_EXCEPTION)
        body = body or {}
        found = False
        if "Series" in body:
            for series_id in fields.read_list_of_strings(body, "Series"):
                job.add_source_series(series_id)
                found = True
        if "Instances" in body:
            for instance_id in fields.read_list_of_strings(body, "Instances"):
                job.add_source_instance(instance_id)
                found = True
        if not found:
            raise OrthancError(ErrorCode.BadRequest,
                               'Both the "Series" and the "Instances" fields are missing')
        if "KeepSource" in body:
            job.keep_source = fields.read_boolean(body, "KeepSource")
        if "Remove" in body:
            removals = body["Remove"]
            if not isinstance(removals, list) or not all(isinstance(r, str) for r in removals):
                raise OrthancError(ErrorCode.BadFileFormat)
            for name in removals:
                job.remove(paths.parse_tag(name))
        if "Replace" in body:
            replacements = body["Replace"]
            if not isinstance(replacements, dict):
                raise OrthancError(ErrorCode.BadFileFormat)
            for name in sorted(replacements):
                if not isinstance(replacements[name], str):
                    raise OrthancError(ErrorCode.BadFileFormat)
                job.replace(paths.parse_tag(name), replacements[name])
        return await submit_job(request, engine, job, body)

    @app.route("/studies/<public_id>/merge", methods=["POST"])
    async def merge(request, public_id):
        body = parse_json_body(request)
        job = jobs.MergeStudyJob.create(server, public_id, request_origin(request))
        await job.read_target_modules()
        if not isinstance(body, dict):
            raise OrthancError(ErrorCode.BadFileFormat, "List of strings expected in field: "
                                                        "Resources")
        for public_id in fields.read_list_of_strings(body, "Resources"):
            job.add_source(public_id)
        if "KeepSource" in body:
            job.keep_source = fields.read_boolean(body, "KeepSource")
        return await submit_job(request, engine, job, body)
