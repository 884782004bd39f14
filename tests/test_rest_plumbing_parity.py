"""REST plumbing compared with the real Orthanc 1.13.0, request by request:
error answers (status, headers, body), response headers, method faking,
path normalisation, XML answers, folder listings, log levels, /peers, /jobs,
/plugins, /tools/dicom-conformance, /tools/accepted-sop-classes and the
HTTP keep-alive.

One oracle and one orthancd for the module, both holding the same instance
and the same OrthancPeers."""
import http.client
import json
import socket
import time

import pytest

from orthancd.net.scp_store import STORAGE_SOP_CLASSES
from orthancd.net.transfer_syntaxes import KNOWN
from orthancd.rest import xmlfmt
from tests.support.daemon import Daemon, read_sample
from tests.support.oracle import RealOrthanc

PEERS = {
    "zpeer": {"Url": "http://127.0.0.1:9998", "Username": "u", "Password": "secret",
              "HttpHeaders": {"Token": "t", "Another": "a"}, "Timeout": 5,
              "Site": "north", "Rank": 3, "Primary": True},
    "Peer1": ["http://127.0.0.1:9999/"],
    "apeer": ["http://127.0.0.1:9997/", "alice", "password"],
}

INSTANCE = "66a662ce-7430e543-bad44d47-0dc5a943-ec7a538d"
SERIES = "f2635388-f01d497a-15f7c06b-ad7dba06-c4c599fe"
STUDY = "b9c08539-26f93bde-c81ab0d7-bffaf2cb-a4d0bdd0"
PATIENT = "6816cb19-844d5aee-85245eba-28e841e6-2414fae2"
UNKNOWN = "00000000-00000000-00000000-00000000-00000000"
LEVELS = (("patients", PATIENT), ("studies", STUDY), ("series", SERIES), ("instances", INSTANCE))

# A metadata value exercising XML escaping: markup, quotes, control
# characters (escaped or kept), non-ASCII.
AWKWARD_TEXT = 'a<b>&"\'\x01\t\n\r\x1f\u00e9\u20ac z]]>'


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    oracle = RealOrthanc(tmp_path_factory.mktemp("oracle"), OrthancPeers=PEERS).start()
    try:
        daemon = Daemon(tmp_path_factory.mktemp("orthancd"), OrthancPeers=PEERS).start()
    except Exception:
        oracle.stop()
        raise
    try:
        for server in (oracle, daemon):
            client = server.client()
            assert client.upload(read_sample("DummyCT.dcm"))["ID"] == INSTANCE
            assert client.put("/instances/%s/metadata/1025" % INSTANCE,
                              AWKWARD_TEXT.encode("utf-8")).status == 200
            assert client.put("/instances/%s/metadata/1026" % INSTANCE, b"").status == 200
            assert client.put("/instances/%s/attachments/1030" % INSTANCE, b"data").status == 200
        yield oracle, daemon
    finally:
        daemon.stop()
        oracle.stop()


def fetch(server, method, path, body=None, headers=None):
    """(status, headers as (lowercase name, value) in order, body): the path
    goes out exactly as written."""
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return (response.status, [(k.lower(), v) for k, v in response.getheaders()],
                response.read())
    finally:
        connection.close()


def assert_same(servers, method, path, body=None, headers=None):
    oracle, daemon = servers
    expected = fetch(oracle, method, path, body, headers)
    actual = fetch(daemon, method, path, body, headers)
    assert actual == expected, (method, path)
    return actual


# -- error answers -----------------------------------------------------------

