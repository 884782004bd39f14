"""/{level}/{id}/metadata: core metadata (read-only) and user metadata."""
from orthancd.errors import ErrorCode, NoAnswer, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import USER_METADATA_START, MetadataType
from orthancd.rest.http import bool_argument, render_json, render_text, text_body


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
            metadata = index.get_metadata(public_id, level)
            number = names.number(name)
            if number not in metadata:
                raise OrthancError(ErrorCode.InexistentItem)
            return render_text(request, metadata[number])

        @app.route("/%s/<public_id>/metadata/<name>" % plural, methods=["PUT"],
                   endpoint="metadata_put_" + plural)
        async def put_metadata(request, public_id, name):
            number = names.number(name)
            if number < USER_METADATA_START:
                # Orthanc forbids writing the metadata it maintains itself.
                raise NoAnswer(403)
            await index.set_metadata(public_id, level, number, text_body(request))
            return render_text(request, "")

        @app.route("/%s/<public_id>/metadata/<name>" % plural, methods=["DELETE"],
                   endpoint="metadata_delete_" + plural)
        async def delete_metadata(request, public_id, name):
            number = names.number(name)
            if number < USER_METADATA_START:
                raise NoAnswer(403)
            index.get_resource(public_id, level)
            try:
                await index.delete_metadata(public_id, level, number)
            except KeyError:
                raise OrthancError(ErrorCode.UnknownResource)
            return render_text(request, "")

    for level in ResourceLevel:
        make_routes(level)
