"""Talking to Orthanc peers ("OrthancPeers") over HTTP, with treq.

What Orthanc's HttpClient does for a peer: the peer's URL joined with the
URI, Basic credentials when both a username and a password are set, the
peer's HttpHeaders, its Timeout (else HttpTimeout), HttpProxy, and for
HTTPS HttpsVerifyPeers, HttpsCACertificates and the peer's client
certificate.  Failures to reach the peer become Orthanc's errors (libcurl's
wording), a non-2xx answer is reported with its status.
"""
import gzip

import treq
from twisted.internet import defer, error as net_error, ssl
from twisted.internet.endpoints import HostnameEndpoint
from twisted.web import client as web_client
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from orthancd.errors import ErrorCode, OrthancError

# libcurl's strerror() of the failures Orthanc reports (curl >= 7.74).
_CURL_CONNECT = "Could not connect to server"
_CURL_RESOLVE = "Could not resolve hostname"
_CURL_TIMEOUT = "Timeout was reached"
_CURL_SSL = "SSL peer certificate or SSH remote key was not OK"
_CURL_RECEIVE = "Failure when receiving data from the peer"


@implementer(IPolicyForHTTPS)
class _PeerTlsPolicy:
    """HTTPS towards a peer: verified against the system's or the given
    CA certificates (or not verified), with the peer's client certificate."""

    def __init__(self, verify, trust_root, client_certificate):
        self._verify = verify
        self._trust_root = trust_root
        self._client_certificate = client_certificate

    def creatorForNetloc(self, hostname, port):
        if not self._verify:
            if self._client_certificate is None:
                return ssl.CertificateOptions(verify=False)
            return ssl.CertificateOptions(
                privateKey=self._client_certificate.privateKey.original,
                certificate=self._client_certificate.original, verify=False)
        return ssl.optionsForClientTLS(hostname.decode("ascii"), trustRoot=self._trust_root,
                                       clientCertificate=self._client_certificate)


def load_tls(configuration, peer):
    """Blocking (file reads): the TLS policy of a peer reached over HTTPS."""
    trust = None
    ca_file = configuration.get("HttpsCACertificates", "")
    if ca_file:
        with open(ca_file, "rb") as stream:
            trust = ssl.trustRootFromCertificates(
                [ssl.Certificate.loadPEM(block) for block in _pem_blocks(stream.read())])
    return _PeerTlsPolicy(bool(configuration.get("HttpsVerifyPeers", True)), trust,
                          _client_certificate(peer))


def _pem_blocks(data):
    marker = b"-----END CERTIFICATE-----"
    return [block + marker for block in data.split(marker) if b"-----BEGIN" in block]


def _client_certificate(peer):
    if not peer.get("CertificateFile"):
        return None
    with open(peer["CertificateFile"], "rb") as stream:
        certificate = stream.read()
    key_file = peer.get("CertificateKeyFile")
    key = b""
    if key_file:
        with open(key_file, "rb") as stream:
            key = stream.read()
    passphrase = peer.get("CertificateKeyPassword")
    if passphrase:
        from OpenSSL import crypto
        private = crypto.load_privatekey(crypto.FILETYPE_PEM, key, passphrase.encode())
        key = crypto.dump_privatekey(crypto.FILETYPE_PEM, private)
    return ssl.PrivateCertificate.loadPEM(certificate + b"\n" + key)


async def open_peer_client(server, peer):
    """A PeerClient for ``peer``; its certificates (HTTPS) are read off the
    reactor."""
    tls = None
    if peer["Url"].lower().startswith("https://"):
        tls = await server.file_io.run(load_tls, server.configuration, peer)
    return PeerClient(server.reactor, server.configuration, peer, tls)


class PeerAnswer:
    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers

    @property
    def ok(self):
        return 200 <= self.status < 300