ERRORS = [
    # unknown routes: Orthanc's JSON error, sent as text/plain
    ("GET", "/nope"), ("POST", "/nope"), ("PUT", "/nope"), ("DELETE", "/nope"),
    ("GET", "/patients/%s/nope" % PATIENT), ("GET", "/tools/nope"),
    # the root: no Orthanc Explorer in orthancd, hence Orthanc's answer
    # without it (set the explorer aside: see test_root)
    # wrong methods: 405 with Allow in Orthanc's order, no body
    ("POST", "/system"), ("PUT", "/patients"), ("DELETE", "/tools"), ("POST", "/tools/now"),
    ("DELETE", "/instances/%s/tags" % INSTANCE), ("GET", "/tools/find"),
    ("GET", "/tools/lookup"), ("POST", "/peers"), ("PUT", "/jobs"),
    ("POST", "/tools/accepted-sop-classes"), ("PUT", "/tools/accepted-sop-classes"),
    ("POST", "/instances/%s/attachments/dicom" % INSTANCE),
    # bad JSON bodies and arguments
    ("POST", "/tools/find", b"not json"), ("POST", "/tools/find", b"[]"),
    ("POST", "/tools/bulk-delete", b"{"), ("GET", "/patients?expand=yes"),
    ("GET", "/patients?since=1"), ("GET", "/patients?limit=abc&since=0"),
    ("GET", "/studies/%s/series?expand=yes" % STUDY),
    ("GET", "/studies/%s/series?expand=false" % STUDY),
    ("GET", "/instances/%s/metadata?expand=maybe" % INSTANCE),
    ("GET", "/peers?expand=no"), ("GET", "/jobs?expand=TRUE"),
    ("GET", "/tools/generate-uid"), ("GET", "/tools/generate-uid?level=Study"),
    ("GET", "/tools/generate-uid?level=image"),
    ("GET", "/exports?limit=x"), ("GET", "/exports?since=-3&limit=y"),
    # attachments and metadata
    ("GET", "/instances/%s/attachments/foo" % INSTANCE),
    ("GET", "/instances/%s/attachments/1031" % INSTANCE),
    ("GET", "/instances/%s/attachments/1031/size" % INSTANCE),
    ("POST", "/instances/%s/attachments/1031/verify-md5" % INSTANCE),
    ("PUT", "/instances/%s/attachments/dicom" % INSTANCE, b"x"),
    ("PUT", "/instances/%s/attachments/70000" % INSTANCE, b"x"),
    ("PUT", "/instances/%s/attachments/1031" % UNKNOWN, b"x"),
    ("DELETE", "/instances/%s/attachments/dicom" % INSTANCE),
    ("DELETE", "/instances/%s/attachments/dicom-until-pixel-data" % INSTANCE),
    ("DELETE", "/instances/%s/attachments/1031" % INSTANCE),
    ("GET", "/instances/%s/attachments/dicom" % INSTANCE),
    ("GET", "/instances/%s/attachments/dicom/md5" % INSTANCE),
    ("POST", "/instances/%s/attachments/dicom/verify-md5" % INSTANCE),
    ("GET", "/instances/%s/metadata/1031" % INSTANCE),
    ("GET", "/instances/%s/metadata/foo" % INSTANCE),
    ("GET", "/instances/%s/metadata/foo" % UNKNOWN),
    ("GET", "/instances/%s/metadata/IndexInSeries" % UNKNOWN),
    ("PUT", "/instances/%s/metadata/IndexInSeries" % INSTANCE, b"2"),
    ("DELETE", "/instances/%s/metadata/ReceptionDate" % INSTANCE),
    ("DELETE", "/instances/%s/metadata/1031" % INSTANCE),
    ("PUT", "/instances/%s/metadata/70000" % INSTANCE, b"x"),
    ("DELETE", "/instances/%s/metadata/70000" % INSTANCE),
    ("GET", "/instances/%s/metadata/70000" % INSTANCE),
    ("DELETE", "/instances/%s/attachments/70000" % INSTANCE),
    ("GET", "/patients/%s/protected" % UNKNOWN),
]
for _level, _ in LEVELS:
    ERRORS += [
        # the resource itself: unanswered, hence an empty 404
        ("GET", "/%s/%s" % (_level, UNKNOWN)), ("DELETE", "/%s/%s" % (_level, UNKNOWN)),
        ("GET", "/%s/nonexistent" % _level),
        # below it: the JSON error
        ("GET", "/%s/%s/metadata" % (_level, UNKNOWN)),
        ("GET", "/%s/%s/attachments" % (_level, UNKNOWN)),
        ("GET", "/%s/%s/attachments/dicom" % (_level, UNKNOWN)),
        ("GET", "/%s/%s/attachments/dicom/data" % (_level, UNKNOWN)),
        ("POST", "/%s/%s/attachments/dicom/verify-md5" % (_level, UNKNOWN)),
        ("GET", "/%s/%s/module" % (_level, UNKNOWN)),
        ("GET", "/%s/%s/statistics" % (_level, UNKNOWN)),
        ("PUT", "/%s/%s/metadata/1030" % (_level, UNKNOWN), b"x"),
        ("DELETE", "/%s/%s/metadata/1030" % (_level, UNKNOWN)),
    ]
