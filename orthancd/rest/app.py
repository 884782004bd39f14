"""The REST API: one Klein app, routes installed by one module per resource family.

Handlers stay thin: parse the request, call the domain (index, storage,
ingest, ...), render Orthanc-shaped JSON.  Every error becomes Orthanc's
error answer here, in one place; every answer carries the headers of
Orthanc's HTTP server.
"""
import base64
import hmac
import tempfile

from orthancd import logs
from orthancd.logs import logger
from twisted.python.failure import Failure
from twisted.web import http, resource, server
from werkzeug.exceptions import MethodNotAllowed, NotFound

from orthancd.errors import ErrorCode, OrthancError
from orthancd.index.base import UnknownResource
from orthancd.ingest import IN_MEMORY_LIMIT
from orthancd.rest.dispatch import RestResource, effective_method
from orthancd.rest.routing import RestApp
from orthancd.rest.uri import url_decode
from orthancd.send_now import send_now
from orthancd.rest.http import EmptyAnswer, InMemoryBody, error_body, sized
from orthancd.uploads.spool import BodyFile, StreamedBody
from orthancd.uploads.uploader import maximum_request_body_size

log = logger(__name__)


def _route_modules():
    # Imported here so that each module can import this one for RestContext.
    from orthancd.rest import (attachments, changes, instances, metadata, resources,
                               scripts, system, tools)
    from orthancd.rest import modalities, queries
    from orthancd.rest import find
    from orthancd.rest import folders, jobs, peers, plugins
    from orthancd.rest import storage_commitment
    from orthancd.rest import archives, metrics, modify, pixels
    from orthancd.rest import creation
    return (system, instances, resources, metadata, attachments, changes, tools, scripts,
            modalities, queries, find, storage_commitment, folders, plugins, peers, jobs,
            modify, archives, pixels, metrics, creation)


def build_app(ctx):
    """A Klein app serving the whole REST API over the server context ``ctx``."""
    app = RestApp()
    for module in _route_modules():
        module.install(app, ctx)
    app.handle_errors(Exception)(render_failure)
    return app


_METHOD_ORDER = ("GET", "POST", "PUT", "DELETE")


def render_failure(request, failure):
    """Every error of the REST API, as Orthanc renders it: a status alone
    when Orthanc's handler sends no body, otherwise its JSON error document,
    sent as text/plain (unless HttpDescribeErrors is off)."""
    error = failure.value
    if isinstance(error, EmptyAnswer):
        return _empty(request, error.status)
    if isinstance(error, MethodNotAllowed):
        # Orthanc lists the allowed methods in its own order.
        allowed = sorted((m for m in error.valid_methods or () if m in _METHOD_ORDER),
                         key=_METHOD_ORDER.index)
        request.setHeader(b"Allow", ",".join(allowed).encode())
        return _empty(request, 405)
    if isinstance(error, (UnknownResource, NotFound)):
        error = OrthancError(ErrorCode.UnknownResource)
    elif not isinstance(error, OrthancError):
        log.failure("Error while answering {method} {uri}", failure,
                    method=request.method, uri=request.uri)
        error = OrthancError(ErrorCode.InternalError, str(error))
    if not ctx_describes_errors(request):
        return _empty(request, error.http_status)
    request.setResponseCode(error.http_status)
    request.setHeader(b"Content-Type", b"text/plain")
    return sized(request, error_body(request, error))


def _empty(request, status):
    request.setResponseCode(status)
    request.responseHeaders.removeHeader(b"content-type")
    return sized(request, b"")


def ctx_describes_errors(request):
    return getattr(request.site, "describe_errors", True)


