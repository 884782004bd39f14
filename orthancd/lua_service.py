"""The server's Lua engine, run on its own worker thread.

Scripts may block (RestApiGet waits for the answer, which needs the reactor),
so the engine never runs on the reactor thread: the Lua pool (one thread)
runs one script at a time in the single, persistent Lua state.
"""
from twisted.application import service

from orthancd.logs import logger
from orthancd.lua import LuaEngine, LuaError, LuaInternalError
from orthancd.rest.internal import BlockingRestCaller, InternalClient

log = logger(__name__)


class LuaService(service.Service):
    """Runs scripts in ``pool`` (a one-thread orthancd.pools.ThreadPoolService);
    on start, the configured LuaScripts are loaded."""
    Error = LuaError
    InternalError = LuaInternalError
    name = "lua"

    def __init__(self, engine, pool, scripts=()):
        self.engine = engine
        self._pool = pool
        self._scripts = list(scripts)

    def startService(self):
        super().startService()
        # In the pool, as any script: one may call RestApiGet.
        for path in self._scripts:
            self._pool.run(self._load, path).addErrback(
                lambda failure, path=path: log.failure("Lua script {path} failed", failure,
                                                       path=path))

    def _load(self, path):
        with open(path, encoding="utf-8") as f:
            return self.engine.execute_bytes(f.read())

    def execute(self, script):
        """Deferred printed output (bytes) of ``script``."""
        return self._pool.run(self.engine.execute_bytes, script)

    def call_function(self, name, *args):
        return self._pool.run(self.engine.call_function, name, *args)

    def has_function(self, name):
        return self.engine.has_function(name)


def build_lua(server, reactor, pool):
    """A LuaService when ExecuteLuaEnabled or LuaScripts ask for Lua, else None."""
    configuration = server.configuration
    if not configuration.get("ExecuteLuaEnabled", False) and not configuration.get("LuaScripts"):
        return None
    client = InternalClient(server.rest_resource)
    engine = LuaEngine(BlockingRestCaller(reactor, client), configuration)
    return LuaService(engine, pool, configuration.lua_scripts)