for _child in ("studies", "series", "instances"):
    ERRORS.append(("GET", "/patients/%s/%s" % (UNKNOWN, _child)))
for _child in ("tags", "simplified-tags", "header", "file", "frames", "content/0010-0010",
               "patient", "study", "series"):
    ERRORS.append(("GET", "/instances/%s/%s" % (UNKNOWN, _child)))


@pytest.mark.parametrize("request_", ERRORS, ids=lambda r: " ".join(r[:2]))
def test_error_answers_match(servers, request_):
    method, path = request_[:2]
    body = request_[2] if len(request_) > 2 else None
    status, headers, _ = assert_same(servers, method, path, body)
    assert "server" not in dict(headers) and "date" not in dict(headers)


def test_root(servers):
    oracle, daemon = servers
    # Orthanc sends "/" to its Explorer; orthancd has none, so it answers as
    # Orthanc does with "OrthancExplorerEnabled": false.
    assert fetch(oracle, "GET", "/")[0] == 307
    status, headers, body = fetch(daemon, "GET", "/")
    assert status == 404
    assert dict(headers)["content-type"] == "text/plain"
    assert json.loads(body)["Uri"] == "/"


# -- methods -------------------------------------------------------------------

METHODS = [
    ("GET", "/patients", {"X-HTTP-Method-Override": "DELETE"}),
    ("POST", "/patients", {"X-HTTP-Method-Override": "delete"}),
    ("GET", "/patients", {"X-HTTP-Method-Override": "GET"}),
    ("GET", "/patients", {"X-HTTP-Method-Override": "POST"}),
    ("GET", "/patients", {"X-HTTP-Method-Override": "PATCH"}),
    ("GET", "/patients", {"X-HTTP-Method-Override": ""}),
    ("GET", "/nope", {"X-HTTP-Method-Override": "PUT"}),
    ("POST", "/tools/default-encoding", {"X-HTTP-Method-Override": "PUT"}),
    ("HEAD", "/patients", {"X-HTTP-Method-Override": "DELETE"}),
    ("GET", "/patients?_method=delete", {}),
    ("GET", "/patients?_method=PUT", {}),
    ("GET", "/patients?_method=post", {}),
    ("GET", "/patients?_method=get", {}),
    ("GET", "/patients?_method=", {}),
    ("POST", "/patients?_method=delete", {}),
    ("GET", "/tools/default-encoding?_method=PUT", {}),
    ("GET", "/instances/%s/metadata/1025?_method=DELETE" % UNKNOWN, {}),
    ("HEAD", "/patients", {}), ("HEAD", "/nope", {}), ("OPTIONS", "/patients", {}),
    ("PROPFIND", "/patients", {}), ("MKCOL", "/x", {}), ("LOCK", "/patients", {}),
    ("PATCH", "/patients", {}), ("CONNECT", "/patients", {}), ("COPY", "/patients", {}),
]


@pytest.mark.parametrize("method,path,headers", METHODS,
                         ids=lambda r: r if isinstance(r, str) else json.dumps(r))
def test_methods_and_faking_match(servers, method, path, headers):
    assert_same(servers, method, path, headers=headers)


def test_a_method_field_in_a_form_fakes_nothing(servers):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for method, path in (("POST", "/patients"), ("POST", "/instances/%s" % UNKNOWN),
                         ("GET", "/instances/%s" % UNKNOWN)):
        assert_same(servers, method, path, b"_method=DELETE", form)


# -- paths -------------------------------------------------------------------

PATHS = ["/patients/", "//patients", "/patients//", "/tools/now/../default-encoding",
         "/./tools/default-encoding", "/tools/default-encoding/.", "/nope/", "//nope//x/",
         "/nope%20x", "/nope+x", "/nope/.", "/a/b/../../nope", "/nope%2F%2Fx",
         "/nope../x", "/nope/%2E%2E/x", "/instances/a%2Fb", "/%C3%A9", "/%FF",
         "/instances/%zz", "/instances/%s/frames/" % INSTANCE, "/tools/generate-uid/",
         "/peers/", "/patients?since=0&limit=1"]


