"""POST /instances as Orthanc 1.13.0 answers it: HTML forms, gzip bodies, zip
archives (DICOMDIR included), size limits, lying sizes and bombs, files
without meta header, PixelDataOffset / PixelDataVR, OverwriteInstances.

Every request goes to orthancd and to the real Orthanc 1.13.0 in the same
test; status, body and Content-Type must agree, and so must what ends up
stored.  The hostile files (bombs, lying headers) are generated here, small.
"""
import gzip
import http.client
import io
import json
import os
import socket
import struct
import threading
import time
import zipfile
import zlib

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset

from tests.support import oracle
from tests.support.daemon import Daemon, read_sample, temporary_leftovers

MB = 1024 * 1024
# Small limits, so that the limits themselves can be compared.
LIMITS = {"MaximumRequestBodySizeMB": 3, "MaximumFileSizeInArchiveMB": 1,
          "HttpRequestTimeout": 1, "StableAge": 3600}


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def content_type(self):
        return self.headers.get("content-type")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %s %r>" % (self.status, self.content_type, self.body[:300])


def send(server, method, path, body=b"", headers=None, chunked=False):
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers or {},
                           encode_chunked=chunked)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                      response.read())
    finally:
        connection.close()


def assert_same(ours, theirs, context):
    assert ours.status == theirs.status, (context, ours, theirs)
    if theirs.body[:1] in (b"{", b"["):
        assert ours.json() == theirs.json(), (context, ours, theirs)
    else:
        assert ours.body == theirs.body, (context, ours, theirs)
    # Orthanc sends its JSON error documents as text/plain, and empty
    # answers without any Content-Type.
    assert ours.content_type == theirs.content_type, (context, ours, theirs)


class Pair:
    """orthancd and Orthanc 1.13.0 with the same configuration, both empty."""

    def __init__(self, tmp_path_factory, **options):
        self.ours = Daemon(tmp_path_factory.mktemp("orthancd"), **options).start()
        try:
            self.theirs = oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), **options).start()
        except BaseException:
            self.ours.stop()
            raise

    def both(self, method, path, body=b"", headers=None, chunked=False, context=None):
        ours = send(self.ours, method, path, body, headers, chunked)
        theirs = send(self.theirs, method, path, body, headers, chunked)
        assert_same(ours, theirs, context or (method, path, headers))
        return ours, theirs

    def prepare(self, method, path, body=b""):
        """A request that sets the stage (other families' answers are not
        compared here): it must succeed on both."""
        for server in (self.ours, self.theirs):
            answer = send(server, method, path, body)
            assert answer.status == 200, (server, path, answer)

    def get_json(self, server, path):
        answer = send(server, "GET", path)
        assert answer.status == 200, (path, answer)
        return answer.json()

    def assert_same_instances(self):
        ours = sorted(self.get_json(self.ours, "/instances"))
        theirs = sorted(self.get_json(self.theirs, "/instances"))
        assert ours == theirs
        return ours

    def stop(self):
        self.ours.stop()
        self.theirs.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    servers = Pair(tmp_path_factory, **LIMITS)
    yield servers
    servers.stop()


# -- what the tests upload --------------------------------------------------

def dicom(sop_uid, series_uid="1.2.276.0.7230010.3.1.3.1", meta=True, preamble=True,
          **tags):
    """A small DICOM file of a test patient, written by pydicom."""
    ds = Dataset()
    ds.PatientID = "UPLOADS"
    ds.PatientName = "Uploads^Test"
    ds.StudyInstanceUID = "1.2.276.0.7230010.3.1.2.1"
    ds.SeriesInstanceUID = series_uid
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    for name, value in tags.items():
        setattr(ds, name, value)
    if sop_uid is not None:
        ds.SOPInstanceUID = sop_uid
    out = io.BytesIO()
    if meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or "1.2.3"
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.preamble = bytes(128)
        pydicom.dcmwrite(out, ds, enforce_file_format=preamble)
    else:
        pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=True)
    return out.getvalue()


def zipped(members, method=zipfile.ZIP_DEFLATED):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