class GuardedRoot(resource.Resource):
    """Remote-access and HTTP Basic checks in front of the Klein resource,
    then the IncomingHttpRequestFilter of the Lua scripts, if any."""
    isLeaf = True
    # (method, uri, ip, username, headers) -> Deferred Boolean, or None when
    # there is no filter (orthancd.lua_service.LuaService.filter_http_request).
    request_filter = None

    def __init__(self, inner, configuration, metrics=None):
        super().__init__()
        self._inner = inner
        self._metrics = metrics
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
        if self._metrics is not None:
            request.notifyFinish().addBoth(self._metrics.request_started())
        if self.request_filter is not None:
            verdict = self._filter(request)
            if verdict is not None:
                verdict.addCallback(self._filtered, request)
                verdict.addErrback(self._filter_failed, request)
                return server.NOT_DONE_YET
        return self._inner.render(request)

    def _filter(self, request):
        try:
            method = effective_method(request).decode("ascii")
        except EmptyAnswer:
            return None  # refused before any filter (400)
        headers = {name.decode("latin-1").lower(): values[-1].decode("latin-1")
                   for name, values in request.requestHeaders.getAllRawHeaders()}
        uri = url_decode(request.path).decode("utf-8", "surrogateescape")
        host = getattr(request.getClientAddress(), "host", "")
        return self.request_filter(method, uri, host, basic_username(request), headers)

    def _filtered(self, allowed, request):
        if not allowed:
            log.info("An incoming HTTP request has been discarded by the filter")
            self._finish(request, _empty(request, 403))
            return
        self._finish(request, self._inner.render(request))

    def _filter_failed(self, failure, request):
        self._finish(request, render_failure(request, failure))

    @staticmethod
    def _finish(request, body):
        if body is server.NOT_DONE_YET or request.finished or request._disconnected:
            return
        request.write(body)
        request.finish()


def basic_username(request):
    """The user named by an HTTP Basic Authorization header, "" without one
    (as Orthanc gives it to IncomingHttpRequestFilter)."""
    header = request.getHeader(b"authorization") or b""
    if not header.startswith(b"Basic ") or len(header) <= 6:
        return ""
    try:
        decoded = base64.b64decode(header[6:])
    except ValueError:
        return ""
    user, colon, _ = decoded.partition(b":")
    return user.decode("utf-8", "surrogateescape") if colon else ""


class _Discarded:
    """Where the body of a refused request goes."""

    def write(self, data):
        pass

    def seek(self, *args):
        return 0

    def read(self, *args):
        return b""

    def close(self):
        pass


class OrthancRequest(server.Request):
    """Answers carry the headers of Orthanc's HTTP server, not Twisted's:
    no Server or Date, Orthanc's Connection/Keep-Alive announcement and
    X-Content-Type-Options, in Orthanc's order.

    A POST or PUT body larger than MaximumRequestBodySizeMB is refused as
    Orthanc 1.13.0 refuses it (413, empty body, connection closed): at once
    when its Content-Length says so, or as soon as a chunked body grows past
    it.  Nothing of it is kept, and the request is never processed."""

    _head = False
    body_limit = 0
    _body_refused = False
    _body_received = 0

    def refuse_body(self, status=b"413 Request Entity Too Large"):
        """Answer ``status`` with an empty body at once, and close."""
        if self._body_refused:
            return
        self._body_refused = True
        received = getattr(self, "content", None)
        if received is not None:
            received.close()  # a BodyFile goes with what it holds
        self.content = _Discarded()
        self.channel.transport.write(b"HTTP/1.1 %s\r\nContent-Length: 0\r\n"
                                     b"Connection: close\r\n\r\n" % status)
        self.channel.loseConnection()

    def gotLength(self, length):
        if self._body_refused:
            self.content = _Discarded()
            return
        streamed = self._is_dicom_upload(length) and self.channel.site.streamed_body(
            self.channel.transport)
        if streamed:
            self.content = streamed
        else:
            super().gotLength(length)

    def _is_dicom_upload(self, length):
        """A large POST /instances body that is a file as it comes (neither
        encoded nor a form): written and hashed while it arrives."""
        channel = self.channel
        if channel._command != b"POST" or channel._path.split(b"?", 1)[0] != b"/instances":
            return False
        if length is not None and length <= channel.site.IN_MEMORY_BODY_LIMIT:
            return False
        headers = self.requestHeaders
        content_type = (headers.getRawHeaders(b"content-type") or [b""])[0]
        return (not headers.hasHeader(b"content-encoding")
                and not content_type.lower().startswith(b"multipart/"))

    def handleContentChunk(self, data):
        if self._body_refused:
            return
        self._body_received += len(data)
        if self.body_limit and self._body_received > self.body_limit:
            self.refuse_body()
            return
        super().handleContentChunk(data)

    _until_close = False

    def stream_until_close(self):
        """Send this answer as Orthanc streams its synchronous archives:
        neither a length nor chunks, only the headers already set (no
        X-Content-Type-Options), the body ending when the connection
        closes."""
        self._until_close = True
        self.channel.persistent = False
        self.responseHeaders.removeHeader(b"Keep-Alive")
        self.responseHeaders.setRawHeaders(b"Connection", [b"close"])

    def process(self):
        if self._body_refused:
            return
        # server.Request.process without what Orthanc does not send (Server
        # and Date) nor what nothing here reads (postpath: the root resource,
        # GuardedRoot, is a leaf).
        self.site = self.channel.site
        # A faked method (orthancd.rest.dispatch) may replace HEAD: the
        # answer to a HEAD request still carries no body.
        self._head = self.method == b"HEAD"
        if self.channel.persistent:
            self.setHeader(b"Connection", b"keep-alive")
            self.setHeader(b"Keep-Alive", self.channel.keep_alive_header)
        else:
            self.setHeader(b"Connection", b"close")
        self.prepath, self.postpath = [], []
        try:
            self.render(self.site.getResourceFor(self))
        except BaseException:
            self.processingFailed(Failure())

    def write(self, data):
        if self._until_close and not self.startedWriting:
            self.startedWriting = 1
            self.channel.writeHeaders(self.clientproto, b"%d" % self.code, self.code_message,
                                      self.responseHeaders)
        if not self.startedWriting:
            headers = self.responseHeaders
            length = headers.getRawHeaders(b"content-length")
            if length:
                headers.removeHeader(b"content-length")
            headers.setRawHeaders(b"X-Content-Type-Options", _NOSNIFF)
            if length:
                headers.setRawHeaders(b"Content-Length", length)
        super().write(b"" if self._head else data)


