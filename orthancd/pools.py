"""Named, bounded thread pools for blocking work, one per kind, as services.

Each kind of blocking work has its own pool so that one kind cannot starve
another (a slow Lua script does not hold up file reads).  A pool is built in
makeService but starts its threads in ``startService``: when twistd
daemonizes it forks in between, and threads do not survive a fork.
"""
import collections
import queue
import threading

from twisted.application import service
from twisted.internet import defer
from twisted.python.failure import Failure

from orthancd.logs import logger

log = logger(__name__)


_STOP = object()


class ThreadPoolService(service.Service):
    """Up to ``maxthreads`` threads that run the work handed to them, started
    with the service tree (work handed before waits in the queue), started
    as the work needs them, stopped with the tree.

    Twisted's ThreadPool does the same through its Team and a Python
    queue.Queue: on the ingest path that hand-over cost the reactor thread a
    sixth of its time under the GIL.  Here a hand-over is one put on a C
    SimpleQueue, and the result comes back with one callFromThread."""

    def __init__(self, name, reactor, maxthreads, minthreads=0):
        self.name = name
        self._reactor = reactor
        self._max = maxthreads
        self._min = min(minthreads, maxthreads)
        self._work = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = []
        self._unfinished = 0  # work handed over and not finished yet
        self._started = False

    def run(self, function, *args, **kwargs):
        """Deferred result of ``function(*args, **kwargs)``, run in the pool."""
        d = defer.Deferred()
        self._hand_over((d, function, args, kwargs))
        return d

    def callInThread(self, function, *args, **kwargs):
        """Run ``function`` in the pool, for callers that report back themselves."""
        self._hand_over((None, function, args, kwargs))

    def available_threads(self):
        """Threads the pool may still start or has idle (what Orthanc's
        metrics call available)."""
        return max(0, self._max - self._unfinished)

    def _hand_over(self, work):
        with self._lock:
            self._unfinished += 1
            more = self._started and len(self._threads) < min(self._unfinished, self._max)
        self._work.put(work)
        if more:
            self._start_thread()

    def _start_thread(self):
        with self._lock:
            if len(self._threads) >= self._max:
                return
            thread = threading.Thread(target=self._worker, daemon=True,
                                      name="PoolThread-%s-%d" % (self.name, len(self._threads)))
            self._threads.append(thread)
        thread.start()

    def _worker(self):
        call_from_thread = self._reactor.callFromThread
        while True:
            work = self._work.get()
            if work is _STOP:
                return
            d, function, args, kwargs = work
            try:
                result = function(*args, **kwargs)
            except BaseException:
                failure = Failure()
                if d is None:
                    log.failure("Unhandled error in the {pool} pool", failure, pool=self.name)
                else:
                    call_from_thread(d.errback, failure)
            else:
                if d is not None:
                    call_from_thread(d.callback, result)
            finally:
                with self._lock:
                    self._unfinished -= 1
            del work, d, function, args, kwargs

    def startService(self):
        super().startService()
        with self._lock:
            self._started = True
            wanted = max(self._min, min(self._unfinished, self._max))
        for _ in range(wanted):
            self._start_thread()

    def stopService(self):
        super().stopService()
        # Joining the workers on the reactor thread could deadlock: a Lua
        # script may be waiting for the reactor to answer its RestApiGet.
        # Join them from a helper thread and let the reactor run meanwhile;
        # the work queued before the stop is done first.
        stopped = defer.Deferred()
        with self._lock:
            self._started = False
            threads = list(self._threads)
            self._threads = []

        def join():
            for _ in threads:
                self._work.put(_STOP)
            for thread in threads:
                thread.join()
            self._reactor.callFromThread(stopped.callback, None)
        threading.Thread(target=join, name=self.name + "-stop", daemon=True).start()
        return stopped


class SerialLane:
    """Items handled one at a time, in the order they were put, by
    ``handle(item)`` in ``pool`` (anything with ``callInThread``): at most
    one drain runs at a time, and it takes every item put meanwhile, so a
    burst of items costs one hand-over.  Given a pool without threads (a
    test's Clock), items are handled inline."""

    def __init__(self, pool, handle):
        self._pool = pool
        self._handle = handle
        self._threaded = hasattr(pool, "callInThread")
        self._items = collections.deque()
        self._lock = threading.Lock()
        self._draining = False

    def put(self, *items):
        if not self._threaded:
            self._items.extend(items)
            self._drain()
            return
        with self._lock:
            self._items.extend(items)
            if self._draining:
                return
            self._draining = True
        self._pool.callInThread(self._drain)

    def _drain(self):
        while True:
            with self._lock:
                if not self._items:
                    self._draining = False
                    return
                items = list(self._items)
                self._items.clear()
            for item in items:
                self._handle(item)
