"""Named, bounded thread pools for blocking work, one per kind, as services.

Each kind of blocking work has its own pool so that one kind cannot starve
another (a slow Lua script does not hold up file reads).  A pool is built in
makeService but starts its threads in ``startService``: when twistd
daemonizes it forks in between, and threads do not survive a fork.
"""
import collections
import threading

from twisted.application import service
from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool


class ThreadPoolService(service.Service):
    """A ThreadPool started and stopped with the service tree.  Work handed
    to it before it starts waits in its queue."""

    def __init__(self, name, reactor, maxthreads, minthreads=0):
        self.name = name
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=minthreads, maxthreads=maxthreads, name=name)

    def run(self, function, *args, **kwargs):
        """Deferred result of ``function(*args, **kwargs)``, run in the pool."""
        return threads.deferToThreadPool(self._reactor, self._pool, function, *args, **kwargs)

    def available_threads(self):
        """Threads the pool may still start or has idle (what Orthanc's
        metrics call available)."""
        return self._pool.max - len(self._pool.working)

    def callInThread(self, function, *args, **kwargs):
        """Run ``function`` in the pool, for callers that report back themselves."""
        self._pool.callInThread(function, *args, **kwargs)

    def startService(self):
        super().startService()
        self._pool.start()

    def stopService(self):
        super().stopService()
        # Joining the workers on the reactor thread could deadlock: a Lua
        # script may be waiting for the reactor to answer its RestApiGet.
        # Join them from a helper thread and let the reactor run meanwhile.
        stopped = defer.Deferred()

        def join():
            self._pool.stop()
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
