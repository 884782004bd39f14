"""Request parsing and response rendering shared by every REST module."""
import io
import json
from urllib.parse import unquote_plus

from orthancd.errors import HTTP_REASONS, ErrorCode, OrthancError
from orthancd.rest import jsonfmt

JSON_TYPE = b"application/json; charset=utf-8"


class EmptyAnswer(Exception):
    """An answer made of a status alone.  Orthanc sends one when a handler
    signals an HTTP error without a body (403 for a core attachment...), or
    leaves the request unanswered (see ``no_answer``)."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


def no_answer(request):
    """What Orthanc sends when a handler does not answer, typically for an
    unknown resource: 404 with no body (400 for POST)."""
    return EmptyAnswer(400 if request.method == b"POST" else 404)


def request_uri(request):
    """The request path as Orthanc reports it ("Uri" of error bodies):
    decoded and normalised by the dispatch (orthancd.rest.uri)."""
    uri = getattr(request, "orthanc_uri", None)
    if uri is None:
        uri = request.path.decode("utf-8", "replace")
    return uri


def sized(request, body):
    """Announce the length, so the answer goes out in one write without
    chunked encoding (as Orthanc answers)."""
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return body


def render_json(request, value, status=200):
    """Write ``value`` as Orthanc-styled JSON; returns the body for Klein."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", JSON_TYPE)
    return sized(request, json_body_bytes(value))


def render_json_body(request, body):
    """An answer whose JSON was rendered (as ``render_json``) beforehand."""
    request.setResponseCode(200)
    request.setHeader(b"Content-Type", JSON_TYPE)
    return sized(request, body)


def json_body_bytes(value):
    """``value`` as ``render_json`` writes it."""
    return jsonfmt.dumps(value).encode("ascii")


def content_disposition(filename):
    """Orthanc's Content-Disposition: the file name without the quotes and
    line breaks that would let it end the header."""
    cleaned = filename.replace("\r", "").replace("\n", "").replace('"', "")
    return ('filename="%s"' % cleaned).encode("utf-8", "surrogateescape")


def render_bytes(request, data, content_type=b"application/octet-stream", filename=None):
    request.setHeader(b"Content-Type", content_type)
    if filename:
        request.setHeader(b"Content-Disposition", content_disposition(filename))
    return sized(request, data)


def render_text(request, text, content_type=b"text/plain"):
    request.setHeader(b"Content-Type", content_type)
    return sized(request, text.encode("utf-8") if isinstance(text, str) else text)


def error_body(request, error):
    """Orthanc's JSON error document for an OrthancError."""
    body = {
        "HttpError": HTTP_REASONS.get(error.http_status, "Error"),
        "HttpStatus": error.http_status,
        "Message": error.description,
        "Method": request.method.decode("ascii", "replace"),
        "OrthancError": error.description,
        "OrthancStatus": int(error.code),
        "Uri": request_uri(request),
    }
    if error.details is not None:
        body["Details"] = error.details
    if getattr(error, "payload", None) is not None:
        body["ErrorPayload"] = error.payload
    return jsonfmt.dumps_error(body).encode("ascii")


def query_arguments(request):
    """The query string as {name: value}.  Orthanc's flags come without a
    value (``?expand``), which Twisted's parser drops, hence our own.  A
    repeated argument keeps its last value, as in Orthanc's argument map."""
    cached = getattr(request, "_orthanc_arguments", None)
    if cached is None:
        cached = {}
        _, _, query = request.uri.partition(b"?")
        for part in query.split(b"&"):
            if part:
                key, _, value = part.partition(b"=")
                cached[unquote_plus(key.decode("utf-8", "replace"))] = \
                    unquote_plus(value.decode("utf-8", "replace"))
        request._orthanc_arguments = cached
    return cached


def get_argument(request, name, default=None):
    return query_arguments(request).get(name, default)


def has_argument(request, name):
    return name in query_arguments(request)


def bool_argument(request, name, default=False):
    """A Boolean argument as Orthanc reads it (``?expand`` alone is true);
    switches that only need to be present (``?simplify``, ``?full``) are
    read with ``has_argument``."""
    if not has_argument(request, name):
        return default
    value = get_argument(request, name)
    if value in ("", "true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise OrthancError(ErrorCode.ParameterOutOfRange,
                       'Expected a Boolean for GET argument "%s", found: %s' % (name, value))


