"""REST plumbing in memory: XML writer, path normalisation, method faking,
error rendering, connection handling, log categories (no sockets; the
comparison with the real Orthanc is in test_rest_plumbing_parity)."""
import json

from klein import Klein
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from orthancd import logs
from orthancd.errors import ErrorCode, OrthancError
from orthancd.index.base import UnknownResource
from orthancd.rest import xmlfmt
from orthancd.rest.app import OrthancSite, render_failure
from orthancd.rest.dispatch import RestResource
from orthancd.rest.http import (EmptyAnswer, InMemoryBody, bool_argument, has_argument,
                                no_answer, read_body, render_json, render_text)
from orthancd.rest.uri import normalized_path, route_path


class XmlWriterTests(SynchronousTestCase):

    def test_objects_lists_and_scalars(self):
        value = {"b": [1, "x", None, True, False], "a": {"z": "", "y": []}, "c": {}}
        self.assertEqual(xmlfmt.dumps(value).decode(), (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            "<root>\n"
            "  <a>\n"
            "    <y />\n"
            "    <z />\n"
            "  </a>\n"
            "  <b>\n"
            "    <item>1</item>\n"
            "    <item>x</item>\n"
            "    <item>null</item>\n"
            "    <item>true</item>\n"
            "    <item>false</item>\n"
            "  </b>\n"
            "  <c />\n"
            "</root>\n"))

    def test_lists_of_lists_and_empty_roots(self):
        self.assertEqual(xmlfmt.dumps([["a", 0]]).decode().split("\n")[1:], [
            "<root>", "  <item>", "    <item>a</item>", "    <item>0</item>", "  </item>",
            "</root>", ""])
        self.assertEqual(xmlfmt.dumps([]), b'<?xml version="1.0" encoding="utf-8"?>\n<root />\n')
        self.assertEqual(xmlfmt.dumps({}), xmlfmt.dumps([]))

    def test_character_data_is_escaped_as_pugixml_does(self):
        body = xmlfmt.dumps({"0010,0010": 'a<b>&"\'\x01\t\n\r\x1f\u00e9 x\x00lost'})
        self.assertIn("<0010,0010>a&lt;b&gt;&amp;\"'&#01;\t\n\r&#31;\u00e9 x</0010,0010>"
                      .encode("utf-8"), body)

    def test_only_the_exact_accept_token_asks_for_xml(self):
        for accept in (b"application/xml", b"application/xml;q=0.9",
                       b"application/json;application/xml"):
            self.assertTrue(xmlfmt.wants_xml(accept), accept)
        for accept in (None, b"", b"text/xml", b"APPLICATION/XML", b"application/xml ;q=1",
                       b"application/json, application/xml", b"*/*"):
            self.assertFalse(xmlfmt.wants_xml(accept), accept)


class PathTests(SynchronousTestCase):

    def test_civetweb_normalisation(self):
        for raw, uri in ((b"/patients", "/patients"), (b"//nope//x/", "/nope/x/"),
                         (b"/tools/../nope", "/nope"), (b"/./nope", "/nope"),
                         (b"/nope/.", "/nope/"), (b"/nope/..", "/"),
                         (b"/a/b/../../nope", "/nope"), (b"/nope%2F%2Fx", "/nope/x"),
                         (b"/nope%2E%2E/x", "/nope/x"), (b"/nope/%2E%2E/x", "/x"),
                         (b"/nope+x", "/nope x"), (b"/nope%20x", "/nope x"),
                         (b"/%C3%A9", "/\u00e9"), (b"/%FF", "/\ufffd"), (b"/x%zz", "/x%zz"),
                         (b"/a\\b", "/a/b"), (b"/x%00y", "/x"), (b"/x.../", "/x/")):
            self.assertEqual(normalized_path(raw), uri, raw)

    def test_routes_ignore_empty_components(self):
        self.assertEqual(route_path("/patients/"), "/patients")
        self.assertEqual(route_path("/"), "/")
        self.assertEqual(route_path("/a/b/"), "/a/b")


def make_app():
    app = Klein()

    @app.route("/things", methods=["GET"])
    def things(request):
        return render_json(request, {"Name": "x\u00e9", "List": [1, 2]})

    @app.route("/things", methods=["PUT", "DELETE"])
    def change(request):
        return render_text(request, request.method.decode())

    @app.route("/things/<name>", methods=["GET", "POST"])
    async def thing(request, name):
        if name == "unknown":
            raise UnknownResource(name)
        if name == "silent":
            raise no_answer(request)
        if name == "forbidden":
            raise EmptyAnswer(403)
        if name == "bad":
            raise OrthancError(ErrorCode.BadRequest, "Not a good name")
        if name == "flags":
            return render_json(request, [has_argument(request, "simplify"),
                                         bool_argument(request, "expand")])
        request.setHeader(b"Content-Type", b"application/json")
        return b'{"Plain" : "buffer"}'

    @app.route("/echo", methods=["POST"])
    def echo(request):
        body = read_body(request)
        return render_json(request, {"Size": len(body), "Head": body[:8].decode("latin-1"),
                                     "Type": type(request.content).__name__})

    app.handle_errors(Exception)(render_failure)
    return app


