"""orthancd.send_now: an answer goes out on the socket at once, and bytes
never overtake those the transport still holds."""
import os
import socket

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor

from orthancd.send_now import send_now


class _Port:
    _realPortNumber = 8042


def _connection():
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    transport = tcp.Server(ours, Protocol(), ("127.0.0.1", 1), _Port(), 1, MemoryReactor())
    return transport, peer


def _received(peer, size):
    data = b""
    while len(data) < size:
        data += peer.recv(1 << 20)
    return data


def test_a_small_answer_is_sent_without_the_transport():
    transport, peer = _connection()
    send_now(transport, b"answer")
    assert not transport.dataBuffer and not transport._tempDataBuffer
    assert peer.recv(100) == b"answer"


def test_what_the_socket_does_not_take_is_queued_and_what_follows_waits_behind():
    transport, peer = _connection()
    big = os.urandom(16 << 20)  # more than the socket buffers hold
    send_now(transport, big)
    assert transport.dataBuffer or transport._tempDataBuffer
    send_now(transport, b"after")  # not sent past the queued bytes
    received = b""
    while len(received) < len(big) + 5:
        transport.doWrite()
        received += peer.recv(1 << 20)
    assert received == big + b"after"


def test_a_tls_connection_is_left_to_the_transport():
    transport, peer = _connection()
    written = []
    transport.TLS = True
    transport.write = written.append
    send_now(transport, b"clear text")
    assert written == [b"clear text"]
    peer.setblocking(False)
    try:
        assert peer.recv(100) == b""
    except BlockingIOError:
        pass  # nothing went on the socket
