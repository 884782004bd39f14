"""Embedded Lua engine: runs /tools/execute-script scripts and Lua callbacks like Orthanc."""

from orthancd.lua.engine import LuaEngine
from orthancd.lua.errors import LuaError, LuaInternalError, LuaResultError

__all__ = ["LuaEngine", "LuaError", "LuaInternalError", "LuaResultError"]
