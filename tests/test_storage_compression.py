"""StorageCompression: attachments stored in Orthanc's zlib format, with the
sizes and MD5s Orthanc 1.13.0 reports (byte for byte the same compressed
files), read transparently by every reader (downloads, tags, C-STORE SCU,
C-MOVE SCP); CheckRevisions on the same servers; crash safety."""
import hashlib
import io
import os
import threading
import time

import pydicom
import pytest

from orthancd.errors import ErrorCode, OrthancError
from orthancd.storage import compression
from tests.support.daemon import Daemon, read_sample
from tests.support.oracle import RealOrthanc
from tests.support.replay import differences
from tests.test_crash_recovery import synthetic_instances

OPTIONS = {"StorageCompression": True, "CheckRevisions": True,
           "UserContentType": {"sample": 1025}}
# Uncompressed, JPEG and RLE transfer syntaxes, and a file without pixel data.
SAMPLES = ("2020-08-12-Christopher.dcm", "2020-09-12-ELSCINT1-PMSCT_RLE1.dcm",
           "DicomSeg.dcm", "Issue141.dcm")
# Given to orthancd only, then sent to the oracle over DICOM.
SENT_OVER_DICOM = ("DummyCT.dcm", "ColorTestMalaterre.dcm")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    oracle = RealOrthanc(tmp_path_factory.mktemp("oracle"), **OPTIONS)
    daemon = Daemon(tmp_path_factory.mktemp("orthancd"), **OPTIONS)
    daemon.options["DicomModalities"] = {"oracle": ["ORACLE", "127.0.0.1", oracle.dicom_port]}
    oracle.options["DicomModalities"] = {"orthancd": ["ORTHANCD", "127.0.0.1", daemon.dicom_port]}
    oracle.start()
    daemon.start()
    try:
        ids = []
        for name in SAMPLES:
            data = read_sample(name)
            answers = {oracle.client().upload(data)["ID"], daemon.client().upload(data)["ID"]}
            assert len(answers) == 1
            ids.append(answers.pop())
        yield oracle.client(), daemon, ids
    finally:
        daemon.stop()
        oracle.stop()


def replay(servers, requests):
    oracle, daemon, _ = servers
    assert differences(oracle, daemon.client(), requests) == []


def test_stored_compressed_as_orthanc_stores_them(servers):
    requests = [("GET", "/statistics")]
    for instance in servers[2]:
        i = "/instances/" + instance
        requests += [
            ("GET", i + "/attachments?full"),
            ("GET", i + "/attachments/dicom/info"),
            ("GET", i + "/attachments/dicom-until-pixel-data/info"),
            ("GET", i + "/attachments/dicom"),
            ("GET", i + "/attachments/dicom/is-compressed"),
            ("GET", i + "/attachments/dicom/compressed-data"),
            ("GET", i + "/attachments/dicom/compressed-data", None, {"Range": "bytes=0-15"}),
            ("GET", i + "/attachments/dicom/data", None, {"Range": "bytes=128-131"}),
            ("GET", i + "/attachments/dicom/data", None, {"Range": "bytes=100000000-"}),
            ("POST", i + "/attachments/dicom/verify-md5"),
            ("GET", i + "/statistics"),
            ("GET", i + "/file"),
            ("GET", i + "/tags?simplify"),
            ("GET", i + "/metadata?expand"),
        ]
    requests += [("GET", "/studies/%s/statistics" % s) for s in servers[0].get_json("/studies")]
    replay(servers, requests)


def test_check_revisions_with_compressed_attachments(servers):
    i = "/instances/" + servers[2][0]
    replay(servers, [
        ("PUT", i + "/attachments/sample", "hello"),
        ("PUT", i + "/attachments/sample", "hello"),
        ("PUT", i + "/attachments/sample", "hello2", {"If-Match": "0-5d41402abc4b2a76b9719d911017c592"}),
        ("GET", i + "/attachments/sample/info"),
        ("GET", i + "/attachments/sample/compressed-data"),
        ("GET", i + "/attachments/sample/data"),
        ("DELETE", i + "/attachments/sample"),
        ("DELETE", i + "/attachments/sample", None, {"If-Match": "0-5d41402abc4b2a76b9719d911017c592"}),
        ("POST", i + "/attachments/sample/uncompress"),
        ("GET", i + "/attachments/sample/info"),
        ("POST", i + "/attachments/sample/compress"),
        ("DELETE", i + "/attachments/sample", None, {"If-Match": "3-6e809cbda0732ac4845916a59016f954"}),
        ("PUT", i + "/attachments/sample", ""),
        ("GET", i + "/attachments/sample/info"),
        ("GET", i + "/attachments/sample/data"),
        ("GET", i + "/attachments/sample/compressed-data"),
        ("GET", i + "/attachments/sample/data", None, {"Range": "bytes=0-0"}),
        ("POST", i + "/attachments/sample/verify-md5"),
        ("PUT", i + "/metadata/1024", "a"),
        ("PUT", i + "/metadata/1024", "b"),
        ("PUT", i + "/metadata/1024", "b", {"If-Match": "0-0cc175b9c0f1b6a831c399e269772661"}),
        ("DELETE", i + "/metadata/1024"),
        ("DELETE", i + "/metadata/1024", None, {"If-Match": "1-92eb5ffee6ae2fec3ad71c777531578f"}),
        ("DELETE", i + "/metadata/1025", None, {"If-Match": "1-92eb5ffee6ae2fec3ad71c777531578f"}),
        ("DELETE", i + "/attachments/1030"),
        ("DELETE", i + "/attachments/dicom-as-json"),
        ("POST", i + "/attachments/dicom/uncompress"),
        ("GET", i + "/attachments/dicom/info"),
        ("GET", "/statistics"),
        ("DELETE", "/instances/" + servers[2][1]),
        ("GET", "/statistics"),
    ])


