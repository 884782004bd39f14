"""Lua source run once in every new Lua state to install Orthanc's global functions.

The chunk receives the Python implementations as ``...`` and keeps them in
local upvalues: scripts only ever see Lua closures, so ``type(RestApiGet)``
is "function" as in Orthanc, and no Python object is reachable by name.
It returns the private helpers the engine needs (the script runner, the
function caller, Lua's original ``tonumber`` and the hook reset).
"""

ORTHANC_FUNCTIONS = r"""
local capture_print, parse_json, dump_json, rest_api_get, rest_api_post,
      rest_api_put, rest_api_delete, orthanc_configuration,
      http_get, http_post, http_put, http_delete, set_http_credentials, set_http_timeout,
      store_key_value, get_key_value, delete_key_value, set_stable_status = ...

local load, pcall, select, type, error = load, pcall, select, type, error
local globals = _G
local format, match = string.format, string.match
local sethook = debug.sethook
local ABORTED = {}

-- Some failures are C++ exceptions in Orthanc and cannot be caught by
-- pcall. Emulate that: raise an error now and on every later instruction
-- until the engine clears the hook, so that no pcall can swallow it.
local function abort_script()
  sethook(function() error(ABORTED, 0) end, "", 1)
  error(ABORTED, 0)
end

local function checked(results_or_abort, ...)
  if results_or_abort == ABORTED then
    abort_script()
  end
  return ...
end

-- Python callbacks return (marker, result): the marker is ABORTED when the
-- call hit one of those uncatchable failures.
local function bind(native)
  return function(...)
    return checked(native(ABORTED, ...))
  end
end

-- Orthanc's print(): tostring() of each argument, joined by ", " (the
-- separator is only added once something was written), NUL ends a string,
-- and a value tostring() cannot turn into a string is shown as a marker.
function print(...)
  local to_string = tostring
  local line = ""
  for i = 1, select("#", ...) do
    local text = to_string((select(i, ...)))
    if type(text) == "number" then
      text = format("%s", text)
    elseif type(text) ~= "string" then
      text = "<No conversion to string>"
    end
    if line ~= "" then
      line = line .. ", "
    end
    line = line .. match(text, "^[^\0]*")
  end
  capture_print(line)
end

-- Prints one line per value: the path of keys, the Lua type, the value.
-- "limit" bounds the number of lines; the remaining budget is returned.
function PrintRecursive(value, limit, indent)
  limit = limit or 100
  indent = indent or ""
  if limit < 1 then
    print("ERROR: Item limit reached.")
    return limit - 1
  end
  local kind = type(value)
  if kind ~= "table" then
    print(indent, kind, value)
    return limit - 1
  end
  print(indent, kind)
  for key, item in pairs(value) do
    limit = PrintRecursive(item, limit, indent .. "\t[" .. tostring(key) .. "]")
    if limit < 0 then
      break
    end
  end
  return limit
end

ParseJson = bind(parse_json)
DumpJson = bind(dump_json)
RestApiGet = bind(rest_api_get)
RestApiPost = bind(rest_api_post)
RestApiPut = bind(rest_api_put)
RestApiDelete = bind(rest_api_delete)
GetOrthancConfiguration = bind(orthanc_configuration)
HttpGet = bind(http_get)
HttpPost = bind(http_post)
HttpPut = bind(http_put)
HttpDelete = bind(http_delete)
SetHttpCredentials = bind(set_http_credentials)
SetHttpTimeout = bind(set_http_timeout)
StoreKeyValue = bind(store_key_value)
GetKeyValue = bind(get_key_value)
DeleteKeyValue = bind(delete_key_value)
SetStableStatus = bind(set_stable_status)

-- Orthanc's Lua toolbox.  Callbacks (OnStoredInstance, OnStable*) collect
-- the operations these functions describe in _job; the server turns them
-- into one job ("SequenceOfOperations") once the callback returns.  A
-- function returning the resource lets the next one use its output
-- (Delete(SendToModality(id, 'pacs'))); "" stands for "the output of the
-- previous operation".
local insert = table.insert

function _InitializeJob()
  _job = {}
end

function _AccessJob()
  return _job
end

function SendToModality(resourceId, modality, localAet)
  if resourceId == nil then
    error('Cannot send a nonexistent resource')
  end
  insert(_job, { Operation = 'store-scu', Resource = resourceId,
                 Modality = modality, LocalAet = localAet })
  return resourceId
end

function SendToPeer(resourceId, peer)
  if resourceId == nil then
    error('Cannot send a nonexistent resource')
  end
  insert(_job, { Operation = 'store-peer', Resource = resourceId, Peer = peer })
  return resourceId
end

function Delete(resourceId)
  if resourceId == nil then
    error('Cannot delete a nonexistent resource')
  end
  insert(_job, { Operation = 'delete', Resource = resourceId })
  return nil  -- nothing comes after a deletion
end

function ModifyResource(resourceId, replacements, removals, removePrivateTags)
  if resourceId == nil then
    error('Cannot modify a nonexistent resource')
  end
  if resourceId == '' then
    error('Cannot modify twice an resource')
  end
  insert(_job, { Operation = 'modify', Resource = resourceId, Replace = replacements,
                 Remove = removals, RemovePrivateTags = removePrivateTags })
  return ''  -- the modified instance, for the next operation
end

function ModifyInstance(resourceId, replacements, removals, removePrivateTags)
  return ModifyResource(resourceId, replacements, removals, removePrivateTags)
end

function CallSystem(resourceId, command, args)
  if resourceId == nil then
    error('Cannot execute a system call on a nonexistent resource')
  end
  if command == nil then
    error('No command was specified for system call')
  end
  insert(_job, { Operation = 'call-system', Resource = resourceId,
                 Command = command, Arguments = args })
  return resourceId
end

-- Runs a script as Orthanc does: chunk name "line", any error object.
local function run_script(source)
  local chunk, message = load(source, "line")
  if chunk == nil then
    return false, message
  end
  return pcall(chunk)
end

local function call_global(name, ...)
  local callee = globals[name]
  return pcall(callee, ...)
end

-- debug.sethook itself, not a Lua wrapper: called with no argument it
-- clears the abort hook without running a Lua instruction that would fire it.
return run_script, call_global, tonumber, sethook
"""

