"""Writing an answer on a TCP connection at once, from the reactor thread.

Twisted's ``transport.write`` buffers the bytes, registers the socket for
writing with epoll and sends them at the next turn of the reactor, then
unregisters it: two ``epoll_ctl`` calls and a turn for every answer.  An
answer to a request (an HTTP answer, a DIMSE response) is small and the
socket's buffer is nearly always free, so ``send_now`` sends it directly and
leaves to Twisted only what the socket did not take.
"""
from twisted.internet import tcp


def send_now(transport, data):
    """Write ``data`` on ``transport``: sent now when the connection is a
    plain TCP one with nothing queued before (the order of the bytes is
    kept), else, and for what the socket did not take, by the transport."""
    if (data and type(transport) is tcp.Server and transport.connected
            and not transport.disconnecting and not transport.dataBuffer
            and not transport._tempDataBuffer and not getattr(transport, "TLS", False)):
        try:
            sent = transport.socket.send(data)
        except OSError:
            sent = 0  # the transport's own write meets the error again and closes
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
