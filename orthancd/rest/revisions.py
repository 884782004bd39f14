"""Revisions of metadata and attachments over HTTP, as Orthanc 1.13.0: the
ETag answered ("revision-MD5"), If-None-Match on reads (304), If-Match on
writes, and CheckRevisions, which makes If-Match mandatory."""
import hashlib

from orthancd.errors import ErrorCode, OrthancError
from orthancd.rest.http import EmptyAnswer

_INT64 = (-(1 << 63), (1 << 63) - 1)


def md5_of(data):
    return hashlib.md5(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def set_etag(request, revision, md5):
    request.setHeader(b"ETag", ('"%d-%s"' % (revision, md5)).encode())


def _parse_int64(text):
    text = text.strip(" \t\r\n")
    body = text[1:] if text[:1] in "+-" else text
    if not body or not body.isdigit() or not body.isascii():
        return None
    value = int(text)
    return value if _INT64[0] <= value <= _INT64[1] else None


def revision_header(request, header):
    """(revision, MD5) the ``header`` names, or None when absent.  ``header``
    is spelled as Orthanc names it in its error message."""
    raw = request.getHeader(header.encode())
    if raw is None:
        return None
    value = raw.decode("latin-1").strip(" \t\r\n")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    dash = value.find("-")
    if dash >= 0:
        revision = _parse_int64(value[:dash])
        if revision is not None:
            return revision, value[dash + 1:]
    raise OrthancError(ErrorCode.ParameterOutOfRange,
                       'The "%s" HTTP header should contain the ETag (revision followed by MD5 '
                       'hash), but found: %s' % (header, value))


def answer_etag(request, revision, md5):
    """The ETag of what a GET reads; raises the 304 answer when the
    client's If-None-Match names it already."""
    set_etag(request, revision, md5)
    seen = revision_header(request, "If-None-Match")
    if seen is not None and seen == (revision, md5):
        raise EmptyAnswer(304)


def expected_for_write(request, check_revisions):
    """The (revision, MD5) a PUT must match: its If-Match; without one,
    nothing (or, with CheckRevisions, a revision that matches nothing, so
    that only a first write goes through)."""
    expected = revision_header(request, "if-match")
    if expected is None and check_revisions:
        return -1, ""
    return expected


def expected_for_delete(request, check_revisions):
    """The (revision, MD5) a DELETE must match; CheckRevisions requires it."""
    expected = revision_header(request, "if-match")
    if expected is None and check_revisions:
        raise OrthancError(ErrorCode.Revision,
                           'HTTP header "If-Match" is missing, as "CheckRevisions" is "true"')
    return expected
