"""/patients, /studies, /series, /instances: listing, browsing the hierarchy,
labels, statistics, deletion, protection, shared tags and modules.

Listings, single resources and the child routes all go through the finder
(orthancd.find.finder), as Orthanc 1.13.0 serves them through its
ResourceFinder: same order (by public ID), same fields, same RequestedTags.
"""
from orthancd.dicom.modules import module_to_json, shared_tags_to_json
from orthancd.errors import ErrorCode, OrthancError
from orthancd.find import finder
from orthancd.find.requested_tags import check_requested
from orthancd.find.tags import parse_tag
from orthancd.ids import ResourceLevel
from orthancd.index.base import UnknownResource
from orthancd.lazy_modules import LazyModule
from orthancd.rest import fields
from orthancd.rest.find import parse_level
from orthancd.rest.http import (bool_argument, dicom_format, get_argument, has_argument,
                                json_body, json_body_bytes, no_answer, paging_arguments,
                                read_body, render_json, render_json_body, render_text,
                                requested_tags_argument, text_body)
from orthancd.rest.resource_json import (EXPAND, expand, parse_response_content,
                                        resource_to_json)
from orthancd.rest.snapshot_cache import SnapshotCache

# Data sets to JSON (pydicom): imported by the first use (orthancd.lazy_modules).
json_tags = LazyModule("orthancd.dicom.json_tags")

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


def unknown_resource(failure, request):
    """Orthanc answers nothing (an empty 404) for a resource it does not know."""
    failure.trap(UnknownResource)
    raise no_answer(request)


def resource_level(index, public_id):
    """The level of a resource, None when there is none with that ID."""
    for level in LEVELS:
        if index.exists(public_id, level):
            return level
    return None


def resources_at_level(index, public_id, level):
    """The resources of ``level`` above or below a resource (bulk-content)."""
    found = resource_level(index, public_id)
    if found is None:
        return []
    if found <= level:
        return index.get_descendants(public_id, found, level)
    try:
        return [ancestor_of(index, public_id, found, level)]
    except UnknownResource:
        return []  # deleted meanwhile


def ancestor_of(index, public_id, level, target):
    for _ in range(int(level) - int(target)):
        public_id = index.get_resource(public_id, level).parent
        level = level.parent
    return public_id


def descendants(server, public_id, level, target):
    """Public IDs at ``target`` level at or below a resource, by ID."""
    return server.index.get_descendants(public_id, level, target)


def ancestor(server, public_id, level, target):
    return ancestor_of(server.index, public_id, level, target)


def boolean_body_field(request, name):
    """An optional Boolean field of an optional JSON body (reconstruct)."""
    body = json_body(request, required=False) if read_body(request).strip() else {}
    if not isinstance(body, dict) or name not in body:
        return False
    if not isinstance(body[name], bool):
        raise OrthancError(ErrorCode.BadFileFormat, "The field %s must contain a Boolean" % name)
    return body[name]


def reconstruct_files_field(request):
    """ReconstructFiles re-stores the files as StorageCompression says
    (Orthanc also passes them through IngestTranscoding, which orthancd
    does not have)."""
    return boolean_body_field(request, "ReconstructFiles")


def response_content(request):
    """``?response-content=`` or ``?expand``: the fields of each resource
    listed (None: only their IDs)."""
    if has_argument(request, "response-content"):
        names = [n for n in get_argument(request, "response-content", "").split(";") if n]
        return parse_response_content(names)
    if has_argument(request, "expand") and bool_argument(request, "expand", True):
        return EXPAND
    return None


def list_paging(request):
    """``since`` and ``limit`` of a listing (uint64 for Orthanc: negative
    values reach SQLite, which refuses them)."""
    since, limit = None, None
    if has_argument(request, "since") or has_argument(request, "limit"):
        for name in ("since", "limit"):
            value = get_argument(request, name, "")
            if value.strip().startswith("-") and value.strip()[1:].isdigit():
                raise OrthancError(ErrorCode.SQLiteCannotStep, http_status=500)
        since, limit = paging_arguments(request)
    return since, limit


async def render_found(server, request, level, ids, content, requested, fmt, single=False):
    if content is None:
        return render_json(request, ids)
    answer = [await expand(server, level, i, fmt, content, requested) for i in ids]
    return render_json(request, answer[0] if single else answer)