def int_argument(request, name, default=0):
    value = get_argument(request, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise OrthancError(ErrorCode.BadParameterType, "Syntax error in some user-supplied data")
    if number < 0:
        raise OrthancError(ErrorCode.ParameterOutOfRange)
    return number


def dicom_format(request, default="human"):
    """``?simplify``, ``?short`` or ``?full`` (the first present wins)."""
    for name, fmt in (("simplify", "human"), ("short", "short"), ("full", "full")):
        if has_argument(request, name):
            return fmt
    return default


def requested_tags_argument(request):
    """``?requested-tags=`` (or the older ``?requestedTags=``): tags as ints."""
    from orthancd.find.tags import parse_tag_list
    text = get_argument(request, "requested-tags")
    if text is None:
        text = get_argument(request, "requestedTags", "")
    try:
        return parse_tag_list(text)
    except OrthancError as e:
        raise OrthancError(ErrorCode.BadRequest, "Invalid requested-tags argument: %s %s"
                           % (e.description, e.details or ""))


def paging_arguments(request):
    """``since`` and ``limit``: Orthanc insists on both or neither."""
    has_since, has_limit = has_argument(request, "since"), has_argument(request, "limit")
    if has_since != has_limit:
        missing = "limit" if has_since else "since"
        # Orthanc names the URI as its flattened form, with a final slash.
        raise OrthancError(ErrorCode.BadRequest, 'Missing "%s" argument for GET request against: %s/'
                           % (missing, request_uri(request).rstrip("/")))
    return int_argument(request, "since", 0), int_argument(request, "limit", 0)


def request_header(request, name):
    """A request header as text (None when absent)."""
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")


class InMemoryBody:
    """A request body kept in memory (Twisted's ``Request.content`` for
    small bodies): the pieces as they came, joined once when asked for.  A
    body received in one piece, as most uploads are, is handed on as it is:
    io.BytesIO would copy it once more on the reactor thread (some 30 µs for
    513 KiB, while the GIL is held)."""

    def __init__(self):
        self._pieces = []
        self._size = 0
        self._position = 0

    def write(self, data):
        self._pieces.append(data if type(data) is bytes else bytes(data))
        self._size += len(data)
        self._position = self._size
        return len(data)

    def getvalue(self):
        if len(self._pieces) != 1:
            self._pieces = [b"".join(self._pieces)]
        return self._pieces[0]

    def tell(self):
        return self._position

    def seek(self, offset, whence=0):
        base = (0, self._position, self._size)[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size=-1):
        start = self._position
        end = self._size if size is None or size < 0 else min(self._size, start + size)
        if start >= end:
            return b""
        self._position = end
        value = self.getvalue()
        return value if (start, end) == (0, len(value)) else value[start:end]

    def close(self):
        self._pieces = []
        self._size = self._position = 0


def body_source(request):
    """The body as bytes when Twisted kept it in memory, else its
    temporary file (large or chunked bodies), to be read off the reactor."""
    content = request.content
    if isinstance(content, (InMemoryBody, io.BytesIO)):
        return content.getvalue()
    return content


def read_body(request):
    content = request.content
    if isinstance(content, (InMemoryBody, io.BytesIO)):
        return content.getvalue()  # no copy of a large upload
    content.seek(0)
    return content.read()


def json_body(request, expect=dict, required=True):
    """Parse the body as JSON of the expected type, with Orthanc's errors."""
    raw = read_body(request)
    if not raw.strip():
        if not required:
            return expect()
        raise OrthancError(ErrorCode.BadRequest, _expect_message(expect))
    try:
        value = json.loads(raw)
    except ValueError:
        raise OrthancError(ErrorCode.BadRequest, _expect_message(expect))
    if expect is not None and not isinstance(value, expect):
        raise OrthancError(ErrorCode.BadRequest, _expect_message(expect))
    return value


def _expect_message(expect):
    if expect is list:
        return "The body must contain a JSON array"
    return "The body must contain a JSON object"


def text_body(request):
    return read_body(request).decode("utf-8", "replace")
