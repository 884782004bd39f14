"""Tests of the embedded Lua engine.

Expected outputs were taken from a real Orthanc 1.10.1 (POST /tools/execute-script).
"""

import json
import threading
import time

import pytest

from orthancd.lua import LuaEngine, LuaError, LuaInternalError, LuaResultError


class RecordingRestCaller:
    """Fake REST layer: records calls and answers from a table of (method, uri) -> (status, body)."""

    def __init__(self, answers=None, delay=0.0):
        self.answers = answers or {}
        self.calls = []
        self.delay = delay

    def call(self, method, uri, body, headers):
        self.calls.append((method, uri, body, headers))
        if self.delay:
            time.sleep(self.delay)
        return self.answers.get((method, uri), (404, b'{"HttpError": "Not Found"}'))


CONFIGURATION = {
    "Name": "OrthancTest",
    "HttpPort": 8042,
    "DicomModalities": {"sample": ["STORESCP", "127.0.0.1", 2000]},
    "LuaScripts": [],
    "RemoteAccessAllowed": True,
    "ConcurrentJobs": 2,
}


@pytest.fixture
def rest():
    return RecordingRestCaller()


@pytest.fixture
def engine(rest):
    return LuaEngine(rest, CONFIGURATION)


def test_lua_version_is_the_one_orthanc_embeds(engine):
    assert engine.execute("print(_VERSION)") == "Lua 5.3\n"


# -- print --------------------------------------------------------------------

@pytest.mark.parametrize("script, expected", [
    ('print(1, 2.0, nil, true, "a", 1/0, 0.1, 3e20, -0.0)', "1, 2.0, nil, true, a, inf, 0.1, 3e+20, -0.0\n"),
    ("print()", "\n"),
    ("print(1) print(2)", "1\n2\n"),
    ('print("", "a")', "a\n"),
    ('print("a", "", "b")', "a, , b\n"),
    ('print("a", "")', "a, \n"),
    ('print("", "", "c")', "c\n"),
    ('print(" ", "a")', " , a\n"),
    ('print("a\\0b", "c")', "a, c\n"),
    ("print(setmetatable({}, {__tostring=function() return 5 end}))", "5\n"),
    ('io.write("")', ""),
])
def test_print_formats_like_orthanc(engine, script, expected):
    assert engine.execute(script) == expected


def test_print_of_table_shows_its_address(engine):
    assert engine.execute("print({})").startswith("table: 0x")


def test_print_when_tostring_returns_no_string(engine):
    script = ("local t = tostring; tostring = function() return {} end; "
              "local ok, e = pcall(print, 1); tostring = t; print(ok, e)")
    assert engine.execute(script) == "<No conversion to string>\ntrue, nil\n"


def test_output_of_each_script_is_separate(engine):
    assert engine.execute("print('first')") == "first\n"
    assert engine.execute("print('second')") == "second\n"


def test_execute_bytes_keeps_binary_output(engine):
    assert engine.execute_bytes('print("\\xff\\x01")') == b"\xff\x01\n"


# -- persistent state -----------------------------------------------------------

def test_state_persists_across_scripts(engine):
    engine.execute("counter = 41 function Increment() counter = counter + 1 return counter end")
    assert engine.execute("print(Increment())") == "42\n"
    assert engine.execute("print(counter)") == "42\n"


def test_standard_libraries_are_available(engine):
    assert engine.execute("print(type(os.time()), type(io.open), type(string.format), type(utf8.char))") == \
        "number, function, function, function\n"


def test_python_bridge_is_not_reachable(engine):
    assert engine.execute("print(python)") == "nil\n"
    assert engine.execute("print(type(RestApiGet), type(ParseJson))") == "function, function\n"


# -- errors --------------------------------------------------------------------------

