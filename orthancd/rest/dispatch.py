"""Serving the Klein app's routes with a lean dispatch.

The routes are declared with Klein (``app.route`` in each REST module) and
matched by its werkzeug URL map, but KleinResource's per-request machinery
(URL part extraction, adapter binding with server names, request
adaptation, several Deferred layers per request) cost more than most
handlers: measured with wrk, GET /patients went from ~5,900 to ~8,100
requests/s with this resource.  It matches against the same map, calls the
same endpoints, and renders every error through the same function, with a
synchronous fast path for handlers that answer at once.

Before routing, a request is read the way Orthanc's HTTP server reads it:
the method may be faked (PUT or DELETE only), the path is decoded and
normalised (orthancd.rest.uri), and a JSON answer becomes XML when the
client asks for it.
"""
import json
from urllib.parse import unquote, urlsplit

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import resource, server
from werkzeug.routing import RequestRedirect

from orthancd import logs
from orthancd.logs import logger
from orthancd.rest import xmlfmt
from orthancd.rest.http import EmptyAnswer, get_argument, sized
from orthancd.rest.route_cache import RouteCache
from orthancd.rest.uri import normalized_path, route_path

log = logger(__name__)

JSON_MIME = b"application/json"
XML_TYPE = b"application/xml; charset=utf-8"

_REST_METHODS = (b"GET", b"POST", b"DELETE", b"PUT")
# Methods that Orthanc's WebDAV server takes, finding nothing outside /webdav/.
_WEBDAV_METHODS = (b"HEAD", b"OPTIONS", b"PROPFIND", b"PROPPATCH", b"MKCOL", b"LOCK", b"UNLOCK")


def effective_method(request):
    """The method Orthanc serves a request with.

    Clients that cannot send PUT or DELETE fake them with the
    ``X-HTTP-Method-Override`` header (any request) or a ``_method`` argument
    (GET requests only); any other faked method, and methods outside the REST
    API, get an empty 400 (an empty 404 for the WebDAV ones)."""
    faked = request.getHeader(b"x-http-method-override")
    if not faked and request.method == b"GET":
        faked = get_argument(request, "_method", "").encode("utf-8")
    if faked:
        faked = faked.upper()
        if faked in (b"PUT", b"DELETE"):
            return faked
        raise EmptyAnswer(400)
    if request.method in _REST_METHODS:
        return request.method
    raise EmptyAnswer(404 if request.method in _WEBDAV_METHODS else 400)


class RestResource(resource.Resource):
    isLeaf = True

    def __init__(self, app, render_failure):
        """``render_failure(request, failure) -> bytes`` renders every error."""
        super().__init__()
        self._app = app
        self._render_failure = render_failure
        self._map = app.url_map
        self._routes = RouteCache()

    def render(self, request):
        request.orthanc_uri = normalized_path(request.path)
        request.orthanc_xml = xmlfmt.wants_xml(request.getHeader(b"accept"))
        try:
            request.method = effective_method(request)
            if logs.is_verbose("http"):
                log.debug("{method} {uri}", method=request.method.decode("ascii"),
                          uri=request.orthanc_uri)
            result = self._execute(request, route_path(request.orthanc_uri))
        except Exception:
            return self._render_failure(request, Failure())
        if isinstance(result, bytes):
            return self._negotiate(request, result)
        d = defer.maybeDeferred(lambda: result)
        d.addCallback(self._negotiate_later, request)
        d.addErrback(lambda failure: self._render_failure(request, failure))
        d.addCallback(self._finish, request)
        finished = request.notifyFinish()
        finished.addErrback(lambda _: d.cancel())
        return server.NOT_DONE_YET

    def _execute(self, request, path):
        method = request.method.decode("ascii")
        # werkzeug's NotFound and MethodNotAllowed are rendered like any error.
        try:
            endpoint, arguments = self._routes.match(
                method, path, lambda: self._adapter(path, method).match())
        except RequestRedirect as redirect:
            # A rule declared with a final slash: the same resource to Orthanc.
            endpoint, arguments = self._adapter(path, method).match(
                unquote(urlsplit(redirect.new_url).path))
        return self._app.execute_endpoint(endpoint, request, **arguments)

    def _adapter(self, path, method):
        return self._map.bind("localhost", path_info=path, default_method=method)

    def _negotiate_later(self, body, request):
        return self._negotiate(request, body)

    @staticmethod
    def _negotiate(request, body):
        """Orthanc's JSON answers turn into XML for clients asking for it."""
        if request.orthanc_xml and body:
            content_type = request.responseHeaders.getRawHeaders(b"content-type", [b""])[0]
            if content_type.split(b";")[0] == JSON_MIME:
                body = sized(request, xmlfmt.dumps(json.loads(body)))
                request.setHeader(b"Content-Type", XML_TYPE)
        return body

    @staticmethod
    def _finish(body, request):
        if request.finished or getattr(request, "_disconnected", False):
            return
        if body:
            request.write(body if isinstance(body, bytes) else body.encode("utf-8"))
        request.finish()
