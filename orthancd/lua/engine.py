"""The server's single, persistent Lua 5.3 state (Orthanc embeds Lua 5.3 too).

Scripts sent to ``POST /tools/execute-script`` and the server's callbacks
(``OnStoredInstance``...) all run in this one state, so functions and
globals defined by a script remain for later scripts and callbacks.
Calls are serialized by a lock: they block, and the server makes them from
worker threads, never from the reactor thread.

Like Orthanc, scripts get every standard library, ``os`` and ``io``
included.  lupa's ``python`` bridge is removed and attribute access on
Python objects is refused, so scripts cannot reach into the server.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from lupa import lua53

from orthancd.lua import c_math
from orthancd.lua.bindings import OrthancBindings, RestCaller
from orthancd.lua.errors import LuaError, LuaInternalError
from orthancd.lua.prelude import LUA_5_2_COMPATIBILITY, ORTHANC_FUNCTIONS
from orthancd.lua.values import decode, encode, is_lua_number, json_to_lua, lua_number_to_string, lua_to_json

_UNHANDLED_EXCEPTION = "An unhandled exception was generated inside the HTTP server"


def _refuse_attribute_access(obj, attribute_name, is_setting):
    raise AttributeError("Python attributes are not accessible from Lua")


class LuaEngine:
    def __init__(self, rest_caller: RestCaller, configuration: Mapping):
        self._lock = threading.RLock()
        self._output: list[bytes] | None = None
        self._runtime = lua53.LuaRuntime(
            encoding=None,
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_filter=_refuse_attribute_access,
        )
        self._runtime.execute(b"python = nil package.loaded.python = nil")
        c_math_table = self._runtime.table_from({name.encode(): function for name, function in c_math.FUNCTIONS.items()})
        self._runtime.execute(LUA_5_2_COMPATIBILITY.encode(), c_math_table, name="=orthancd compatibility")
        self._bindings = OrthancBindings(self._runtime, rest_caller, configuration, self._capture)
        (self._run_script, self._call_global, self._bindings.lua_tonumber,
         self._clear_abort_hook) = self._runtime.execute(
            ORTHANC_FUNCTIONS.encode(), *self._bindings.python_functions(), name="=orthancd functions")

    def execute(self, script: str | bytes) -> str:
        """Run a script; return what it printed (UTF-8, undecodable bytes kept as surrogates).

        Use ``execute_bytes`` to get the exact bytes (e.g. a printed DICOM file).
        """
        return decode(self.execute_bytes(script))

    def execute_bytes(self, script: str | bytes) -> bytes:
        """Run a script; return the exact bytes it printed. Raises ``LuaError``."""
        source = encode(script) if isinstance(script, str) else bytes(script)
        with self._lock:
            self._output = []
            try:
                ok, error_object = self._protected(self._run_script, source)
                output = b"".join(self._output)
            finally:
                self._output = None
        if not ok:
            raise _error_from_object(error_object)
        return output

    def has_function(self, name: str) -> bool:
        """Whether a global of that name is a Lua function (e.g. "OnStoredInstance")."""
        with self._lock:
            return lua53.lua_type(self._runtime.globals()[encode(name)]) == "function"

    def call_function(self, name: str, *args, keep_strings: bool = True):
        """Call a global Lua function with JSON-like Python arguments; return its first result.

        Arguments are converted like Orthanc's ``PushJson`` (dicts and lists
        become tables, every number becomes a Lua float).  The result is
        converted like Orthanc's ``GetJson``: tables become lists or dicts,
        nil becomes None; with ``keep_strings`` false, numeric strings become
        numbers and numbers are not stringified.  What the function prints
        is logged, not returned.
        """
        with self._lock:
            result = self._call(name, args)
            try:
                return lua_to_json(result, keep_strings, self._bindings.lua_tonumber)
            except LuaInternalError as failure:
                raise LuaInternalError(_UNHANDLED_EXCEPTION) from failure

    def call_predicate(self, name: str, *args) -> bool:
        """Call a global Lua function and test its first result with Lua truthiness.

        For filters such as ReceivedInstanceFilter: only nil and false are
        false (0, "" and {} are true, as in Lua).
        """
        with self._lock:
            result = self._call(name, args)
            return result is not None and result is not False

    def _call(self, name: str, args: tuple):
        """Call a global function with converted arguments; return its first result (a Lua value)."""
        lua_args = [json_to_lua(self._runtime, argument) for argument in args]
        ok, result = self._protected(self._call_global, encode(name), *lua_args)
        if not ok:
            raise _error_from_object(result)
        return result

    def _protected(self, runner, *args) -> tuple[bool, object]:
        """Run a Lua helper that returns pcall's results; turn aborts into LuaInternalError."""
        self._bindings.internal_failure = None
        try:
            results = runner(*args)
        except lua53.LuaError as failure:
            # Only an abort can make the helper itself fail: its hook fires
            # again on the helper's own instructions after pcall returns.
            if self._bindings.internal_failure is None:
                raise LuaError(str(failure)) from None
            results = (False, None)
        finally:
            if self._bindings.internal_failure is not None:
                self._clear_abort_hook()
        if self._bindings.internal_failure is not None:
            raise LuaInternalError(_UNHANDLED_EXCEPTION)
        if not isinstance(results, tuple):
            results = (results,)
        ok = bool(results[0])
        return ok, (results[1] if len(results) > 1 else None)

    def _capture(self, text: bytes) -> None:
        if self._output is not None:
            self._output.append(text)


def _error_from_object(error_object) -> LuaError:
    """Orthanc reports the error object with lua_tostring: strings and numbers only."""
    if isinstance(error_object, bytes):
        return LuaError(decode(error_object.split(b"\0", 1)[0]))
    if is_lua_number(error_object):
        return LuaError(lua_number_to_string(error_object))
    return LuaInternalError(_UNHANDLED_EXCEPTION)