class PeerClient:
    """Requests to one peer (a parsed OrthancPeers entry, see
    orthancd.config.parse_peer)."""

    def __init__(self, reactor, configuration, peer, tls=None):
        """``tls``: from ``load_tls`` for a peer reached over HTTPS."""
        if peer.get("Pkcs11"):
            raise OrthancError(ErrorCode.InternalError,
                               "This version of Orthanc is compiled without support for PKCS#11")
        self._reactor = reactor
        self.peer = peer
        timeout = peer.get("Timeout") or configuration.get("HttpTimeout", 60)
        self._timeout = float(timeout) if timeout else None
        self._headers = {name: [value] for name, value in peer.get("HttpHeaders", {}).items()}
        username, password = peer.get("Username"), peer.get("Password")
        self._auth = (username, password) if username and password else None
        self._pool = web_client.HTTPConnectionPool(reactor, persistent=True)
        proxy = configuration.get("HttpProxy", "")
        if proxy:
            host, _, port = proxy.split("://")[-1].rstrip("/").partition(":")
            agent = web_client.ProxyAgent(HostnameEndpoint(reactor, host, int(port or 80)),
                                          reactor, pool=self._pool)
        else:
            policy = tls or web_client.BrowserLikePolicyForHTTPS()
            agent = web_client.Agent(reactor, contextFactory=policy, pool=self._pool)
        self._client = treq.client.HTTPClient(web_client.RedirectAgent(agent))

    def url(self, uri):
        return self.peer["Url"].rstrip("/") + "/" + uri.lstrip("/")

    async def request(self, method, uri, body=None, headers=None):
        """A PeerAnswer; OrthancError(NetworkProtocol) when the peer cannot
        be reached or answered nothing."""
        url = self.url(uri)
        all_headers = dict(self._headers)
        for name, value in (headers or {}).items():
            all_headers[name] = [value]
        try:
            response = await self._client.request(
                method, url, data=body, headers=all_headers, auth=self._auth,
                timeout=self._timeout)
            content = await treq.content(response)
        except (net_error.ConnectionRefusedError, net_error.ConnectError,
                web_client.ResponseNeverReceived) as exc:
            raise _curl_error(_reason(exc), url) from None
        except net_error.DNSLookupError:
            raise _curl_error(_CURL_RESOLVE, url) from None
        except (defer.CancelledError, defer.TimeoutError, net_error.TimeoutError):
            raise _curl_error(_CURL_TIMEOUT, url) from None
        except (web_client.ResponseFailed, web_client.PartialDownloadError):
            raise _curl_error(_CURL_RECEIVE, url) from None
        return PeerAnswer(response.code, content, response.headers)

    def close(self):
        return self._pool.closeCachedConnections()

    async def post_instance(self, data, compress=False):
        """POST a DICOM file to the peer's /instances; the answer."""
        headers = {"Expect": ""}
        if compress:
            headers["Content-Encoding"] = "gzip"
        return await self.request("POST", "instances", data, headers)


def _reason(exc):
    if isinstance(exc, web_client.ResponseNeverReceived):
        reasons = [f.value for f in exc.reasons]
        if any(isinstance(r, (defer.CancelledError, net_error.TimeoutError)) for r in reasons):
            return _CURL_TIMEOUT
        if any("SSL" in type(r).__name__ or "certificate" in str(r) for r in reasons):
            return _CURL_SSL
        return _CURL_RECEIVE
    return _CURL_CONNECT


def _curl_error(reason, url):
    return OrthancError(ErrorCode.NetworkProtocol,
                        "libCURL error: %s while accessing %s" % (reason, url))


def gzip_compress(data):
    """Blocking: the gzip of ``data`` at the maximum level, as Orthanc sends it."""
    return gzip.compress(bytes(data), compresslevel=9)


def public_description(peer):
    """The peer as a job's "Peer" shows it: Orthanc's serialization of its
    WebServiceParameters without passwords."""
    from orthancd.peer_registry import serialize_peer
    return serialize_peer(peer, include_passwords=False)
