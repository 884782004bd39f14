"""/changes and /exports: the two logs clients poll."""
from orthancd.rest.http import get_argument, has_argument, render_json, render_text

_DEFAULT_LIMIT = 100
_MAX_LIMIT = 10000


def page_arguments(request):
    """``since`` and ``limit`` as Orthanc reads them for the logs: either
    unreadable means the first page, and a negative limit wraps around as an
    unsigned number (so it reads as "as many as allowed")."""
    try:
        since = int(get_argument(request, "since", "0"))
        limit = int(get_argument(request, "limit", str(_DEFAULT_LIMIT)))
    except ValueError:
        return 0, _DEFAULT_LIMIT
    if limit < 0:
        limit %= 1 << 32
    return max(since, 0), min(limit, _MAX_LIMIT)


def install(app, server):
    index = server.index

    @app.route("/changes", methods=["GET"])
    def get_changes(request):
        if has_argument(request, "last"):
            change = index.get_last_change()
            changes = [change] if change else []
            return render_json(request, {
                "Changes": [c.to_json() for c in changes],
                "Done": True,
                "Last": change.seq if change else 0,
            })
        since, limit = page_arguments(request)
        if limit == 0:
            # Orthanc's answer to limit=0: no change, and where the log ends.
            newest = index.get_last_change()
            last = newest.seq if newest else 0
            return render_json(request, {"Changes": [], "Done": last <= since, "Last": last})
        changes, done, last = index.get_changes(since, limit)
        return render_json(request, {"Changes": [c.to_json() for c in changes],
                                     "Done": done, "Last": last})

    @app.route("/changes", methods=["DELETE"])
    async def clear_changes(request):
        await index.clear_changes()
        return render_text(request, "")

    @app.route("/exports", methods=["GET"])
    def get_exports(request):
        if has_argument(request, "last"):
            export = index.get_last_export()
            exports = [export] if export else []
            return render_json(request, {"Exports": exports, "Done": True,
                                         "Last": export["Seq"] if export else 0})
        since, limit = page_arguments(request)
        exports, done, last = index.get_exports(since, limit)
        return render_json(request, {"Exports": exports, "Done": done, "Last": last})

    @app.route("/exports", methods=["DELETE"])
    async def clear_exports(request):
        await index.clear_exports()
        return render_text(request, "")
