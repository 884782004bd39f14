"""Typed fields of JSON objects read with the errors of Orthanc's
SerializationToolbox (used by the REST layer and by the configuration of
modalities alike)."""
from orthancd.errors import ErrorCode, OrthancError

_WORDS = {bool: "Boolean", int: "Integer", str: "String"}


def read_field(body, key, kind, default=None):
    """``body[key]`` checked to be a ``kind`` (bool, int or str), or
    ``default`` when ``body`` is not an object or lacks the key."""
    if not isinstance(body, dict) or key not in body:
        return default
    value = body[key]
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise OrthancError(ErrorCode.BadFileFormat,
                           "%s value expected in field: %s" % (_WORDS[kind], key))
    return value
