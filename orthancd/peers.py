"""Talking to Orthanc peers ("OrthancPeers") over HTTP.

What Orthanc's HttpClient (libcurl) does for a peer: the peer's URL joined
with the URI, Basic credentials when both a username and a password are
set, the peer's HttpHeaders (one with an empty value removes the header),
"Accept: */*", its Timeout (else HttpTimeout) over the whole exchange,
HttpProxy, redirections followed, and for HTTPS HttpsVerifyPeers,
HttpsCACertificates and the peer's client certificate.  Failures to reach
the peer become Orthanc's errors (libcurl's wording); a non-2xx answer is
reported with its status.

Requests go through a bare twisted.web Agent rather than treq's client,
which would add its own headers (Accept-Encoding, cookies) to what the
peer receives; treq reads the answers.
"""
import base64
import gzip
from io import BytesIO

import treq
from OpenSSL import SSL, crypto
from twisted.internet import defer, error as net_error, ssl
from twisted.internet.endpoints import HostnameEndpoint
from twisted.web import client as web_client
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from orthancd.errors import ErrorCode, OrthancError

# libcurl's strerror() of the failures Orthanc reports (curl >= 7.74).
_CURL_CONNECT = "Could not connect to server"
_CURL_RESOLVE = "Could not resolve hostname"
_CURL_TIMEOUT = "Timeout was reached"
_CURL_SSL = "SSL peer certificate or SSH remote key was not OK"
_CURL_RECEIVE = "Failure when receiving data from the peer"
_CURL_BAD_ARGUMENT = "A libcurl function was given a bad argument"
_CURL_CA_CERTIFICATES = "Problem with the SSL CA cert (path? access rights?)"
# What libcurl sends in a POST unless told otherwise.
_CURL_POST_TYPE = "application/x-www-form-urlencoded"


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


class UnusableTls(Exception):
    """The trusted authorities (HttpsCACertificates) or the peer's client
    certificate cannot be used (a missing file, a wrong key password...):
    every request to the peer fails as libcurl makes it fail, with
    ``reason``."""

    def __init__(self, reason, details):
        super().__init__(details)
        self.reason = reason


def load_tls(configuration, peer):
    """Blocking (file reads): the TLS policy of a peer reached over HTTPS;
    raises UnusableTls when it cannot be used."""
    verify = bool(configuration.get("HttpsVerifyPeers", True))
    trust = None
    ca_file = configuration.get("HttpsCACertificates", "")
    if verify and ca_file:  # Orthanc gives libcurl the file only to verify peers
        trust = _trusted_authorities(ca_file)
    try:
        certificate = _client_certificate(peer)
    except (OSError, crypto.Error, SSL.Error, ValueError) as exc:
        raise UnusableTls(_CURL_BAD_ARGUMENT, str(exc)) from None
    return _PeerTlsPolicy(verify, trust, certificate)


def _trusted_authorities(ca_file):
    try:
        with open(ca_file, "rb") as stream:
            certificates = [ssl.Certificate.loadPEM(block)
                            for block in _pem_blocks(stream.read())]
    except (OSError, crypto.Error, SSL.Error, ValueError) as exc:
        raise UnusableTls(_CURL_CA_CERTIFICATES, str(exc)) from None
    if not certificates:
        raise UnusableTls(_CURL_CA_CERTIFICATES, "No certificate in " + ca_file)
    return ssl.trustRootFromCertificates(certificates)


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
    passphrase = (peer.get("CertificateKeyPassword") or "").encode()
    # A key without a passphrase loads whatever is given; an encrypted one
    # needs the right one (an empty passphrase fails).
    private = crypto.load_privatekey(crypto.FILETYPE_PEM, key or certificate, passphrase)
    key = crypto.dump_privatekey(crypto.FILETYPE_PEM, private)
    return ssl.PrivateCertificate.loadPEM(certificate + b"\n" + key)


