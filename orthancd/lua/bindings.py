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
from orthancd.lua.http_client import HttpFailure, LuaHttpClient
from orthancd.lua.jsoncpp import read_json, write_fast_json
from orthancd.lua.values import (
    c_string,
    decode,
    is_lua_number,
    is_lua_string,
    is_table,
    json_to_lua,
    lua_string_argument,
    lua_to_json,
)

_log = Logger()


class RestCaller(Protocol):
    def call(self, method: str, uri: str, body: bytes | None, headers: dict) -> tuple[int, bytes]: ...


class ServerCalls(Protocol):
    """What scripts reach of the server beside its REST API (blocking calls,
    made from the Lua thread)."""

    def store_key_value(self, store_id: str, key: str, value: bytes) -> None: ...

    def get_key_value(self, store_id: str, key: str) -> bytes | None: ...

    def delete_key_value(self, store_id: str, key: str) -> None: ...

    def set_stable_status(self, resource_id: str, stable: bool) -> bool | None: ...


class OrthancBindings:
    def __init__(self, runtime, rest_caller: RestCaller, configuration: Mapping,
                 print_sink: Callable[[bytes], None], server_calls: ServerCalls | None = None):
        self._runtime = runtime
        self._rest_caller = rest_caller
        self._configuration = configuration
        self._print_sink = print_sink
        self._server_calls = server_calls
        self._http = LuaHttpClient(_http_timeout(configuration))
        # Set by the engine once the prelude has run.
        self.lua_tonumber: Callable[[bytes], object] | None = None
        # Message of the first uncatchable failure of the current run, if any.
        self.internal_failure: str | None = None

    def python_functions(self) -> tuple:
        """The callables handed to the prelude, in the order it unpacks them."""
        return (self.capture_print, self.lua_parse_json, self.lua_dump_json,
                self.lua_rest_api_get, self.lua_rest_api_post, self.lua_rest_api_put,
                self.lua_rest_api_delete, self.lua_get_orthanc_configuration,
                self.lua_http_get, self.lua_http_post, self.lua_http_put, self.lua_http_delete,
                self.lua_set_http_credentials, self.lua_set_http_timeout,
                self.lua_store_key_value, self.lua_get_key_value, self.lua_delete_key_value,
                self.lua_set_stable_status)

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

    def _headers(self, table, lower_case=True) -> dict[str, str]:
        """Orthanc's ``GetDictionaryArgument``: keys lower-cased (for the
        REST API), values as strings."""
        converted = lua_to_json(table, True, self.lua_tonumber)
        if converted is None:
            return {}
        if not isinstance(converted, dict):
            # An array-like table (even {}): JsonCpp's getMemberNames() throws.
            raise LuaInternalError("HTTP headers must be given as a table of strings")
        headers = {}
        for key, value in converted.items():
            headers[key.lower() if lower_case else key] = _json_as_string(value)
        return headers

    # -- HTTP client (HttpGet...) ------------------------------------------

    def lua_set_http_credentials(self, marker, *args):
        if len(args) != 2 or not all(is_lua_string(argument) for argument in args):
            _log.error("Lua: Bad parameters to SetHttpCredentials()")
            return (None,)
        self._http.set_credentials(*(_text(argument) for argument in args))
        return (None,)

    def lua_set_http_timeout(self, marker, *args):
        number = None
        if len(args) == 1:
            number = args[0] if is_lua_number(args[0]) else (
                self.lua_tonumber(args[0]) if isinstance(args[0], bytes) else None)
        if number is None:
            _log.error("Lua: Bad parameters to SetHttpTimeout()")
            return (None,)
        self._http.set_timeout(int(number))
        return (None,)

    def lua_http_get(self, marker, *args):
        # HttpGet(url [, headers])
        if not 1 <= len(args) <= 2 or not is_lua_string(args[0]):
            _log.error("Lua: Bad parameters to HttpGet()")
            return None, None
        return self._http_call(marker, "GET", "HttpGet()", args[0], None, args[1:2])

    def lua_http_post(self, marker, *args):
        return self._http_post_or_put(marker, "POST", args)

    def lua_http_put(self, marker, *args):
        return self._http_post_or_put(marker, "PUT", args)

    def _http_post_or_put(self, marker, method, args):
        # HttpPost(url [, body or nil [, headers]])
        if (not 1 <= len(args) <= 3 or not is_lua_string(args[0])
                or (len(args) >= 2 and args[1] is not None and not is_lua_string(args[1]))):
            _log.error("Lua: Bad parameters to HttpPost() or HttpPut()")
            return None, None
        body = lua_string_argument(args[1]) if len(args) >= 2 and args[1] is not None else None
        return self._http_call(marker, method, "HttpPost() or HttpPut()", args[0], body, args[2:3])

    def lua_http_delete(self, marker, *args):
        # HttpDelete(url [, headers]) -> "SUCCESS"
        if not 1 <= len(args) <= 2 or not is_lua_string(args[0]):
            _log.error("Lua: Bad parameters to HttpDelete()")
            return None, None
        return self._http_call(marker, "DELETE", "HttpDelete()", args[0], None, args[1:2])

    def _http_call(self, marker, method, name, url_argument, body, headers_argument):
        url = decode(c_string(lua_string_argument(url_argument)))
        try:
            headers = {} if not headers_argument else self._headers(headers_argument[0],
                                                                     lower_case=False)
        except LuaInternalError as failure:
            return self._abort(marker, failure)
        try:
            status, answer = self._http.request(method, url, body, headers)
        except HttpFailure as failure:
            if method == "DELETE":
                # Orthanc's HttpDelete lets libcurl's exception through.
                return self._abort(marker, LuaInternalError("HttpDelete(): %s" % failure))
            _log.error("Lua: Error in {name} for URL {url}", name=name, url=url)
            return None, None
        if method == "DELETE":
            if not 200 <= status < 300:
                _log.error("Lua: Error in {name} for URL {url}", name=name, url=url)
                return None, None
            return None, b"SUCCESS"
        # As Orthanc: the body of the answer, whatever its status.
        return None, answer

    # -- key-value stores -------------------------------------------------

    def lua_store_key_value(self, marker, *args):
        # StoreKeyValue(storeId, key, value) answers its last argument, as
        # Orthanc's C function leaves its arguments on the Lua stack.
        if len(args) != 3 or not all(is_lua_string(argument) for argument in args):
            _log.error("Lua: Bad parameters to StoreKeyValue()")
            return None, None
        store_id, key = _text(args[0]), _text(args[1])
        value = c_string(lua_string_argument(args[2]))
        return self._key_value_call(marker, "StoreKeyValue", store_id, lambda calls: (
            calls.store_key_value(store_id, key, value), args[2])[1])

    def lua_get_key_value(self, marker, *args):
        if len(args) != 2 or not all(is_lua_string(argument) for argument in args):
            _log.error("Lua: Bad parameters to GetKeyValue()")
            return None, None
        store_id, key = _text(args[0]), _text(args[1])
        return self._key_value_call(marker, "GetKeyValue", store_id,
                                    lambda calls: calls.get_key_value(store_id, key))

    def lua_delete_key_value(self, marker, *args):
        # DeleteKeyValue(storeId, key) answers its last argument, the key.
        if len(args) != 2 or not all(is_lua_string(argument) for argument in args):
            _log.error("Lua: Bad parameters to DeleteKeyValue()")
            return None, None
        store_id, key = _text(args[0]), _text(args[1])
        return self._key_value_call(marker, "DeleteKeyValue", store_id, lambda calls: (
            calls.delete_key_value(store_id, key), args[1])[1])

    def _key_value_call(self, marker, name, store_id, call):
        if self._server_calls is None:
            _log.error("Lua: The Orthanc API is unavailable")
            return None, None
        try:
            return None, call(self._server_calls)
        except Exception as failure:
            _log.error("Lua: {failure!r}", failure=failure)
            _log.error("Lua: Error in {name}() for storeId: {store}", name=name, store=store_id)
            return None, None

    # -- stability --------------------------------------------------------

    def lua_set_stable_status(self, marker, *args):
        # SetStableStatus(resourceId, stable) -> whether the status changed
        if not 1 <= len(args) <= 3 or not is_lua_string(args[0]) or \
                len(args) < 2 or not isinstance(args[1], bool):
            _log.error("Lua: Bad parameters to SetStableStatus()")
            return None, None
        resource_id = _text(args[0])
        if self._server_calls is not None:
            try:
                changed = self._server_calls.set_stable_status(resource_id, args[1])
            except Exception as failure:
                _log.error("Lua: {failure!r}", failure=failure)
                changed = None
            if changed is not None:
                return None, changed
        _log.error("Lua: Error in SetStableStatus() for Resource: {id}", id=resource_id)
        return None, None

    def _abort(self, marker, failure: LuaInternalError):
        if self.internal_failure is None:
            self.internal_failure = str(failure)
        return (marker,)


def _text(value) -> str:
    """A string argument as a C function reads it (up to the first NUL)."""
    return decode(c_string(lua_string_argument(value)))


def _http_timeout(configuration: Mapping) -> float | None:
    seconds = configuration.get("HttpTimeout", 60) if hasattr(configuration, "get") else 60
    return float(seconds) if seconds else None


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
