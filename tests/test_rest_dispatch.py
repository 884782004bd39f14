"""The REST dispatch and error rendering, in memory (treq's StubTreq, no sockets)."""
import json

from klein import Klein
from treq.testing import StubTreq
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from orthancd.errors import ErrorCode, OrthancError
from orthancd.index.base import UnknownResource
from orthancd.rest.app import render_failure
from orthancd.rest.dispatch import RestResource
from orthancd.rest.http import render_json
from orthancd.rest.routing import RestApp


def make_app(app_class=RestApp):
    app = app_class()

    @app.route("/things", methods=["GET"])
    def things(request):
        return render_json(request, ["a", "b"])

    @app.route("/things/<name>", methods=["GET"])
    async def thing(request, name):
        await defer.succeed(None)
        if name == "missing":
            raise UnknownResource(name)
        if name == "bad":
            raise OrthancError(ErrorCode.BadRequest, "Not a good name")
        if name == "crash":
            raise RuntimeError("boom")
        return render_json(request, {"Name": name})

    @app.route("/things/<name>", methods=["DELETE"])
    def delete(request, name):
        return render_json(request, {})

    app.handle_errors(Exception)(render_failure)
    return app


class RestDispatchTests(SynchronousTestCase):

    def setUp(self):
        self.treq = StubTreq(RestResource(make_app(), render_failure))

    def fetch(self, method, path):
        response = self.successResultOf(self.treq.request(method, "http://localhost" + path))
        body = self.successResultOf(response.content())
        return response, body

    def test_synchronous_and_asynchronous_handlers(self):
        response, body = self.fetch("GET", "/things")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b'[\n   "a",\n   "b"\n]')
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"application/json; charset=utf-8"])
        response, body = self.fetch("GET", "/things/x%20y")
        self.assertEqual(json.loads(body), {"Name": "x y"})

    def test_errors_are_orthancs(self):
        for path, status, code in (("/things/missing", 404, 17), ("/nowhere", 404, 17),
                                   ("/things/bad", 400, 8), ("/things/crash", 500, -1)):
            response, body = self.fetch("GET", path)
            self.assertEqual(response.code, status, path)
            error = json.loads(body)
            self.assertEqual(error["OrthancStatus"], code, path)
            self.assertEqual(error["Method"], "GET")
            self.assertEqual(error["Uri"], path)
        self.flushLoggedErrors(RuntimeError)
        response, body = self.fetch("GET", "/things/bad")
        self.assertEqual(json.loads(body)["Details"], "Not a good name")

    def test_method_not_allowed_lists_allowed_methods(self):
        response, body = self.fetch("POST", "/things/x")
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers.getRawHeaders(b"allow"), [b"GET,DELETE"])
        self.assertEqual(body, b"")


class RouteMapTests(SynchronousTestCase):
    """RestApp's map (orthancd.rest.routing) defers werkzeug's URL builders:
    it matches, and builds when asked, as Klein's own map does."""

    def test_same_matches_and_urls_as_klein(self):
        ours, klein = make_app().url_map, make_app(Klein).url_map
        for path, method in (("/things", "GET"), ("/things/x%20y", "DELETE"),
                             ("/things/a", "GET")):
            self.assertEqual(ours.bind("localhost").match(path, method),
                             klein.bind("localhost").match(path, method))
        for endpoint, values in (("things", {}), ("thing", {"name": "a b", "extra": "1"}),
                                 ("delete", {"name": "z"})):
            self.assertEqual(ours.bind("localhost").build(endpoint, values),
                             klein.bind("localhost").build(endpoint, values))

    def test_builders_are_compiled_when_first_used(self):
        rule = next(r for r in make_app().url_map.iter_rules() if r.endpoint == "thing")
        self.assertEqual(rule._build.__name__, "build")  # still the deferred one
        self.assertEqual(rule.build({"name": "q"}), ("", "/things/q"))
        self.assertEqual(rule.build({"name": "q"}, append_unknown=False), ("", "/things/q"))