# Lua 5.3 as built by Debian (and thus Orthanc) has LUA_COMPAT_5_2: the
# bit32 library and a few math functions that lupa's Lua 5.3 leaves out.
# They follow the Lua 5.2 reference manual; the math ones delegate to the
# C library through Python so results are bit-identical.
LUA_5_2_COMPATIBILITY = r"""
local c_math = ...
local error, select, type, tointeger, tonumber = error, select, type, math.tointeger, tonumber
local format, getinfo = string.format, debug.getinfo
local ALL_ONES = 0xFFFFFFFF
local THIS_CHUNK = getinfo(1, "S").source

-- Errors point at the script line that called the library, as errors
-- raised by C functions do; frames of this chunk are skipped.  Argument
-- errors name the function as the call site did ("band" for bit32.band(x)),
-- or by its qualified name when called from C, e.g. through pcall.
local bit32 = {}

local function qualified_name(name)
  if bit32[name] then
    return "bit32." .. name
  end
  return "math." .. name
end

local function fail(message, function_name)
  local level = 2
  while true do
    local frame = getinfo(level, "Sl")
    if frame == nil then
      error(message, 0)
    end
    if frame.source ~= THIS_CHUNK then
      if function_name then
        local called_as = getinfo(level - 1, "n").name or qualified_name(function_name)
        message = format(message, called_as)
      end
      if frame.currentline > 0 then
        message = frame.short_src .. ":" .. frame.currentline .. ": " .. message
      end
      error(message, 0)
    end
    level = level + 1
  end
end

local function type_name(value, present)
  if not present then return "no value" end
  return type(value)
end

local function argument_error(position, name, message)
  fail(format("bad argument #%d to '%%s' (%s)", position, message), name)
end

local function check_number(name, position, present, value)
  local number = tonumber(value)
  if number == nil then
    argument_error(position, name, "number expected, got " .. type_name(value, present))
  end
  return number
end

local function check_unsigned(name, position, present, value)
  local number = check_number(name, position, present, value)
  local integer = tointeger(number)
  if integer == nil then
    argument_error(position, name, "number has no integer representation")
  end
  return integer & ALL_ONES
end

local function check_integer(name, position, present, value)
  local number = check_number(name, position, present, value)
  local integer = tointeger(number)
  if integer == nil then
    argument_error(position, name, "number has no integer representation")
  end
  return integer
end

local function unsigned_argument(name, position, ...)
  return check_unsigned(name, position, select("#", ...) >= position, (select(position, ...)))
end

local function integer_argument(name, position, ...)
  return check_integer(name, position, select("#", ...) >= position, (select(position, ...)))
end

local function number_argument(name, position, ...)
  return check_number(name, position, select("#", ...) >= position, (select(position, ...)))
end

-- Called in parentheses, not as a tail call, so that the frame of the
-- bit32 function stays on the stack for argument error messages.
local function fold(name, initial, combine, ...)
  local result = initial
  for position = 1, select("#", ...) do
    result = combine(result, unsigned_argument(name, position, ...))
  end
  return result & ALL_ONES
end

local function shift(value, displacement)
  if displacement < 0 then
    displacement = -displacement
    if displacement >= 32 then return 0 end
    return (value & ALL_ONES) >> displacement
  end
  if displacement >= 32 then return 0 end
  return (value << displacement) & ALL_ONES
end

local function field_arguments(name, first, ...)
  local field = integer_argument(name, first, ...)
  local width = 1
  if select("#", ...) >= first + 1 and (select(first + 1, ...)) ~= nil then
    width = integer_argument(name, first + 1, ...)
  end
  if field < 0 then argument_error(first, name, "field cannot be negative") end
  if width <= 0 then argument_error(first + 1, name, "width must be positive") end
  if field + width > 32 then fail("trying to access non-existent bits") end
  return field, width
end

local function mask(width)
  return ~((ALL_ONES << (width - 1)) << 1) & ALL_ONES
end

function bit32.band(...) return (fold("band", ALL_ONES, function(a, b) return a & b end, ...)) end
function bit32.bor(...) return (fold("bor", 0, function(a, b) return a | b end, ...)) end
function bit32.bxor(...) return (fold("bxor", 0, function(a, b) return a ~ b end, ...)) end
function bit32.btest(...) return fold("btest", ALL_ONES, function(a, b) return a & b end, ...) ~= 0 end
function bit32.bnot(...) return (~unsigned_argument("bnot", 1, ...)) & ALL_ONES end

function bit32.lshift(...)
  return shift(unsigned_argument("lshift", 1, ...), integer_argument("lshift", 2, ...))
end

function bit32.rshift(...)
  return shift(unsigned_argument("rshift", 1, ...), -integer_argument("rshift", 2, ...))
end

function bit32.arshift(...)
  local value = unsigned_argument("arshift", 1, ...)
  local displacement = integer_argument("arshift", 2, ...)
  if displacement < 0 or (value & 0x80000000) == 0 then
    return shift(value, -displacement)
  end
  if displacement >= 32 then return ALL_ONES end
  return ((value >> displacement) | ~(ALL_ONES >> displacement)) & ALL_ONES
end

local function rotate(value, displacement)
  displacement = displacement & 31
  return ((value << displacement) | (value >> (32 - displacement))) & ALL_ONES
end

function bit32.lrotate(...)
  return rotate(unsigned_argument("lrotate", 1, ...), integer_argument("lrotate", 2, ...))
end

function bit32.rrotate(...)
  return rotate(unsigned_argument("rrotate", 1, ...), -integer_argument("rrotate", 2, ...))
end

function bit32.extract(...)
  local value = unsigned_argument("extract", 1, ...)
  local field, width = field_arguments("extract", 2, ...)
  return (value >> field) & mask(width)
end

function bit32.replace(...)
  local value = unsigned_argument("replace", 1, ...)
  local replacement = unsigned_argument("replace", 2, ...)
  local field, width = field_arguments("replace", 3, ...)
  local bits = mask(width)
  replacement = replacement & bits
  return ((value & ~(bits << field)) | (replacement << field)) & ALL_ONES
end

_G.bit32 = bit32
package.loaded.bit32 = bit32

local function unary(name, implementation)
  math[name] = function(...)
    return implementation(number_argument(name, 1, ...) + 0.0)
  end
end

unary("cosh", c_math.cosh)
unary("sinh", c_math.sinh)
unary("tanh", c_math.tanh)
unary("log10", c_math.log10)

function math.pow(...)
  return number_argument("pow", 1, ...) ^ number_argument("pow", 2, ...)
end

function math.atan2(...)
  return math.atan(number_argument("atan2", 1, ...), number_argument("atan2", 2, ...))
end

function math.frexp(...)
  return c_math.frexp(number_argument("frexp", 1, ...) + 0.0)
end

function math.ldexp(...)
  return c_math.ldexp(number_argument("ldexp", 1, ...) + 0.0, integer_argument("ldexp", 2, ...))
end
"""