def zip_bomb(size, name="zeros.dcm"):
    """A zip whose one member inflates to ``size`` zero bytes, written in
    pieces (never ``size`` bytes in memory)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(name, "w", force_zip64=size >= 0xFFFFFFFF) as member:
            for _ in range(size // MB):
                member.write(bytes(MB))
    return out.getvalue()


def gzip_bomb(size):
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(bytes(MB)) for _ in range(size // MB)]
    return b"".join(parts) + compressor.flush()


def with_sizes(archive, usize=None, crc=None, where=("local", "central")):
    """The zip ``archive`` with its first member's sizes or CRC rewritten."""
    data = bytearray(archive)
    headers = []
    if "local" in where:
        headers.append(data.find(b"PK\x03\x04") + 14)
    if "central" in where:
        headers.append(data.find(b"PK\x01\x02") + 16)
    for offset in headers:
        if crc is not None:
            data[offset:offset + 4] = struct.pack("<I", crc)
        if usize is not None:
            data[offset + 8:offset + 12] = struct.pack("<I", usize)
    return bytes(data)


def with_isize(stream, size):
    return stream[:-4] + struct.pack("<I", size & 0xFFFFFFFF)


def form(parts, boundary="----WebKitFormBoundary7MA4YWxkTrZu0gW"):
    """A multipart/form-data body as a browser sends it (Orthanc Explorer's
    upload form uses the field "files[]")."""
    body = b""
    for name, data in parts:
        body += b"--" + boundary.encode() + b"\r\n"
        body += b'Content-Disposition: form-data; name="files[]"; filename="%s"\r\n' % name.encode()
        body += b"Content-Type: application/dicom\r\n\r\n" + data + b"\r\n"
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, {"Content-Type": "multipart/form-data; boundary=" + boundary}


# -- gzip bodies -----------------------------------------------------------

def test_gzip_bodies(pair):
    ct = read_sample("DummyCT.dcm")
    knee = read_sample("Knee", "T1", "IM-0001-0001.dcm")
    gz = gzip.compress(knee)
    bad_crc = bytearray(gz)
    bad_crc[-8] ^= 0xFF
    cases = [
        ("gzip", gz, "gzip"),
        ("upper-case encoding", gzip.compress(ct), "GZIP"),
        ("trailing bytes ignored", gzip.compress(ct) + b"garbage", "gzip"),
        ("only the first member", gzip.compress(knee[:5000]) + gzip.compress(knee[5000:]), "gzip"),
        ("truncated", gz[:-100], "gzip"),
        ("shorter than a gzip header", gz[:17], "gzip"),
        ("not gzip", knee, "gzip"),
        ("ISIZE too small", with_isize(gz, 1000), "gzip"),
        ("ISIZE too large", with_isize(gz, len(knee) + 1000), "gzip"),
        ("bad CRC", bytes(bad_crc), "gzip"),
        ("empty content", gzip.compress(b""), "gzip"),
        ("a zip inside is not opened", gzip.compress(zipped([("a", knee)])), "gzip"),
        ("deflate is not decoded", zlib.compress(knee), "deflate"),
        ("x-gzip is not decoded", gz, "x-gzip"),
        ("exactly the archive limit", gzip.compress(bytes(MB)), "gzip"),
        ("over the archive limit", gzip.compress(bytes(MB + 1)), "gzip"),
        ("bomb over the limit", gzip_bomb(64 * MB), "gzip"),
        ("bomb, ISIZE claims little", with_isize(gzip_bomb(64 * MB), 1000), "gzip"),
        ("bomb, ISIZE claims the limit", with_isize(gzip_bomb(64 * MB), MB), "gzip"),
        ("bad CRC over the limit", bytes(bytearray(gzip.compress(bytes(2 * MB)))[:-8])
         + b"\0\0\0\0" + gzip.compress(bytes(2 * MB))[-4:], "gzip"),
    ]
    for name, body, encoding in cases:
        pair.both("POST", "/instances", body, {"Content-Encoding": encoding}, context=name)
    # A zip body is a zip, whatever the Content-Encoding says.
    pair.both("POST", "/instances", zipped([("a", ct)]), {"Content-Encoding": "gzip"})
    pair.both("POST", "/instances", b"", {"Content-Encoding": "gzip"})
    pair.assert_same_instances()


