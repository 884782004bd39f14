"""How answers leave the HTTP channel (orthancd.rest.app.OrthancChannel):
the head is held until the body's first bytes and both are sent straight to
the socket when nothing waits in the transport's buffer, else through it.
Seen from a raw socket: pipelined requests answered in order, HEAD answers
without a body, an answer larger than the socket buffers to a client that
reads late, and Connection: close."""
import os
import socket
import time

import pytest

from tests.support.daemon import Daemon, sample


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    server = Daemon(tmp_path_factory.mktemp("answers")).start()
    yield server
    server.stop()


def _connect(daemon):
    connection = socket.create_connection(("127.0.0.1", daemon.http_port), timeout=30)
    return connection, connection.makefile("rb")


def _read_answer(stream, head_only=False):
    status = stream.readline()
    headers = {}
    while True:
        line = stream.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", 0))
    body = b"" if head_only else stream.read(length)
    return status, headers, body


def test_pipelined_requests_are_answered_in_order(daemon):
    connection, stream = _connect(daemon)
    try:
        connection.sendall(b"GET /system HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"HEAD /system HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"GET /nowhere-at-all HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"GET /statistics HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = _read_answer(stream)
        assert status.startswith(b"HTTP/1.1 200") and b'"ApiVersion"' in body
        assert headers["connection"] == "keep-alive"
        # Orthanc 1.13.0 serves no HEAD: a 404 head, and no body follows
        # (the next answer starts right after it).
        status, headers, body = _read_answer(stream, head_only=True)
        assert status.startswith(b"HTTP/1.1 404")
        status, headers, body = _read_answer(stream)
        assert status.startswith(b"HTTP/1.1 404")
        status, headers, body = _read_answer(stream)
        assert status.startswith(b"HTTP/1.1 200") and b'"CountInstances"' in body
    finally:
        connection.close()


def test_a_large_answer_reaches_a_client_that_reads_late(daemon):
    with open(sample("Implicit-vr-us-palette.dcm"), "rb") as f:
        data = f.read()
    client = daemon.client()
    answer = client.post("/instances", data)
    instance = answer.json()["ID"]
    # Large enough to fill the socket buffers: part is sent at once, the
    # rest waits in the transport until the client reads.
    repeats = max(1, (8 << 20) // len(data))
    connection, stream = _connect(daemon)
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        requests = b"GET /instances/%s/file HTTP/1.1\r\nHost: x\r\n\r\n" % instance.encode()
        connection.sendall(requests * repeats)
        time.sleep(0.5)
        for _ in range(repeats):
            status, headers, body = _read_answer(stream)
            assert status.startswith(b"HTTP/1.1 200")
            assert body == data
    finally:
        connection.close()


def test_connection_close_is_honoured_after_the_answer(daemon):
    connection, stream = _connect(daemon)
    try:
        connection.sendall(b"GET /system HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, body = _read_answer(stream)
        assert status.startswith(b"HTTP/1.1 200") and body
        assert headers["connection"] == "close"
        assert stream.read() == b""  # then the server closed
    finally:
        connection.close()


def test_answers_without_a_body(daemon):
    connection, stream = _connect(daemon)
    try:
        for _ in range(3):
            connection.sendall(b"DELETE /instances/%s HTTP/1.1\r\nHost: x\r\n\r\n"
                               % os.urandom(8).hex().encode())
            status, headers, body = _read_answer(stream)
            assert status.startswith(b"HTTP/1.1 404") and body == b""
    finally:
        connection.close()


def test_the_channel_asks_its_address_once():
    # twisted.web asks it for every request; the transport answers with a
    # getsockname system call.
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport
    from orthancd.rest.app import OrthancChannel

    class CountingTransport(StringTransport):
        asked = 0

        def getHost(self):
            self.asked += 1
            return IPv4Address("TCP", "127.0.0.1", 8042)

    channel = OrthancChannel()
    transport = CountingTransport()
    channel.makeConnection(transport)
    assert channel.getHost() == IPv4Address("TCP", "127.0.0.1", 8042)
    assert channel.getHost() is channel.getHost()
    assert transport.asked == 1
