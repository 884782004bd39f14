"""/{level}/{id}/attachments: the files attached to a resource, with their
revisions (orthancd.rest.revisions), compression and byte ranges."""
import hashlib

from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import CONTENT_TYPE_NAMES, USER_CONTENT_START, ContentType, UnknownResource
from orthancd.index.numbered_names import STORED_TYPES, NumberedNames
from orthancd.rest.http import (EmptyAnswer, get_argument, has_argument, no_answer, read_body,
                                render_bytes, render_json, render_text, sized)
from orthancd.rest.ranges import parse_http_range
from orthancd.rest.revisions import (answer_etag, expected_for_delete, expected_for_write,
                                     md5_of, set_etag)
from orthancd.storage.area import ContentCorrupted

_LAST_USER_CONTENT_TYPE = 65535
_BINARY = "application/octet-stream"
_CORE_MIME_TYPES = {
    ContentType.Dicom: "application/dicom",
    ContentType.DicomAsJson: "application/json; charset=utf-8",
}


def _is_user_content_type(number):
    return USER_CONTENT_START <= number <= _LAST_USER_CONTENT_TYPE


def _operations(info):
    """What Orthanc lists under /{level}/{id}/attachments/{name}: the MD5
    operations only when MD5s were stored (StoreMD5ForAttachments)."""
    operations = ["compress", "compressed-data"]
    if info.md5:
        operations.append("compressed-md5")
    operations += ["compressed-size", "data", "info", "is-compressed"]
    if info.uncompressed_md5:
        operations.append("md5")
    operations += ["size", "uncompress"]
    if info.md5 and info.uncompressed_md5:
        operations.append("verify-md5")
    return operations


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
    check_revisions = bool(server.configuration.get("CheckRevisions", False))

    def mime_type(number):
        if _is_user_content_type(number):
            return names.mime_type(number, _BINARY)
        return _CORE_MIME_TYPES.get(number, _BINARY)

    def lookup(public_id, level, number):
        """(StoredFile, revision), or None."""
        if number not in STORED_TYPES:
            index.get_resource(public_id, level)
            return None
        return index.attachment_with_revision(public_id, level, number)

    async def attachment(request, public_id, level, name):
        """The StoredFile, its ETag on the answer (Orthanc's
        GetAttachmentInfo: 304 when the client has it already)."""
        number = names.number(name)
        found = lookup(public_id, level, number)
        if found is None:
            raise OrthancError(ErrorCode.UnknownResource)
        info, revision = found
        # The MD5s, derived if they were not known yet (orthancd.checksums).
        info = await server.checksums.complete_for_answer(public_id, level, number, info)
        answer_etag(request, revision, info.uncompressed_md5)
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
        async def operations(request, public_id, name):
            return render_json(request, _operations(
                await attachment(request, public_id, level, name)))

        @route("/<name>/info", ["GET"], "info")
        async def info(request, public_id, name):
            stored = await attachment(request, public_id, level, name)
            return render_json(request, {
                "CompressedMD5": stored.md5,
                "CompressedSize": stored.size,
                "ContentType": names.number(name),
                "UncompressedMD5": stored.uncompressed_md5,
                "UncompressedSize": stored.uncompressed_size,
                "Uuid": stored.uuid,
            })

        def data_route(suffix, uncompress):
            @route("/<name>/" + suffix, ["GET"], suffix.replace("-", "_"))
            async def data(request, public_id, name):
                wanted = request.getHeader(b"Range")
                byte_range = None if wanted is None else parse_http_range(wanted)
                stored = await attachment(request, public_id, level, name)
                if byte_range is not None:
                    full_size = stored.uncompressed_size if uncompress else stored.size
                    start, end = byte_range.bounds(full_size)
                    content = await server.read_attachment_range(
                        stored, start, end, stored=not uncompress)
                    request.setResponseCode(206)
                    request.setHeader(b"Content-Range", byte_range.content_range(full_size))
                    return render_bytes(request, content)
                if uncompress or not stored.compressed:
                    content = await server.read_attachment(stored)
                    filename = get_argument(request, "filename", stored.uuid)
                    return render_bytes(request, content,
                                        mime_type(names.number(name)).encode(), filename)
                # The raw bytes of a compressed attachment.
                return render_bytes(request, await server.read_stored_attachment(stored))

        data_route("data", True)
        data_route("compressed-data", False)

        def text_property(suffix, getter, needs=None):
            @route("/<name>/" + suffix, ["GET"], suffix.replace("-", "_"))
            async def prop(request, public_id, name):
                stored = await attachment(request, public_id, level, name)
                if needs is not None and not needs(stored):
                    raise no_answer(request)  # no MD5 stored: Orthanc answers nothing
                return render_text(request, str(getter(stored)))

        text_property("size", lambda s: s.uncompressed_size)
        text_property("md5", lambda s: s.uncompressed_md5, lambda s: s.uncompressed_md5)
        text_property("compressed-size", lambda s: s.size)
        text_property("compressed-md5", lambda s: s.md5, lambda s: s.md5)
        text_property("is-compressed", lambda s: 1 if s.compressed else 0)

        @route("/<name>/verify-md5", ["POST"], "verify_md5")
        async def verify_md5(request, public_id, name):
            number = names.number(name)
            found = lookup(public_id, level, number)
            if found is None or found[0].md5 == "" or found[0].uncompressed_md5 == "":
                raise no_answer(request)  # unknown, or no MD5 to check
            stored = found[0]
            if stored.md5_pending:
                # Derived now from the file as it is, which is checked
                # against its name (the SHA-256 it was stored with) meanwhile.
                try:
                    await server.checksums.complete(public_id, level, number, stored)
                except (ContentCorrupted, FileNotFoundError):
                    raise no_answer(request)
                return _empty_json(request)
            # The bytes as stored first, then (if compressed) the content.
            good = hashlib.md5(await server.read_stored_attachment(stored)).hexdigest() == stored.md5
            if good and stored.compressed:
                content = await server.read_attachment(stored)
                good = hashlib.md5(content).hexdigest() == stored.uncompressed_md5
            if not good:
                raise no_answer(request)  # Orthanc's answer to a bad MD5: none
            return _empty_json(request)

        @route("/<name>", ["PUT"], "put")
        async def put(request, public_id, name):
            number = names.number(name)
            if not _is_user_content_type(number):
                raise EmptyAnswer(403)  # core attachments cannot be replaced
            expected = expected_for_write(request, check_revisions)
            try:
                index.get_resource(public_id, level)
            except UnknownResource:
                raise OrthancError(ErrorCode.InexistentItem)
            body = read_body(request)
            _, revision = await server.put_attachment(public_id, level, number, body, expected)
            set_etag(request, revision, md5_of(body))
            return _empty_json(request)

        @route("/<name>", ["DELETE"], "delete")
        async def delete(request, public_id, name):
            number = names.number(name)
            # Of the core attachments, only the JSON summary may go (Orthanc
            # rebuilds it on demand).
            if not (_is_user_content_type(number)
                    or (number == ContentType.DicomAsJson and store_dicom)):
                raise EmptyAnswer(403)
            expected = expected_for_delete(request, check_revisions)
            if lookup(public_id, level, number) is None:
                raise OrthancError(ErrorCode.UnknownResource)
            try:
                await server.delete_attachment(public_id, level, number, expected)
            except KeyError:
                raise OrthancError(ErrorCode.UnknownResource)
            return render_text(request, "")

        def compression_route(suffix, compress):
            @route("/<name>/" + suffix, ["POST"], suffix)
            async def change(request, public_id, name):
                number = names.number(name)
                if number not in STORED_TYPES:
                    raise OrthancError(ErrorCode.UnknownResource)
                await server.change_attachment_compression(public_id, level, number, compress)
                return _empty_json(request)

        compression_route("compress", True)
        compression_route("uncompress", False)

    for level in ResourceLevel:
        make_routes(level)
