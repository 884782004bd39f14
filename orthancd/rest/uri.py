"""Request paths as Orthanc sees them.

Orthanc's web server (CivetWeb) decodes the path (``%XX`` and ``+``), then
normalises it: backslashes become slashes, "." and ".." segments are
resolved, runs of slashes collapse and dots ending a segment are dropped.
That normalised path is the "Uri" of Orthanc's error bodies; routing then
splits it on "/" and ignores empty components, so "/patients/" and
"/patients" are the same resource.
"""
import re

_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")


def url_decode(raw):
    """CivetWeb's mg_url_decode of a path: ``%XX`` escapes and ``+`` as space."""
    decoded = _PERCENT.sub(lambda m: bytes((int(m.group(1), 16),)), raw.replace(b"+", b" "))
    # Orthanc handles the path as a C string.
    return decoded.partition(b"\x00")[0]


def remove_dot_segments(path):
    """CivetWeb's remove_dot_segments (RFC 3986, 5.2.4, plus its own
    clean-ups), on bytes."""
    source = path.replace(b"\\", b"/")
    output = b""
    while source:
        if source.startswith(b"../"):
            source = source[3:]
        elif source.startswith(b"./"):
            source = source[2:]
        elif source.startswith(b"/./"):
            source = source[2:]
        elif source == b"/.":
            source = b"/"
        elif source.startswith(b"/../") or source == b"/..":
            source = source[3:] or b"/"
            output = output[:max(output.rfind(b"/"), 0)]  # the last segment goes
        elif source in (b".", b".."):
            source = b""
        else:
            end = source.find(b"/", 1)
            end = len(source) if end < 0 else end
            output += source[:end]
            source = source[end:]
    # Dots ending a segment are dropped ("x." is "x" on Windows) and runs of
    # slashes collapse.
    output = re.sub(rb"\.+(?=/)", b"", output)
    output = re.sub(rb"\.+$", b"", output)
    return re.sub(rb"/{2,}", b"/", output)


# What makes a path need decoding or normalising (most need neither).
_SPECIAL = re.compile(rb"[%+\\]|//|/\.|\./|\.$")


def normalized_path(raw_path):
    """The path of a request (bytes, without the query string) as Orthanc
    reports it, as text."""
    if _SPECIAL.search(raw_path):
        raw_path = remove_dot_segments(url_decode(raw_path))
    return raw_path.decode("utf-8", "replace")


def route_path(uri):
    """The path the routes are matched against: no empty component."""
    if uri.endswith("/") or "//" in uri:
        return "/" + "/".join(part for part in uri.split("/") if part)
    return uri
