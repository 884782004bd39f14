"""The Orthanc peers' configuration and HTTP options, against the live
Orthanc 1.13.0.

orthancd and a real Orthanc know the same peers (both forms of
OrthancPeers) and the same global HTTP options; the peers are echo servers
(tests/support/echo_peer.py) that answer each request with what they
received, over HTTP, over HTTPS with a certificate signed by a test
authority, over HTTPS requiring a client certificate, and over HTTPS with a
certificate signed by an authority nobody trusts; "silent" accepts
connections and never answers.  Listings, PUT/DELETE, and what each peer
receives from both servers must agree field by field.
"""
import json
import socket

import pytest

from tests.support import oracle
from tests.support.certificates import Authority, key_pem
from tests.support.daemon import Daemon, read_sample
from tests.support.echo_peer import EchoPeer

KEY_PASSWORD = "key-secret"
# What only one side can know: its own name, and the port of the request.
VOLATILE_HEADERS = ("user-agent",)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    trusted, untrusted = Authority("Test CA"), Authority("Nobody's CA")
    files = {"ca": folder / "ca.pem", "other-ca": folder / "other-ca.pem"}
    files["ca"].write_bytes(trusted.pem())
    files["other-ca"].write_bytes(untrusted.pem())
    for name, authority, server in (("server", trusted, True), ("untrusted", untrusted, True),
                                    ("client", trusted, False)):
        certificate, key = authority.issue(name, dns_names=["localhost"], server=server)
        files[name] = folder / (name + ".pem")
        files[name].write_bytes(certificate)
        files[name + "-key"] = folder / (name + "-key.pem")
        files[name + "-key"].write_bytes(key_pem(key, KEY_PASSWORD if name == "client" else None))
    return files


@pytest.fixture(scope="module")
def echoes(tmp_path_factory, tls_files):
    folder = tmp_path_factory.mktemp("echo")
    made = {
        "plain": EchoPeer(folder),
        "tls": EchoPeer(folder, tls_files["server"], tls_files["server-key"]),
        "mutual": EchoPeer(folder, tls_files["server"], tls_files["server-key"],
                           tls_files["ca"]),
        "untrusted": EchoPeer(folder, tls_files["untrusted"], tls_files["untrusted-key"]),
    }
    try:
        for echo in made.values():
            echo.start()
        yield made
    finally:
        for echo in made.values():
            echo.stop()


@pytest.fixture(scope="module")
def silent():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield "http://127.0.0.1:%d/" % listener.getsockname()[1]
    listener.close()


def configured_peers(echoes, tls_files, silent):
    plain = echoes["plain"].url()
    client_certificate = {"CertificateFile": str(tls_files["client"]),
                          "CertificateKeyFile": str(tls_files["client-key"])}
    return {
        "short": [plain],
        "credentials": [plain, "alice", "alice-password"],
        "long": {"Url": plain, "Username": "bob", "Password": "bob-password",
                 "HttpHeaders": {"X-Token": "token", "X-Empty": "", "Accept": "text/x-mine"},
                 "Timeout": 9, "Site": "north", "Flag": True, "Rank": 3},
        "url-key": {"URL": plain.rstrip("/")},
        "tls": [echoes["tls"].url("localhost")],
        "tls-by-ip": [echoes["tls"].url()],
        "mutual": dict(client_certificate, Url=echoes["mutual"].url("localhost"),
                       CertificateKeyPassword=KEY_PASSWORD),
        "mutual-no-certificate": [echoes["mutual"].url("localhost")],
        "mutual-bad-password": dict(client_certificate, Url=echoes["mutual"].url("localhost"),
                                    CertificateKeyPassword="wrong"),
        "untrusted": [echoes["untrusted"].url("localhost")],
        "silent": {"Url": silent, "Timeout": 1},
        "silent-global": [silent],
    }


@pytest.fixture(scope="module")
def servers(tmp_path_factory, echoes, tls_files, silent):
    options = {"OrthancPeers": configured_peers(echoes, tls_files, silent),
               "HttpsCACertificates": str(tls_files["ca"]), "HttpsVerifyPeers": True,
               "HttpTimeout": 2}
    ours = Daemon(tmp_path_factory.mktemp("orthancd"), **options)
    real = oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), **options)
    with oracle.running((ours, real)):
        yield ours, real


