"""Helper processes that parse incoming DICOM headers for the ingest path.

Parsing a header with pydicom is the largest CPU cost of storing an
instance, and in the daemon's process it holds the GIL that the reactor, the
index writer and the file threads share.  ``ParserPool`` hands that work to
a few worker processes (as many as the machine has cores, at most 4), so the
daemon's own process mostly moves bytes and commits to the index.  The
reactor and the index stay one; workers only read and write files of the
storage area's temporary folder.

A request is either the bytes of a small upload (the worker parses them,
then writes them into a temporary file of the storage area while hashing
them: the ingest path adopts that file as it adopts files received over
DICOM) or the path of a file already there (parsed through a mapping).
Answers carry what the ingest path needs: the InstanceSummary, the facts
about the pixel data (``HeaderFacts``) and, for bytes, the ReceivedFile.

Frames on the pipes are a 4-byte big-endian length and a pickle, both ways;
a worker answers its requests in order.  The ingest path sends them only
the parses of uploads that arrive together (an instance alone is parsed in
the daemon: one hand-over fewer).  Workers start, while the service runs,
with the first such request (an idle daemon has none: smaller and quicker
to start) and leave after ``idle_timeout`` seconds without work; until one
has said it is ready, uploads are parsed in the daemon's file I/O pool.  A worker
that dies (killed, out of memory) fails nothing: its requests are parsed
again in the daemon.
"""
import collections
import os
import pickle
import struct
import sys
import uuid

from twisted.application import service
from twisted.internet import defer, protocol

from orthancd.logs import logger

_LENGTH = struct.Struct(">I")
_READY = "ready"
# Bodies up to this size go to the worker as bytes: those the HTTP server
# keeps in memory (orthancd.rest.app.OrthancSite.IN_MEMORY_BODY_LIMIT);
# larger ones come as files, written by the daemon as they arrived (no
# copy through the pipes).
MAX_BYTES_REQUEST = 4 * 1024 * 1024
# Requests queued on one worker before the next one is preferred.
_PIPELINE = 2


class ParserRefused(Exception):
    """The worker found no storable DICOM file: ``code`` is the name of the
    Orthanc error (BadFileFormat, InexistentTag), ``details`` its text."""

    def __init__(self, code, details):
        super().__init__(details)
        self.code = code
        self.details = details


class WorkerLost(Exception):
    """The worker process ended before answering; ``spool_path``: the file
    it may have written the bytes sent into, for the caller to remove."""
    spool_path = None


def frame(value):
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


class _WorkerProtocol(protocol.ProcessProtocol):

    def __init__(self, pool):
        self.pool = pool
        self.ready = False
        self.ended = False
        self.waiting = collections.deque()  # Deferreds, in request order
        self._buffer = bytearray()

    def connectionMade(self):
        self.transport.write(frame(self.pool.worker_settings))

    def childDataReceived(self, fd, data):
        if fd != 1:
            return
        self._buffer += data
        while len(self._buffer) >= 4:
            (size,) = _LENGTH.unpack_from(self._buffer)
            if len(self._buffer) < 4 + size:
                return
            answer = pickle.loads(bytes(self._buffer[4:4 + size]))
            del self._buffer[:4 + size]
            if answer == _READY:
                self.ready = True
                continue
            d = self.waiting.popleft()
            if answer[0] == "parsed":
                from orthancd.dicom.header_scan import HeaderFacts
                _, summary, (offset, vr), received = answer
                d.callback((summary, HeaderFacts(offset, vr), received))
            elif answer[0] == "refused":
                d.errback(ParserRefused(answer[1], answer[2]))
            else:
                d.errback(WorkerLost(answer[1]))

    def send(self, request):
        d = defer.Deferred()
        self.waiting.append(d)
        self.transport.write(frame(request))
        return d

    def processEnded(self, reason):
        self.ended = True
        self.ready = False
        waiting, self.waiting = self.waiting, collections.deque()
        for d in waiting:
            d.errback(WorkerLost("An ingest worker ended"))
        self.pool.ended(self)


def default_worker_count(cores=None):
    """Workers only pay where there are cores beyond those of the reactor
    and the thread pools: on 2 cores, bench/rest_bench.py measured ingest
    at c=4 10-60% slower with 2 workers than without, and 160 MiB more
    RSS.  (Unmeasured on more cores.)"""
    cores = cores or os.cpu_count() or 1
    return max(0, min(4, cores - 2))


