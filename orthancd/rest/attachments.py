"""/{level}/{id}/attachments: the files attached to a resource."""
import hashlib

from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import CONTENT_TYPE_NAMES, USER_CONTENT_START, ContentType, UnknownResource
from orthancd.rest.http import (EmptyAnswer, has_argument, no_answer, read_body, render_bytes,
                                render_json, render_text, sized)
from orthancd.index.numbered_names import NumberedNames

# What Orthanc lists under /{level}/{id}/attachments/{name} (compress and
# uncompress are not served by orthancd yet).
_OPERATIONS = ["compress", "compressed-data", "compressed-md5", "compressed-size", "data",
               "info", "is-compressed", "md5", "size", "uncompress", "verify-md5"]
_LAST_USER_CONTENT_TYPE = 65535


def _set_etag(request, info):
    # Orthanc's ETag: the attachment's revision (always 0: orthancd keeps
    # none) and its MD5.
    request.setHeader(b"ETag", ('"0-%s"' % info.md5).encode())


def _empty_json(request):
    # Orthanc's answer to a successful write: "{}", with no charset.
    request.setHeader(b"Content-Type", b"application/json")
    return sized(request, b"{}")


def install(app, server):
    names = NumberedNames({name: int(number) for number, name in CONTENT_TYPE_NAMES.items()},
                          server.configuration.get("UserContentType"),
                          (ErrorCode.InexistentItem, None))
    index = server.index
    store_dicom = bool(server.configuration.get("StoreDicom", True))

    def attachment(public_id, level, name, request=None):
        """The attachment; with ``request``, its ETag goes on the answer."""
        info = index.get_attachments(public_id, level).get(names.number(name))
        if info is None:
            raise OrthancError(ErrorCode.UnknownResource)
        if request is not None:
            _set_etag(request, info)
        return info

    def make_routes(level):
        base = "/%s/<public_id>/attachments" % level.plural

        def route(suffix, methods, name):
            return app.route(base + suffix, methods=methods,
                             endpoint="attachments_%s_%s" % (name, level.plural))

        @route("", ["GET"], "list")
        def list_attachments(request, public_id):
            attachments = index.get_attachments(public_id, level)
            if has_argument(request, "full"):
                return render_json(request, {names.name(k): k for k in attachments})
            return render_json(request, [names.name(k) for k in attachments])

        @route("/<name>", ["GET"], "operations")
        def operations(request, public_id, name):
            attachment(public_id, level, name, request)
            return render_json(request, _OPERATIONS)

        @route("/<name>/info", ["GET"], "info")
        def info(request, public_id, name):
            stored = attachment(public_id, level, name, request)
            return render_json(request, {
                "CompressedMD5": stored.md5,
                "CompressedSize": stored.size,
                "ContentType": names.number(name),
                "UncompressedMD5": stored.uncompressed_md5,
                "UncompressedSize": stored.uncompressed_size,
                "Uuid": stored.uuid,
            })

        @route("/<name>/data", ["GET"], "data")
        @route("/<name>/compressed-data", ["GET"], "compressed_data")
        async def data(request, public_id, name):
            stored = attachment(public_id, level, name, request)
            content = await server.read_attachment(stored)
            if names.number(name) == ContentType.Dicom:
                return render_bytes(request, content, b"application/dicom", stored.uuid + ".dcm")
            return render_bytes(request, content)

        def text_property(suffix, getter):
            @route("/<name>/" + suffix, ["GET"], suffix.replace("-", "_"))
            def prop(request, public_id, name):
                stored = attachment(public_id, level, name, request)
                return render_text(request, str(getter(stored)))

        text_property("size", lambda s: s.uncompressed_size)
        text_property("md5", lambda s: s.uncompressed_md5)
        text_property("compressed-size", lambda s: s.size)
        text_property("compressed-md5", lambda s: s.md5)
        text_property("is-compressed", lambda s: 1 if s.compressed else 0)

        @route("/<name>/verify-md5", ["POST"], "verify_md5")
        async def verify_md5(request, public_id, name):
            stored = index.get_attachments(public_id, level).get(names.number(name))
            if stored is None:
                raise no_answer(request)
            content = await server.read_attachment(stored)
            if hashlib.md5(content).hexdigest() != stored.md5:
                raise no_answer(request)  # Orthanc's answer to a bad MD5: none
            return _empty_json(request)

        @route("/<name>", ["PUT"], "put")
        async def put(request, public_id, name):
            number = names.number(name)
            if not USER_CONTENT_START <= number <= _LAST_USER_CONTENT_TYPE:
                raise EmptyAnswer(403)  # core attachments cannot be replaced
            try:
                index.get_resource(public_id, level)
            except UnknownResource:
                raise OrthancError(ErrorCode.InexistentItem)
            stored = await server.store_attachment(public_id, level, number, read_body(request))
            _set_etag(request, stored)
            return _empty_json(request)

        @route("/<name>", ["DELETE"], "delete")
        async def delete(request, public_id, name):
            number = names.number(name)
            # Of the core attachments, only the JSON summary may go (Orthanc
            # rebuilds it on demand).
            if not (USER_CONTENT_START <= number <= _LAST_USER_CONTENT_TYPE
                    or (number == ContentType.DicomAsJson and store_dicom)):
                raise EmptyAnswer(403)
            attachment(public_id, level, name)
            await server.delete_attachment(public_id, level, number)
            return render_text(request, "")

    for level in ResourceLevel:
        make_routes(level)