def _body(answer):
    try:
        return json.loads(answer.body)
    except ValueError:
        return answer.body


def same(servers, method, path, body=None):
    ours, real = servers[0].client(), servers[1].client()
    reference = real.request(method, path, body)
    mine = ours.request(method, path, body)
    assert (mine.status, _body(mine)) == (reference.status, _body(reference)), \
        (method, path, body)
    return reference, mine


def test_listing_like_orthanc(servers):
    same(servers, "GET", "/peers")
    same(servers, "GET", "/peers?expand")
    for name in servers[1].client().get_json("/peers") + ["nope"]:
        same(servers, "GET", "/peers/" + name)
        same(servers, "GET", "/peers/%s/configuration" % name)


def _seen(answer):
    """What the echo peer saw, less what names the sender."""
    seen = json.loads(answer.body)
    for header in VOLATILE_HEADERS:
        seen["Headers"].pop(header, None)
    return seen


def test_requests_carry_the_peer_options_like_orthanc(servers):
    """Credentials, HTTP headers (an empty one removes the header), client
    certificates, the trusted authorities and the timeouts, seen from the
    peer's side."""
    statuses = {}
    for name in ("short", "credentials", "long", "url-key", "tls", "tls-by-ip", "mutual",
                 "mutual-no-certificate", "mutual-bad-password", "untrusted", "silent",
                 "silent-global"):
        ours, real = servers[0].client(), servers[1].client()
        reference = real.get("/peers/%s/system" % name)
        mine = ours.get("/peers/%s/system" % name)
        assert mine.status == reference.status, (name, mine.body, reference.body)
        statuses[name] = reference.status
        if reference.status == 200:
            assert _seen(mine) == _seen(reference), name
            assert mine.headers.get("Content-Type") == reference.headers.get("Content-Type")
        else:
            assert _body(mine) == _body(reference), name
    # What reached the peers, and what did not.
    assert [name for name, status in statuses.items() if status == 200] == [
        "short", "credentials", "long", "url-key", "tls", "mutual"]
    assert _seen(servers[0].client().get("/peers/mutual/system"))["ClientCertificate"] == \
        "client"


def test_store_sends_what_orthanc_sends(servers, echoes):
    """POST /instances as Orthanc's peer store job sends it, compressed or
    not, with the peer's options."""
    data = read_sample("DummyCT.dcm")
    ours, real = servers[0].client(), servers[1].client()
    instance = ours.upload(data)["ID"]
    assert real.upload(data)["ID"] == instance
    log = echoes["plain"].url() + "__log"
    for peer in ("short", "long"):
        for compress in (False, True):
            seen = []
            for client in (real, ours):
                _read(log)
                answer = client.post("/peers/%s/store" % peer,
                                     {"Resources": [instance], "Compress": compress})
                # The echo's answer is no DICOM answer: both fail the same way.
                seen.append((answer.status, _body(answer), _received(log)))
            assert seen[1] == seen[0], (peer, compress)
            requests = seen[0][2]
            assert requests and requests[0]["BodyLength"] == len(data)
            assert (requests[0]["Headers"].get("content-encoding") == "gzip") == compress