def test_files_on_disk_are_compressed(servers):
    daemon = servers[1]
    info = daemon.client().get_json("/instances/%s/attachments/dicom/info" % servers[2][2])
    root = daemon.options["StorageDirectory"]
    stored = [os.path.join(folder, name) for folder, _, names in os.walk(root)
              for name in names if name.startswith(info["Uuid"])]
    assert len(stored) == 1
    with open(stored[0], "rb") as f:
        on_disk = f.read()
    assert hashlib.md5(on_disk).hexdigest() == info["CompressedMD5"]
    assert len(on_disk) == info["CompressedSize"] < info["UncompressedSize"]


def test_compressed_files_go_out_over_dicom(servers):
    """C-STORE SCU and C-MOVE SCP read the instances through the storage
    area: the oracle receives the original files."""
    oracle, daemon, _ = servers
    ours = daemon.client()
    first, second = (ours.upload(read_sample(name))["ID"] for name in SENT_OVER_DICOM)
    answer = ours.post("/modalities/oracle/store", {"Resources": [first]})
    assert answer.status == 200, answer.body
    study_uid = pydicom.dcmread(io.BytesIO(read_sample(SENT_OVER_DICOM[1]))).StudyInstanceUID
    answer = oracle.post("/modalities/orthancd/move", {
        "Level": "Study", "Resources": [{"StudyInstanceUID": study_uid}], "TargetAet": "ORACLE"})
    assert answer.status == 200, answer.body
    for instance, name in ((first, SENT_OVER_DICOM[0]), (second, SENT_OVER_DICOM[1])):
        received = oracle.get("/instances/%s/file" % instance)
        assert received.status == 200
        assert pydicom.dcmread(io.BytesIO(received.body)).SOPInstanceUID == \
            pydicom.dcmread(io.BytesIO(read_sample(name))).SOPInstanceUID
        assert ours.get("/instances/%s/file" % instance).body == read_sample(name)


def test_kill_during_compressed_uploads_loses_nothing_acknowledged(tmp_path):
    daemon = Daemon(tmp_path, StorageCompression=True).start()
    rest = daemon.client()
    files = list(synthetic_instances(120))
    acknowledged = {}
    lock = threading.Lock()

    def uploader(chunk):
        for data in chunk:
            try:
                answer = rest.post("/instances", data)
            except OSError:
                return  # the daemon died under us
            if answer.status == 200:
                with lock:
                    acknowledged[answer.json()["ID"]] = hashlib.sha256(data).hexdigest()

    threads = [threading.Thread(target=uploader, args=(files[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while time.time() < deadline and len(acknowledged) < 30:
        time.sleep(0.01)
    daemon.kill()
    for t in threads:
        t.join()
    assert len(acknowledged) >= 30, daemon.log()
    daemon.start()
    try:
        rest = daemon.client()
        stored = set(rest.get_json("/instances"))
        assert set(acknowledged) <= stored
        attachments = 0
        for instance_id in stored:
            attachments += len(rest.get_json("/instances/%s/attachments" % instance_id))
            body = rest.get("/instances/%s/file" % instance_id).body
            if instance_id in acknowledged:
                assert hashlib.sha256(body).hexdigest() == acknowledged[instance_id]
            assert rest.get("/instances/%s/attachments/dicom/is-compressed"
                            % instance_id).body == b"1"
        # One compressed file per attachment, no orphan.
        root = daemon.options["StorageDirectory"]
        on_disk = [f for a in os.listdir(root) if len(a) == 2
                   for b in os.listdir(os.path.join(root, a))
                   for f in os.listdir(os.path.join(root, a, b))]
        assert len(on_disk) == attachments
        assert all(name.endswith(".zlib") for name in on_disk)
    finally:
        daemon.stop()


# -- the format ---------------------------------------------------------------

def test_format_is_orthancs_zlib_with_size():
    assert compression.compress(b"") == b""
    stored = compression.compress(b"hello2")
    assert stored.hex() == "0600000000000000789ccb48cdc9c937020008730247"
    assert compression.decompress(stored) == b"hello2"
    assert compression.decompress(b"") == b""


def test_compressing_a_file_piece_by_piece_gives_the_same_bytes():
    data = read_sample("2020-08-12-Christopher.dcm") * 3
    target = io.BytesIO()
    size, md5, content_md5 = compression.compress_file(io.BytesIO(data), target, len(data))
    assert content_md5 == hashlib.md5(data).hexdigest()
    assert target.getvalue() == compression.compress(data)
    assert (size, md5) == (len(target.getvalue()), hashlib.md5(target.getvalue()).hexdigest())
    reader = io.BufferedReader(compression.DecompressingReader(io.BytesIO(target.getvalue())))
    assert reader.read(7) + reader.read() == data


@pytest.mark.parametrize("stored", [b"\x01", b"\x05" + b"\x00" * 7 + b"not zlib",
                                    compression.compress(b"hello")[:-3],
                                    b"\x09" + compression.compress(b"hello")[1:]])
def test_corrupted_compressed_files_are_reported(stored):
    with pytest.raises(OrthancError) as error:
        compression.decompress(stored)
    assert error.value.code is ErrorCode.CorruptedFile
    with pytest.raises(OrthancError):
        compression.DecompressingReader(io.BytesIO(stored)).read()
