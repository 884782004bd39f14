"""/{level}/{id}/metadata: core metadata (read-only) and user metadata,
with their revisions (orthancd.rest.revisions)."""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import USER_METADATA_START
from orthancd.index.numbered_names import STORED_TYPES
from orthancd.rest.http import (EmptyAnswer, bool_argument, has_argument, no_answer,
                                render_json, render_text, text_body)
from orthancd.rest.revisions import (answer_etag, expected_for_delete, expected_for_write,
                                     md5_of, set_etag)

_LAST_USER_METADATA = 65535


def _is_user_metadata(number):
    return USER_METADATA_START <= number <= _LAST_USER_METADATA


def install(app, server):
    names = server.metadata_names
    index = server.index
    check_revisions = bool(server.configuration.get("CheckRevisions", False))

    def make_routes(level):
        plural = level.plural

        @app.route("/%s/<public_id>/metadata" % plural, methods=["GET"],
                   endpoint="metadata_list_" + plural)
        def list_metadata(request, public_id):
            metadata = index.get_metadata(public_id, level)
            key = str if has_argument(request, "numeric") else names.name
            if has_argument(request, "expand") and bool_argument(request, "expand", True):
                return render_json(request, {key(k): v for k, v in metadata.items()})
            if has_argument(request, "numeric"):
                return render_json(request, list(metadata))
            return render_json(request, [names.name(k) for k in metadata])

        @app.route("/%s/<public_id>/metadata/<name>" % plural, methods=["GET"],
                   endpoint="metadata_get_" + plural)
        def get_metadata(request, public_id, name):
            number = names.number(name)
            if number in STORED_TYPES:
                found = index.metadata_with_revision(public_id, level, number)
            else:
                index.get_resource(public_id, level)  # an unknown resource is an error
                found = None  # a number the index cannot hold: never set
            if found is None:
                raise no_answer(request)
            value, revision = found
            answer_etag(request, revision, md5_of(value))
            return render_text(request, value)

        @app.route("/%s/<public_id>/metadata/<name>" % plural, methods=["PUT"],
                   endpoint="metadata_put_" + plural)
        async def put_metadata(request, public_id, name):
            number = names.number(name)
            value = text_body(request)
            if not _is_user_metadata(number):
                # Orthanc forbids writing the metadata it maintains itself.
                raise EmptyAnswer(403)
            expected = expected_for_write(request, check_revisions)
            revision = await index.set_metadata(public_id, level, number, value, expected)
            set_etag(request, revision, md5_of(value))
            return render_text(request, "")

        @app.route("/%s/<public_id>/metadata/<name>" % plural, methods=["DELETE"],
                   endpoint="metadata_delete_" + plural)
        async def delete_metadata(request, public_id, name):
            number = names.number(name)
            if not _is_user_metadata(number):
                raise EmptyAnswer(403)
            expected = expected_for_delete(request, check_revisions)
            index.get_resource(public_id, level)
            try:
                await index.delete_metadata(public_id, level, number, expected)
            except KeyError:
                raise OrthancError(ErrorCode.UnknownResource)
            return render_text(request, "")

    for level in ResourceLevel:
        make_routes(level)
