"""Revisions of metadata and attachments (ETag, If-Match, If-None-Match),
attachment operations (compress, uncompress, MD5s, sizes, byte ranges, MIME
types), numeric and configured names: orthancd against the live Orthanc
1.13.0, request by request."""
import pytest

from orthancd.errors import ErrorCode, OrthancError
from orthancd.index.numbered_names import NumberedNames
from orthancd.rest.ranges import parse_http_range
from tests.support.daemon import Daemon, read_sample
from tests.support.oracle import RealOrthanc
from tests.support.replay import differences

OPTIONS = {
    "UserMetadata": {"Sample": 1024, "Other": 2000},
    "UserContentType": {"sample": 1025, "pdf": [1026, "application/pdf"]},
}
SAMPLE = "2020-08-12-Christopher.dcm"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    oracle = RealOrthanc(tmp_path_factory.mktemp("oracle"), **OPTIONS).start()
    daemon = Daemon(tmp_path_factory.mktemp("orthancd"), **OPTIONS).start()
    try:
        data = read_sample(SAMPLE)
        ids = {oracle.client().upload(data)["ID"], daemon.client().upload(data)["ID"]}
        assert len(ids) == 1
        yield oracle.client(), daemon, ids.pop()
    finally:
        daemon.stop()
        oracle.stop()


def replay(servers, requests):
    oracle, daemon, _ = servers
    assert differences(oracle, daemon.client(), requests) == []


def test_metadata_revisions_and_names(servers):
    i = "/instances/" + servers[2]
    replay(servers, [
        ("GET", i + "/metadata?numeric"),
        ("GET", i + "/metadata?expand&numeric"),
        ("GET", i + "/metadata/IndexInSeries"),
        ("GET", i + "/metadata/1", None, {"If-None-Match": '"0-c4ca4238a0b923820dcc509a6f75849b"'}),
        ("GET", i + "/metadata/1", None, {"If-None-Match": "1-c4ca4238a0b923820dcc509a6f75849b"}),
        ("GET", i + "/metadata/Sample"),
        ("GET", i + "/metadata/Nope"),
        ("GET", i + "/metadata/99999"),
        ("GET", i + "/metadata/-1"),
        ("GET", i + "/metadata/%2012"),
        ("GET", i + "/metadata/99999999999"),
        ("PUT", i + "/metadata/Sample", "hello"),
        ("GET", i + "/metadata/Sample"),
        ("PUT", i + "/metadata/Sample", "hello2"),
        ("GET", i + "/metadata/1024"),
        ("PUT", i + "/metadata/Sample", "hello3", {"If-Match": "1-x"}),
        ("PUT", i + "/metadata/Sample", "hello3", {"If-Match": "0-6e809cbda0732ac4845916a59016f954"}),
        ("PUT", i + "/metadata/Sample", "hello3", {"If-Match": "garbage"}),
        ("PUT", i + "/metadata/Sample", "x", {"If-Match": '"1-6e809cbda0732ac4845916a59016f954"'}),
        ("GET", i + "/metadata/Sample", None, {"If-None-Match": '"2-9dd4e461268c8034f5c8564e155c67a6"'}),
        ("GET", i + "/metadata/Sample", None, {"If-None-Match": "zz"}),
        ("DELETE", i + "/metadata/Sample", None, {"If-Match": "0-x"}),
        ("DELETE", i + "/metadata/Sample", None, {"If-Match": "2-9dd4e461268c8034f5c8564e155c67a6"}),
        ("DELETE", i + "/metadata/Sample"),
        ("PUT", i + "/metadata/Sample", "again"),  # a new sequence of revisions
        ("GET", i + "/metadata/Sample"),
        ("PUT", i + "/metadata/1500", "x"),
        ("GET", i + "/metadata?expand"),
        ("PUT", i + "/metadata/70000", "x"),
        ("PUT", i + "/metadata/-5", "x"),
        ("PUT", i + "/metadata/Nope", "x"),
        ("PUT", i + "/metadata/LastUpdate", "x"),
        ("DELETE", i + "/metadata/LastUpdate"),
        ("DELETE", i + "/metadata/Other"),
        ("GET", "/instances/nope/metadata/Sample"),
        ("PUT", "/instances/nope/metadata/Sample", "x"),
        ("DELETE", "/instances/nope/metadata/Sample"),
        ("PUT", "/patients/nope/metadata/Sample", "x", {"If-Match": "0-x"}),
    ])


