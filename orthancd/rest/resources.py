"""/patients, /studies, /series, /instances: listing, browsing the hierarchy,
statistics, deletion, protection, shared tags and modules."""
from orthancd.dicom.json_tags import dataset_to_json
from orthancd.dicom.modules import module_to_json, shared_tags_to_json
from orthancd.errors import ErrorCode, OrthancError
from orthancd.find.tags import parse_tag
from orthancd.ids import ResourceLevel
from orthancd.rest.http import (bool_argument, get_argument, has_argument, paging_arguments,
                                render_json, render_text, text_body)
from orthancd.rest.resource_json import resource_to_json

LEVELS = list(ResourceLevel)


def tags_format(request):
    """Orthanc's ``?simplify`` / ``?short`` switches for tag renderings: only
    their presence counts (``?simplify=false`` still simplifies)."""
    if has_argument(request, "simplify"):
        return "simplify"
    if has_argument(request, "short"):
        return "short"
    return "full"


def ignored_length_tags(request):
    """Orthanc's ``?ignore-length=`` on tag renderings: comma-separated tags
    (``00181020``, ``0018-1020`` or a name) whose long values are shown in
    full instead of as TooLong/null."""
    if not has_argument(request, "ignore-length"):
        return frozenset()
    return frozenset(parse_tag_or_fail(token)
                     for token in get_argument(request, "ignore-length", "").split(","))


def parse_tag_or_fail(text):
    """A tag as Orthanc parses it in a URI, or its 'Unknown DICOM tag' error
    naming the text."""
    try:
        return parse_tag(text)
    except OrthancError:
        raise OrthancError(ErrorCode.UnknownDicomTag, text, http_status=500)


def size_mb(size):
    return size // (1024 * 1024)


def statistics_json(level, counts, disk, uncompressed, dicom_disk, dicom_uncompressed):
    out = {
        "DiskSize": str(disk),
        "DiskSizeMB": size_mb(disk),
        "UncompressedSize": str(uncompressed),
        "UncompressedSizeMB": size_mb(uncompressed),
        "DicomDiskSize": str(dicom_disk),
        "DicomDiskSizeMB": size_mb(dicom_disk),
        "DicomUncompressedSize": str(dicom_uncompressed),
        "DicomUncompressedSizeMB": size_mb(dicom_uncompressed),
    }
    for below in LEVELS[int(level) + 1:]:
        out["Count" + {"Study": "Studies", "Series": "Series", "Instance": "Instances"}[below.title]] = counts[below]
    return out


def remaining_ancestor_json(outcome):
    ancestor = outcome.remaining_ancestor
    if ancestor is None:
        return {"RemainingAncestor": None}
    return {"RemainingAncestor": {
        "ID": ancestor.public_id,
        "Path": "/%s/%s" % (ancestor.level.plural, ancestor.public_id),
        "Type": ancestor.level.title,
    }}


def descendants(server, public_id, level, target):
    """Public IDs at ``target`` level below a resource, in Orthanc's order: a
    depth-first walk with a stack (so intermediate levels come out reversed),
    the children at the target level appended in their own order."""
    if level is target:
        return [public_id]
    found, stack = [], [(public_id, level)]
    while stack:
        resource_id, lv = stack.pop()
        children = server.index.get_children(resource_id, lv)
        if lv.child is target:
            found.extend(children)
        else:
            stack.extend((child, lv.child) for child in children)
    return found


def ancestor(server, public_id, level, target):
    for _ in range(int(level) - int(target)):
        public_id = server.index.get_resource(public_id, level).parent
        level = level.parent
    return public_id