def _read(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def _received(log):
    received = _read(log)
    for request in received:
        for header in VOLATILE_HEADERS:
            request["Headers"].pop(header, None)
    return received


PUT_BODIES = [
    ["http://127.0.0.1:1/"], ["http://127.0.0.1:1", "u", "p"], ["http://h:1/", "u"],
    ["http://h/", 5, True], [], ["ftp://h/"], ["no-scheme.example"], [""], {"Url": ""},
    {"Url": 5}, {"URL": "http://h:2"}, {"Url": "http://h", "Username": "u"},
    {"Url": "http://h", "Password": "p"}, {"Url": "http://h", "HttpHeaders": {"A": 1}},
    {"Url": "http://h", "HttpHeaders": ["A"]}, {"Url": "http://h", "Timeout": -1},
    {"Url": "http://h", "Timeout": "5"}, {"Url": "http://h", "Timeout": 0},
    {"Url": "http://h", "Pkcs11": "yes"}, {"Url": "http://h", "Pkcs11": True},
    {"Url": "http://h", "Site": ["x"]}, {"Url": "http://h", "Site": 2 ** 40},
    {"Url": "http://h", "Site": 1.5}, {"Url": "http://h", "Site": None},
    {"Url": "http://h", "CertificateFile": "/nonexistent.pem"},
    {"Url": "http://h", "CertificateFile": "/etc/hostname", "CertificateKeyFile": "/nope"},
    {"Url": "http://h", "CertificateFile": "/etc/hostname", "CertificateKeyFile": "/etc/hostname",
     "CertificateKeyPassword": "pw"},
    "http://h", 5, None,
]


def test_put_and_delete_like_orthanc(servers):
    """Each body of PUT /peers/{id}, good or bad, then what the listings
    show; DELETE of known and unknown peers."""
    for number, body in enumerate(PUT_BODIES):
        name = "added-%d" % number
        same(servers, "PUT", "/peers/" + name, json.dumps(body))
        same(servers, "GET", "/peers/%s/configuration" % name)
    same(servers, "PUT", "/peers/added-0", b"{not json")
    same(servers, "PUT", "/peers/bad%20name", ["http://h/"])
    same(servers, "PUT", "/peers/short", {"Url": "http://127.0.0.1:1", "Timeout": 3})
    same(servers, "GET", "/peers?expand")
    for name in ("added-0", "added-0", "short", "nope"):
        same(servers, "DELETE", "/peers/" + name)
    same(servers, "GET", "/peers")
    same(servers, "GET", "/peers?expand")


def test_peers_in_database_survive_a_restart(tmp_path_factory, echoes, tls_files):
    """OrthancPeersInDatabase: the configuration file's peers are ignored,
    changes are kept in the index across a restart.  HttpsVerifyPeers false
    reaches the peer whose authority nobody trusts."""
    options = {"OrthancPeersInDatabase": True, "HttpsVerifyPeers": False,
               # Not read when peers are not verified.
               "HttpsCACertificates": "/nonexistent/ca.pem",
               "OrthancPeers": {"ignored": [echoes["plain"].url()]}}
    pair = (Daemon(tmp_path_factory.mktemp("orthancd-db"), **options),
            oracle.RealOrthanc(tmp_path_factory.mktemp("oracle-db"), **options))
    with oracle.running(pair):
        same(pair, "GET", "/peers")
        untrusted = {"Url": echoes["untrusted"].url("localhost"), "Username": "carol",
                     "Password": "carol-password", "HttpHeaders": {"X-Site": "db"}}
        same(pair, "PUT", "/peers/untrusted", untrusted)
        same(pair, "PUT", "/peers/plain", [echoes["plain"].url(), "dave", "dave-password"])
        same(pair, "PUT", "/peers/gone", [echoes["plain"].url()])
        same(pair, "DELETE", "/peers/gone")
        for server in pair:
            oracle.stop_quickly([server])  # what Orthanc committed stays
            server.start()
        same(pair, "GET", "/peers?expand")
        for name in ("untrusted", "plain"):
            reference = pair[1].client().get("/peers/%s/system" % name)
            mine = pair[0].client().get("/peers/%s/system" % name)
            assert reference.status == 200, reference.body
            assert _seen(mine) == _seen(reference)


def test_unusable_trusted_authorities_like_orthanc(tmp_path_factory, echoes, tls_files):
    """HttpsCACertificates naming a file without certificates: HTTPS
    requests fail as libcurl makes them fail, HTTP ones go."""
    garbage = tmp_path_factory.mktemp("ca") / "garbage.pem"
    garbage.write_text("not a certificate\n")
    options = {"HttpsCACertificates": str(garbage),
               "OrthancPeers": {"tls": [echoes["tls"].url("localhost")],
                                "plain": [echoes["plain"].url()]}}
    pair = (Daemon(tmp_path_factory.mktemp("orthancd-ca"), **options),
            oracle.RealOrthanc(tmp_path_factory.mktemp("oracle-ca"), **options))
    with oracle.running(pair):
        reference, _ = same(pair, "GET", "/peers/tls/system")
        assert "SSL CA cert" in reference.json()["Details"]
        assert pair[0].client().get("/peers/plain/system").status == 200
