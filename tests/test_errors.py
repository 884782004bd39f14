"""Error codes and texts are Orthanc's, as listed by `Orthanc --errors`."""
import os
import re

from orthancd.errors import DESCRIPTIONS, HTTP_STATUS, ErrorCode

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference",
                         "orthanc-1.10.1", "error-codes.txt")


def test_codes_and_descriptions_match_the_reference():
    with open(REFERENCE) as f:
        listed = {int(m.group(1)): m.group(2).strip()
                  for m in (re.match(r"\s+(-?\d+)\s{3}(.*)$", line) for line in f) if m}
    assert len(listed) > 100
    for code, text in listed.items():
        assert DESCRIPTIONS[ErrorCode(code)] == text


def test_http_statuses():
    assert HTTP_STATUS[ErrorCode.UnknownResource] == 404
    assert HTTP_STATUS[ErrorCode.BadFileFormat] == 400
    assert HTTP_STATUS[ErrorCode.Unauthorized] == 401
    assert HTTP_STATUS[ErrorCode.FullStorage] == 507
