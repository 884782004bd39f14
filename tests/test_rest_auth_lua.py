"""HTTP Basic authentication, remote access, and /tools/execute-script."""
from twisted.internet.address import IPv4Address
from twisted.web.test.requesthelper import DummyRequest

from orthancd.config import load_configuration
from orthancd.rest.app import GuardedRoot
from tests.support.daemon import Daemon, read_sample


def test_basic_authentication(tmp_path):
    d = Daemon(tmp_path, AuthenticationEnabled=True,
               RegisteredUsers={"alice": "secret"}).start()
    try:
        anonymous = d.client()
        answer = anonymous.get("/patients")
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="Orthanc Secure Area"'
        assert d.client(("alice", "wrong")).get("/patients").status == 401
        alice = d.client(("alice", "secret"))
        assert alice.get("/patients").status == 200
        uploaded = alice.upload(read_sample("DummyCT.dcm"))
        metadata = alice.get_json("/instances/%s/metadata?expand" % uploaded["ID"])
        assert metadata["HttpUsername"] == "alice"
    finally:
        d.stop()


class _Inner:
    def render(self, request):
        return b"inner"


def _request(host):
    request = DummyRequest([b"patients"])
    request.client = IPv4Address("TCP", host, 12345)
    return request


def test_remote_access_refused_unless_allowed(tmp_path):
    config_path = tmp_path / "c.json"
    config_path.write_text('{"RemoteAccessAllowed": false}')
    closed = GuardedRoot(_Inner(), load_configuration(str(config_path)))
    remote = _request("192.0.2.10")
    assert closed.render(remote) == b""
    assert remote.responseCode == 403
    assert closed.render(_request("127.0.0.1")) == b"inner"
    config_path.write_text('{"RemoteAccessAllowed": true, "AuthenticationEnabled": false}')
    opened = GuardedRoot(_Inner(), load_configuration(str(config_path)))
    assert opened.render(_request("192.0.2.10")) == b"inner"


def test_execute_script(rest):
    assert rest.post("/tools/execute-script", "print(1 + 1)").text == "2\n"
    assert rest.post("/tools/execute-script", "function Twice(x) return 2 * x end").status == 200
    # Functions a script defines stay defined in the server's Lua state.
    assert rest.post("/tools/execute-script", "print(Twice(21))").text == "42\n"
    system = rest.post("/tools/execute-script",
                       "print(ParseJson(RestApiGet('/system'))['Name'])").text
    assert system == "orthancd-test\n"
    script = ("local a = ParseJson(RestApiPost('/tools/lookup', 'nothing-like-this'))\n"
              "print(#a)")
    assert rest.post("/tools/execute-script", script).text == "0\n"
    error = rest.post("/tools/execute-script", "error('boom')")
    assert error.status == 500
    assert error.json()["OrthancStatus"] == 2031
    assert error.json()["Details"].endswith("boom")


def test_execute_script_disabled_by_default(tmp_path):
    d = Daemon(tmp_path, ExecuteLuaEnabled=False).start()
    try:
        assert d.client().post("/tools/execute-script", "print(1)").status == 403
    finally:
        d.stop()
