"""Python side of the global functions Orthanc gives to Lua scripts.

Each ``lua_*`` method is wrapped by a Lua closure (see ``prelude``) that
passes a private marker first and expects ``(None, results...)`` back, or
``(marker,)`` to abort the script the way an uncatchable C++ exception
does in Orthanc.  Argument checks copy Orthanc's: a bad call returns nil
(and logs), it never raises a Lua error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from twisted.logger import Logger

from orthancd.lua.errors import LuaInternalError
from orthancd.lua.jsoncpp import read_json, write_fast_json
from orthancd.lua.values import (
    c_string,
    decode,
    is_lua_string,
    is_table,
    json_to_lua,
    lua_string_argument,
    lua_to_json,
)

_log = Logger()


class RestCaller(Protocol):
    def call(self, method: str, uri: str, body: bytes | None, headers: dict) -> tuple[int, bytes]: ...


class OrthancBindings:
    def __init__(self, runtime, rest_caller: RestCaller, configuration: Mapping,
                 print_sink: Callable[[bytes], None]):
        self._runtime = runtime
        self._rest_caller = rest_caller
        self._configuration = configuration
        self._print_sink = print_sink
        # Set by the engine once the prelude has run.
        self.lua_tonumber: Callable[[bytes], object] | None = None
        # Message of the first uncatchable failure of the current run, if any.
        self.internal_failure: str | None = None

    def python_functions(self) -> tuple:
        """The callables handed to the prelude, in the order it unpacks them."""
        return (self.capture_print, self.lua_parse_json, self.lua_dump_json,
                self.lua_rest_api_get, self.lua_rest_api_post, self.lua_rest_api_put,
                self.lua_rest_api_delete, self.lua_get_orthanc_configuration)

    # -- print ----------------------------------------------------------

    def capture_print(self, line: bytes) -> None:
        _log.info("Lua says: {line}", line=decode(line))
        self._print_sink(line + b"\n")

    # -- JSON -------------------------------------------------------------

    def lua_parse_json(self, marker, *args):
        if len(args) != 1 or not is_lua_string(args[0]):
            return None, None
        parsed, value = read_json(c_string(lua_string_argument(args[0])))
        if not parsed:
            return None, None
        return None, json_to_lua(self._runtime, value)

    def lua_dump_json(self, marker, *args):
        if len(args) not in (1, 2) or (len(args) == 2 and not isinstance(args[1], bool)):
            return None, None
        keep_strings = len(args) == 2 and args[1]
        try:
            value = lua_to_json(args[0], keep_strings, self.lua_tonumber)
        except LuaInternalError as failure:
            return self._abort(marker, failure)
        return None, write_fast_json(value)

    # -- configuration --------------------------------------------------

    def lua_get_orthanc_configuration(self, marker, *args):
        return None, json_to_lua(self._runtime, self._configuration)

    # -- REST API ---------------------------------------------------------

    def lua_rest_api_get(self, marker, *args):
        # RestApiGet(uri [, builtin [, headers]])
        if not self._valid_arguments(args, uri_and_body=False):
            _log.error("Lua: Bad parameters to RestApiGet()")
            return None, None
        return self._rest_call(marker, "GET", "RestApiGet", args[0], None, args[2:3])

    def lua_rest_api_post(self, marker, *args):
        return self._post_or_put(marker, "POST", "RestApiPost", args)

    def lua_rest_api_put(self, marker, *args):
        return self._post_or_put(marker, "PUT", "RestApiPut", args)

    def lua_rest_api_delete(self, marker, *args):
        # RestApiDelete(uri [, builtin [, headers]]) -> true on success
        if not self._valid_arguments(args, uri_and_body=False):
            _log.error("Lua: Bad parameters to RestApiDelete()")
            return None, None
        return self._rest_call(marker, "DELETE", "RestApiDelete", args[0], None, args[2:3])

    def _post_or_put(self, marker, method, name, args):
        # RestApiPost(uri, body [, builtin [, headers]])
        if not self._valid_arguments(args, uri_and_body=True):
            _log.error("Lua: Bad parameters to {name}()", name=name)
            return None, None
        body = lua_string_argument(args[1])
        return self._rest_call(marker, method, name, args[0], body, args[3:4])

    @staticmethod
    def _valid_arguments(args, uri_and_body: bool) -> bool:
        # The "builtin" flag (restrict to the built-in REST API, i.e. no
        # plugins) is validated but has no effect: orthancd has no plugins.
        fixed = 2 if uri_and_body else 1
        if not fixed <= len(args) <= fixed + 2:
            return False
        if not all(is_lua_string(argument) for argument in args[:fixed]):
            return False
        if len(args) > fixed and not isinstance(args[fixed], bool):
            return False
        return len(args) < fixed + 2 or is_table(args[fixed + 1])

    def _rest_call(self, marker, method, name, uri_argument, body, headers_argument):
        uri = decode(c_string(lua_string_argument(uri_argument)))
        if _runs_a_nested_script(method, uri):
            # Orthanc runs it in the same thread under a recursive lock; here
            # the route would wait for the Lua state this thread holds forever.
            _log.error("Lua: {name}() cannot call /tools/execute-script from a script", name=name)
            return None, None
        try:
            headers = self._headers(headers_argument[0]) if headers_argument else {}
        except LuaInternalError as failure:
            return self._abort(marker, failure)
        try:
            status, answer = self._rest_caller.call(method, uri, body, headers)
        except Exception as failure:  # the REST layer failed: Orthanc logs and returns nil
            _log.error("Lua: {failure!r}", failure=failure)
            status, answer = None, b""
        if status is None or not 200 <= status < 300:
            _log.error("Lua: Error in {name}() for URI: {uri}", name=name, uri=uri)
            return None, None
        if method == "DELETE":
            return None, True
        return None, bytes(answer)

    def _headers(self, table) -> dict[str, str]:
        """Orthanc's ``GetDictionaryArgument``: keys lower-cased, values as strings."""
        converted = lua_to_json(table, True, self.lua_tonumber)
        if not isinstance(converted, dict):
            # An array-like table (even {}): JsonCpp's getMemberNames() throws.
            raise LuaInternalError("HTTP headers must be given as a table of strings")
        headers = {}
        for key, value in converted.items():
            headers[key.lower()] = _json_as_string(value)
        return headers

    def _abort(self, marker, failure: LuaInternalError):
        if self.internal_failure is None:
            self.internal_failure = str(failure)
        return (marker,)


def _runs_a_nested_script(method: str, uri: str) -> bool:
    path = uri.split("?", 1)[0].rstrip("/")
    return method == "POST" and path == "/tools/execute-script"


def _json_as_string(value) -> str:
    """JsonCpp's ``asString()`` on a scalar; it throws on arrays and objects."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    raise LuaInternalError("an HTTP header value is not a string")