@pytest.mark.parametrize("path", PATHS)
def test_paths_are_read_as_orthanc_reads_them(servers, path):
    assert_same(servers, "GET", path)


# -- headers -------------------------------------------------------------------

def test_success_headers_match(servers):
    for method, path, body in (("GET", "/patients", None), ("GET", "/tools/now", None),
                               ("GET", "/instances/%s/file" % INSTANCE, None),
                               ("GET", "/instances/%s/attachments/dicom/data" % INSTANCE, None),
                               ("PUT", "/tools/default-encoding", b"Latin1"),
                               ("PUT", "/instances/%s/attachments/1040" % INSTANCE, b"x"),
                               ("DELETE", "/instances/%s/attachments/1040" % INSTANCE, None),
                               ("PUT", "/instances/%s/metadata/1041" % INSTANCE, b"x"),
                               ("DELETE", "/instances/%s/metadata/1041" % INSTANCE, None)):
        oracle, daemon = (fetch(server, method, path, body) for server in servers)
        assert oracle[0] == daemon[0] == 200, path
        # Same headers in the same order (the values of Content-Length and,
        # for the downloads, Content-Disposition depend on the stored file).
        assert [name for name, _ in daemon[1]] == [name for name, _ in oracle[1]], path
        for name in ("connection", "keep-alive", "content-type", "x-content-type-options"):
            assert dict(daemon[1]).get(name) == dict(oracle[1]).get(name), (path, name)


