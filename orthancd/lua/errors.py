"""Exceptions raised by the embedded Lua engine."""


class LuaError(Exception):
    """A Lua script failed with a syntax or runtime error.

    The message is Lua's own error text, e.g. ``[string "line"]:1: boom``.
    Orthanc answers such failures with HTTP 500, OrthancStatus 2031
    ("Cannot execute a Lua command") and this text as "Details".
    """


class LuaInternalError(LuaError):
    """The script made Orthanc fail outside Lua's own error handling.

    In Orthanc these are C++ exceptions that bypass ``pcall`` (an error
    object that is not a string, a table with boolean keys given to
    DumpJson, an array given as HTTP headers...).  Orthanc answers HTTP 500
    with OrthancStatus -1 ("Internal error") and the details "An unhandled
    exception was generated inside the HTTP server".
    """


class LuaResultError(LuaError):
    """A callback answered something of the wrong kind: not a Boolean for a
    filter ("NotLuaPredicate"), not a number for a status
    ("LuaReturnsNoString").  The message is the name of Orthanc's error code."""
