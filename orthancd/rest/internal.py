"""Calling the REST API from inside the server, without HTTP.

Lua's RestApiGet/Post/Put/Delete go through the very same resource tree as
network clients (same routes, same JSON, same errors) but skip sockets,
authentication and the remote-access check: a script is already trusted.
"""
import io

from twisted.internet import defer, threads
from twisted.internet.address import IPv4Address
from twisted.web import server


class _Channel:
    """The slice of HTTPChannel that twisted.web.server.Request talks to."""

    transport = None
    factory = None

    def __init__(self, site, done):
        self.site = site
        self._done = done
        self.status = 200
        self.headers = {}
        self.chunks = []

    def getPeer(self):
        return IPv4Address("TCP", "127.0.0.1", 0)

    def getHost(self):
        return IPv4Address("TCP", "127.0.0.1", 0)

    def isSecure(self):
        return False

    def writeHeaders(self, version, code, reason, headers):
        self.status = int(code)
        self.headers = {k.lower(): v[-1] for k, v in headers.getAllRawHeaders()}

    def write(self, data):
        self.chunks.append(data)

    def writeSequence(self, data):
        self.chunks.extend(data)

    def registerProducer(self, producer, streaming):
        producer.resumeProducing()

    def unregisterProducer(self):
        pass

    def requestDone(self, request):
        self._done.callback((self.status, self.headers, b"".join(self.chunks)))

    def loseConnection(self):
        pass


class InternalClient:
    """``request(method, uri, body, headers)`` -> Deferred (status, headers, body)."""

    def __init__(self, resource):
        self._site = server.Site(resource, parsePOSTFormSubmission=False)

    def request(self, method, uri, body=b"", headers=None):
        done = defer.Deferred()
        channel = _Channel(self._site, done)
        request = server.Request(channel)
        if isinstance(uri, str):
            uri = uri.encode("utf-8")
        if not uri.startswith(b"/"):
            uri = b"/" + uri
        for name, value in (headers or {}).items():
            request.requestHeaders.setRawHeaders(name.encode() if isinstance(name, str) else name,
                                                 [value.encode() if isinstance(value, str) else value])
        request.content = io.BytesIO(body or b"")
        request.internal = True
        request.requestReceived(method.encode() if isinstance(method, str) else method,
                                uri, b"HTTP/1.0")
        return done


class BlockingRestCaller:
    """For code running in a worker thread (the Lua engine): a blocking
    ``call(method, uri, body, headers) -> (status, body)`` that hops onto the
    reactor thread to run the request and waits for its answer."""

    def __init__(self, reactor, client):
        self._reactor = reactor
        self._client = client

    def call(self, method, uri, body=None, headers=None):
        status, _headers, answer = threads.blockingCallFromThread(
            self._reactor, self._client.request, method, uri, body or b"", headers or {})
        return status, answer
