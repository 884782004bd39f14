"""A small HTTP(S) server, run in its own process, that answers every
request with what it received: to see what a server sends to its Orthanc
peers (credentials, HTTP headers, client certificate, body encoding).

    python -m tests.support.echo_peer PORT_FILE [--cert PEM --key PEM
                                                 [--client-ca PEM]]

It writes the port it listens on to PORT_FILE.  With --cert and --key it
serves HTTPS; with --client-ca it requires a client certificate signed by
that authority.  The answer is a JSON object: Method, Path, Authorization,
Headers (lower-case names, the Host and Content-Length left out),
ClientCertificate (the subject's common name, or null), BodyLength (once
gunzipped), BodySha1.  GET /__log answers the list of the requests
received since the previous GET /__log (which is not in it).
"""
import argparse
import gzip
import hashlib
import json
import sys

from twisted.internet import endpoints, reactor, ssl
from twisted.web import resource, server

_IGNORED = {b"host", b"content-length"}


class Echo(resource.Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.log = []

    def render(self, request):
        request.setHeader(b"Content-Type", b"application/json")
        if request.path == b"/__log":
            log, self.log = self.log, []
            return json.dumps(log, sort_keys=True).encode()
        body = request.content.read()
        headers = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in _IGNORED:
                headers[name.decode().lower()] = values[-1].decode()
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        answer = {
            "Method": request.method.decode(),
            "Path": request.uri.decode(),
            "Authorization": headers.pop("authorization", None),
            "Headers": headers,
            "ClientCertificate": _client_common_name(request),
            "BodyLength": len(body),
            "BodySha1": hashlib.sha1(body).hexdigest(),
        }
        self.log.append(answer)
        return json.dumps(answer, sort_keys=True).encode()


def _client_common_name(request):
    certificate = getattr(request.transport, "getPeerCertificate", lambda: None)()
    if certificate is None:
        return None
    from cryptography.x509.oid import NameOID
    subject = certificate.to_cryptography().subject
    return subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("port_file")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    options = parser.parse_args(argv)
    site = server.Site(Echo())
    if options.cert:
        with open(options.cert, "rb") as f:
            certificate = f.read()
        with open(options.key, "rb") as f:
            key = f.read()
        private = ssl.PrivateCertificate.loadPEM(certificate + b"\n" + key)
        extra = {}
        if options.client_ca:
            with open(options.client_ca, "rb") as f:
                authority = ssl.Certificate.loadPEM(f.read())
            extra = {"verify": True, "caCerts": [authority.original],
                     "requireCertificate": True}
        context = ssl.CertificateOptions(privateKey=private.privateKey.original,
                                         certificate=private.original, **extra)
        endpoint = endpoints.SSL4ServerEndpoint(reactor, 0, context, interface="127.0.0.1")
    else:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")

    def listening(port):
        with open(options.port_file, "w") as f:
            f.write(str(port.getHost().port))
    endpoint.listen(site).addCallback(listening)
    reactor.run()


class EchoPeer:
    """The echo server above, in its own process, for a test."""

    def __init__(self, workdir, cert=None, key=None, client_ca=None):
        self.workdir = str(workdir)
        self.arguments = []
        if cert:
            self.arguments += ["--cert", str(cert), "--key", str(key)]
        if client_ca:
            self.arguments += ["--client-ca", str(client_ca)]
        self.scheme = "https" if cert else "http"
        self.port = None
        self.process = None

    def url(self, host="127.0.0.1"):
        return "%s://%s:%d/" % (self.scheme, host, self.port)

    def start(self, timeout=20):
        import os
        import subprocess
        import time
        port_file = os.path.join(self.workdir, "port-%d" % id(self))
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.echo_peer", port_file] + self.arguments,
            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(port_file) and os.path.getsize(port_file):
                with open(port_file) as f:
                    self.port = int(f.read())
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the echo peer did not start")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


if __name__ == "__main__":
    main(sys.argv[1:])