@pytest.mark.parametrize("script, message", [
    ('error("x")', '[string "line"]:1: x'),
    ("x = = 1", "[string \"line\"]:1: unexpected symbol near '='"),
    ('print(1) error("boom")', '[string "line"]:1: boom'),
    ('error("x", 0)', "x"),
    ("error(5)", "5"),
    ("local a = nil; a.b = 1", "[string \"line\"]:1: attempt to index a nil value (local 'a')"),
    ('\nerror("line two")', '[string "line"]:2: line two'),
])
def test_script_errors_raise_lua_error_with_lua_message(engine, script, message):
    with pytest.raises(LuaError) as raised:
        engine.execute(script)
    assert str(raised.value) == message
    assert not isinstance(raised.value, LuaInternalError)


@pytest.mark.parametrize("script", [
    "error({1})",
    "error()",
    "print(pcall(DumpJson, {[true]=1}))",
    'print(pcall(RestApiGet, "/system", false, {}))',
    "local t = {} t.self = t print(pcall(DumpJson, t))",
    "local run = coroutine.wrap(function() DumpJson({[{}] = 1}) end) print(pcall(run))",
])
def test_failures_orthanc_cannot_catch_raise_internal_error(engine, script):
    with pytest.raises(LuaInternalError) as raised:
        engine.execute(script)
    assert str(raised.value) == "An unhandled exception was generated inside the HTTP server"
    # The state is still usable afterwards.
    assert engine.execute("print(1)") == "1\n"


def test_pcall_cannot_swallow_an_internal_error(engine):
    with pytest.raises(LuaInternalError):
        engine.execute("for i = 1, 3 do pcall(DumpJson, {[true] = 1}) end print('went on')")


# -- JSON -------------------------------------------------------------------------

@pytest.mark.parametrize("script, expected", [
    ("print(DumpJson({}))", "[]\n"),
    ("print(DumpJson({1,2,{a=1,b={}}}))", '[1,2,{"a":1,"b":[]}]\n'),
    ('print(DumpJson({a=1.5,b="x",c=true,d={x={1,"2",3.0}}, e=2.0}))',
     '{"a":1.5,"b":"x","c":true,"d":{"x":[1,2,3]},"e":2}\n'),
    ('print(DumpJson({a=1.5,b="12",c=true, n=42, f=1.25, z={2}}, true))',
     '{"a":"1.5","b":"12","c":true,"f":"1.25","n":"42","z":["2"]}\n'),
    ('print(DumpJson("s"), DumpJson(1), DumpJson(nil), DumpJson(true), DumpJson("3"), DumpJson(1e-17))',
     '"s", 1, null, true, 3, 0\n'),
    ("print(DumpJson({0.1, 2147483648, 2147483647, -2147483648, 1e300, 3e20, -0.0, 0.5}))",
     "[0.10000000000000001,2147483648.0,2147483647,-2147483648,1.0000000000000001e+300,3e+20,0,0.5]\n"),
    ('print(DumpJson({"é\\n\\"\\t\\1/<"}))', '["\\u00e9\\n\\"\\t\\u0001/<"]\n'),
    ("print(DumpJson({1/0, -1/0, 0/0}))", "[1e+9999,-1e+9999,null]\n"),
    ("print(DumpJson({[1]=1,[3]=3}))", '{"1":1,"3":3}\n'),
    ("print(DumpJson({[2]=1}))", '{"2":1}\n'),
    ("print(DumpJson({[1]=1, x=2}))", '{"1":1,"x":2}\n'),
    ("print(DumpJson({[1.5]=1}))", '{"1.5":1}\n'),
    ("print(DumpJson({1,nil,3}))", '{"1":1,"3":3}\n'),
    ('print(DumpJson({["a\\0b"]=1, c="x\\0y"}))', '{"a":1,"c":"x"}\n'),
    ("print(DumpJson(print))", "null\n"),
    ("print(DumpJson(), DumpJson(1, 2))", "nil, nil\n"),
])
def test_dump_json_matches_orthanc(engine, script, expected):
    assert engine.execute(script) == expected