async def open_peer_client(server, peer):
    """A PeerClient for ``peer``; its certificates (HTTPS) are read off the
    reactor."""
    tls = None
    if peer["Url"].lower().startswith("https://"):
        try:
            tls = await server.file_io.run(load_tls, server.configuration, peer)
        except UnusableTls as exc:
            tls = exc
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
    """Requests to one peer (see orthancd.peer_registry)."""

    def __init__(self, reactor, configuration, peer, tls=None):
        """``tls``: from ``load_tls`` for a peer reached over HTTPS, or the
        UnusableTls it raised."""
        if peer.get("Pkcs11"):
            raise OrthancError(ErrorCode.InternalError,
                               "This version of Orthanc is compiled without support for PKCS#11")
        self._reactor = reactor
        self.peer = peer
        timeout = peer.get("Timeout") or configuration.get("HttpTimeout", 60)
        self._timeout = float(timeout) if timeout else None
        self._headers = dict(peer.get("HttpHeaders") or {})
        username, password = peer.get("Username"), peer.get("Password")
        self._authorization = None
        if username and password:
            token = base64.b64encode(("%s:%s" % (username, password)).encode("utf-8"))
            self._authorization = b"Basic " + token
        self._unusable_tls = tls if isinstance(tls, UnusableTls) else None
        self._pool = web_client.HTTPConnectionPool(reactor, persistent=True)
        proxy = configuration.get("HttpProxy", "")
        if proxy:
            host, _, port = proxy.split("://")[-1].rstrip("/").partition(":")
            agent = web_client.ProxyAgent(HostnameEndpoint(reactor, host, int(port or 80)),
                                          reactor, pool=self._pool)
        else:
            policy = web_client.BrowserLikePolicyForHTTPS() if tls is None or \
                self._unusable_tls is not None else tls
            agent = web_client.Agent(reactor, contextFactory=policy, pool=self._pool)
        self._agent = web_client.RedirectAgent(agent)

    def url(self, uri):
        return self.peer["Url"].rstrip("/") + "/" + uri.lstrip("/")

    def _request_headers(self, method, extra):
        headers = {"Accept": "*/*"}
        if method in ("POST", "PUT"):
            headers["Content-Type"] = _CURL_POST_TYPE
        headers.update(self._headers)
        headers.update(extra or {})
        out = Headers()
        for name, value in headers.items():
            if value == "":  # libcurl: an empty header removes it
                out.removeHeader(name.encode("utf-8"))
            else:
                out.setRawHeaders(name.encode("utf-8"), [value.encode("utf-8")])
        if self._authorization is not None:
            out.setRawHeaders(b"Authorization", [self._authorization])
        return out

    async def _exchange(self, method, url, headers, body):
        producer = None
        if body is not None:
            producer = web_client.FileBodyProducer(BytesIO(body))
        response = await self._agent.request(method.encode("ascii"), url.encode("utf-8"),
                                             headers, producer)
        content = await treq.content(response)
        return PeerAnswer(response.code, content, response.headers)

    async def request(self, method, uri, body=None, headers=None):
        """A PeerAnswer; OrthancError(NetworkProtocol) when the peer cannot
        be reached or answered nothing."""
        url = self.url(uri)
        if self._unusable_tls is not None:
            raise _curl_error(self._unusable_tls.reason, url)
        exchange = defer.ensureDeferred(self._exchange(
            method, url, self._request_headers(method, headers), body))
        if self._timeout:
            exchange.addTimeout(self._timeout, self._reactor)
        try:
            return await exchange
        except (net_error.ConnectionRefusedError, net_error.ConnectError,
                web_client.ResponseNeverReceived) as exc:
            raise _curl_error(_reason(exc), url) from None
        except net_error.DNSLookupError:
            raise _curl_error(_CURL_RESOLVE, url) from None
        except (defer.CancelledError, defer.TimeoutError, net_error.TimeoutError):
            raise _curl_error(_CURL_TIMEOUT, url) from None
        except (web_client.ResponseFailed, web_client.PartialDownloadError):
            raise _curl_error(_CURL_RECEIVE, url) from None

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
        if any(_is_verification_failure(r) for r in reasons):
            return _CURL_SSL
        return _CURL_RECEIVE
    return _CURL_CONNECT


def _is_verification_failure(reason):
    """Whether the peer's certificate was refused here (untrusted, or not for
    its host name), rather than the peer refusing this side."""
    if type(reason).__name__ == "VerificationError":  # service_identity's
        return True
    return isinstance(reason, SSL.Error) and "certificate verify failed" in str(reason)


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
