"""HTML form uploads (multipart/form-data), split as Orthanc 1.13.0 splits them.

Orthanc hands each part, with the part's own headers, to the POST handler of
the URI, in order, as soon as the part is complete; what follows an
incomplete part (no closing boundary, a part Content-Length that runs past
the body) is silently ignored, and some malformations are protocol errors.
The parser below reproduces those rules over a whole body held in a buffer
(bytes, or the mapping of a spooled body), yielding positions, not copies.
"""
from orthancd.errors import ErrorCode, OrthancError

_END_OF_HEADERS = b"\r\n\r\n"


def form_data_boundary(content_type):
    """The boundary of a ``multipart/form-data`` Content-Type, else None
    (then Orthanc treats the body as a plain upload)."""
    if not content_type:
        return None
    tokens = content_type.split(";")
    if tokens[0].strip().lower() != "multipart/form-data":
        return None
    boundary = None
    for token in tokens:
        items = token.split("=")
        if len(items) == 2 and items[0].strip().lower() == "boundary":
            boundary = items[1].strip()
            if len(boundary) >= 2 and boundary[0] == boundary[-1] == '"':
                boundary = boundary[1:-1]
    return boundary or None


def _parse_headers(raw):
    headers = {}
    for line in raw.decode("latin-1").split("\n"):
        name, separator, value = line.partition(":")
        if separator:
            headers[name.strip().lower()] = value.strip()
    return headers


def form_parts(data, boundary):
    """Yield (headers, start, length) for each complete part of ``data``;
    header names are lowercase.  Raises OrthancError(NetworkProtocol) where
    Orthanc's multipart reader does, once the parts before are yielded."""
    pattern = b"--" + boundary.encode("latin-1")
    end = len(data)
    current = data.find(pattern)
    if current < 0:
        return
    while end - current >= len(pattern) + 2:
        head = data[current:current + len(pattern) + 2]
        if head == pattern + b"--":
            return
        if head != pattern + b"\r\n":
            raise OrthancError(ErrorCode.NetworkProtocol,
                               "Garbage between two items in a multipart stream")
        headers_start = current + len(pattern) + 2
        headers_end = data.find(_END_OF_HEADERS, headers_start)
        if headers_end < 0:
            return
        headers = _parse_headers(data[headers_start:headers_end])
        content_start = headers_end + len(_END_OF_HEADERS)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise OrthancError(ErrorCode.ParameterOutOfRange)
            length = int(declared)
        else:
            following = data.find(pattern, content_start)
            if following < 0:
                return
            if following - content_start <= 1:
                raise OrthancError(ErrorCode.NetworkProtocol)
            length = following - content_start - 2
        if content_start + length + 2 > end:
            return
        if data[content_start + length:content_start + length + 2] != b"\r\n":
            raise OrthancError(ErrorCode.NetworkProtocol, "No endline at the end of a part")
        yield headers, content_start, length
        current = content_start + length + 2
