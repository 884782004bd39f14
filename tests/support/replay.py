"""Send the same requests to the oracle and to orthancd, one by one, and
compare the answers: status, the headers that matter, and the body, with
attachment UUIDs (random in Orthanc, content addresses in orthancd) and
dates masked."""
import re

_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATE = re.compile(rb"\d{8}T\d{6}")
HEADERS = ("etag", "content-type", "content-range", "content-disposition", "content-length")


def _mask(data):
    return _DATE.sub(b"<date>", _UUID.sub(b"<uuid>", data))


def answer_of(client, method, path, body=None, headers=None):
    if body is None and method in ("PUT", "POST"):
        body = b""
    answer = client.request(method, path, body, headers or {})
    kept = {k.lower(): _mask(v.encode()).decode() for k, v in answer.headers.items()
            if k.lower() in HEADERS}
    return answer.status, kept, _mask(answer.body)


def differences(oracle, ours, requests):
    """The requests (method, path[, body[, headers]]) whose answers differ,
    with both answers; the requests go to the oracle first, then to ours."""
    out = []
    for request in requests:
        method, path = request[0], request[1]
        body = request[2] if len(request) > 2 else None
        headers = request[3] if len(request) > 3 else None
        expected = answer_of(oracle, method, path, body, headers)
        actual = answer_of(ours, method, path, body, headers)
        if expected != actual:
            out.append((method, path, headers, expected, actual))
    return out
