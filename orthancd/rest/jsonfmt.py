"""JSON rendered byte-for-byte the way Orthanc's JsonCpp writer renders it.

Clients only need valid JSON, but diffing orthancd's answers against Orthanc's
is how compatibility is checked, so the layout matches too: keys sorted, three
spaces of indentation (a tab for error bodies), ``"key" : value``, every
non-empty container on lines of its own, non-ASCII escaped as \\u sequences.
"""
import json

def _encode_string(text):
    # JsonCpp escapes what Python's ASCII encoder does, except DEL (0x7F).
    if "\x7f" not in text:
        return json.encoder.encode_basestring_ascii(text)
    parts = (json.encoder.encode_basestring_ascii(part)[1:-1] for part in text.split("\x7f"))
    return '"' + "\x7f".join(parts) + '"'


def _scalar(value, float_repr=None):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if float_repr is not None:
            return float_repr(value)
        if value == int(value) and abs(value) < 1e16:
            return "%.1f" % value
        return repr(value)
    raise TypeError("Cannot render %r as JSON" % (value,))


def _write(value, out, indent, unit, float_repr=None):
    """Append a non-empty container opened at ``indent`` (the opener itself is
    already placed by the caller)."""
    inner = indent + unit
    if isinstance(value, dict):
        out.append("{")
        separator = "\n"
        for key in sorted(value):
            item = value[key]
            out.append(separator)
            out.append(inner)
            out.append(_encode_string(key))
            separator = ",\n"
            if isinstance(item, str):
                out.append(" : ")
                out.append(_encode_string(item))
            elif isinstance(item, (dict, list, tuple)):
                if item:
                    # JsonCpp opens a non-empty container on its own line.
                    out.append(" : \n")
                    out.append(inner)
                    _write(item, out, inner, unit, float_repr)
                else:
                    out.append(" : {}" if isinstance(item, dict) else " : []")
            else:
                out.append(" : ")
                out.append(_scalar(item, float_repr))
        out.append("\n")
        out.append(indent)
        out.append("}")
    else:
        out.append("[")
        separator = "\n"
        for item in value:
            out.append(separator)
            out.append(inner)
            separator = ",\n"
            if isinstance(item, str):
                out.append(_encode_string(item))
            elif isinstance(item, (dict, list, tuple)):
                if item:
                    _write(item, out, inner, unit, float_repr)
                else:
                    out.append("{}" if isinstance(item, dict) else "[]")
            else:
                out.append(_scalar(item, float_repr))
        out.append("\n")
        out.append(indent)
        out.append("]")


def dumps(value, indent="   ", float_repr=None):
    """Orthanc's styled JSON (3-space indent, as in every successful answer).
    ``float_repr`` formats floats where an answer needs JsonCpp's own way."""
    if isinstance(value, str):
        return _encode_string(value)
    if isinstance(value, (dict, list, tuple)):
        if not value:
            return "{}" if isinstance(value, dict) else "[]"
        out = []
        _write(value, out, "", indent, float_repr)
        return "".join(out)
    return _scalar(value, float_repr)


def dumps_error(value):
    """Orthanc renders error bodies with tabs and a final newline."""
    return dumps(value, "\t") + "\n"