# -- zip archives ----------------------------------------------------------

def test_zip_with_a_dicomdir(pair):
    clunie = ("Encodings", "DavidClunie")
    archive = zipped([
        ("DICOMDIR", read_sample(*clunie, "DICOMDIR")),
        ("SCSFREN", read_sample(*clunie, "SCSFREN")),
        ("sub/", b""),
        ("sub/SCSGERM", read_sample(*clunie, "SCSGERM")),
        ("readme.txt", b"not DICOM"),
        ("empty", b""),
    ])
    ours, _ = pair.both("POST", "/instances", archive)
    assert len(ours.json()) == 2  # the DICOMDIR, the text and the empty file are skipped
    # Skipped whatever its name: what counts is the missing identifiers.
    pair.both("POST", "/instances", zipped([("renamed.dcm", read_sample(*clunie, "DICOMDIR")),
                                            ("SCSGREEK", read_sample(*clunie, "SCSGREEK"))]))
    # Posted alone, a DICOMDIR is refused.
    pair.both("POST", "/instances", read_sample(*clunie, "DICOMDIR"))
    pair.assert_same_instances()


def test_zip_members_missing_identifiers_are_skipped(pair):
    without_sop = dicom(None)
    without_anything = dicom_without_uids()
    good = dicom("1.2.276.0.7230010.3.1.4.100")
    pair.both("POST", "/instances", zipped([("a", without_sop), ("b", without_anything),
                                            ("c", good)]))
    # Posted alone, they are refused.
    pair.both("POST", "/instances", without_sop)
    pair.both("POST", "/instances", without_anything)
    pair.assert_same_instances()


