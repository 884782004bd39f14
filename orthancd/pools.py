"""Named, bounded thread pools for blocking work, one per kind, as services.

Each kind of blocking work has its own pool so that one kind cannot starve
another (a slow Lua script does not hold up file reads).  A pool is built in
makeService but starts its threads in ``startService``: when twistd
daemonizes it forks in between, and threads do not survive a fork.
"""
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