def test_attachment_revisions_operations_and_ranges(servers):
    i = "/instances/" + servers[2]
    replay(servers, [
        ("GET", i + "/attachments?full"),
        ("GET", i + "/attachments/dicom"),
        ("GET", i + "/attachments/1/info"),
        ("GET", i + "/attachments/dicom/md5", None, {"If-None-Match": "0-x"}),
        ("GET", i + "/attachments/dicom/md5", None,
         {"If-None-Match": '"0-03bf516ec3dc6628dcb6e762bfb8b435"'}),
        ("GET", i + "/attachments/dicom/data?filename=a.dcm", None, {"Range": "bytes=128-131"}),
        ("GET", i + "/attachments/dicom/compressed-size"),
        ("GET", i + "/attachments/dicom/compressed-md5"),
        ("GET", i + "/attachments/dicom/is-compressed"),
        ("PUT", i + "/attachments/sample", "hello"),
        ("PUT", i + "/attachments/sample", "hello"),
        ("PUT", i + "/attachments/sample", "hello", {"If-Match": "0-5d41402abc4b2a76b9719d911017c592"}),
        ("PUT", i + "/attachments/sample", "hello3", {"If-Match": "1-5d41402abc4b2a76b9719d911017c592"}),
        ("GET", i + "/attachments/sample"),
        ("GET", i + "/attachments/sample/data"),
        ("GET", i + "/attachments/sample/info"),
        ("PUT", i + "/attachments/pdf", "%PDF"),
        ("GET", i + "/attachments/1026/data"),
        ("GET", i + "/attachments/sample/data", None, {"Range": "bytes=1-2"}),
        ("GET", i + "/attachments/sample/data", None, {"Range": "bytes=1-"}),
        ("GET", i + "/attachments/sample/data", None, {"Range": "bytes=-2"}),
        ("GET", i + "/attachments/sample/data", None, {"Range": "bytes=-"}),
        ("GET", i + "/attachments/sample/data", None, {"Range": "bytes="}),
        ("GET", i + "/attachments/sample/data", None, {"Range": "bytes=3-100"}),
        ("GET", i + "/attachments/sample/data", None, {"Range": "bytes=6-"}),
        ("GET", i + "/attachments/sample/data", None, {"Range": "bytes=2-1"}),
        ("GET", i + "/attachments/sample/data", None, {"Range": "bytes=0-1,3-4"}),
        ("GET", i + "/attachments/sample/data", None, {"Range": "items=0-1"}),
        ("GET", i + "/attachments/sample/compressed-data?filename=x"),
        ("POST", i + "/attachments/sample/compress"),
        ("GET", i + "/attachments/sample/info"),
        ("GET", i + "/attachments/sample/compressed-data"),
        ("GET", i + "/attachments/sample/compressed-data", None, {"Range": "bytes=0-9"}),
        ("GET", i + "/attachments/sample/data", None, {"Range": "bytes=0-2"}),
        ("GET", i + "/attachments/sample/data"),
        ("POST", i + "/attachments/sample/verify-md5"),
        ("POST", i + "/attachments/sample/compress"),
        ("POST", i + "/attachments/sample/uncompress"),
        ("GET", i + "/attachments/sample/info"),
        ("POST", i + "/attachments/nope/compress"),
        ("POST", i + "/attachments/1030/compress"),
        ("POST", "/instances/nope/attachments/1030/compress"),
        ("POST", i + "/attachments/1030/verify-md5"),
        ("POST", i + "/attachments/dicom/compress"),
        ("GET", i + "/attachments/dicom/info"),
        ("GET", "/statistics"),
        ("GET", i + "/file", None, {"Range": "bytes=0-9"}),
        ("POST", i + "/attachments/dicom/uncompress"),
        ("GET", "/statistics"),
        ("PUT", i + "/attachments/dicom", "x"),
        ("DELETE", i + "/attachments/dicom"),
        ("DELETE", i + "/attachments/dicom-as-json"),
        ("GET", "/instances/nope/attachments/sample/data"),
        ("PUT", "/instances/nope/attachments/sample", "x"),
        ("DELETE", "/instances/nope/attachments/sample"),
        ("DELETE", i + "/attachments/sample", None, {"If-Match": "0-x"}),
        ("DELETE", i + "/attachments/sample"),
        ("DELETE", i + "/attachments/sample"),
        ("PUT", i + "/attachments/sample", ""),
        ("GET", i + "/attachments/sample/info"),
        ("GET", i + "/attachments/sample/data", None, {"Range": "bytes=0-0"}),
        ("GET", "/changes?since=4&limit=100"),
    ])


