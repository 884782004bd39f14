"""The JSON layout is JsonCpp's, as Orthanc prints it."""
from orthancd.rest.jsonfmt import dumps, dumps_error


def test_objects_and_arrays_open_on_their_own_line():
    assert dumps({"Changes": [{"a": 1, "b": []}], "Done": False}) == (
        '{\n   "Changes" : \n   [\n      {\n         "a" : 1,\n         "b" : []\n      }\n   ],\n'
        '   "Done" : false\n}')


def test_empty_containers_scalars_and_escaping():
    assert dumps([]) == "[]" and dumps({}) == "{}"
    assert dumps([0]) == "[\n   0\n]"
    assert dumps({"x": "\u0414", "n": None, "e": {}}) == \
        '{\n   "e" : {},\n   "n" : null,\n   "x" : "\\u0414"\n}'
    assert dumps([[1], {"a": {}}]) == '[\n   [\n      1\n   ],\n   {\n      "a" : {}\n   }\n]'


def test_error_bodies_use_tabs_and_a_final_newline():
    assert dumps_error({"HttpStatus": 404, "Uri": "/x"}) == \
        '{\n\t"HttpStatus" : 404,\n\t"Uri" : "/x"\n}\n'
