"""/changes and /exports: the two logs clients poll.

/changes follows Orthanc 1.13.0 (extended changes): ``since``, ``limit``,
``to`` and ``type`` (one or several change types joined by ';'), and the
answer's ``First`` and ``Last``.
"""
from orthancd.errors import ErrorCode, OrthancError
from orthancd.index.base import ChangeType
from orthancd.rest.http import get_argument, has_argument, render_json, render_text

DEFAULT_LIMIT = 100
MAX_LIMIT = 10000


def _lexical(text, bits, signed):
    """boost::lexical_cast to an integer type: None when it fails; as for
    boost, a negative number cast to an unsigned type wraps around."""
    text = (text or "").strip()
    body = text[1:] if text[:1] in "+-" else text
    if not body.isdigit() or not body.isascii():
        return None
    value = int(text)
    span = 1 << bits
    if signed:
        return value if -(span >> 1) <= value < (span >> 1) else None
    if -span < value < span:
        return value % span
    return None


def change_arguments(request):
    """(since, to, limit) as Orthanc 1.13.0 reads them: int64, int64 (-1:
    none) and uint32; a value it cannot read makes it fall back to its
    defaults for all three."""
    since = _lexical(get_argument(request, "since", "0"), 64, True)
    to = _lexical(get_argument(request, "to", "-1"), 64, True)
    limit = _lexical(get_argument(request, "limit", str(DEFAULT_LIMIT)), 32, False)
    if since is None or to is None or limit is None:
        return 0, -1, DEFAULT_LIMIT
    return since, to, limit


def change_types(request):
    """``type=NewStudy;NewSeries``: the set of change type names, or None."""
    text = get_argument(request, "type", "all")
    if text in ("all", "All"):
        return None
    names = [name for name in text.split(";") if name]
    if not names:
        return None
    for name in names:
        if name not in ChangeType.__members__:
            raise OrthancError(ErrorCode.ParameterOutOfRange,
                               "Invalid value for a change: %s" % name)
    return set(names)


def install(app, server):
    index = server.index

    def changes_answer(changes, done, since):
        out = {"Changes": [c.to_json() for c in changes], "Done": done}
        if changes:
            out["First"] = changes[0].seq
            out["Last"] = changes[-1].seq
        else:
            out["Last"] = index.last_change_seq()
        return out

    @app.route("/changes", methods=["GET"])
    def get_changes(request):
        types = change_types(request)
        if has_argument(request, "last"):
            change = index.get_last_change()
            return render_json(request, changes_answer([change] if change else [], True, 0))
        since, to, limit = change_arguments(request)
        has_since, has_to = since > 0, to != -1
        # Orthanc asks SQLite for limit + 1 changes (to tell whether it is
        # done), computed as a 32-bit int: negative means no LIMIT at all.
        fetch = ((limit + (1 << 31)) % (1 << 32)) - (1 << 31) + 1
        count = None if fetch < 0 else fetch
        newest_first = has_to and not has_since
        changes = index.read_changes(since if has_since else 0, to if has_to else None,
                                     count, types, newest_first)
        done = len(changes) <= limit
        if not done:
            changes = changes[1:] if newest_first else changes[:-1]
        return render_json(request, changes_answer(changes, done, since))

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
        since, _, limit = change_arguments(request)
        exports, done, last = index.get_exports(max(since, 0), min(limit, MAX_LIMIT))
        out = {"Exports": exports, "Done": done, "Last": last}
        if exports:
            out["First"] = exports[0]["Seq"]  # as Orthanc's FormatLog
        return render_json(request, out)

    @app.route("/exports", methods=["DELETE"])
    async def clear_exports(request):
        await index.clear_exports()
        return render_text(request, "")
