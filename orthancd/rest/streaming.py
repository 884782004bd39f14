"""Answers too big to hold: written to the client as fast as it reads them,
no faster.

``Pacer`` is the request's push producer: the transport pauses it when its
buffer fills up (a slow client) and resumes it once drained; writers wait
for ``ready()`` between two writes, so what is held in memory stays about
one transport buffer.  ``stream_file`` sends a file read in a worker pool;
``ArchiveSink`` is where a synchronous archive job writes its ZIP.
"""
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from orthancd.errors import ErrorCode, OrthancError
from orthancd.rest.http import content_disposition

READ_SIZE = 256 * 1024


class ClientGone(Exception):
    """The client closed the connection before the end of the answer."""


@implementer(IPushProducer)
class Pacer:
    def __init__(self, request):
        self.request = request
        self.lost = False
        self._paused = False
        self._waiting = []
        request.registerProducer(self, True)
        request.notifyFinish().addErrback(self._lost)

    def ready(self):
        """A Deferred firing when the client can take more (failing with
        ClientGone once it has left)."""
        if self.lost:
            return defer.fail(ClientGone())
        if not self._paused:
            return defer.succeed(None)
        waiting = defer.Deferred()
        self._waiting.append(waiting)
        return waiting

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def stopProducing(self):
        self._lost(None)

    def _lost(self, failure):
        self.lost = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(ClientGone())

    def done(self):
        """No more writes: let go of the request (before it finishes, or
        Twisted complains), unless its connection is already gone."""
        request = self.request
        if request.producer is self and getattr(request, "channel", None) is not None:
            request.unregisterProducer()


async def stream_file(request, open_file, size, pool):
    """Send the file ``open_file()`` opens (in ``pool``, as its reads) as
    the body of the answer, ``size`` bytes announced."""
    stream = await pool.run(open_file)
    request.setHeader(b"Content-Length", b"%d" % size)
    pacer = Pacer(request)
    sent = 0
    try:
        while sent < size:
            await pacer.ready()
            data = await pool.run(stream.read, min(READ_SIZE, size - sent))
            if not data:
                break
            request.write(data)
            sent += len(data)
    except (ClientGone, defer.CancelledError):
        pass   # the client left (the dispatch cancels the handler then)
    finally:
        pacer.done()
        pool.run(stream.close)
    return b""


ZIP_TYPE = b"application/zip"


class ArchiveSink:
    """A synchronous archive, streamed as Orthanc 1.13.0 streams it: the
    headers when the first bytes are ready, then the bytes with neither a
    length nor chunks, the connection closing at the end."""

    def __init__(self, request, filename):
        self.request = request
        self.filename = filename
        self.started = False
        self._pacer = None

    async def write(self, parts):
        request = self.request
        if not self.started:
            self.started = True
            self._pacer = Pacer(request)
            request.setResponseCode(200)
            request.setHeader(b"Content-Disposition", content_disposition(self.filename))
            request.setHeader(b"Content-Type", ZIP_TYPE)
            request.stream_until_close()
        if self._pacer.lost:
            raise OrthancError(ErrorCode.NetworkProtocol, "HTTP client has disconnected while "
                               "creating an archive in synchronous mode")
        for part in parts:
            request.write(part)
        try:
            await self._pacer.ready()
        except ClientGone:
            raise OrthancError(ErrorCode.NetworkProtocol, "HTTP client has disconnected while "
                               "creating an archive in synchronous mode")

    async def finish(self):
        if self._pacer is not None:
            self._pacer.done()

    def abort(self):
        """The archive will not be complete: once started, the connection
        is closed (the client sees it end early)."""
        if self._pacer is not None:
            self._pacer.done()
        channel = getattr(self.request, "channel", None)
        if self.started and not self._pacer.lost and channel is not None:
            channel.transport.loseConnection()
