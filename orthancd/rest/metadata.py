"""/{level}/{id}/metadata: core metadata (read-only) and user metadata."""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import USER_METADATA_START, MetadataType
from orthancd.rest.http import bool_argument, render_json, render_text, text_body


class MetadataNames:
    """Names <-> numbers, core ones plus the configuration's UserMetadata."""

    def __init__(self, configuration):
        self.by_name = {m.name: int(m) for m in MetadataType}
        for name, number in (configuration.get("UserMetadata") or {}).items():
            self.by_name[name] = int(number)
        self.by_number = {v: k for k, v in self.by_name.items()}

    def name(self, number):
        return self.by_number.get(number, str(number))

    def number(self, name):
        if name in self.by_name:
            return self.by_name[name]
        try:
            number = int(name)
        except ValueError:
            raise OrthancError(ErrorCode.ParameterOutOfRange, "Unknown metadata: %s" % name)
        return number


def install(app, server):
    names = MetadataNames(server.configuration)
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
                raise OrthancError(ErrorCode.ParameterOutOfRange,
                                   "Only user-defined metadata can be modified")
            await index.set_metadata(public_id, level, number, text_body(request))
            return render_text(request, "")

        @app.route("/%s/<public_id>/metadata/<name>" % plural, methods=["DELETE"],
                   endpoint="metadata_delete_" + plural)
        async def delete_metadata(request, public_id, name):
            number = names.number(name)
            if number < USER_METADATA_START:
                raise OrthancError(ErrorCode.ParameterOutOfRange,
                                   "Only user-defined metadata can be removed")
            index.get_resource(public_id, level)
            try:
                await index.delete_metadata(public_id, level, number)
            except KeyError:
                raise OrthancError(ErrorCode.InexistentItem)
            return render_text(request, "")

    for level in ResourceLevel:
        make_routes(level)