class DispatchTests(SynchronousTestCase):

    def setUp(self):
        self.treq = StubTreq(RestResource(make_app(), render_failure))

    def fetch(self, method, path, headers=None):
        response = self.successResultOf(
            self.treq.request(method, "http://localhost" + path, headers=headers))
        return response, self.successResultOf(response.content())

    def test_faked_methods(self):
        for method, path, headers, expected in (
                ("GET", "/things", {"X-HTTP-Method-Override": "delete"}, "DELETE"),
                ("POST", "/things", {"X-HTTP-Method-Override": "PUT"}, "PUT"),
                ("GET", "/things?_method=put", None, "PUT"),
                ("GET", "/things?_method=", None, None)):
            response, body = self.fetch(method, path, headers)
            self.assertEqual(response.code, 200)
            if expected:
                self.assertEqual(body, expected.encode())
        # _method only fakes GET requests
        self.assertEqual(self.fetch("POST", "/things?_method=delete")[0].code, 405)

    def test_other_methods_get_an_empty_answer(self):
        for method, path, headers, status in (
                ("GET", "/things", {"X-HTTP-Method-Override": "POST"}, 400),
                ("GET", "/things?_method=get", None, 400),
                ("HEAD", "/things", None, 404), ("OPTIONS", "/things", None, 404),
                ("PROPFIND", "/things", None, 404), ("PATCH", "/things", None, 400),
                ("TRACE", "/things", None, 400)):
            response, body = self.fetch(method, path, headers)
            self.assertEqual((response.code, body), (status, b""), (method, headers))
            self.assertIsNone(response.headers.getRawHeaders(b"content-type"))

    def test_error_answers(self):
        response, body = self.fetch("GET", "/things/bad")
        self.assertEqual(response.code, 400)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/plain"])
        self.assertEqual(json.loads(body)["Details"], "Not a good name")
        for path, status in (("/things/unknown", 404), ("/nowhere", 404),
                             ("/things/%2e%2e/nowhere", 404)):
            response, body = self.fetch("GET", path)
            self.assertEqual(response.code, status)
            self.assertEqual(json.loads(body)["OrthancStatus"], 17)
        self.assertEqual(json.loads(self.fetch("GET", "/a/../nowhere/")[1])["Uri"], "/nowhere/")
        for method, path, status in (("GET", "/things/silent", 404),
                                     ("POST", "/things/silent", 400),
                                     ("GET", "/things/forbidden", 403)):
            response, body = self.fetch(method, path)
            self.assertEqual((response.code, body), (status, b""))
            self.assertIsNone(response.headers.getRawHeaders(b"content-type"))
        response, body = self.fetch("DELETE", "/things/x")
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers.getRawHeaders(b"allow"), [b"GET,POST"])
        response, body = self.fetch("POST", "/things")
        self.assertEqual(response.headers.getRawHeaders(b"allow"), [b"GET,PUT,DELETE"])

    def test_json_answers_turn_into_xml_on_demand(self):
        xml = {"Accept": "application/xml"}
        response, body = self.fetch("GET", "/things/", xml)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"application/xml; charset=utf-8"])
        self.assertEqual(body, xmlfmt.dumps({"Name": "x\u00e9", "List": [1, 2]}))
        response, body = self.fetch("GET", "/things/buffer", xml)
        self.assertEqual(body, xmlfmt.dumps({"Plain": "buffer"}))
        response, body = self.fetch("PUT", "/things", xml)
        self.assertEqual(body, b"PUT")
        response, body = self.fetch("GET", "/things/bad", xml)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/plain"])

    def test_switches_and_booleans(self):
        for query, expected in (("", [False, False]), ("?simplify=false&expand", [True, True]),
                                ("?expand=0", [False, False]), ("?expand=1", [False, True]),
                                ("?expand=true", [False, True])):
            self.assertEqual(json.loads(self.fetch("GET", "/things/flags" + query)[1]), expected)
        response, body = self.fetch("GET", "/things/flags?expand=yes")
        self.assertEqual(response.code, 400)
        self.assertEqual(json.loads(body)["Details"],
                         'Expected a Boolean for GET argument "expand", found: yes')


