"""/{level}/{id}/metadata: core metadata (read-only) and user metadata."""
import hashlib

from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import USER_METADATA_START
from orthancd.rest.http import (EmptyAnswer, bool_argument, no_answer, render_json, render_text,
                                text_body)


_LAST_USER_METADATA = 65535


def _set_etag(request, value):
    # Orthanc's ETag: the revision of the metadata (always 0: orthancd keeps
    # none) and the MD5 of its value.
    request.setHeader(b"ETag", ('"0-%s"' % hashlib.md5(value.encode("utf-8")).hexdigest()).encode())


def install(app, server):
    names = server.metadata_names
    index = server.index

    def make_routes(level):
        plural = level.plural

        @app.route("/%s/<public_id>/metadata" % plural, methods=["GET"],
                   endpoint="metadata_list_" + plural)
        def list_metadata(request, public_id):
            metadata = index.get_metadata(public_id, level)
            if bool_argument(request, "expand"):
                return render_json(request, {names.name(k): v for k, v in metadata.items()})
            return render_json(request, [names.name(k) for k in metadata])

        @app.route("/%s/<public_id>/metadata/<name>" % plural, methods=["GET"],
                   endpoint="metadata_get_" + plural)
        def get_metadata(request, public_id, name):
            number = names.number(name)
            metadata = index.get_metadata(public_id, level)
            if number not in metadata:
                raise no_answer(request)
            _set_etag(request, metadata[number])
            return render_text(request, metadata[number])

        @app.route("/%s/<public_id>/metadata/<name>" % plural, methods=["PUT"],
                   endpoint="metadata_put_" + plural)
        async def put_metadata(request, public_id, name):
            number = names.number(name)
            if not USER_METADATA_START <= number <= _LAST_USER_METADATA:
                # Orthanc forbids writing the metadata it maintains itself.
                raise EmptyAnswer(403)
            value = text_body(request)
            await index.set_metadata(public_id, level, number, value)
            _set_etag(request, value)
            return render_text(request, "")

        @app.route("/%s/<public_id>/metadata/<name>" % plural, methods=["DELETE"],
                   endpoint="metadata_delete_" + plural)
        async def delete_metadata(request, public_id, name):
            number = names.number(name)
            if not USER_METADATA_START <= number <= _LAST_USER_METADATA:
                raise EmptyAnswer(403)
            index.get_resource(public_id, level)
            try:
                await index.delete_metadata(public_id, level, number)
            except KeyError:
                raise OrthancError(ErrorCode.UnknownResource)
            return render_text(request, "")

    for level in ResourceLevel:
        make_routes(level)