def test_idle_connections_close_after_the_keep_alive_timeout(servers):
    for server in servers:
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
            sock.sendall(b"GET /tools/now HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            assert b"Keep-Alive: timeout=1\r\n" in head
            # A second request on the same connection is served...
            sock.sendall(b"GET /tools/now HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            assert sock.recv(4096).count(b"HTTP/1.1 200 OK") >= 1
            # ...and after more than the keep-alive timeout of silence, the
            # server has closed it (recv times out if it has not).
            time.sleep(2.5)
            sock.settimeout(5)
            while sock.recv(65536):
                pass


# -- XML -----------------------------------------------------------------------

XML_PATHS = ["/patients", "/patients?expand", "/tools", "/peers", "/peers?expand",
             "/peers/zpeer/configuration", "/jobs", "/statistics",
             "/instances/%s" % INSTANCE, "/instances/%s/metadata" % INSTANCE,
             "/instances/%s/metadata?expand" % INSTANCE, "/instances/%s/tags" % INSTANCE,
             "/instances/%s/tags?short" % INSTANCE, "/instances/%s/header" % INSTANCE,
             "/instances/%s/attachments?full" % INSTANCE, "/instances/%s/frames/0" % INSTANCE,
             "/studies/%s/instances" % STUDY, "/series/%s" % SERIES, "/system",
             "/changes?limit=3", "/series/%s/ordered-slices" % SERIES]


def test_xml_writer_matches_orthancs(servers):
    """Orthanc's XML for an answer is what xmlfmt makes of Orthanc's JSON for
    it: objects, lists, lists of lists, empty values, awkward strings."""
    oracle, _ = servers
    for path in XML_PATHS:
        status, _, as_json = fetch(oracle, "GET", path)
        assert status == 200, path
        status, headers, as_xml = fetch(oracle, "GET", path, headers={"Accept": "application/xml"})
        assert dict(headers)["content-type"] == "application/xml; charset=utf-8"
        assert xmlfmt.dumps(json.loads(as_json)) == as_xml, path


def test_xml_answers(servers):
    oracle, daemon = servers
    xml = {"Accept": "application/xml"}
    for path in XML_PATHS[:-1]:  # (ordered slices are not served yet)
        status, headers, as_json = fetch(daemon, "GET", path)
        assert status == 200, path
        status, xml_headers, as_xml = fetch(daemon, "GET", path, headers=xml)
        assert dict(xml_headers)["content-type"] == "application/xml; charset=utf-8"
        assert int(dict(xml_headers)["content-length"]) == len(as_xml)
        assert xmlfmt.dumps(json.loads(as_json)) == as_xml, path
    # Byte for byte where the JSON is the same.
    for path in ("/patients", "/tools", "/peers", "/peers?expand", "/jobs",
                 "/instances/%s/tags" % INSTANCE, "/instances/%s/frames/0" % INSTANCE):
        assert_same(servers, "GET", path, headers=xml)
    awkward = fetch(daemon, "GET", "/instances/%s/metadata?expand" % INSTANCE, headers=xml)[2]
    assert ("<1025>a&lt;b&gt;&amp;\"'&#01;\t\n\r&#31;\u00e9\u20ac z]]&gt;</1025>\n"
            "  <1026 />\n").encode("utf-8") in awkward
    # Only the exact token "application/xml" asks for XML; other answers and
    # errors stay as they are.
    for accept in ("text/xml", "application/json, application/xml", "APPLICATION/XML",
                   "application/json;application/xml", "application/xml;q=0.5",
                   "application/xml ;q=0.5"):
        assert_same(servers, "GET", "/tools", headers={"Accept": accept})
    for method, path, body in (("GET", "/tools/now-local", None), ("GET", "/nope", None),
                               ("GET", "/instances/%s" % UNKNOWN, None),
                               ("POST", "/tools/lookup", b"nothing"),
                               ("POST", "/instances/%s/attachments/dicom/verify-md5" % INSTANCE,
                                None)):
        status, headers, body_ = fetch(daemon, method, path, body, xml)
        expected = fetch(oracle, method, path, body, xml)
        assert (status, dict(headers).get("content-type")) == \
            (expected[0], dict(expected[1]).get("content-type")), path
        if path != "/tools/now-local":
            assert body_ == expected[2], path


# -- folders, tools, peers, jobs, plugins ------------------------------------

def test_unreadable_paging_of_the_logs_reads_as_the_first_page(servers):
    for path in ("/changes?since=abc&limit=2", "/changes?limit=x", "/changes?limit=-5"):
        oracle, daemon = (server.client().get(path) for server in servers)
        assert oracle.status == daemon.status == 200, path
        assert [c["Seq"] for c in daemon.json()["Changes"]] == \
            [c["Seq"] for c in oracle.json()["Changes"]], path


def test_runtime_settings(servers):
    steps = []
    for value in (b"utf8", b"UTF8", b" Utf8", b"Latin1 ", b"bogus", b"latin1"):
        steps += [("PUT", "/tools/default-encoding", value), ("GET", "/tools/default-encoding")]
    for value in (b"maybe", b"True", b" true ", b"1", b"0"):
        steps += [("PUT", "/tools/unknown-sop-class-accepted", value),
                  ("GET", "/tools/unknown-sop-class-accepted")]
    for value in (b"5", b"{}", b"[1]", b"1.2.840.10008.1.2.1", b'"1.2.840.10008.1.2.4.5*"',
                  b'["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]', b"not json", b"", b'"*"'):
        steps += [("PUT", "/tools/accepted-transfer-syntaxes", value)]
    for method, path, *body in steps:
        oracle, daemon = (fetch(server, method, path, *body) for server in servers)
        if path.endswith("accepted-transfer-syntaxes") and oracle[0] == 200:
            # orthancd does not know the syntaxes added by Orthanc 1.11+
            # (JPEG XL, HTJ2K...): compare the ones it knows.
            assert [uid for uid in json.loads(oracle[2]) if uid in KNOWN] == json.loads(daemon[2])
            assert daemon[0] == oracle[0]
        else:
            assert daemon == oracle, (method, path, body)


def test_folders_list_their_children(servers):
    for path in ("/tools", "/tools/", "/instances/%s/frames/0" % INSTANCE,
                 "/instances/%s/frames/7" % UNKNOWN, "/instances/%s/attachments/dicom" % INSTANCE,
                 "/instances/%s/attachments/1030" % INSTANCE, "/peers/zpeer"):
        assert_same(servers, "GET", path)


def test_log_levels(servers):
    oracle, daemon = servers
    steps = [("GET", "/tools/log-level", None)]
    for category in ("generic", "plugins", "http", "sqlite", "dicom", "jobs", "lua"):
        steps += [("GET", "/tools/log-level-" + category, None),
                  ("PUT", "/tools/log-level-" + category, b"verbose"),
                  ("GET", "/tools/log-level-" + category, None),
                  ("GET", "/tools/log-level", None),
                  ("PUT", "/tools/log-level-" + category, b"default")]
    steps += [("PUT", "/tools/log-level-dicom", b"trace"), ("GET", "/tools/log-level", None),
              ("PUT", "/tools/log-level", b"verbose"), ("GET", "/tools/log-level-lua", None),
              ("PUT", "/tools/log-level-http", b" verbose"), ("PUT", "/tools/log-level", b""),
              ("PUT", "/tools/log-level", b"Verbose"), ("PUT", "/tools/log-level-foo", b"trace"),
              ("GET", "/tools/log-level-foo", None), ("PUT", "/tools/log-level", b"default"),
              ("GET", "/tools/log-level-sqlite", None)]
    for method, path, body in steps:
        assert_same(servers, method, path, body)


def test_log_level_of_a_category_changes_what_is_logged(servers):
    _, daemon = servers
    rest = daemon.client()
    rest.get("/tools/generate-uid?level=patient")
    assert rest.put("/tools/log-level-http", "verbose").status == 200
    rest.get("/tools/generate-uid?level=study")
    assert rest.put("/tools/log-level-dicom", "verbose").status == 200
    rest.put("/tools/log-level-http", "default")
    rest.get("/tools/generate-uid?level=series")
    rest.put("/tools/log-level-dicom", "default")
    deadline = time.time() + 10
    while "/tools/generate-uid?level=study" not in daemon.log() and time.time() < deadline:
        time.sleep(0.1)
    log = daemon.log()
    assert "/tools/generate-uid?level=study" in log
    assert "level=patient" not in log and "level=series" not in log


def test_peers(servers):
    for path in ("/peers", "/peers?expand", "/peers?expand=1", "/peers?expand=false",
                 "/peers/zpeer", "/peers/Peer1/configuration", "/peers/apeer/configuration",
                 "/peers/zpeer/configuration", "/peers/nope", "/peers/nope/configuration",
                 "/peers/peer1"):
        assert_same(servers, "GET", path)


def test_jobs(servers):
    # No job has run on either server.
    for path in ("/jobs", "/jobs?expand", "/jobs/nope"):
        assert_same(servers, "GET", path)


def test_plugins(servers):
    oracle, daemon = servers
    plugins = daemon.client().get_json("/plugins")
    # Orthanc always lists its Explorer's extension script first.
    assert plugins[0] == oracle.client().get_json("/plugins")[0] == "explorer.js"
    for plugin_id in plugins[1:]:
        description = daemon.client().get_json("/plugins/" + plugin_id)
        assert description["ID"] == plugin_id
        assert set(description) == {"Description", "ExtendsOrthancExplorer", "ID", "Version"}
        assert description["ExtendsOrthancExplorer"] is False
        # Built into orthancd, not one of Orthanc's plugins.
        assert description["Description"].startswith("Built into orthancd")
    assert "dicom-web" not in plugins
    assert_same(servers, "GET", "/plugins/nope")
    status, headers, body = fetch(daemon, "GET", "/plugins/explorer.js")
    assert status == 200
    assert dict(headers)["content-type"] == "application/javascript"
    assert body.startswith(b"//")


def test_accepted_sop_classes(servers):
    oracle, daemon = servers
    accepted = daemon.client().get_json("/tools/accepted-sop-classes")
    reference = oracle.client().get_json("/tools/accepted-sop-classes")
    # DCMTK 3.6.9's storage classes, as 1.13.0 lists them.
    assert accepted == reference
    assert accepted == sorted(STORAGE_SOP_CLASSES)


def test_dicom_conformance(servers):
    oracle, daemon = servers
    status, headers, body = fetch(daemon, "GET", "/tools/dicom-conformance")
    assert status == 200
    assert dict(headers)["content-type"] == dict(fetch(oracle, "GET",
                                                       "/tools/dicom-conformance")[1])["content-type"]
    text = body.decode("ascii")
    for section in ("Echo SCP", "Store SCP", "Find SCP", "Move SCP", "Get SCP", "Echo SCU",
                    "Store SCU", "Find SCU", "Move SCU", "Get SCU"):
        assert "\n%s Conformance\n" % section in text
    assert "| 1.2.840.10008.1.1\n" in text
    assert "CTImageStorage" in text and "| 1.2.840.10008.5.1.4.1.1.2\n" in text
    assert "| 1.2.840.10008.5.1.4.1.2.2.1\n" in text
    # The transfer syntaxes section follows /tools/accepted-transfer-syntaxes.
    for uid in daemon.client().get_json("/tools/accepted-transfer-syntaxes"):
        assert "| %s\n" % uid in text