def install(app, server):
    index = server.index

    def make_level_routes(level):
        plural = level.plural

        @app.route("/%s" % plural, methods=["GET"], endpoint="list_" + plural)
        def list_resources(request):
            since, limit = paging_arguments(request)
            # An explicit limit of 0 lists nothing, as in Orthanc.
            ids = [] if limit == 0 and has_argument(request, "limit") else \
                index.list_resources(level, since, limit)
            if bool_argument(request, "expand"):
                return render_json(request, [resource_to_json(server, level, i) for i in ids])
            return render_json(request, ids)

        @app.route("/%s/<public_id>" % plural, methods=["GET"], endpoint="get_" + plural)
        def get_resource(request, public_id):
            return render_json(request, resource_to_json(server, level, public_id))

        @app.route("/%s/<public_id>" % plural, methods=["DELETE"], endpoint="delete_" + plural)
        async def delete_resource(request, public_id):
            index.get_resource(public_id, level)
            outcome = await server.delete_resource(public_id, level)
            return render_json(request, remaining_ancestor_json(outcome))

        @app.route("/%s/<public_id>/statistics" % plural, methods=["GET"],
                   endpoint="statistics_" + plural)
        def resource_statistics(request, public_id):
            stats = index.resource_statistics(public_id, level)
            return render_json(request, statistics_json(level, *stats))

        @app.route("/%s/<public_id>/module" % plural, methods=["GET"], endpoint="module_" + plural)
        async def module(request, public_id):
            instance = descendants(server, public_id, level, ResourceLevel.INSTANCE)[0]
            mode, ignored = tags_format(request), ignored_length_tags(request)
            dataset = await server.read_dataset(instance)
            return render_json(request, module_to_json(dataset, level, mode,
                                                       server.default_encoding, ignored))

        for child in LEVELS[int(level) + 1:]:
            make_child_route(level, child)
        for parent in LEVELS[:int(level)]:
            make_parent_route(level, parent)
        if level is not ResourceLevel.INSTANCE:
            @app.route("/%s/<public_id>/shared-tags" % plural, methods=["GET"],
                       endpoint="shared_tags_" + plural)
            async def shared_tags(request, public_id):
                datasets = []
                for instance in descendants(server, public_id, level, ResourceLevel.INSTANCE):
                    datasets.append(await server.read_dataset(instance))
                return render_json(request, shared_tags_to_json(datasets, tags_format(request),
                                                                 server.default_encoding))

            @app.route("/%s/<public_id>/instances-tags" % plural, methods=["GET"],
                       endpoint="instances_tags_" + plural)
            async def instances_tags(request, public_id):
                """The /tags of every instance below, by instance ID."""
                mode, ignored = tags_format(request), ignored_length_tags(request)
                encoding = server.default_encoding
                tags = {}
                for instance in descendants(server, public_id, level, ResourceLevel.INSTANCE):
                    tags[instance] = await server.render_dataset(
                        instance, lambda ds: dataset_to_json(ds, mode, encoding,
                                                             ignore_length=ignored), True)
                return render_json(request, tags)

    def make_child_route(level, child):
        @app.route("/%s/<public_id>/%s" % (level.plural, child.plural), methods=["GET"],
                   endpoint="%s_%s" % (level.plural, child.plural))
        def children(request, public_id):
            index.get_resource(public_id, level)
            ids = descendants(server, public_id, level, child)
            # Always expanded, whatever ?expand says (as Orthanc 1.10.1).
            return render_json(request, [resource_to_json(server, child, i) for i in ids])

    def make_parent_route(level, parent):
        name = parent.title.lower()
        @app.route("/%s/<public_id>/%s" % (level.plural, name), methods=["GET"],
                   endpoint="%s_%s" % (level.plural, name))
        def parent_resource(request, public_id):
            parent_id = ancestor(server, public_id, level, parent)
            return render_json(request, resource_to_json(server, parent, parent_id))

    for level in LEVELS:
        make_level_routes(level)

    @app.route("/studies/<public_id>/module-patient", methods=["GET"])
    async def study_patient_module(request, public_id):
        instance = descendants(server, public_id, ResourceLevel.STUDY, ResourceLevel.INSTANCE)[0]
        mode, ignored = tags_format(request), ignored_length_tags(request)
        dataset = await server.read_dataset(instance)
        return render_json(request, module_to_json(dataset, ResourceLevel.PATIENT, mode,
                                                   server.default_encoding, ignored))

    @app.route("/patients/<public_id>/protected", methods=["GET"])
    def get_protected(request, public_id):
        resource = index.get_resource(public_id, ResourceLevel.PATIENT)
        return render_text(request, "1" if resource.protected else "0")

    @app.route("/patients/<public_id>/protected", methods=["PUT"])
    async def set_protected(request, public_id):
        value = text_body(request).strip().lower()
        if value not in ("0", "1", "false", "true"):
            raise OrthancError(ErrorCode.BadFileFormat, "Boolean value expected")
        index.get_resource(public_id, ResourceLevel.PATIENT)
        await index.set_protected(public_id, value in ("1", "true"))
        return render_text(request, "")