def test_dump_json_escapes_non_ascii_and_invalid_utf8(engine):
    assert engine.execute('print(DumpJson({"\\xff\\xf0\\x9f\\x98\\x80"}))') == '["\\ufffd\\ud83d\\ude00"]\n'


def test_parse_json_values_and_holes(engine):
    script = ('local a = ParseJson("[1, 2.5, \\"x\\", null, true, {\\"b\\":[]}, 12345678901234]") '
              "print(a[1], a[2], a[3], a[4], a[5], #a, a[7], math.type(a[1])) PrintRecursive(a)")
    assert engine.execute(script) == (
        "1.0, 2.5, x, nil, true, 3, 12345678901234.0, float\n"
        "table\n"
        "\t[1], number, 1.0\n"
        "\t[2], number, 2.5\n"
        "\t[3], string, x\n"
        "\t[5], boolean, true\n"
        "\t[6], table\n"
        "\t[6]\t[b], table\n"
        "\t[7], number, 12345678901234.0\n")


@pytest.mark.parametrize("script, expected", [
    ('print(ParseJson("{bad"))', "nil\n"),
    ('print(ParseJson("3"))', "3.0\n"),
    ('print(ParseJson(""))', "nil\n"),
    ("print(ParseJson(3))", "3.0\n"),
    ('print(ParseJson("\\"x\\""))', "x\n"),
    ('print(type(ParseJson("[1] x")))', "table\n"),
    ('print(ParseJson("[1]", nil))', "nil\n"),
    ('print(ParseJson("NaN"))', "nil\n"),
    ('print(DumpJson(ParseJson("/* c */ {\\"a\\" : [1, 2] // x\\n }")))', '{"a":[1,2]}\n'),
])
def test_parse_json_edge_cases(engine, script, expected):
    assert engine.execute(script) == expected


@pytest.mark.parametrize("document", [
    {"a": [1, 2, {"b": []}], "c": {"d": {"e": "f"}}, "n": None, "t": True, "x": 1.5},
    [[[]], [{}], {"k": [[1], [2, [3]]]}],
    [],
    {},
    {"unicode": "h\u00e9llo \u4e16\u754c", "quote": 'a"b\\c'},
])
def test_parse_then_dump_round_trips(engine, document):
    text = json.dumps(document)
    engine.execute(f"source = [==[{text}]==]")
    dumped = engine.execute("print(DumpJson(ParseJson(source)))").rstrip("\n")
    expected = json.loads(text)
    if expected == {}:
        expected = []  # an empty table is dumped as an array, as Orthanc does
    assert _normalize_empty_objects(json.loads(dumped)) == _normalize_empty_objects(expected)