def dicom_without_uids():
    ds = Dataset()
    ds.PatientName = "No^Uids"
    out = io.BytesIO()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.preamble = bytes(128)
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def test_zip_lies_limits_and_bombs(pair):
    ct = read_sample("DummyCT.dcm")
    one = dicom("1.2.276.0.7230010.3.1.4.200")
    archive = zipped([("a", ct)])
    cases = [
        ("stored member", zipped([("a", one)], zipfile.ZIP_STORED)),
        ("bzip2 member", zipped([("a", ct)], zipfile.ZIP_BZIP2)),
        ("lzma member", zipped([("a", ct)], zipfile.ZIP_LZMA)),
        ("declared larger than the limit", with_sizes(archive, usize=2 * MB)),
        ("declared one byte more", with_sizes(archive, usize=len(ct) + 1)),
        ("declared smaller", with_sizes(archive, usize=100)),
        ("bad CRC", with_sizes(archive, crc=1234)),
        ("local header disagrees", with_sizes(zipped([("a", bytes(2 * MB))]), usize=1000,
                                              where=("central",))),
        ("central directory says more", with_sizes(zipped([("a", bytes(2 * MB))]), usize=1000,
                                                   where=("local",))),
        ("big member claiming little", with_sizes(zip_bomb(64 * MB), usize=1000)),
        ("bomb", zip_bomb(64 * MB)),
        ("exactly the limit", zipped([("zeros", bytes(MB))])),
        ("members before a refused one are stored",
         zipped([("first", dicom("1.2.276.0.7230010.3.1.4.201")), ("big", bytes(2 * MB))])),
        ("truncated archive", archive[:len(archive) // 2]),
        ("only a signature", b"PK\x03\x04" + b"x" * 200),
        ("nested zip and gzip are not opened",
         zipped([("inner.zip", archive), ("a.gz", gzip.compress(ct))])),
    ]
    for name, body in cases:
        pair.both("POST", "/instances", body, context=name)
    pair.assert_same_instances()


# -- HTML forms ------------------------------------------------------------

def test_forms_as_browsers_send_them(pair):
    first = dicom("1.2.276.0.7230010.3.1.4.300")
    second = dicom("1.2.276.0.7230010.3.1.4.301")
    body, headers = form([("first.dcm", first)])
    ours, _ = pair.both("POST", "/instances", body, headers)
    assert ours.status == 200 and ours.body == b"" and ours.content_type is None
    body, headers = form([("first.dcm", first), ("second.dcm", second),
                          ("archive.zip",
                           zipped([("third", dicom("1.2.276.0.7230010.3.1.4.302"))]))])
    pair.both("POST", "/instances", body, headers)
    pair.assert_same_instances()


def test_forms_that_fail_part_way(pair):
    bnd = {"Content-Type": "multipart/form-data; boundary=BND"}

    def part(data, extra=b""):
        return (b'--BND\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n' + extra
                + b"\r\n" + data + b"\r\n")

    a = dicom("1.2.276.0.7230010.3.1.4.310")
    b = dicom("1.2.276.0.7230010.3.1.4.311")
    c = dicom("1.2.276.0.7230010.3.1.4.312")
    cases = [
        ("stored, then a part that is not DICOM",
         part(a) + part(b"hello") + part(b) + b"--BND--\r\n", bnd),
        ("an empty part", part(b"") + b"--BND--\r\n", bnd),
        ("no part", b"--BND--\r\n", bnd),
        ("no boundary in the body", b"garbage", bnd),
        ("no closing boundary", part(c)[:-10], bnd),
        ("garbage between parts", part(c) + b"GARBAGE" + part(c) + b"--BND--\r\n", bnd),
        ("garbage after a sized part",
         part(c, b"Content-Length: %d\r\n" % len(c)) + b"XX--BND--\r\n", bnd),
        ("part length too small", part(c, b"Content-Length: 5\r\n") + b"--BND--\r\n", bnd),
        ("part length past the end",
         part(c, b"Content-Length: 99999999\r\n") + b"--BND--\r\n", bnd),
        ("part length not a number", part(c, b"Content-Length: abc\r\n") + b"--BND--\r\n", bnd),
        ("part of one byte", b"--BND\r\nX: y\r\n\r\n\n--BND--\r\n", bnd),
        ("part without headers", b"--BND\r\n\r\n" + c + b"\r\n--BND--\r\n", bnd),
        ("gzip part", part(gzip.compress(c), b"Content-Encoding: GZIP\r\n") + b"--BND--\r\n", bnd),
        ("broken gzip part", part(c, b"Content-Encoding: gzip\r\n") + b"--BND--\r\n", bnd),
        ("gzip says the request, not the part", part(gzip.compress(c)) + b"--BND--\r\n",
         dict(bnd, **{"Content-Encoding": "gzip"})),
        ("preamble, quoted boundary, odd case", b"preamble\r\n" + part(c) + b"--BND--",
         {"Content-Type": 'Multipart/Form-Data; type="application/dicom"; boundary="BND"'}),
        ("a boundary with '=' is no boundary", part(c).replace(b"BND", b"B=D") + b"--B=D--\r\n",
         {"Content-Type": "multipart/form-data; boundary=B=D"}),
        ("no boundary: a plain upload", c, {"Content-Type": "multipart/form-data"}),
        ("multipart/mixed is a plain upload", part(c) + b"--BND--\r\n",
         {"Content-Type": "multipart/mixed; boundary=BND"}),
    ]
    for name, body, headers in cases:
        pair.both("POST", "/instances", body, headers, context=name)
        pair.assert_same_instances()


# -- body size ---------------------------------------------------------------

def send_raw(server, head, body_pieces):
    """Send a request as it comes, even if the server answers and closes
    before the body is sent: (status, headers, body) of what came back."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=60) as s:
        try:
            s.sendall(head)
            for piece in body_pieces:
                s.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = b""
        try:
            while b"\r\n\r\n" not in received or not _complete(received):
                chunk = s.recv(65536)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(lines[0].split()[1]), headers, body)


def _complete(received):
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.decode("latin-1").split("\r\n"):
        if line.lower().startswith("content-length:"):
            return len(body) >= int(line.split(":")[1])
    return False


def test_request_body_size_limit(pair):
    limit = LIMITS["MaximumRequestBodySizeMB"] * MB
    pair.both("POST", "/instances", bytes(limit), context="exactly the limit")
    for context, head, pieces in [
        ("over the limit", b"POST /instances HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
         % (limit + 1), [bytes(limit + 1)]),
        ("any PUT", b"PUT /instances/x/metadata/1024 HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: %d\r\n\r\n" % (limit + 1), [bytes(limit + 1)]),
        ("chunked", b"POST /instances HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
         [b"%x\r\n%s\r\n" % (MB, bytes(MB))] * (limit // MB + 1) + [b"0\r\n\r\n"]),
    ]:
        ours, theirs = send_raw(pair.ours, head, pieces), send_raw(pair.theirs, head, pieces)
        assert_same(ours, theirs, context)
        assert ours.status == 413 and ours.body == b"" and ours.content_type is None
    pair.assert_same_instances()


def test_refused_at_once_and_connection_closed(pair):
    """The 413 comes before the body is sent, and the connection closes."""
    for server in (pair.ours, pair.theirs):
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=20) as s:
            s.sendall(b"POST /instances HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 100000000\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                assert chunk, head
                head += chunk
            assert head.startswith(b"HTTP/1.1 413 ")
            assert b"content-length: 0" in head.lower()
            rest = head.split(b"\r\n\r\n", 1)[1]
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                rest += chunk
            assert rest == b""


def test_body_shorter_than_announced(pair):
    """A client that announces more than it sends gets an empty 400 once
    HttpRequestTimeout has passed, and nothing is stored."""
    before = pair.assert_same_instances()
    head = b"POST /instances HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    ours, theirs = [send_raw(server, head, [read_sample("DummyCT.dcm")])
                    for server in (pair.ours, pair.theirs)]
    assert_same(ours, theirs, "short body")
    assert ours.status == 400 and ours.body == b""
    assert pair.assert_same_instances() == before


# -- metadata of what is stored ------------------------------------------------

VOLATILE_METADATA = {"ReceptionDate", "LastUpdate"}


def _stripped(data):
    """A Part-10 file without preamble and file meta: the bare data set."""
    from orthancd.dicom.reading import dataset_offset
    return data[dataset_offset(data):]


def _pixel_vr(data, vr):
    """``data`` with its PixelData element's explicit VR replaced."""
    position = data.rfind(b"\xe0\x7f\x10\x00")
    return data[:position + 4] + vr + data[position + 6:]


def _metadata_cases():
    explicit = read_sample("Brainix", "Flair", "IM-0001-0001.dcm")
    big_endian = read_sample("TransferSyntaxes", "1.2.840.10008.1.2.2.dcm")
    eight_bits_ow = read_sample("Issue143.dcm")
    return [
        ("explicit little endian", explicit),
        ("big endian", big_endian),
        ("implicit, no meta header", read_sample("TransferSyntaxes", "1.2.840.10008.1.2.dcm")),
        ("deflated", read_sample("TransferSyntaxes", "1.2.840.10008.1.2.1.99.dcm")),
        ("JPEG", read_sample("TransferSyntaxes", "1.2.840.10008.1.2.4.50.dcm")),
        ("JPEG 2000", read_sample("Knee", "T1", "IM-0001-0003.dcm")),
        ("RLE", read_sample("Formats", "Rle.dcm")),
        ("no pixel data", read_sample("Issue22-NoPixelData.dcm")),
        ("no SOP class", read_sample("Issue111.dcm")),
        ("8 bits in OW", eight_bits_ow),
        ("8 bits in OB", _pixel_vr(eight_bits_ow, b"OB")),
        ("8 bits in UN", _pixel_vr(read_sample("KarstenHilbertRF.dcm"), b"UN")),
        ("16 bits in OB", _pixel_vr(read_sample("SignedCT.dcm"), b"OB")),
        ("bare explicit data set", _stripped(read_sample("Brainix", "Epi", "IM-0001-0001.dcm"))),
        ("bare big endian data set", _stripped(big_endian)),
        ("bare JPEG data set", _stripped(read_sample("TransferSyntaxes",
                                                     "1.2.840.10008.1.2.4.70.dcm"))),
        ("bare 8 bits in OW", _stripped(read_sample("PilatesArgenturGEUltrasoundOsiriX.dcm"))),
        ("meta header without preamble",
         read_sample("Brainix", "Flair", "IM-0001-0002.dcm")[132:]),
        ("meta header without preamble, big endian", big_endian[132:]),
        ("DICM without preamble", read_sample("Brainix", "Flair", "IM-0001-0003.dcm")[128:]),
    ]


def test_metadata_of_stored_files(pair):
    for name, data in _metadata_cases():
        ours, theirs = pair.both("POST", "/instances", data, context=name)
        if ours.status != 200:
            continue
        instance = ours.json()["ID"]
        if ours.json()["Status"] == "AlreadyStored":
            # Another case stored the same instance: store these bytes anew.
            pair.both("DELETE", "/instances/" + instance)
            pair.both("POST", "/instances", data, context=name)
        path = "/instances/%s/metadata?expand" % instance
        mine = pair.get_json(pair.ours, path)
        reference = pair.get_json(pair.theirs, path)
        for key in VOLATILE_METADATA:
            mine.pop(key, None)
            reference.pop(key, None)
        assert mine == reference, name
    pair.assert_same_instances()


def test_refused_uploads_leave_stored_data_alone(pair):
    data = read_sample("Knee", "T2", "IM-0001-0001.dcm")
    ours, _ = pair.both("POST", "/instances", data)
    instance = ours.json()["ID"]
    before = [(pair.get_json(server, "/statistics"),
               pair.get_json(server, "/instances/%s/metadata?expand" % instance),
               send(server, "GET", "/instances/%s/file" % instance).body)
              for server in (pair.ours, pair.theirs)]
    assert before[0][2] == data
    gz = gzip.compress(data)
    for name, body, headers in [
        ("cut short", data[:len(data) // 2], {}),
        ("truncated gzip", gz[:-100], {"Content-Encoding": "gzip"}),
        ("zip bomb", zip_bomb(16 * MB), {}),
        ("zip with a bad CRC", with_sizes(zipped([("a", data)]), crc=1), {}),
        ("form cut short", form([("a", data)])[0][:-200], form([])[1]),
    ]:
        pair.both("POST", "/instances", body, headers, context=name)
    after = [(pair.get_json(server, "/statistics"),
              pair.get_json(server, "/instances/%s/metadata?expand" % instance),
              send(server, "GET", "/instances/%s/file" % instance).body)
             for server in (pair.ours, pair.theirs)]
    assert after == before
    # No spool file is left behind.
    assert temporary_leftovers(os.path.join(pair.ours.workdir, "storage")) == []


# -- OverwriteInstances ------------------------------------------------------------

def _state(pair, server, instance, since):
    metadata = pair.get_json(server, "/instances/%s/metadata?expand" % instance)
    for key in VOLATILE_METADATA:
        metadata.pop(key, None)
    resource = pair.get_json(server, "/instances/" + instance)
    series = pair.get_json(server, "/series/" + resource["ParentSeries"])
    series_metadata = pair.get_json(server, "/series/%s/metadata?expand" % series["ID"])
    series_metadata.pop("LastUpdate", None)
    changes = pair.get_json(server, "/changes?since=%d&limit=100" % since)
    patients = [pair.get_json(server, "/patients/" + p)["MainDicomTags"]
                for p in pair.get_json(server, "/patients")]
    statistics = pair.get_json(server, "/statistics")
    return {
        "metadata": metadata,
        "attachments": pair.get_json(server, "/instances/%s/attachments" % instance),
        "labels": resource.get("Labels"),
        "series metadata": series_metadata,
        "series instances": series["Instances"],
        "changes": [(c["ChangeType"], c["ResourceType"], c["ID"]) for c in changes["Changes"]],
        "patients": patients,
        "statistics": {k: statistics[k] for k in ("CountInstances", "CountSeries",
                                                  "CountPatients", "TotalDiskSize")},
    }, changes["Last"]


@pytest.mark.parametrize("mode", ["Always", "IfChanged"])
def test_overwrite_instances(tmp_path_factory, mode):
    servers = Pair(tmp_path_factory, OverwriteInstances=mode, StableAge=3600)
    try:
        for server in (servers.ours, servers.theirs):
            system = servers.get_json(server, "/system")
            assert (system["OverwriteInstances"], system["OverwriteInstancesMode"]) == (True, mode)
        original = read_sample("DummyCT.dcm")
        changed = read_sample("DummyCT-overwrite.dcm")
        # A sibling in another series keeps the study and patient alive in
        # the second half; the first half overwrites a lone instance.
        ours, _ = servers.both("POST", "/instances", original)
        instance, series = ours.json()["ID"], ours.json()["ParentSeries"]
        for path, body in (("/instances/%s/metadata/1024" % instance, b"user"),
                           ("/instances/%s/attachments/1025" % instance, b"attached"),
                           ("/instances/%s/labels/Kept" % instance, b""),
                           ("/series/%s/metadata/1024" % series, b"series")):
            servers.prepare("PUT", path, body)
        last = {id(s): servers.get_json(s, "/changes?last")["Last"]
                for s in (servers.ours, servers.theirs)}
        sibling = dicom("1.2.276.0.7230010.3.1.4.900", PatientID="ozp00SjY2xG",
                        StudyInstanceUID="1.2.840.113619.2.176.2025.1499492.7391.1171285944.390")
        for step, body in (("same bytes", original), ("changed", changed),
                           ("changed again", changed), ("sibling", sibling),
                           ("back to the original", original)):
            servers.both("POST", "/instances", body, context=(mode, step))
            states = []
            for server in (servers.ours, servers.theirs):
                state, last[id(server)] = _state(servers, server, instance, last[id(server)])
                states.append(state)
            assert states[0] == states[1], (mode, step)
        servers.assert_same_instances()
    finally:
        servers.stop()


# -- bombs with Orthanc's default limits ----------------------------------------

class AnonymousMemoryPeak:
    """Samples the daemon's anonymous resident memory (its heap, not the
    page cache of the files it maps) while the block runs."""

    def __init__(self, daemon):
        self.path = "/proc/%d/status" % daemon.process.pid
        self.peak = 0
        self._running = False

    def sample(self):
        with open(self.path) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _watch(self):
        while self._running:
            self.peak = max(self.peak, self.sample())
            time.sleep(0.02)

    def __enter__(self):
        self.baseline = self.sample()
        self._running = True
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()

    @property
    def growth(self):
        return self.peak - self.baseline


def test_bombs_under_default_limits_are_answered_with_bounded_memory(tmp_path_factory):
    """With the default 4096 MB per inflated file, a 512 MB member is inflated
    (to a spool file, not to memory) and read quickly: zeros hold no
    identifiers, so the zip member is skipped and the gzip body refused, as
    Orthanc eventually answers (it needs minutes for these)."""
    daemon = Daemon(tmp_path_factory.mktemp("orthancd"), StableAge=3600).start()
    zip_body, gzip_body = zip_bomb(512 * MB), gzip_bomb(512 * MB)
    try:
        with AnonymousMemoryPeak(daemon) as memory:
            answer = send(daemon, "POST", "/instances", zip_body)
            assert (answer.status, answer.json()) == (200, [])
            answer = send(daemon, "POST", "/instances", gzip_body, {"Content-Encoding": "gzip"})
            assert answer.status == 404 and answer.json()["OrthancError"] == "Inexistent tag"
        assert memory.growth < 128 * MB
        assert send(daemon, "GET", "/instances").json() == []
        assert temporary_leftovers(os.path.join(daemon.workdir, "storage")) == []
    finally:
        daemon.stop()


def test_floods_of_elements_are_cut_short(monkeypatch):
    """Any flood of tiny elements (not only zeros) is refused once the read
    budget is spent, instead of keeping a worker busy for minutes."""
    from orthancd.dicom import reading
    monkeypatch.setattr(reading, "MAX_ELEMENT_READS", 10000)
    flood = b"\x08\x00\x10\x00\x00\x00\x00\x00" * 20000
    with pytest.raises(reading.DicomFormatError):
        reading.read_dataset(flood, stop_before_pixels=True)
    zeros = bytes(64 * MB)  # skipped at C speed: one empty element
    assert len(reading.read_dataset(zeros, stop_before_pixels=True)) == 1