def test_revisions_start_anew_with_a_new_resource_and_survive_a_restart(servers):
    oracle, daemon, instance = servers
    i = "/instances/" + instance
    replay(servers, [
        ("PUT", "/series/%s/metadata/Other" % oracle.get_json(i)["ParentSeries"], "1"),
        ("PUT", i + "/metadata/Other", "1"),
        ("PUT", i + "/metadata/Other", "2"),
        ("PUT", i + "/attachments/pdf", "one"),
        ("PUT", i + "/attachments/pdf", "two"),
    ])
    daemon.stop()
    daemon.start()
    replay(servers, [
        ("GET", i + "/metadata/Other"),
        ("GET", i + "/attachments/pdf/info"),
        ("DELETE", i),
    ])
    data = read_sample(SAMPLE)
    oracle.upload(data)
    daemon.client().upload(data)
    replay(servers, [
        ("GET", i + "/metadata/Other"),
        ("PUT", i + "/metadata/Other", "3"),
        ("PUT", i + "/attachments/pdf", "three"),
        ("GET", i + "/attachments"),
    ])


def test_without_md5s(tmp_path):
    """StoreMD5ForAttachments false: empty MD5s, fewer operations, ETags
    and If-Match on empty MD5s."""
    options = {"StoreMD5ForAttachments": False, "UserContentType": {"sample": 1025}}
    for name in ("oracle", "orthancd"):
        (tmp_path / name).mkdir()
    oracle = RealOrthanc(tmp_path / "oracle", **options).start()
    daemon = Daemon(tmp_path / "orthancd", **options).start()
    try:
        data = read_sample(SAMPLE)
        i = "/instances/" + oracle.client().upload(data)["ID"]
        daemon.client().upload(data)
        assert differences(oracle.client(), daemon.client(), [
            ("GET", i + "/attachments/dicom"),
            ("GET", i + "/attachments/dicom/info"),
            ("GET", i + "/attachments/dicom/md5"),
            ("GET", i + "/attachments/dicom/compressed-md5"),
            ("POST", i + "/attachments/dicom/verify-md5"),
            ("PUT", i + "/attachments/sample", "hello"),
            ("PUT", i + "/attachments/sample", "hello2", {"If-Match": "0-"}),
            ("POST", i + "/attachments/sample/compress"),
            ("GET", i + "/attachments/sample/info"),
            ("GET", i + "/attachments/sample/data", None, {"If-None-Match": "2-"}),
        ]) == []
    finally:
        daemon.stop()
        oracle.stop()


# -- units ------------------------------------------------------------------

@pytest.mark.parametrize("header, expected", [
    ("bytes=1-2", (1, 2)), ("bytes=5-", (5, None)), ("bytes=-5", (None, 5)),
    ("bytes=-", (None, None)), ("bytes= 3 - 4 ", (3, 4)),
])
def test_ranges_read_as_orthanc(header, expected):
    byte_range = parse_http_range(header)
    assert (byte_range.start, byte_range.end) == expected


@pytest.mark.parametrize("header, code", [
    ("bytes=", ErrorCode.BadRange), ("bytes=1-2-3", ErrorCode.BadRange),
    ("bits=1-2", ErrorCode.BadRange), ("bytes=a-2", ErrorCode.BadRange),
    ("bytes=-1-2", ErrorCode.BadRange), ("bytes=3-2", ErrorCode.BadSequenceOfCalls),
])
def test_bad_ranges_fail_as_orthanc(header, code):
    with pytest.raises(OrthancError) as error:
        parse_http_range(header)
    assert error.value.code is code


def test_range_bounds_within_the_content():
    assert parse_http_range("bytes=-2").bounds(6) == (0, 3)
    assert parse_http_range("bytes=2-").content_range(6) == b"bytes 2-5/6"
    for header, size in (("bytes=6-", 6), ("bytes=0-6", 6), ("bytes=-", 0)):
        with pytest.raises(OrthancError):
            parse_http_range(header).bounds(size)


def test_numbered_names_translate_as_orthanc():
    names = NumberedNames({"dicom": 1}, {"pdf": [1026, "application/pdf"], "raw": 1027},
                          (ErrorCode.InexistentItem, None))
    assert [names.number(n) for n in ("dicom", "pdf", "raw", "7", "-3")] == [1, 1026, 1027, 7, -3]
    assert names.name(1026) == "pdf" and names.name(5000) == "5000"
    assert names.mime_type(1026, "x") == "application/pdf" and names.mime_type(1027, "x") == "x"
    for bad, code in ((" 12", ErrorCode.BadParameterType),
                      ("99999999999", ErrorCode.BadParameterType),
                      ("nope", ErrorCode.InexistentItem)):
        with pytest.raises(OrthancError) as error:
            names.number(bad)
        assert error.value.code is code
