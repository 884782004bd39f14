"""Route matches remembered by the shape of their path.

Matching a path against werkzeug's URL map (binding an adapter, walking its
state machine) cost about a tenth of the CPU of a GET /studies/{id} served
from the snapshot cache.  Most paths of the REST API differ only by the
resource IDs in them: /studies/<id> is one route for every study.  Once a
path has been matched, the match of every later path of the same shape
(the same method, the same segments, IDs aside) is built from it without
werkzeug: same endpoint, the same constant arguments, and each argument
that was an ID taken from the same segment of the new path.

A segment counts as an ID when it has the form of an Orthanc resource ID
(five groups of eight lower-case hex digits) or of a UUID (jobs, attachments
in the storage): no route has such a segment as a literal, so the rule a
path matches cannot depend on which ID it holds.  A match is remembered
only when every ID segment is exactly one argument, and no other argument
contains an ID (a <path:...> argument spanning several segments, say).
"""
import re

_ID_SEGMENT = re.compile(
    r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}\Z"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_ID_LENGTHS = (44, 36)


class RouteCache:

    def __init__(self, max_shapes=1024):
        """Beyond ``max_shapes`` remembered shapes (paths without IDs are
        shapes of their own), the cache starts afresh."""
        self._templates = {}
        self._max_shapes = max_shapes

    def match(self, method, path, match):
        """(endpoint, arguments) of ``path``; ``match()`` gives them through
        werkzeug for a shape not seen yet (what it raises goes through, and
        nothing is remembered)."""
        segments = path.split("/")
        ids = [i for i, segment in enumerate(segments)
               if len(segment) in _ID_LENGTHS and _ID_SEGMENT.match(segment)]
        shape = (method, tuple(None if i in ids else segment
                               for i, segment in enumerate(segments)))
        template = self._templates.get(shape)
        if template is not None:
            endpoint, constants, taken = template
            arguments = dict(constants)
            for name, i in taken:
                arguments[name] = segments[i]
            return endpoint, arguments
        endpoint, arguments = match()
        template = _template(endpoint, arguments, segments, ids)
        if template is not None:
            if len(self._templates) >= self._max_shapes:
                self._templates.clear()
            self._templates[shape] = template
        return endpoint, arguments


def _template(endpoint, arguments, segments, ids):
    """(endpoint, constant arguments, (argument name, segment index) of each
    ID), or None when the match cannot be told from the shape alone."""
    values = [segments[i] for i in ids]
    if len(set(values)) != len(values):
        return None  # which segment an argument came from is ambiguous
    taken = []
    constants = {}
    for name, value in arguments.items():
        if isinstance(value, str) and value in values:
            taken.append((name, ids[values.index(value)]))
        elif isinstance(value, str) and any(v in value for v in values):
            return None  # an ID within a longer argument
        else:
            constants[name] = value
    if len(taken) != len(ids):
        return None  # an ID segment matched no argument of its own
    return endpoint, constants, tuple(taken)
