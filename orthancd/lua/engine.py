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
from orthancd.lua.bindings import OrthancBindings, RestCaller, ServerCalls
from orthancd.lua.errors import LuaError, LuaInternalError, LuaResultError
from orthancd.lua.prelude import LUA_5_2_COMPATIBILITY, ORTHANC_FUNCTIONS
from orthancd.lua.values import decode, encode, is_lua_number, json_to_lua, lua_number_to_string, lua_to_json

_UNHANDLED_EXCEPTION = "An unhandled exception was generated inside the HTTP server"


def _refuse_attribute_access(obj, attribute_name, is_setting):
    raise AttributeError("Python attributes are not accessible from Lua")


class LuaEngine:
    def __init__(self, rest_caller: RestCaller, configuration: Mapping,
                 server_calls: ServerCalls | None = None, watched_functions=()):
        """``watched_functions``: global names whose being a function is
        tracked after every run, for ``is_defined`` (no lock needed)."""
        self._lock = threading.RLock()
        self._watched = tuple(encode(name) for name in watched_functions)
        self._defined: frozenset[str] = frozenset()
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
        self._bindings = OrthancBindings(self._runtime, rest_caller, configuration, self._capture,
                                         server_calls)
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
                self._refresh_defined()
        if not ok:
            raise _error_from_object(error_object)
        return output

    def is_defined(self, name: str) -> bool:
        """Whether the watched global ``name`` was a function after the last
        run.  Takes no lock: the reactor may ask while a script runs."""
        return name in self._defined

    def _refresh_defined(self) -> None:
        functions = self._runtime.globals()
        self._defined = frozenset(decode(name) for name in self._watched
                                  if lua53.lua_type(functions[name]) == "function")

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
        """Call a global Lua function that must answer a Boolean (Orthanc's
        ExecutePredicate, for the filters); anything else raises
        ``LuaResultError`` ("NotLuaPredicate")."""
        with self._lock:
            result = self._call(name, args)
            if not isinstance(result, bool):
                raise LuaResultError("NotLuaPredicate")
            return result

    def call_integer(self, name: str, *args) -> int:
        """Call a global Lua function that must answer a number (or a numeric
        string), truncated to an integer (Orthanc's ExecuteToInt);
        anything else raises ``LuaResultError`` ("LuaReturnsNoString")."""
        with self._lock:
            result = self._call(name, args)
            number = result if is_lua_number(result) else (
                self._bindings.lua_tonumber(result) if isinstance(result, bytes) else None)
            if number is None:
                raise LuaResultError("LuaReturnsNoString")
            if isinstance(number, float):
                # lua_tointeger: 0 unless the float holds an integer exactly.
                return int(number) if number.is_integer() else 0
            return number

    def call_collecting_operations(self, name: str, *args) -> list:
        """Call a callback the way Orthanc calls OnStoredInstance and
        OnStable*: with an empty ``_job`` first; return the operations the
        callback described in it (SendToModality, Delete...), as JSON."""
        with self._lock:
            self._protected_or_raise(self._run_script, b"_InitializeJob()")
            self._call(name, args)
            operations = self._call("_AccessJob", ())
            return lua_to_json(operations, False, self._bindings.lua_tonumber)

    def _protected_or_raise(self, runner, *args):
        ok, result = self._protected(runner, *args)
        if not ok:
            raise _error_from_object(result)
        return result

    def _call(self, name: str, args: tuple):
        """Call a global function with converted arguments; return its first result (a Lua value)."""
        lua_args = [json_to_lua(self._runtime, argument) for argument in args]
        try:
            ok, result = self._protected(self._call_global, encode(name), *lua_args)
        finally:
            self._refresh_defined()
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