class ParserPool(service.Service):
    """Worker processes parsing headers.  ``parse`` returns None when no
    worker is ready (the caller parses itself), else a Deferred of
    (summary, HeaderFacts, (temporary path, ContentDigests) of the bytes
    sent, or None for a path), failing with ParserRefused for a file that
    cannot be stored, or WorkerLost (the caller parses itself then)."""
    name = "ingest-workers"
    log = logger(__name__)

    def __init__(self, reactor, temporary_directory, settings, size, idle_timeout=60.0):
        """``settings``: what a worker needs to parse as the daemon does
        (DefaultEncoding, ExtraMainDicomTags)."""
        self._reactor = reactor
        self.temporary_directory = temporary_directory
        self.worker_settings = dict(settings, temporary_directory=temporary_directory)
        self.size = size
        self.idle_timeout = idle_timeout
        self._workers = []
        self._idle_call = None
        self._stopping = False
        self._stopped = []

    def stopService(self):
        super().stopService()
        self._stopping = True
        self._cancel_idle()
        return self._close_all()

    # -- use

    def parse(self, source, default_encoding):
        """``source``: bytes (at most MAX_BYTES_REQUEST) or a file path."""
        if not self.running or self._stopping or self.size <= 0:
            return None
        self._schedule_idle()
        ready = [w for w in self._workers if w.ready and not w.ended]
        if len(self._workers) < self.size:
            self._spawn()
        if not ready:
            return None
        worker = min(ready, key=lambda w: len(w.waiting))
        if len(worker.waiting) >= _PIPELINE and len(ready) < self.size:
            return None  # the others are still starting: parse here meanwhile
        if isinstance(source, (bytes, bytearray, memoryview)):
            # Named here: should the worker die after writing it, the
            # caller knows what to remove (WorkerLost.spool_path).
            spool_path = os.path.join(self.temporary_directory,
                                      "worker-%s.upload" % uuid.uuid4().hex)
            request = ("bytes", bytes(source), default_encoding, spool_path)
        else:
            spool_path = None
            request = ("path", str(source), default_encoding, None)
        d = worker.send(request)
        if spool_path is not None:
            d.addErrback(self._lost_spool, spool_path)
        return d

    @staticmethod
    def _lost_spool(failure, spool_path):
        failure.trap(WorkerLost)
        failure.value.spool_path = spool_path
        return failure

    # -- workers

    def _spawn(self):
        worker = _WorkerProtocol(self)
        self._workers.append(worker)
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self._reactor.spawnProcess(
            worker, sys.executable, [sys.executable, "-m", "orthancd.ingest_workers"],
            env=env, childFDs={0: "w", 1: "r", 2: 2})

    def ended(self, worker):
        if worker in self._workers:
            self._workers.remove(worker)
        if not self._workers:
            stopped, self._stopped = self._stopped, []
            for d in stopped:
                d.callback(None)

    def _schedule_idle(self):
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.reset(self.idle_timeout)
        else:
            self._idle_call = self._reactor.callLater(self.idle_timeout, self._idle)

    def _cancel_idle(self):
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    def _idle(self):
        self._idle_call = None
        if any(w.waiting for w in self._workers):
            self._schedule_idle()
            return
        self._close_all()

    def _close_all(self):
        if not self._workers:
            return defer.succeed(None)
        done = defer.Deferred()
        self._stopped.append(done)
        for worker in list(self._workers):
            try:
                worker.transport.closeStdin()
            except Exception:
                pass
        return done


# --------------------------------------------------------------------- worker

def _parse(request):
    from orthancd.dicom.header_scan import read_instance_header
    from orthancd.dicom.reading import DicomFormatError
    kind, source, encoding, spool_path = request
    try:
        summary, dataset = read_instance_header(source, encoding, dataset_needed=False)
    except DicomFormatError as e:
        return ("refused", getattr(e, "orthanc_error", "BadFileFormat"), e.details)
    # Plain values: this module runs as __main__ here.
    facts = (getattr(dataset, "pixel_data_offset", None), getattr(dataset, "pixel_data_vr", None))
    received = None
    if kind == "bytes":
        received = _spool(source, spool_path)
    return ("parsed", summary, facts, received)


def _spool(data, path):
    """Write ``data`` into a new file ``path`` of the storage area's
    temporary folder, hashed."""
    from orthancd.storage.digests import digests_of
    from orthancd.storage.filesystem import start_writeback
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            start_writeback(f.fileno(), len(data))
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    return path, digests_of(data)


def _read_exactly(stream, size):
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main():
    # The answers go on the original stdout; anything a library prints
    # goes to stderr (the daemon's log).
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer

    def read():
        head = _read_exactly(requests, 4)
        if head is None:
            return None
        return pickle.loads(_read_exactly(requests, _LENGTH.unpack(head)[0]))

    def answer(value):
        answers.write(frame(value))
        answers.flush()

    settings = read()
    if settings is None:
        return
    from orthancd.dicom import main_tags
    if settings.get("extra_main_dicom_tags"):
        main_tags.configure(settings["extra_main_dicom_tags"])
    import orthancd.dicom.summary  # noqa: F401 (loaded before saying ready)
    answer(_READY)
    while True:
        request = read()
        if request is None:
            return
        try:
            result = _parse(request)
        except Exception as e:  # noqa: BLE001 - told to the daemon, which decides
            result = ("failed", "%s: %s" % (type(e).__name__, e))
        answer(result)


if __name__ == "__main__":
    main()