def install(app, server):
    index = server.index
    # The listings and resources browsers ask for again and again.
    answers = SnapshotCache(index.snapshot)

    def make_level_routes(level):
        plural = level.plural

        @app.route("/%s" % plural, methods=["GET"], endpoint="list_" + plural)
        def list_resources(request):
            requested = requested_tags_argument(request)
            check_requested(level, requested)
            content = response_content(request)
            since, limit = list_paging(request)
            if content is None:  # at once, without a Deferred
                def render_ids():
                    return json_body_bytes(finder.select(
                        server, finder.FindQuery(level, since=since, limit=limit or None)))
                return render_json_body(request, answers.answer((level, since, limit),
                                                                render_ids))
            ids = finder.select(server, finder.FindQuery(level, since=since, limit=limit or None))
            return render_found(server, request, level, ids, content, requested,
                                dicom_format(request))

        @app.route("/%s/<public_id>" % plural, methods=["GET"], endpoint="get_" + plural)
        def get_resource(request, public_id):
            requested = requested_tags_argument(request)
            check_requested(level, requested)
            fmt = dicom_format(request)
            if not requested:  # at once, without a Deferred
                def render_resource():
                    if not index.exists(public_id, level):
                        raise no_answer(request)  # Orthanc answers nothing: an empty 404
                    return json_body_bytes(resource_to_json(server, level, public_id, fmt,
                                                            EXPAND, server.metadata_names))
                # IsStable is not in the index: in the key.
                key = (level, public_id, fmt, server.stability.is_stable(level, public_id))
                return render_json_body(request, answers.answer(key, render_resource))
            if not index.exists(public_id, level):
                raise no_answer(request)
            return render_found(server, request, level, [public_id], EXPAND, requested, fmt,
                                single=True)

        @app.route("/%s/<public_id>" % plural, methods=["DELETE"], endpoint="delete_" + plural)
        def delete_resource(request, public_id):
            # No existence check first: the delete finds out (one index
            # read less for every delete that finds something).
            deleted = server.delete_resource(public_id, level)
            deleted.addCallbacks(
                lambda outcome: render_json(request, remaining_ancestor_json(outcome)),
                lambda failure: unknown_resource(failure, request))
            return deleted

        @app.route("/%s/<public_id>/statistics" % plural, methods=["GET"],
                   endpoint="statistics_" + plural)
        def resource_statistics(request, public_id):
            try:
                stats = index.resource_statistics(public_id, level)
            except UnknownResource:
                # Orthanc 1.13.0 counts nothing rather than failing.
                stats = ({lv: 0 for lv in LEVELS}, 0, 0, 0, 0)
            return render_json(request, statistics_json(level, *stats))

        @app.route("/%s/<public_id>/module" % plural, methods=["GET"], endpoint="module_" + plural)
        async def module(request, public_id):
            instance = descendants(server, public_id, level, ResourceLevel.INSTANCE)[0]
            mode, ignored = tags_format(request), ignored_length_tags(request)
            dataset = await server.read_dataset(instance)
            return render_json(request, module_to_json(dataset, level, mode,
                                                       server.default_encoding, ignored))

        @app.route("/%s/<public_id>/labels" % plural, methods=["GET"], endpoint="labels_" + plural)
        def list_labels(request, public_id):
            return render_json(request, index.get_labels(public_id, level))

        @app.route("/%s/<public_id>/labels/<label>" % plural, methods=["GET"],
                   endpoint="label_get_" + plural)
        def get_label(request, public_id, label):
            if label not in index.get_labels(public_id, level):
                raise no_answer(request)
            return render_text(request, "")

        @app.route("/%s/<public_id>/labels/<label>" % plural, methods=["PUT"],
                   endpoint="label_put_" + plural)
        async def add_label(request, public_id, label):
            await server.add_label(public_id, level, label)
            return render_text(request, "")

        @app.route("/%s/<public_id>/labels/<label>" % plural, methods=["DELETE"],
                   endpoint="label_delete_" + plural)
        async def remove_label(request, public_id, label):
            await server.remove_label(public_id, level, label)
            return render_text(request, "")

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

    def make_child_route(level, child):
        @app.route("/%s/<public_id>/%s" % (level.plural, child.plural), methods=["GET"],
                   endpoint="%s_%s" % (level.plural, child.plural))
        async def children(request, public_id):
            # The one "expand" whose default is true (as Orthanc 1.13.0).
            expanded = bool_argument(request, "expand", True)
            requested = requested_tags_argument(request)
            check_requested(child, requested)
            query = finder.FindQuery(child, scope=(level, public_id))
            outcome = await finder.find(server, query)
            if not outcome.ids:
                # No children means no parent, in Orthanc's data model.
                raise OrthancError(ErrorCode.UnknownResource)
            return await render_found(server, request, child, outcome.ids,
                                      EXPAND if expanded else None, requested,
                                      dicom_format(request))

    def make_parent_route(level, parent):
        name = parent.title.lower()

        @app.route("/%s/<public_id>/%s" % (level.plural, name), methods=["GET"],
                   endpoint="%s_%s" % (level.plural, name))
        async def parent_resource(request, public_id):
            requested_tags_argument(request)  # checked, but unused by Orthanc 1.13.0
            parent_id = ancestor(server, public_id, level, parent)
            answer = await expand(server, parent, parent_id, dicom_format(request), EXPAND)
            return render_json(request, answer)

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
        try:
            resource = index.get_resource(public_id, ResourceLevel.PATIENT)
        except UnknownResource:
            raise OrthancError(ErrorCode.ParameterOutOfRange)
        return render_text(request, "1" if resource.protected else "0")

    @app.route("/patients/<public_id>/protected", methods=["PUT"])
    async def set_protected(request, public_id):
        value = text_body(request).strip().lower()
        if value not in ("0", "1", "false", "true"):
            raise OrthancError(ErrorCode.BadFileFormat, "Boolean value expected")
        index.get_resource(public_id, ResourceLevel.PATIENT)
        await index.set_protected(public_id, value in ("1", "true"))
        return render_text(request, "")

    @app.route("/tools/labels", methods=["GET"])
    def all_labels(request):
        return render_json(request, index.all_labels())

    def make_reconstruct_route(level):
        @app.route("/%s/<public_id>/reconstruct" % level.plural, methods=["POST"],
                   endpoint="reconstruct_" + level.plural)
        async def reconstruct(request, public_id):
            files = reconstruct_files_field(request)
            only = boolean_body_field(request, "LimitToThisLevelMainDicomTags")
            await server.reconstruct(public_id, level, only, files)
            return render_text(request, "")

    for level in LEVELS:
        make_reconstruct_route(level)

    @app.route("/tools/reconstruct", methods=["POST"])
    async def reconstruct_all(request):
        await server.reconstruct_all(reconstruct_files_field(request))
        return render_text(request, "")

    def make_instances_tags_route(level):
        @app.route("/%s/<public_id>/instances-tags" % level.plural, methods=["GET"],
                   endpoint="instances_tags_" + level.plural)
        async def instances_tags(request, public_id):
            """The /tags of every instance below, by instance ID."""
            mode, ignored = tags_format(request), ignored_length_tags(request)
            encoding = server.default_encoding
            tags = {}
            for instance in descendants(server, public_id, level, ResourceLevel.INSTANCE):
                tags[instance] = await server.render_dataset(
                    instance, lambda ds: json_tags.dataset_to_json(ds, mode, encoding,
                                                         ignore_length=ignored), True)
            return render_json(request, tags)

    for level in LEVELS[:3]:
        make_instances_tags_route(level)

    @app.route("/tools/bulk-content", methods=["POST"])
    async def bulk_content(request):
        body = json_body(request)
        fmt = "human"
        for key, name in (("Simplify", "human"), ("Short", "short"), ("Full", "full")):
            if key in body and fields.read_boolean(body, key):
                fmt = name
                break
        content = EXPAND | {"Metadata"} if fields.read_boolean(body, "Metadata", True) else EXPAND
        if "Level" in body:
            level = parse_level(fields.read_string(body, "Level"))
            interest = set()
            for public_id in set(fields.read_list_of_strings(body, "Resources")):
                interest.update(resources_at_level(index, public_id, level))
            ids = [(level, i) for i in sorted(interest)]
        else:
            ids = []
            for public_id in fields.read_list_of_strings(body, "Resources"):
                found = resource_level(index, public_id)
                if found is not None:
                    ids.append((found, public_id))
        answer = []
        for level, public_id in ids:
            if index.exists(public_id, level):
                answer.append(await expand(server, level, public_id, fmt, content))
        return render_json(request, answer)
