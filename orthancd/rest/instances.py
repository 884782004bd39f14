"""POST /instances (a DICOM file, a zip, a gzip body or an HTML form; see
orthancd.uploads) and the content of one instance:
/file, /tags, /simplified-tags, /header, /content/..."""
from orthancd.lazy_modules import LazyModule
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.ingest import Origin
from orthancd.rest import jsonfmt
from orthancd.rest.http import (JSON_TYPE, body_source, get_argument, has_argument, no_answer,
                                render_bytes, render_json, request_header, sized)
from orthancd.transcoding import service as transcoding, syntaxes
from orthancd.rest.render_cache import RenderCache
from orthancd.uploads.multipart import form_data_boundary
from orthancd.uploads.uploader import Uploader
from orthancd.rest.resources import ignored_length_tags, parse_tag_or_fail, tags_format

# Data sets to JSON and DICOMweb (pydicom): imported by the first use
# (orthancd.lazy_modules).
json_tags = LazyModule("orthancd.dicom.json_tags")
dicomweb = LazyModule("orthancd.dicom.dicomweb")

INSTANCE = ResourceLevel.INSTANCE


def store_answer(outcome):
    patient, study, series, instance = outcome.ids
    return {
        "ID": instance,
        "ParentPatient": patient,
        "ParentSeries": series,
        "ParentStudy": study,
        "Path": "/instances/%s" % instance,
        "Status": outcome.status,
    }


def request_origin(request):
    if getattr(request, "internal", False):
        # RestApiPost('/instances', ...) of a Lua script.
        return Origin.lua()
    host = getattr(request.getClientAddress(), "host", "")
    return Origin.rest(host, getattr(request, "http_username", "") or "")


def install(app, server):

    uploader = Uploader(server.ingest, server.temporary_directory, server.configuration,
                        server.file_io)

    @app.route("/instances", methods=["POST"])
    async def upload(request):
        origin = request_origin(request)
        body = body_source(request)
        boundary = form_data_boundary(request_header(request, b"content-type"))
        if boundary is not None:
            # An HTML form: Orthanc answers it with an empty 200.
            await uploader.store_form(body, boundary, origin)
            return sized(request, b"")
        stored = await uploader.store_body(body, request_header(request, b"content-encoding"),
                                           origin)
        if isinstance(stored, list):
            return render_json(request, [store_answer(outcome) for outcome in stored])
        return render_json(request, store_answer(stored))

    @app.route("/instances/<public_id>/file", methods=["GET"])
    async def download(request, public_id):
        # Orthanc only honours these exact Accept values; anything else
        # (application/json included) downloads the DICOM file.
        accept = request.getHeader(b"Accept")
        if accept in (b"application/dicom+json", b"application/dicom+xml"):
            encoding = server.default_encoding
            if accept == b"application/dicom+json":
                def render(ds):
                    return jsonfmt.dumps(dicomweb.dataset_to_dicomweb(ds, encoding), "\t",
                                         dicomweb.format_float).encode("ascii") + b"\n"
            else:
                def render(ds):
                    xml = dicomweb.dicomweb_to_xml(dicomweb.dataset_to_dicomweb(ds, encoding))
                    return xml.encode("utf-8")
            body = await server.render_dataset(public_id, render)
            request.setHeader(b"Content-Type", accept)
            return sized(request, body)
        # Orthanc names the download after the instance (1.12.7: ?filename=).
        filename = get_argument(request, "filename", public_id + ".dcm")
        if has_argument(request, "transcode"):
            syntax = syntaxes.lookup(get_argument(request, "transcode", ""))
            quality = None
            if has_argument(request, "lossy-quality"):
                quality = transcoding.parse_lossy_quality_argument(
                    get_argument(request, "lossy-quality", ""))
            stored = server.dicom_attachment(public_id)
            data = await server.read_attachment(stored)
            transcoded = await server.transcoder.to_syntax(data, syntax, quality)
            return render_bytes(request, transcoded.data, b"application/dicom", filename)
        stored = server.dicom_attachment(public_id)
        data = await server.read_attachment(stored)
        return render_bytes(request, data, b"application/dicom", filename)

    cache = RenderCache()

    async def cached_json(request, public_id, kind, mode, render, stop_before_pixels=False):
        """The JSON ``render(dataset)`` of an instance's file, parsed and
        formatted off the reactor, cached by file content (``kind`` names
        everything else the rendering depends on)."""
        key = (server.dicom_attachment(public_id).uuid, kind, mode, server.default_encoding)
        body = cache.get(key)
        if body is None:
            body = await server.render_dataset(
                public_id, lambda ds: jsonfmt.dumps(render(ds)).encode("ascii"),
                stop_before_pixels)
            cache.put(key, body)
        request.setHeader(b"Content-Type", JSON_TYPE)
        return sized(request, body)

    @app.route("/instances/<public_id>/tags", methods=["GET"])
    def tags(request, public_id):
        mode, ignored = tags_format(request), ignored_length_tags(request)
        encoding = server.default_encoding
        return cached_json(request, public_id, ("tags", ignored), mode,
                           lambda ds: json_tags.dataset_to_json(ds, mode, encoding,
                                                                ignore_length=ignored))

    @app.route("/instances/<public_id>/simplified-tags", methods=["GET"])
    def simplified_tags(request, public_id):
        ignored = ignored_length_tags(request)
        encoding = server.default_encoding
        return cached_json(request, public_id, ("tags", ignored), "simplify",
                           lambda ds: json_tags.dataset_to_json(ds, "simplify", encoding,
                                                      ignore_length=ignored))

    @app.route("/instances/<public_id>/header", methods=["GET"])
    def header(request, public_id):
        mode = tags_format(request)
        return cached_json(request, public_id, "header", mode,
                           lambda ds: json_tags.header_to_json(ds, mode), stop_before_pixels=True)

    @app.route("/instances/<public_id>/content", methods=["GET"])
    @app.route("/instances/<public_id>/content/", methods=["GET"])
    @app.route("/instances/<public_id>/content/<path:path>", methods=["GET"])
    async def content(request, public_id, path=""):
        parts = [p for p in path.split("/") if p]
        dataset = await server.read_dataset(public_id)
        try:
            # Tags sit at even positions (tag / item / tag ...), named as
            # Orthanc accepts them: "0010-0010", "0010,0010", "00100010" or
            # "PatientName"; each is parsed when the walk reaches it.
            value = json_tags.content_at(dataset, parts, parse_tag_or_fail)
        except json_tags.ContentPathError:
            # Orthanc answers a path leading nowhere with an empty 404.
            raise no_answer(request)
        except json_tags.PixelBlockError as e:
            raise OrthancError(ErrorCode.BadFileFormat, str(e))
        if isinstance(value, list):
            return render_json(request, value)
        return render_bytes(request, value)

