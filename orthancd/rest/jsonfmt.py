"""JSON rendered byte-for-byte the way Orthanc's JsonCpp writer renders it.

Clients only need valid JSON, but diffing orthancd's answers against Orthanc's
is how compatibility is checked, so the layout matches too: keys sorted, three
spaces of indentation (a tab for error bodies), ``"key" : value``, every
non-empty array spread over lines, non-ASCII escaped as \\uXXXX.
"""
import json

_encode_string = json.encoder.encode_basestring_ascii


def _scalar(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _encode_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e16:
            return "%.1f" % value
        return repr(value)
    raise TypeError("Cannot render %r as JSON" % (value,))


def _write(value, out, indent, unit, inline=False):
    """Append ``value``; a container opens on a new line unless ``inline``
    (the top level, and containers that are themselves array items)."""
    if isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{" if inline or not out else "\n" + indent + "{")
        inner = indent + unit
        for n, key in enumerate(sorted(value)):
            out.append(("\n" if n == 0 else ",\n") + inner + _encode_string(str(key)) + " : ")
            _write(value[key], out, inner, unit)
        out.append("\n" + indent + "}")
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        out.append("[" if inline or not out else "\n" + indent + "[")
        inner = indent + unit
        for n, item in enumerate(value):
            out.append(("\n" if n == 0 else ",\n") + inner)
            _write(item, out, inner, unit, inline=True)
        out.append("\n" + indent + "]")
    else:
        out.append(_scalar(value))


def dumps(value, indent="   "):
    """Orthanc's styled JSON (3-space indent, as in every successful answer)."""
    out = []
    _write(value, out, "", indent)
    return "".join(out)


def dumps_error(value):
    """Orthanc renders error bodies with tabs and a final newline."""
    return dumps(value, "\t") + "\n"
