"""Conversions between Lua values (as lupa hands them over) and JSON-like Python values.

The runtime is created with ``encoding=None``, so Lua strings arrive as
``bytes``.  Two conversions mirror Orthanc's C++ code exactly, because
script output depends on their quirks:

* ``lua_to_json`` follows ``LuaContext::GetJson``: a table is an array only
  if ``next()`` visits the keys "1", "2", ... in that order; numbers whose
  truncation to a C ``int`` is exact become integers; strings that look like
  numbers become numbers unless ``keep_strings``; strings end at NUL.
* ``json_to_lua`` follows ``LuaContext::PushJson``: every JSON number becomes
  a Lua float (JsonCpp's ``isDouble()`` is true for integers too), object
  members are inserted in sorted order and ``null`` array items leave holes.

Inside the JSON model, strings are Python ``str`` decoded from UTF-8 with
``surrogateescape``, so that non-UTF-8 bytes survive a round trip.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping

from lupa import lua53

from orthancd.lua.errors import LuaInternalError

_C_INT_MIN = -(2**31)
_C_INT_MAX = 2**31 - 1
_SIZE_T_MODULUS = 2**64
_UNSIGNED_DIGITS = re.compile(r"\+?[0-9]+")
_NEGATIVE_DIGITS = re.compile(r"-[0-9]+")
_LOOKS_LIKE_INTEGER = re.compile(r"-?[0-9]*")


def is_table(value) -> bool:
    return lua53.lua_type(value) == "table"


def is_lua_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_lua_string(value) -> bool:
    """``lua_isstring``: true for strings and for numbers (they convert)."""
    return isinstance(value, bytes) or is_lua_number(value)


def c_string(data: bytes) -> bytes:
    """What a C ``const char*`` sees of a Lua string: everything before the first NUL."""
    return data.split(b"\0", 1)[0]


def lua_number_to_string(number: int | float) -> str:
    """Lua 5.3's ``tostring`` of a number: "%d" for integers, "%.14g" (+".0") for floats."""
    if isinstance(number, int):
        return str(number)
    text = "%.14g" % number
    if _LOOKS_LIKE_INTEGER.fullmatch(text):
        text += ".0"
    return text


def lua_string_argument(value) -> bytes:
    """``lua_tostring`` of a value known to satisfy ``is_lua_string``."""
    if isinstance(value, bytes):
        return value
    return lua_number_to_string(value).encode("ascii")


def decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # Lone surrogates, e.g. from a JSON "\ud800" escape.
        return text.encode("utf-8", "surrogatepass")


def _truncate_to_c_int(value: float) -> int:
    """``static_cast<int>(double)`` as x86 does it: out of range or NaN gives INT_MIN."""
    if math.isnan(value) or not (_C_INT_MIN - 1 < value < _C_INT_MAX + 1):
        return _C_INT_MIN
    return int(value)


def _number_to_json(value: int | float) -> int | float:
    as_double = float(value)
    truncated = _truncate_to_c_int(as_double)
    if abs(as_double - truncated) <= sys.float_info.epsilon:
        return truncated
    return as_double


def _lexical_cast_size_t(text: str) -> int | None:
    """``boost::lexical_cast<size_t>``: digits with an optional sign; negatives wrap."""
    if _UNSIGNED_DIGITS.fullmatch(text):
        number = int(text)
    elif _NEGATIVE_DIGITS.fullmatch(text):
        number = _SIZE_T_MODULUS - int(text[1:])
    else:
        return None
    return number if number < _SIZE_T_MODULUS else None


def _table_key_to_string(key) -> str:
    if isinstance(key, bytes):
        return decode(c_string(key))
    if is_lua_number(key):
        return lua_number_to_string(key)
    # lua_tostring() gives NULL, and std::string(NULL) throws in Orthanc.
    raise LuaInternalError("a table key is neither a string nor a number")


def lua_to_json(value, keep_strings: bool, lua_tonumber: Callable[[bytes], object]):
    """Convert a Lua value to a JSON-like Python value, like Orthanc's ``GetJson``.

    ``lua_tonumber`` is Lua's original ``tonumber``, used to decide whether a
    string "is a number" exactly as ``lua_isnumber`` does.
    """
    try:
        return _lua_to_json(value, keep_strings, lua_tonumber)
    except RecursionError:
        # A table that contains itself: Orthanc overflows its C stack.
        raise LuaInternalError("cyclic table") from None


def _lua_to_json(value, keep_strings, lua_tonumber):
    if is_table(value):
        return _table_to_json(value, keep_strings, lua_tonumber)
    if value is None:
        return None
    if not keep_strings and isinstance(value, bool):
        return value
    if not keep_strings:
        number = value if is_lua_number(value) else None
        if isinstance(value, bytes):
            number = lua_tonumber(value)
        if number is not None:
            return _number_to_json(number)
    if is_lua_string(value):
        return decode(c_string(lua_string_argument(value)))
    if isinstance(value, bool):
        return value
    return None  # functions, userdata, threads: Orthanc logs a warning and uses null


def _table_to_json(table, keep_strings, lua_tonumber):
    members: dict[str, object] = {}
    is_array = True
    size = 0
    for key, item in table.items():
        key_text = _table_key_to_string(key)
        members[key_text] = _lua_to_json(item, keep_strings, lua_tonumber)
        size += 1
        if _lexical_cast_size_t(key_text) != size:
            is_array = False
    if is_array:
        return [members.get(str(index + 1)) for index in range(size)]
    return members


def json_to_lua(runtime, value):
    """Convert a JSON-like Python value to a Lua value, like Orthanc's ``PushJson``.

    Also accepts any ``Mapping`` and tuples, so a configuration object can be
    given directly.
    """
    if isinstance(value, str):
        return encode(value)
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return math.copysign(math.inf, value)
    if isinstance(value, (list, tuple)):
        table = runtime.table()
        for index, item in enumerate(value):
            table[index + 1] = json_to_lua(runtime, item)
        return table
    if isinstance(value, Mapping):
        table = runtime.table()
        keys = sorted((encode(str(key)), key) for key in value)
        for encoded_key, key in keys:
            table[encoded_key] = json_to_lua(runtime, value[key])
        return table
    raise TypeError(f"cannot convert {type(value).__name__} to Lua")