_NOSNIFF = [b"nosniff"]


class OrthancChannel(http.HTTPChannel):
    """HTTP connections as Orthanc keeps them: persistent unless "KeepAlive"
    is off, closed after "KeepAliveTimeout" seconds without a request
    (``timeOut``, the site's timeout, bounds the wait within a request)."""

    keep_alive = True
    keep_alive_timeout = 1
    keep_alive_header = b"timeout=1"
    # While the keep-alive timer runs: the timeout to restore once the next
    # request starts arriving.
    _request_timeout = _NOT_WAITING = object()
    _data_received = False

    def connectionMade(self):
        super().connectionMade()
        # Nagle's algorithm costs 40 ms per request/response round trip.
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        # Uploads are hundreds of kB: read them in large gulps (Twisted's
        # default is 64 kB per read, each one a trip through the HTTP parser).
        self.transport.bufferSize = 1 << 20

    _host = None

    def getHost(self):
        # Each request asks (twisted.web's Request.__init__), and the
        # transport answers with a getsockname system call: once per
        # connection is enough.
        if self._host is None:
            self._host = self.transport.getHost()
        return self._host

    def checkPersistence(self, request, version):
        if not self.keep_alive:
            return False
        return super().checkPersistence(request, version)

    # -- answers: the head is held until the body's first bytes (or the end
    # of the request), then both go out in one send, straight to the socket
    # when nothing waits in the transport's buffer.  Twisted would buffer
    # them, register the socket for writing and send on the next turn of
    # the reactor: three more system calls and a turn per answer.
    _held = None

    def writeHeaders(self, version, code, reason, headers):
        head = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                head.extend((name, b": ", value, b"\r\n"))
        head.append(b"\r\n")
        self._flush_held()
        self._held = b"".join(head)

    def write(self, data):
        if self._held is not None:
            data, self._held = self._held + data, None
        self._send(data)

    def writeSequence(self, iovec):
        self.write(b"".join(iovec))

    def _flush_held(self):
        if self._held is not None:
            held, self._held = self._held, None
            self._send(held)

    def _send(self, data):
        send_now(self.transport, data)

    def connectionLost(self, reason):
        self._held = None
        super().connectionLost(reason)

    def requestDone(self, request):
        self._flush_held()
        self._data_received = False
        # Data of the next request received meanwhile is fed back to
        # dataReceived from here, or stays in the line buffer (LineReceiver's
        # _buffer) when this runs within the parsing of that data.
        super().requestDone(request)
        if (self.persistent and self.keep_alive_timeout and not self._handlingRequest
                and not self._data_received and not self._buffer):
            self._request_timeout = self.setTimeout(self.keep_alive_timeout)

    def dataReceived(self, data):
        self._data_received = True
        if self._request_timeout is not self._NOT_WAITING:
            self.setTimeout(self._request_timeout)
            self._request_timeout = self._NOT_WAITING
        if self.line_mode and len(data) > self._HEAD_SPLIT:
            # The headers and the start of a large body often come in one
            # read.  LineReceiver cuts one line at a time off its buffer,
            # copying the rest each time: hand it the head alone first,
            # so that the body is copied once, not once per header line.
            end = data.find(b"\r\n\r\n", 0, self._HEAD_SPLIT)
            if end >= 0:
                super().dataReceived(data[:end + 4])
                data = data[end + 4:]
                if not data:
                    return
        super().dataReceived(data)

    _HEAD_SPLIT = 16384

    def timeoutConnection(self):
        # A body that stopped coming (shorter than its Content-Length):
        # Orthanc answers 400 with an empty body before closing.
        if self._transferDecoder is not None and self.requests:
            self.requests[-1].refuse_body(b"400 Bad Request")
        super().timeoutConnection()

    def allHeadersReceived(self):
        request = self.requests[-1]
        if self._command in (b"POST", b"PUT"):
            request.body_limit = getattr(self.site, "maximum_body_size", 0)
            if request.body_limit and self.length is not None and self.length > request.body_limit:
                request.requestHeaders.removeHeader(b"Expect")  # no "100 Continue" then
                request.refuse_body()
        super().allHeadersReceived()


