"""ZIP archives and DICOMDIR media: /{patients,studies,series}/{id}/archive
and /media, /tools/create-archive, /tools/create-media(-extended).

Each request becomes an "Archive" or "Media" job (orthancd.archives), as in
Orthanc 1.13.0: synchronous ones stream the ZIP to the client while it is
built (the job sets its pace on the client's), asynchronous ones answer the
job's ID and leave the ZIP as the job's "archive" output.
"""
import json

from twisted.internet import defer

from orthancd.archives.job import ArchiveOptions
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.net.transfer_syntaxes import KNOWN
from orthancd.rest import fields
from orthancd.archives.outputs import FileSink
from orthancd.rest.http import (content_disposition, get_argument, has_argument, read_body,
                                render_json)
from orthancd.rest.streaming import ArchiveSink, stream_file

# The transfer syntaxes Orthanc 1.13.0 knows by UID: those of orthancd's
# DICOM layer, and the newer JPEG XL and HTJ2K ones.
TRANSFER_SYNTAXES = frozenset(KNOWN + (
    "1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.111", "1.2.840.10008.1.2.4.112",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"))

_INT_MAX = (1 << 31) - 1
_BATCH_FILENAME = "Archive.zip"


def parse_transfer_syntax(text):
    if text not in TRANSFER_SYNTAXES:
        raise OrthancError(ErrorCode.ParameterOutOfRange, "Unknown transfer syntax: " + text)
    return text


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def read_integer(body, field):
    """SerializationToolbox::ReadInteger."""
    value = body.get(field)
    if not _is_integer(value):
        raise OrthancError(ErrorCode.BadFileFormat, "Integer value expected in field: " + field)
    if value > _INT_MAX:
        raise OrthancError(ErrorCode.BadParameterType,
                           "Value too large to fit in an integer in field '%s'" % field)
    return value


def read_unsigned_integer(body, field):
    """SerializationToolbox::ReadUnsignedInteger."""
    value = body.get(field)
    if not _is_integer(value):
        raise OrthancError(ErrorCode.BadFileFormat, "Integer value expected in field: " + field)
    if value < 0:
        raise OrthancError(ErrorCode.BadParameterType,
                           "Negative value found while expecting an unsigned int in field '%s'"
                           % field)
    return value & 0xFFFFFFFF


def unsigned_argument(request, name, default):
    """RestApiGetCall::GetUnsignedInteger32Argument (an empty value reads
    as 1, as in Orthanc)."""
    if not has_argument(request, name):
        return default
    text = get_argument(request, name)
    if text == "":
        return 1
    stripped = text.strip(" \t\n\v\f\r")
    digits = stripped[1:] if stripped.startswith("+") else stripped
    if not digits.isdigit() or not digits.isascii() or int(digits) > 0xFFFFFFFF:
        raise OrthancError(ErrorCode.ParameterOutOfRange,
                           'Expected a Unsigned Int for GET argument "%s", found: %s'
                           % (name, text))
    return int(digits)


def parse_json_request(request, details=None):
    """RestApiPostCall::ParseJsonRequest: any JSON value, else Bad file
    format."""
    try:
        return json.loads(read_body(request))
    except ValueError:
        raise OrthancError(ErrorCode.BadFileFormat, details)


class JobParameters:
    """GetJobParameters: what a POST body says about the job, checked in
    Orthanc's order (every field but Resources)."""

    def __init__(self, body, default_extended, default_filename, default_utf8, lossy_default):
        is_object = isinstance(body, dict)
        body = body if is_object else {}
        self.synchronous = True
        if "Synchronous" in body:
            self.synchronous = fields.read_boolean(body, "Synchronous")
        elif "Asynchronous" in body:
            self.synchronous = not fields.read_boolean(body, "Asynchronous")
        self.priority = read_integer(body, "Priority") if "Priority" in body else 0
        self.extended = fields.read_boolean(body, "Extended") if "Extended" in body \
            else default_extended
        self.transcode = self.lossy_quality = None
        if "Transcode" in body:
            self.transcode = parse_transfer_syntax(fields.read_string(body, "Transcode"))
            self.lossy_quality = lossy_default
            if "LossyQuality" in body:
                self.lossy_quality = read_unsigned_integer(body, "LossyQuality")
        filename = body.get("Filename")
        self.filename = filename if isinstance(filename, str) else default_filename
        user_data = body.get("UserData")
        self.user_data = user_data if isinstance(user_data, str) else None
        self.utf8 = fields.read_boolean(body, "Utf8") if "Utf8" in body else default_utf8


def install(app, server):
    engine = server.jobs

    def archives():
        return server.archives

    async def submit(request, job, priority, synchronous, filename):
        """SubmitJob: stream the archive, or answer the job's ID."""
        if not synchronous:
            job.options.filename = filename
            job_id = engine.submit(job, priority)
            return render_json(request, {"ID": job_id, "Path": "/jobs/" + job_id})
        if not archives().streams_synchronous:
            # SynchronousZipStream off: a temporary file, sent once complete.
            sink = FileSink(archives().temporary_directory, server.file_io)
            job.sink = sink
            try:
                await engine.submit_and_wait(job, priority)
                request.setHeader(b"Content-Disposition", content_disposition(filename))
                request.setHeader(b"Content-Type", b"application/zip")
                return await stream_file(request, lambda: open(sink.path, "rb"), sink.size,
                                         server.file_io)
            finally:
                server.file_io.run(sink.remove)
        sink = ArchiveSink(request, filename)
        job.sink = sink
        job_id = engine.submit(job, priority)
        try:
            await engine.wait(job_id)
        except OrthancError:
            if not sink.started:
                raise   # nothing sent yet: the error is the answer
        except defer.CancelledError:
            pass   # the client left: the job notices at its next write
        return b""

    def transcode_arguments(request, options):
        if has_argument(request, "transcode"):
            options.transcode = parse_transfer_syntax(get_argument(request, "transcode", ""))
            options.lossy_quality = unsigned_argument(request, "lossy-quality",
                                                      archives().lossy_quality)

    def make_single_routes(level, is_media):
        kind = "media" if is_media else "archive"
        path = "/%s/<public_id>/%s" % (level.plural, kind)

        @app.route(path, methods=["GET"], endpoint="%s_%s_get" % (level.plural, kind))
        async def create_get(request, public_id):
            filename = get_argument(request, "filename", public_id + ".zip")
            options = ArchiveOptions(is_media=is_media,
                                     extended=is_media and has_argument(request, "extended"))
            # The patient folder of a study or series is named as its study
            # recorded the patient.
            job_level = ResourceLevel.PATIENT if level is ResourceLevel.PATIENT \
                else ResourceLevel.STUDY
            content = archives().content(job_level)
            content.add(public_id, level)
            transcode_arguments(request, options)
            return await submit(request, archives().job(content, options), 0, True, filename)

        @app.route(path, methods=["POST"], endpoint="%s_%s_post" % (level.plural, kind))
        async def create_post(request, public_id):
            body = parse_json_request(request)
            parameters = JobParameters(body, False, public_id + ".zip", archives().default_utf8,
                                       archives().lossy_quality)
            content = archives().content(level)
            content.add(public_id, level)
            return await submit_with(request, content, parameters, is_media)

    async def submit_with(request, content, parameters, is_media):
        options = ArchiveOptions(is_media=is_media, extended=parameters.extended,
                                 allow_utf8=parameters.utf8, transcode=parameters.transcode,
                                 lossy_quality=parameters.lossy_quality)
        job = archives().job(content, options)
        job.user_data = parameters.user_data
        return await submit(request, job, parameters.priority, parameters.synchronous,
                            parameters.filename)

    for level in (ResourceLevel.PATIENT, ResourceLevel.STUDY, ResourceLevel.SERIES):
        for is_media in (False, True):
            make_single_routes(level, is_media)

    def make_batch_routes(name, is_media, default_extended):
        path = "/tools/" + name

        @app.route(path, methods=["POST"], endpoint=name.replace("-", "_") + "_post")
        async def create_post(request):
            body = parse_json_request(request,
                                      "Expected a list of resources to archive in the body")
            parameters = JobParameters(body, default_extended, _BATCH_FILENAME,
                                       archives().default_utf8, archives().lossy_quality)
            content = archives().content(ResourceLevel.PATIENT)
            for public_id in resources_of_interest(body):
                content.add(public_id)
            return await submit_with(request, content, parameters, is_media)

        @app.route(path, methods=["GET"], endpoint=name.replace("-", "_") + "_get")
        async def create_get(request):
            if not has_argument(request, "resources"):
                raise OrthancError(ErrorCode.BadRequest, "Missing resources argument")
            options = ArchiveOptions(is_media=is_media, extended=default_extended)
            content = archives().content(ResourceLevel.PATIENT)
            for public_id in split_resources(get_argument(request, "resources", "")):
                content.add(public_id)
            transcode_arguments(request, options)
            filename = get_argument(request, "filename", _BATCH_FILENAME)
            return await submit(request, archives().job(content, options), 0, True, filename)

    make_batch_routes("create-archive", False, False)
    make_batch_routes("create-media", True, False)
    make_batch_routes("create-media-extended", True, True)


def split_resources(text):
    """Toolbox::SplitString into a set: comma-separated, a last empty item
    dropped, sorted and without repetitions."""
    items = text.split(",")
    if items and items[-1] == "":
        items.pop()
    return sorted(set(items))


def resources_of_interest(body):
    """AddResourcesOfInterest: the IDs of a list, or of an object's
    "Resources" list, one by one (each is added before the next is
    looked at)."""
    if isinstance(body, dict):
        if "Resources" not in body:
            raise OrthancError(ErrorCode.BadFileFormat,
                               "Missing field Resources in the JSON body")
        body = body["Resources"]
    elif not isinstance(body, list):
        raise OrthancError(ErrorCode.BadFileFormat)
    if not isinstance(body, list):
        raise OrthancError(ErrorCode.BadFileFormat,
                           "Expected a list of strings (Orthanc identifiers)")
    for item in body:
        if not isinstance(item, str):
            raise OrthancError(ErrorCode.BadFileFormat,
                               "Expected a list of strings (Orthanc identifiers)")
        yield item
