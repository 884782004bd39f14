"""JSON reading and compact writing with the exact behaviour of JsonCpp, as Orthanc uses it.

``DumpJson`` output is compared byte for byte by scripts and tests, so the
writer reproduces ``Toolbox::WriteFastJson`` (a JsonCpp StreamWriter without
indentation): members sorted by bytes, doubles printed with "%.17g" plus ".0"
when they look integral, infinities as 1e+9999, NaN as null, and every
non-ASCII character escaped as a \\u sequence (invalid UTF-8 becomes \\ufffd).

The reader mirrors ``Toolbox::ReadJson`` (a default JsonCpp CharReader):
comments are allowed, any value may be the root, and text after the first
complete value is ignored.
"""

from __future__ import annotations

import json
import math

from orthancd.lua.values import encode

_REPLACEMENT_CHARACTER = 0xFFFD
_SIMPLE_ESCAPES = {
    ord('"'): '\\"',
    ord("\\"): "\\\\",
    ord("\b"): "\\b",
    ord("\f"): "\\f",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def write_fast_json(value) -> bytes:
    return "".join(_write(value)).encode("ascii")


def _write(value):
    if value is None:
        yield "null"
    elif value is True:
        yield "true"
    elif value is False:
        yield "false"
    elif isinstance(value, int):
        yield str(value)
    elif isinstance(value, float):
        yield _format_double(value)
    elif isinstance(value, str):
        yield _quote(value)
    elif isinstance(value, list):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _write(item)
        yield "]"
    elif isinstance(value, dict):
        yield "{"
        for index, key in enumerate(sorted(value, key=encode)):
            if index:
                yield ","
            yield _quote(key)
            yield ":"
            yield from _write(value[key])
        yield "}"
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _format_double(value: float) -> str:
    if math.isnan(value):
        return "null"
    if math.isinf(value):
        return "-1e+9999" if value < 0 else "1e+9999"
    text = "%.17g" % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _utf8_to_codepoint(data: bytes, position: int) -> tuple[int, int]:
    """JsonCpp's lenient UTF-8 decoder: returns (codepoint, bytes consumed)."""
    first = data[position]
    remaining = len(data) - position
    if first < 0x80:
        return first, 1
    if first < 0xE0:
        if remaining < 2:
            return _REPLACEMENT_CHARACTER, 1
        codepoint = ((first & 0x1F) << 6) | (data[position + 1] & 0x3F)
        return (_REPLACEMENT_CHARACTER if codepoint < 0x80 else codepoint), 2
    if first < 0xF0:
        if remaining < 3:
            return _REPLACEMENT_CHARACTER, 1
        codepoint = (((first & 0x0F) << 12) | ((data[position + 1] & 0x3F) << 6)
                     | (data[position + 2] & 0x3F))
        if 0xD800 <= codepoint <= 0xDFFF or codepoint < 0x800:
            return _REPLACEMENT_CHARACTER, 3
        return codepoint, 3
    if first < 0xF8:
        if remaining < 4:
            return _REPLACEMENT_CHARACTER, 1
        codepoint = (((first & 0x07) << 18) | ((data[position + 1] & 0x3F) << 12)
                     | ((data[position + 2] & 0x3F) << 6) | (data[position + 3] & 0x3F))
        return (_REPLACEMENT_CHARACTER if codepoint < 0x10000 else codepoint), 4
    return _REPLACEMENT_CHARACTER, 1


def _quote(text: str) -> str:
    data = encode(text)
    pieces = ['"']
    position = 0
    while position < len(data):
        byte = data[position]
        if byte in _SIMPLE_ESCAPES:
            pieces.append(_SIMPLE_ESCAPES[byte])
            position += 1
            continue
        codepoint, consumed = _utf8_to_codepoint(data, position)
        position += consumed
        if codepoint < 0x20:
            pieces.append("\\u%04x" % codepoint)
        elif codepoint < 0x80:
            pieces.append(chr(codepoint))
        elif codepoint < 0x10000:
            pieces.append("\\u%04x" % codepoint)
        else:
            codepoint -= 0x10000
            pieces.append("\\u%04x\\u%04x" % (0xD800 + (codepoint >> 10), 0xDC00 + (codepoint & 0x3FF)))
    pieces.append('"')
    return "".join(pieces)


class _RejectedConstant(ValueError):
    pass


def _reject_constant(name: str):
    # JsonCpp does not know NaN / Infinity / -Infinity without allowSpecialFloats.
    raise _RejectedConstant(name)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, strict=False)


def read_json(data: bytes):
    """Parse like JsonCpp; returns ``(True, value)`` or ``(False, None)``."""
    try:
        text = _blank_comments(data.decode("utf-8", "surrogateescape"))
        start = len(text) - len(text.lstrip(" \t\r\n"))
        value, _ = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        return False, None
    return True, value


def _blank_comments(text: str) -> str:
    """Replace // and /* */ comments outside strings by spaces (JsonCpp allows them)."""
    if "/" not in text:
        return text
    pieces = []
    position = 0
    length = len(text)
    while position < length:
        char = text[position]
        if char == '"':
            end = position + 1
            while end < length and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            pieces.append(text[position:end + 1])
            position = end + 1
        elif text.startswith("//", position):
            end = text.find("\n", position)
            end = length if end < 0 else end
            pieces.append(" ")
            position = end
        elif text.startswith("/*", position):
            end = text.find("*/", position + 2)
            if end < 0:
                raise ValueError("unterminated comment")
            pieces.append(" ")
            position = end + 2
        else:
            pieces.append(char)
            position += 1
    return "".join(pieces)
