"""The server's Lua engine, run on its own worker thread.

Scripts may block (RestApiGet waits for the answer, which needs the reactor),
so the engine never runs on the reactor thread: one dedicated thread runs one
script at a time in the single, persistent Lua state.
"""
from twisted.internet import threads
from twisted.python.threadpool import ThreadPool

from orthancd.logs import logger
from orthancd.lua import LuaEngine, LuaError, LuaInternalError
from orthancd.rest.internal import BlockingRestCaller, InternalClient

log = logger(__name__)


class LuaService:
    Error = LuaError
    InternalError = LuaInternalError

    def __init__(self, engine, reactor):
        self.engine = engine
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="lua")
        self._pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)

    def execute(self, script):
        """Deferred printed output (bytes) of ``script``."""
        return threads.deferToThreadPool(self._reactor, self._pool, self.engine.execute_bytes,
                                         script)

    def call_function(self, name, *args):
        return threads.deferToThreadPool(self._reactor, self._pool,
                                         self.engine.call_function, name, *args)

    def has_function(self, name):
        return self.engine.has_function(name)


def build_lua(server, reactor):
    """A LuaService when ExecuteLuaEnabled or LuaScripts ask for Lua, else None."""
    configuration = server.configuration
    if not configuration.get("ExecuteLuaEnabled", False) and not configuration.get("LuaScripts"):
        return None
    client = InternalClient(server.rest_resource)
    engine = LuaEngine(BlockingRestCaller(reactor, client), configuration)
    service = LuaService(engine, reactor)

    def load_scripts():
        # On the Lua thread once the reactor runs: a script may call RestApiGet.
        for path in configuration.lua_scripts:
            with open(path, encoding="utf-8") as f:
                service.execute(f.read()).addErrback(
                    lambda failure, path=path: log.failure("Lua script {path} failed", failure,
                                                           path=path))
    reactor.callWhenRunning(load_scripts)
    return service