def _normalize_empty_objects(value):
    if value == {}:
        return []
    if isinstance(value, dict):
        # A null member or item becomes nil, i.e. is absent from the table.
        return {key: _normalize_empty_objects(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_normalize_empty_objects(item) for item in value if item is not None]
    return value


# -- PrintRecursive -------------------------------------------------------------------

@pytest.mark.parametrize("script, expected", [
    ("PrintRecursive(5)", "number, 5\n"),
    ('PrintRecursive("x", 0)', "ERROR: Item limit reached.\n"),
    ("print(PrintRecursive({1,2}, 2))", "table\n\t[1], number, 1\n\t[2], number, 2\n0\n"),
    ("PrintRecursive({{true}, 'a'})", "table\n\t[1], table\n\t[1]\t[1], boolean, true\n\t[2], string, a\n"),
    ("PrintRecursive({1,2,3}, 2)", "table\n\t[1], number, 1\n\t[2], number, 2\nERROR: Item limit reached.\n"),
])
def test_print_recursive_matches_orthanc(engine, script, expected):
    assert engine.execute(script) == expected


def test_print_recursive_of_dictionary_lists_every_member(engine):
    lines = engine.execute("PrintRecursive({a=1, b={c='d'}})").splitlines()
    assert lines[0] == "table"
    assert sorted(lines[1:]) == sorted(["\t[a], number, 1", "\t[b], table", "\t[b]\t[c], string, d"])


# -- REST API ---------------------------------------------------------------------------

def test_rest_api_get_returns_the_body(engine, rest):
    rest.answers[("GET", "/system")] = (200, b'{"Name": "x"}')
    assert engine.execute('print(RestApiGet("/system"))') == '{"Name": "x"}\n'
    assert rest.calls == [("GET", "/system", None, {})]


def test_rest_api_passes_method_uri_body_and_lowercased_headers(engine, rest):
    rest.answers[("POST", "/tools/find")] = (200, b"[]")
    rest.answers[("PUT", "/instances/a/metadata/1024")] = (200, b"")
    rest.answers[("DELETE", "/patients/p")] = (200, b"{}")
    output = engine.execute(
        'print(RestApiPost("/tools/find", "{\\"Level\\":\\"Study\\"}", false, {["X-Token"]="t", Count=3}))\n'
        'print(RestApiPut("/instances/a/metadata/1024", "value", true))\n'
        'print(RestApiDelete("/patients/p"))')
    assert output == "[]\n\ntrue\n"
    assert rest.calls == [
        ("POST", "/tools/find", b'{"Level":"Study"}', {"x-token": "t", "count": "3"}),
        ("PUT", "/instances/a/metadata/1024", b"value", {}),
        ("DELETE", "/patients/p", None, {}),
    ]


def test_rest_api_keeps_query_string_and_binary_bodies(engine, rest):
    rest.answers[("GET", "/instances/a/file?x=1")] = (200, b"DICM\x00\xff")
    rest.answers[("POST", "/instances")] = (200, b'{"ID": "i"}')
    assert engine.execute_bytes(
        'local f = RestApiGet("/instances/a/file?x=1") print(#f) print(RestApiPost("/instances", f))') == \
        b'6\n{"ID": "i"}\n'
    assert rest.calls[1][2] == b"DICM\x00\xff"


def test_rest_api_error_status_gives_nil_not_an_error(engine, rest):
    # Orthanc logs the failure and returns nil; it does not raise.
    assert engine.execute('print(RestApiGet("/nonexistent"))') == "nil\n"
    assert engine.execute('print(pcall(RestApiGet, "/instances/abc"))') == "true, nil\n"
    assert engine.execute('print(RestApiDelete("/patients/missing"))') == "nil\n"
    assert engine.execute('print(RestApiPost("/tools/lookup", "x"))') == "nil\n"


def test_rest_api_failure_of_the_caller_gives_nil(engine):
    class BrokenCaller:
        def call(self, method, uri, body, headers):
            raise ConnectionError("reactor stopped")

    assert LuaEngine(BrokenCaller(), {}).execute('print(RestApiGet("/system"))') == "nil\n"


@pytest.mark.parametrize("script", [
    "print(RestApiGet())",
    'print(RestApiGet("/system", "x"))',
    'print(RestApiGet("/system", nil))',
    'print(RestApiGet("/system", false, "headers"))',
    'print(RestApiPost("/tools/lookup"))',
    'print(RestApiPut("/x", {}))',
    "print(RestApiDelete({}))",
])
def test_rest_api_bad_arguments_give_nil_without_calling(engine, rest, script):
    assert engine.execute(script) == "nil\n"
    assert rest.calls == []


def test_rest_api_numbers_are_accepted_as_strings(engine, rest):
    rest.answers[("POST", "/tools/lookup")] = (200, b"[]")
    assert engine.execute('print(RestApiPost("/tools/lookup", 5))') == "[]\n"
    assert rest.calls == [("POST", "/tools/lookup", b"5", {})]


def test_rest_api_refuses_nested_execute_script(engine, rest):
    assert engine.execute('print(RestApiPost("/tools/execute-script", "print(1)"))') == "nil\n"
    assert rest.calls == []


# -- configuration ------------------------------------------------------------------------

def test_get_orthanc_configuration(engine):
    output = engine.execute(
        "local c = GetOrthancConfiguration() "
        "print(c.Name, c.HttpPort, c.RemoteAccessAllowed, type(c.LuaScripts), c.Missing) "
        "print(DumpJson(c.DicomModalities))")
    # Orthanc pushes every JSON number as a Lua float.
    assert output == 'OrthancTest, 8042.0, true, table, nil\n{"sample":["STORESCP","127.0.0.1",2000]}\n'


def test_configuration_is_a_fresh_table_each_time(engine):
    assert engine.execute(
        "GetOrthancConfiguration().Name = 'changed' print(GetOrthancConfiguration().Name)") == "OrthancTest\n"


# -- callbacks ----------------------------------------------------------------------------

def test_has_function(engine):
    assert not engine.has_function("OnStoredInstance")
    engine.execute("function OnStoredInstance(id, tags, metadata, origin) end")
    assert engine.has_function("OnStoredInstance")
    engine.execute("NotAFunction = 3")
    assert not engine.has_function("NotAFunction")
    assert engine.has_function("RestApiGet")


def test_call_function_converts_nested_arguments(engine):
    engine.execute(
        "function Describe(id, tags, metadata)\n"
        "  seen = id .. ' ' .. tags.PatientName .. ' ' .. tags.Sequence[2].Code .. ' ' .. #tags.Sequence\n"
        "  return { id = id, count = metadata.Count, math.type(metadata.Count) }\n"
        "end")
    result = engine.call_function(
        "Describe", "abc", {"PatientName": "DOE^JOHN", "Sequence": [{"Code": "A"}, {"Code": "B"}]}, {"Count": 3},
        keep_strings=False)
    assert result == {"1": "float", "id": "abc", "count": 3}
    assert engine.execute("print(seen)") == "abc DOE^JOHN B 2\n"


def test_call_function_results(engine):
    engine.execute("function Answer(kind)\n"
                   "  if kind == 'list' then return {'a', {x = '12'}, 2.5} end\n"
                   "  if kind == 'number' then return 7 end\n"
                   "end")
    assert engine.call_function("Answer", "list") == ["a", {"x": "12"}, "2.5"]
    assert engine.call_function("Answer", "list", keep_strings=False) == ["a", {"x": 12}, 2.5]
    assert engine.call_function("Answer", "number", keep_strings=False) == 7
    assert engine.call_function("Answer", "nothing") is None


def test_call_predicate_wants_a_boolean(engine):
    engine.execute("function Filter(value) return value end")
    assert engine.call_predicate("Filter", True)
    assert not engine.call_predicate("Filter", False)
    # Orthanc's ExecutePredicate: anything but a Boolean is an error.
    for value in (0, "", None):
        with pytest.raises(LuaResultError, match="NotLuaPredicate"):
            engine.call_predicate("Filter", value)


def test_call_integer(engine):
    engine.execute("function Status(value) return value end")
    assert engine.call_integer("Status", 0xA700) == 0xA700
    assert engine.call_integer("Status", "42") == 42
    assert engine.call_integer("Status", 2.5) == 0
    with pytest.raises(LuaResultError, match="LuaReturnsNoString"):
        engine.call_integer("Status", None)


def test_call_collecting_operations(engine):
    engine.execute("function OnStoredInstance(id) Delete(SendToModality(ModifyInstance("
                   "id, {PatientName='X'}, {}, true), 'pacs', 'ME')) end")
    operations = engine.call_collecting_operations("OnStoredInstance", "abc")
    assert [op["Operation"] for op in operations] == ["modify", "store-scu", "delete"]
    assert operations[0]["Resource"] == "abc" and operations[0]["Replace"] == {"PatientName": "X"}
    assert operations[1] == {"Operation": "store-scu", "Resource": "", "Modality": "pacs",
                             "LocalAet": "ME"}


def test_watched_functions_are_known_without_the_lock():
    from orthancd.lua import LuaEngine
    watching = LuaEngine(None, {}, watched_functions=("OnHeartBeat", "Other"))
    assert not watching.is_defined("OnHeartBeat")
    watching.execute("function OnHeartBeat() end Other = 1")
    assert watching.is_defined("OnHeartBeat") and not watching.is_defined("Other")


def test_call_function_prints_are_not_captured_in_script_output(engine):
    engine.execute("function Noisy() print('from callback') end")
    engine.call_function("Noisy")
    assert engine.execute("print('script')") == "script\n"


def test_call_function_errors(engine):
    engine.execute("function Fails() error('bad callback') end")
    with pytest.raises(LuaError, match=r'\[string "line"\]:1: bad callback'):
        engine.call_function("Fails")
    with pytest.raises(LuaError, match="attempt to call a nil value"):
        engine.call_function("Undefined")


# -- Lua 5.2 compatibility (Orthanc's Lua 5.3 has LUA_COMPAT_5_2) -------------------------------

def test_bit32_library(engine):
    assert engine.execute(
        "print(bit32.bnot(0), bit32.rshift(-1, 1), bit32.arshift(-8, 1), bit32.lrotate(1, 33), "
        "bit32.extract(0xff, 4, 4), bit32.band(7, 3), bit32.bor(1, 4), bit32.bxor(5, 1), bit32.btest(1, 2), "
        "bit32.replace(0, 5, 4, 3), bit32.lshift(1, 31), bit32.lshift(1, 32), bit32.rrotate(1, 1), bit32.band())") == \
        "4294967295, 2147483647, 4294967292, 2, 15, 3, 5, 4, false, 80, 2147483648, 0, 2147483648, 4294967295\n"


def test_bit32_errors_point_at_the_script(engine):
    with pytest.raises(LuaError, match=r"""^\[string "line"\]:1: bad argument #1 to 'band' \(number expected, got string\)$"""):
        engine.execute('bit32.band("x")')
    assert engine.execute('print(pcall(bit32.band, "x"))') == \
        "false, bad argument #1 to 'bit32.band' (number expected, got string)\n"
    with pytest.raises(LuaError, match=r"""^\[string "line"\]:1: bad argument #1 to 'f' \(number expected, got string\)$"""):
        engine.execute('local f = bit32.bnot f("y")')
    with pytest.raises(LuaError, match=r"""^\[string "line"\]:1: trying to access non-existent bits$"""):
        engine.execute("bit32.extract(1, 30, 4)")


def test_lua_5_2_math_functions(engine):
    assert engine.execute(
        "print(math.pow(2, 10), math.ldexp(0.5, 4), math.log10(1000), math.atan2(1, 1), math.cosh(0), math.frexp(8))") == \
        "1024.0, 8.0, 3.0, 0.78539816339745, 1.0, 0.5, 4\n"


# -- concurrency ------------------------------------------------------------------------------

def test_scripts_from_two_threads_run_one_at_a_time():
    rest = RecordingRestCaller({("GET", "/slow"): (200, b"x")}, delay=0.01)
    engine = LuaEngine(rest, {})
    engine.execute("shared = 0")
    results = {}
    errors = []

    def run(name):
        try:
            script = (f"for i = 1, 20 do local before = shared RestApiGet('/slow') shared = before + 1 "
                      f"print('{name}', i) end")
            results[name] = engine.execute(script)
        except Exception as failure:  # reported below through the list
            errors.append(failure)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for name in ("A", "B"):
        assert results[name] == "".join(f"{name}, {i}\n" for i in range(1, 21))
    # No lost update: each script ran alone even while blocked in a REST call.
    assert engine.execute("print(shared)") == "40\n"