class ConnectionTests(SynchronousTestCase):
    """The HTTP channel of OrthancSite, on a StringTransport."""

    def serve(self, raw, **options):
        app = make_app()
        site = OrthancSite(RestResource(app, render_failure), options)
        channel = site.buildProtocol(None)
        self.clock = Clock()
        channel.callLater = self.clock.callLater
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(raw)
        self.addCleanup(channel.connectionLost, None)
        return channel, transport

    def test_orthancs_headers(self):
        channel, transport = self.serve(b"GET /things HTTP/1.1\r\nHost: x\r\n\r\n")
        head = transport.value().split(b"\r\n\r\n")[0].split(b"\r\n")
        self.assertEqual(head[0], b"HTTP/1.1 200 OK")
        self.assertEqual([line.split(b":")[0] for line in head[1:]], [
            b"Connection", b"Keep-Alive", b"Content-Type", b"X-Content-Type-Options",
            b"Content-Length"])
        self.assertIn(b"Connection: keep-alive", head)
        self.assertIn(b"Keep-Alive: timeout=1", head)
        self.assertFalse(transport.disconnecting)
        # Idle for the keep-alive timeout: closed.
        self.clock.advance(1.5)
        self.assertTrue(transport.disconnecting)

    def test_a_request_under_way_waits_for_the_request_timeout(self):
        channel, transport = self.serve(b"GET /things HTTP/1.1\r\nHost: x\r\n\r\nGET /thi",
                                        HttpRequestTimeout=30)
        self.clock.advance(10)
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(b"ngs HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 2)
        self.clock.advance(1.5)
        self.assertTrue(transport.disconnecting)

    def test_a_faked_head_request_gets_no_body(self):
        channel, transport = self.serve(
            b"HEAD /things HTTP/1.1\r\nHost: x\r\nX-HTTP-Method-Override: PUT\r\n\r\n"
            b"GET /things HTTP/1.1\r\nHost: x\r\n\r\n")
        first, second = transport.value().split(b"HTTP/1.1 200 OK")[1:]
        self.assertIn(b"Content-Length: 3\r\n", first)
        self.assertTrue(first.endswith(b"\r\n\r\n"))
        self.assertTrue(second.endswith(b"}"))

    def test_bodies_in_memory_in_one_piece_or_several(self):
        body = bytes(range(256)) * 1000
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        expected = {"Size": len(body), "Head": body[:8].decode("latin-1"), "Type": "InMemoryBody"}
        # Head and body in one read, then a second request in pieces (and
        # a third one pipelined behind it).
        channel, transport = self.serve(head + body)
        channel.dataReceived(head + body[:1000])
        channel.dataReceived(body[1000:70000])
        channel.dataReceived(body[70000:] + head + body)
        answers = [json.loads(part.split(b"\r\n\r\n", 1)[1])
                   for part in transport.value().split(b"HTTP/1.1 200 OK")[1:]]
        self.assertEqual(answers, [expected] * 3)

    def test_keep_alive_off(self):
        channel, transport = self.serve(b"GET /things HTTP/1.1\r\nHost: x\r\n\r\n",
                                        KeepAlive=False)
        self.assertIn(b"\r\nConnection: close\r\n", transport.value())
        self.assertNotIn(b"Keep-Alive", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_errors_undescribed(self):
        channel, transport = self.serve(b"GET /things/bad HTTP/1.1\r\nHost: x\r\n\r\n",
                                        HttpDescribeErrors=False)
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 "))
        self.assertTrue(answer.endswith(b"Content-Length: 0\r\n\r\n"))
        self.assertNotIn(b"\r\nContent-Type:", answer)


class LogCategoryTests(SynchronousTestCase):

    def tearDown(self):
        logs.set_level("default")

    def test_categories(self):
        level_of = logs._filter.logLevelForNamespace
        logs.set_level("verbose", "http")
        self.assertEqual((logs.get_level(), logs.get_level("http"), logs.get_level("dicom")),
                         ("verbose", "verbose", "default"))
        self.assertEqual(level_of("orthancd.rest.dispatch"), LogLevel.debug)
        self.assertEqual(level_of("orthancd.net.server"), LogLevel.info)
        self.assertEqual(level_of("orthancd.server"), LogLevel.info)
        logs.set_level("trace", "generic")
        self.assertEqual(logs.get_level(), "trace")
        self.assertEqual(level_of("orthancd.server"), LogLevel.debug)
        self.assertEqual(level_of("orthancd.lua_service"), LogLevel.info)
        logs.set_level("default")
        self.assertEqual(set(map(logs.get_level, logs.CATEGORIES)), {"default"})
        self.assertEqual(level_of("orthancd.rest.dispatch"), LogLevel.info)


class InMemoryBodyTests(SynchronousTestCase):
    """Request bodies Twisted keeps in memory (OrthancSite.getContentFile)."""

    def test_one_piece_is_handed_on_as_it_came(self):
        body = InMemoryBody()
        piece = b"x" * 100000
        body.write(piece)
        self.assertEqual(body.tell(), len(piece))
        body.seek(0, 0)
        self.assertIs(body.getvalue(), piece)
        self.assertIs(body.read(), piece)
        self.assertEqual(body.read(), b"")

    def test_pieces_are_joined_once_and_read_as_a_file(self):
        body = InMemoryBody()
        for piece in (b"abc", memoryview(b"def"), bytearray(b"ghij")):
            body.write(piece)
        self.assertEqual(body.tell(), 10)
        self.assertEqual(body.getvalue(), b"abcdefghij")
        self.assertIs(body.getvalue(), body.getvalue())
        body.seek(2)
        self.assertEqual(body.read(3), b"cde")
        self.assertEqual(body.tell(), 5)
        self.assertEqual(body.read(100), b"fghij")
        self.assertEqual(body.seek(-4, 2), 6)
        self.assertEqual(body.read(), b"ghij")
        body.close()
        self.assertEqual(body.getvalue(), b"")
