"""The REST API: one Klein app, routes installed by one module per resource family.

Handlers stay thin: parse the request, call the domain (index, storage,
ingest, ...), render Orthanc-shaped JSON.  Every error becomes Orthanc's JSON
error body here, in one place.
"""
import base64
import hmac
import io
import tempfile

from klein import Klein
from orthancd import logs
from orthancd.logs import logger
from twisted.web import http, resource, server
from werkzeug.exceptions import MethodNotAllowed, NotFound

from orthancd.errors import ErrorCode, OrthancError
from orthancd.index.base import UnknownResource
from orthancd.rest.dispatch import RestResource
from orthancd.rest.http import error_body, sized

log = logger(__name__)


def _route_modules():
    # Imported here so that each module can import this one for RestContext.
    from orthancd.rest import (attachments, changes, instances, metadata, resources,
                               scripts, system, tools)
    from orthancd.rest import modalities, queries
    from orthancd.rest import find
    return (system, instances, resources, metadata, attachments, changes, tools, scripts,
            modalities, queries, find)


def build_app(ctx):
    """A Klein app serving the whole REST API over the server context ``ctx``."""
    app = Klein()
    for module in _route_modules():
        module.install(app, ctx)
    app.handle_errors(Exception)(render_failure)
    return app


_METHOD_ORDER = ("GET", "POST", "DELETE", "PUT")


def render_failure(request, failure):
    """Every error of the REST API, as Orthanc renders it."""
    error = failure.value
    if isinstance(error, MethodNotAllowed):
        # Orthanc answers 405 with an Allow header (in its method order) and
        # an empty body.
        allowed = sorted((m for m in error.valid_methods or () if m in _METHOD_ORDER),
                         key=_METHOD_ORDER.index)
        request.setResponseCode(405)
        request.setHeader(b"Allow", ",".join(allowed).encode())
        return sized(request, b"")
    if isinstance(error, (UnknownResource, NotFound)):
        error = OrthancError(ErrorCode.UnknownResource)
    elif not isinstance(error, OrthancError):
        log.failure("Error while answering {method} {uri}", failure,
                    method=request.method, uri=request.uri)
        error = OrthancError(ErrorCode.InternalError, str(error))
    request.setResponseCode(error.http_status)
    # Orthanc 1.13.0 sends its JSON error bodies as text/plain.
    request.setHeader(b"Content-Type", b"text/plain")
    if ctx_describes_errors(request):
        return sized(request, error_body(request, error))
    return sized(request, b"")


def ctx_describes_errors(request):
    return getattr(request.site, "describe_errors", True)


class GuardedRoot(resource.Resource):
    """Remote-access and HTTP Basic checks in front of the Klein resource."""
    isLeaf = True

    def __init__(self, inner, configuration):
        super().__init__()
        self._inner = inner
        self._remote_allowed = bool(configuration.get("RemoteAccessAllowed", False))
        self._auth = configuration.authentication_enabled
        self._users = {}
        for user, password in (configuration.get("RegisteredUsers") or {}).items():
            token = base64.b64encode(("%s:%s" % (user, password)).encode("utf-8"))
            self._users[b"Basic " + token] = user

    def _is_local(self, request):
        host = getattr(request.getClientAddress(), "host", "127.0.0.1")
        return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")

    def username(self, request):
        header = request.getHeader(b"authorization")
        if header is None:
            return None
        for token, user in self._users.items():
            if hmac.compare_digest(header.encode() if isinstance(header, str) else header, token):
                return user
        return None

    def render(self, request):
        if not self._remote_allowed and not self._is_local(request):
            log.warn("Unauthorized remote access from {host}", host=request.getClientAddress())
            request.setResponseCode(403)
            return sized(request, b"")
        if self._auth:
            user = self.username(request)
            if user is None:
                request.setResponseCode(401)
                request.setHeader(b"WWW-Authenticate", b'Basic realm="Orthanc Secure Area"')
                return sized(request, b"")
            request.http_username = user
        return self._inner.render(request)


class NoDelayChannel(http.HTTPChannel):
    """Nagle's algorithm costs 40 ms per request/response round trip."""

    def connectionMade(self):
        super().connectionMade()
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        # Uploads are hundreds of kB: read them in large gulps (Twisted's
        # default is 64 kB per read, each one a trip through the HTTP parser).
        self.transport.bufferSize = 1 << 20


class OrthancSite(server.Site):
    """Keeps request bodies of up to 64 MB in memory: Twisted would spool
    anything over 100 kB to a temporary file on the reactor thread, and an
    uploaded DICOM file is read back whole anyway."""

    IN_MEMORY_BODY_LIMIT = 64 * 1024 * 1024

    def log(self, request):
        # Like Orthanc, no access log line per request unless verbose.
        if logs.get_level() != "default":
            super().log(request)

    def getContentFile(self, length):
        if length is not None and length <= self.IN_MEMORY_BODY_LIMIT:
            return io.BytesIO()
        return tempfile.TemporaryFile()


def build_site(ctx):
    app = build_app(ctx)
    ctx.rest_resource = RestResource(app, render_failure)
    root = GuardedRoot(ctx.rest_resource, ctx.configuration)
    site = OrthancSite(root, parsePOSTFormSubmission=False)
    site.protocol = NoDelayChannel
    site.displayTracebacks = False
    site.describe_errors = bool(ctx.configuration.get("HttpDescribeErrors", True))
    site.noisy = False
    ctx.app = app
    return site
