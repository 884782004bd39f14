"""Request parsing and response rendering shared by every REST module."""
import io
import json
from urllib.parse import unquote_plus

from orthancd.errors import HTTP_REASONS, ErrorCode, OrthancError
from orthancd.rest import jsonfmt

JSON_TYPE = b"application/json; charset=utf-8"


def sized(request, body):
    """Announce the length, so the answer goes out in one write without
    chunked encoding (as Orthanc answers)."""
    request.setHeader(b"Content-Length", b"%d" % len(body))
    return body


def render_json(request, value, status=200):
    """Write ``value`` as Orthanc-styled JSON; returns the body for Klein."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", JSON_TYPE)
    return sized(request, jsonfmt.dumps(value).encode("ascii"))


def render_bytes(request, data, content_type=b"application/octet-stream", filename=None):
    request.setHeader(b"Content-Type", content_type)
    if filename:
        request.setHeader(b"Content-Disposition", ('filename="%s"' % filename).encode())
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
        "Uri": request.path.decode("utf-8", "replace"),
    }
    if error.details:
        body["Details"] = error.details
    if getattr(error, "payload", None) is not None:
        body["ErrorPayload"] = error.payload
    return jsonfmt.dumps_error(body).encode("ascii")


def query_arguments(request):
    """The query string as {name: value}.  Orthanc's flags come without a
    value (``?expand``), which Twisted's parser drops, hence our own."""
    cached = getattr(request, "_orthanc_arguments", None)
    if cached is None:
        cached = {}
        _, _, query = request.uri.partition(b"?")
        for part in query.split(b"&"):
            if part:
                key, _, value = part.partition(b"=")
                cached.setdefault(unquote_plus(key.decode("utf-8", "replace")),
                                  unquote_plus(value.decode("utf-8", "replace")))
        request._orthanc_arguments = cached
    return cached


def get_argument(request, name, default=None):
    return query_arguments(request).get(name, default)


def has_argument(request, name):
    return name in query_arguments(request)


def bool_argument(request, name, default=False):
    """Orthanc treats ``?expand`` (no value) as true; we also read false/0."""
    if not has_argument(request, name):
        return default
    value = get_argument(request, name, "").strip().lower()
    if value in ("false", "0", "no"):
        return False
    return True


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


def paging_arguments(request):
    """``since`` and ``limit``: Orthanc insists on both or neither."""
    has_since, has_limit = has_argument(request, "since"), has_argument(request, "limit")
    if has_since != has_limit:
        missing = "limit" if has_since else "since"
        # Orthanc names the URI as its flattened form, with a final slash.
        raise OrthancError(ErrorCode.BadRequest, 'Missing "%s" argument for GET request against: %s/'
                           % (missing, request.path.decode("utf-8", "replace").rstrip("/")))
    return int_argument(request, "since", 0), int_argument(request, "limit", 0)


def read_body(request):
    content = request.content
    if isinstance(content, io.BytesIO):
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