class OrthancSite(server.Site):
    """Keeps small request bodies in memory; larger ones (or those of
    unknown length) are written as they arrive into a file of the storage
    area's temporary directory (``upload_directory``, once known), which
    the upload path adopts as the stored file without copying it.  Memory
    then stays bounded however many large uploads run at once."""

    # Up to this size a body is received in memory (see IN_MEMORY_LIMIT:
    # measured 10-15% less server CPU per instance for CT uploads of 513
    # KiB); larger bodies are streamed (StreamedBody).
    IN_MEMORY_BODY_LIMIT = IN_MEMORY_LIMIT
    upload_directory = None
    # The pool where DICOM uploads are written as they arrive, once known.
    upload_pool = None
    create_upload_file = None
    requestFactory = OrthancRequest
    protocol = OrthancChannel

    def __init__(self, resource, configuration):
        # Within a request, the connection may stay silent for
        # "HttpRequestTimeout" seconds.
        super().__init__(resource, parsePOSTFormSubmission=False,
                         timeout=configuration.get("HttpRequestTimeout", 30) or None)
        self.keep_alive = bool(configuration.get("KeepAlive", True))
        self.keep_alive_timeout = int(configuration.get("KeepAliveTimeout", 1))
        self.describe_errors = bool(configuration.get("HttpDescribeErrors", True))
        self.maximum_body_size = maximum_request_body_size(configuration)

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        channel.keep_alive = self.keep_alive
        channel.keep_alive_timeout = self.keep_alive_timeout
        channel.keep_alive_header = b"timeout=%d" % self.keep_alive_timeout
        return channel

    def log(self, request):
        # Like Orthanc, no access log line per request unless HTTP is verbose.
        if logs.get_level("http") != "default":
            super().log(request)

    def getContentFile(self, length):
        if length is not None and length <= self.IN_MEMORY_BODY_LIMIT:
            return InMemoryBody()
        directory = self.upload_directory() if self.upload_directory is not None else None
        if directory is None:
            return tempfile.TemporaryFile()
        return BodyFile(directory)

    def streamed_body(self, transport=None):
        """A StreamedBody for a DICOM upload coming on ``transport`` (paused
        while the disk lags), or None before the storage area is there."""
        directory = self.upload_directory() if self.upload_directory is not None else None
        if directory is None or self.upload_pool is None:
            return None
        return StreamedBody(directory, self.upload_pool, producer=transport,
                            create=self.create_upload_file)


def build_site(ctx):
    app = build_app(ctx)
    ctx.rest_resource = RestResource(app, render_failure)
    root = GuardedRoot(ctx.rest_resource, ctx.configuration, getattr(ctx, "metrics", None))
    site = OrthancSite(root, ctx.configuration)
    site.displayTracebacks = False
    site.noisy = False
    # Known once the storage area has started (nothing is opened before).
    site.upload_directory = lambda: getattr(ctx, "temporary_directory", None)
    site.upload_pool = ctx.file_io
    site.create_upload_file = getattr(ctx, "create_temporary_file", None)
    ctx.app = app
    return site
