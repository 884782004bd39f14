"""JSON answers as XML, byte for byte the way Orthanc writes them.

Orthanc answers in XML when the client's Accept header holds
``application/xml`` (as one of its ";"-separated tokens, compared exactly):
it turns the JSON value into a pugixml document (root element ``root``,
list items ``item``, object members named after their keys, even when a key
is no valid XML name) and prints it with two spaces of indentation.
"""
import struct

DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'
XML_MIME = b"application/xml"

_INDENT = "  "


def wants_xml(accept_header):
    """Orthanc's test on the Accept header (bytes or None)."""
    if not accept_header:
        return False
    return XML_MIME in accept_header.split(b";")


def _escape(text):
    # pugixml's escaping of character data: markup characters, and the
    # control characters other than tab, LF and CR as two-digit references.
    out = []
    for char in text:
        if char == "&":
            out.append("&amp;")
        elif char == "<":
            out.append("&lt;")
        elif char == ">":
            out.append("&gt;")
        elif char < " " and char not in "\t\n\r":
            out.append("&#%d%d;" % divmod(ord(char), 10))
        else:
            out.append(char)
    return "".join(out)


def _text(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        # Orthanc prints reals through a single-precision float.
        return "%.9g" % struct.unpack("f", struct.pack("f", value))[0]
    if isinstance(value, int):
        return str(value)
    # A C string: anything after a NUL character is lost.
    return value.partition("\x00")[0]


def _element(name, value, depth, out):
    pad = _INDENT * depth
    if isinstance(value, dict):
        children = [(key, value[key]) for key in sorted(value)]
    elif isinstance(value, (list, tuple)):
        children = [("item", item) for item in value]
    else:
        text = _text(value)
        if text:
            out.append("%s<%s>%s</%s>\n" % (pad, name, _escape(text), name))
        else:
            out.append("%s<%s />\n" % (pad, name))
        return
    if not children:
        out.append("%s<%s />\n" % (pad, name))
        return
    out.append("%s<%s>\n" % (pad, name))
    for child_name, child in children:
        _element(child_name.partition("\x00")[0], child, depth + 1, out)
    out.append("%s</%s>\n" % (pad, name))


def dumps(value):
    """The XML document Orthanc sends for the JSON ``value`` (as bytes)."""
    out = [DECLARATION]
    _element("root", value, 0, out)
    return "".join(out).encode("utf-8", "replace")
