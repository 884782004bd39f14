"""The DICOM server and client against real peers: DCMTK, pynetdicom, Orthanc.

The server runs in a child process (tests/net_server_process.py) with a fake
``services`` that fsyncs each file into a folder.
"""

import glob
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.dsutils import split_dataset

from orthancd.net import dimse, negotiation, pdu

HERE = Path(__file__).parent
SAMPLES = Path("/work/shared/dicom-samples")
ORACLE_AET = "ORTHANCREF"
ENV = dict(os.environ, TCP_NODELAY="1")
CT = "1.2.840.10008.5.1.4.1.1.2"

# storescu option proposing each compressed syntax of the samples.
STORESCU_PROPOSAL = {
    "1.2.840.10008.1.2.1.99": "-xd", "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx", "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt", "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv", "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr", "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe", "1.2.840.10008.1.2.2": "-xb",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, tmp_path, config):
        self.storage = tmp_path / "storage"
        self.tmp = tmp_path / "tmp"
        self.storage.mkdir()
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "net_server_process.py"), "--port", str(self.port),
             "--storage", str(self.storage), "--tmp", str(self.tmp),
             "--config", json.dumps(config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline()
        assert line.startswith("LISTENING"), line

    def stored(self):
        return sorted(p for p in self.storage.glob("*.dcm"))

    def clear(self):
        for p in self.storage.iterdir():
            p.unlink()

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("scp"), {"DicomAet": "TESTSCP"})
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _clean(request):
    if "server" in request.fixturenames:
        request.getfixturevalue("server").clear()
    yield


def dataset_part(path):
    """(transfer syntax, data set bytes after the file meta)."""
    meta, offset = split_dataset(Path(path))
    return str(meta.TransferSyntaxUID), Path(path).read_bytes()[offset:]


def stored_copy(server, source):
    uid = pydicom.dcmread(source, stop_before_pixels=True, force=True).SOPInstanceUID
    return server.storage / f"{uid}.dcm"


def dcmtk(tool, *args, timeout=120):
    return subprocess.run([f"/usr/bin/{tool}", *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def test_echoscu(server):
    result = dcmtk("echoscu", "-aec", "TESTSCP", "127.0.0.1", str(server.port))
    assert result.returncode == 0, result.stderr


def same_content(copy, original):
    """DCMTK re-serializes what it sends (group lengths, padding), so
    storescu transfers are checked on content; pynetdicom and our client
    send file bytes as they are and are checked byte for byte."""
    ours, theirs = pydicom.dcmread(copy), pydicom.dcmread(original, force=True)
    differing = [e.tag for e in theirs if e.tag.element != 0  # group lengths are dropped
                 and e.tag != 0xFFFCFFFC                         # and trailing padding
                 and (e.tag not in ours or ours[e.tag].value != e.value)]
    assert differing == [], differing
    return True


def test_storescu_transfer_syntax_samples(server):
    for path in sorted(glob.glob(str(SAMPLES / "TransferSyntaxes" / "*.dcm"))):
        try:
            syntax, _ = dataset_part(path)
        except pydicom.errors.InvalidDicomError:
            syntax = "1.2.840.10008.1.2"   # bare implicit VR data set
        if syntax == "1.2.840.10008.1.2.4.57":
            continue  # no storescu option proposes JPEG process 14; see the pynetdicom test
        options = ["-R", STORESCU_PROPOSAL[syntax]]
        server.clear()  # some samples share a SOP Instance UID
        result = dcmtk("storescu", *options, "-aec", "TESTSCP", "127.0.0.1", str(server.port), path)
        assert result.returncode == 0, (path, result.stderr)
        copy = stored_copy(server, path)
        assert dataset_part(copy)[0] == syntax
        assert same_content(copy, path), path
        origin = json.loads(Path(str(copy) + ".origin.json").read_text())
        assert origin == {"RemoteAET": "STORESCU", "CalledAET": "TESTSCP",
                          "RemoteIP": "127.0.0.1", "Origin": "DicomProtocol"}


@pytest.mark.parametrize("study,options", [("Knee", ["-xw"]), ("Brainix", [])])
def test_storescu_folder_study(server, study, options):
    folder = SAMPLES / study
    files = sorted(glob.glob(str(folder / "**" / "*.dcm"), recursive=True))
    result = dcmtk("storescu", "+sd", "+r", *options, "-aec", "TESTSCP", "127.0.0.1",
                   str(server.port), str(folder))
    assert result.returncode == 0, result.stderr
    assert len(server.stored()) == len(files)
    for path in files:
        copy = stored_copy(server, path)
        assert dataset_part(copy)[0] == dataset_part(path)[0]
        assert same_content(copy, path), path
    assert os.listdir(server.tmp) == []


def test_pynetdicom_client_all_samples(server):
    paths = sorted(glob.glob(str(SAMPLES / "TransferSyntaxes" / "*.dcm")))
    ae = AE(ae_title="PYNETDICOM")
    wanted = {}
    for path in paths:
        try:
            meta, _ = split_dataset(Path(path))
        except pydicom.errors.InvalidDicomError:
            ds = pydicom.dcmread(path, force=True)   # bare implicit VR data set
            wanted.setdefault(str(ds.SOPClassUID), set()).add("1.2.840.10008.1.2")
            continue
        wanted.setdefault(str(meta.MediaStorageSOPClassUID), set()).add(str(meta.TransferSyntaxUID))
    for sop_class, syntaxes in wanted.items():
        for syntax in syntaxes:
            ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate("127.0.0.1", server.port, ae_title="TESTSCP")
    assert assoc.is_established
    for path in paths:
        server.clear()  # some samples share a SOP Instance UID
        try:
            original = dataset_part(path)
        except pydicom.errors.InvalidDicomError:
            # No Part-10 header: pynetdicom needs the decoded data set.
            ds = pydicom.dcmread(path, force=True)
            ds.file_meta = pydicom.dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
            assert assoc.send_c_store(ds).Status == 0, path
            continue
        assert assoc.send_c_store(path).Status == 0, path
        if original[0] == "1.2.840.10008.1.2.1.99":
            # pynetdicom inflates and deflates again
            assert same_content(stored_copy(server, path), path)
        else:
            stored = dataset_part(stored_copy(server, path))
            assert stored[0] == original[0]
            has_group_lengths = any(e.tag.element == 0 for e in pydicom.dcmread(path))
            if original[0] == "1.2.840.10008.1.2.2" or has_group_lengths:
                # pynetdicom re-encodes big endian data sets and drops group
                # length elements: only the content can match for those.
                assert same_content(stored_copy(server, path), path)
            else:
                assert stored[1] == original[1], path
    # Same instance again: answered (Orthanc says "AlreadyStored" internally).
    assert assoc.send_c_store(paths[0]).Status == 0
    assoc.release()


def test_several_simultaneous_associations(server):
    aes = []
    for i in range(4):
        ae = AE(ae_title=f"PARALLEL{i}")
        ae.add_requested_context("1.2.840.10008.1.1")
        aes.append(ae.associate("127.0.0.1", server.port, ae_title="TESTSCP"))
    assert all(a.is_established for a in aes)
    for a in reversed(aes):
        assert a.send_c_echo().Status == 0
    for a in aes:
        a.release()


def test_wrong_called_aet_rejected(tmp_path):
    strict = ServerProcess(tmp_path, {"DicomAet": "TESTSCP", "DicomCheckCalledAet": True})
    try:
        bad = dcmtk("echoscu", "-aec", "NOTME", "127.0.0.1", str(strict.port))
        assert bad.returncode != 0
        assert "Called AE Title Not Recognized" in bad.stderr + bad.stdout
        good = dcmtk("echoscu", "-aec", "TESTSCP", "127.0.0.1", str(strict.port))
        assert good.returncode == 0
    finally:
        strict.stop()


def test_abort_mid_store_over_tcp(server):
    request = negotiation.requestor_primitive("RAW", "TESTSCP", [(CT, ["1.2.840.10008.1.2"])], 16384)
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(pdu.encode_associate(request))
        framer = pdu.PduFramer()
        got = []
        while not got:
            got = framer.feed(s.recv(65536))
        assert got[0][0] == pdu.ASSOCIATE_AC
        command = dimse.encode_command({
            "AffectedSOPClassUID": CT, "CommandField": dimse.C_STORE_RQ, "MessageID": 1,
            "Priority": 0, "AffectedSOPInstanceUID": "1.2.3", "CommandDataSetType": 1})
        s.sendall(pdu.p_data_tf(1, 0x03, command))
        # More than the 256 kB the SCP hands to the file pool at once: the
        # temporary file exists mid-transfer.
        data = b"\x08\x00\x16\x00" + b"\x00" * 300000
        for start in range(0, len(data), 16000):
            s.sendall(pdu.p_data_tf(1, 0x00, data[start:start + 16000]))
        deadline = time.time() + 5
        while not os.listdir(server.tmp) and time.time() < deadline:
            time.sleep(0.02)
        assert len(os.listdir(server.tmp)) == 1
        s.sendall(pdu.abort())
        assert s.recv(100) == b""   # the server closes
    deadline = time.time() + 5
    while os.listdir(server.tmp) and time.time() < deadline:
        time.sleep(0.02)
    assert os.listdir(server.tmp) == [] and server.stored() == []


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """The real Orthanc, started for these tests on free ports."""
    from tests.support.oracle import RealOrthanc
    peer = RealOrthanc(tmp_path_factory.mktemp("oracle"), DicomAet=ORACLE_AET).start()
    yield peer
    peer.stop()


def http(oracle, method, path, body=None):
    request = urllib.request.Request(oracle.url + path, data=body, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def test_orthanc_as_storage_scu(server, oracle):
    sample = SAMPLES / "Brainix" / "Epi" / "IM-0001-0001.dcm"
    uploaded = http(oracle, "POST", "/instances", sample.read_bytes())
    http(oracle, "PUT", "/modalities/testscp",
         json.dumps(["TESTSCP", "127.0.0.1", server.port]).encode())
    try:
        assert http(oracle, "POST", "/modalities/testscp/echo", b"{}") == {}
        http(oracle, "POST", "/modalities/testscp/store", uploaded["ID"].encode())
    finally:
        http(oracle, "DELETE", "/modalities/testscp")
    copy = stored_copy(server, sample)
    # Orthanc's DCMTK re-serializes what it sends: compare on content.
    assert same_content(copy, sample)
    origin = json.loads(Path(str(copy) + ".origin.json").read_text())
    assert origin["RemoteAET"] == ORACLE_AET and origin["CalledAET"] == "TESTSCP"


# -- our client ----------------------------------------------------------------

def run_client(coroutine_function, *args):
    """Run the client in a child process with its own reactor."""
    script = HERE / "net_client_process.py"
    result = subprocess.run([sys.executable, str(script), coroutine_function, *map(str, args)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_client_against_orthanc(oracle):
    sample = SAMPLES / "Brainix" / "Epi" / "IM-0001-0002.dcm"
    out = run_client("echo_and_store", "127.0.0.1", oracle.dicom_port, ORACLE_AET, sample)
    assert out == {"echo": 0, "store": 0}
    uid = pydicom.dcmread(sample, stop_before_pixels=True).SOPInstanceUID
    found = http(oracle, "POST", "/tools/lookup", str(uid).encode())
    assert found and found[0]["Type"] == "Instance"
    stored = urllib.request.urlopen(f"{oracle.url}/instances/{found[0]['ID']}/file").read()
    # Orthanc re-encodes what it receives, so compare content, not bytes.
    from io import BytesIO
    theirs = pydicom.dcmread(BytesIO(stored))
    ours = pydicom.dcmread(sample)
    assert theirs.PixelData == ours.PixelData and theirs.PatientName == ours.PatientName


def test_client_against_our_server(server):
    paths = sorted(glob.glob(str(SAMPLES / "Knee" / "T1" / "*.dcm")))[:3]
    out = run_client("echo_and_store", "127.0.0.1", server.port, "TESTSCP", *paths)
    assert out == {"echo": 0, "store": 0}
    for path in paths:
        assert dataset_part(stored_copy(server, path)) == dataset_part(path)


def test_client_rejected(tmp_path):
    strict = ServerProcess(tmp_path, {"DicomAet": "TESTSCP", "DicomCheckCalledAet": True})
    try:
        out = run_client("echo_and_store", "127.0.0.1", strict.port, "WRONG")
        assert out == {"rejected": [1, 1, 7]}
    finally:
        strict.stop()


# -- throughput ----------------------------------------------------------------

def make_small_ct_series(folder, count):
    template = pydicom.dcmread(SAMPLES / "TransferSyntaxes" / "1.2.840.10008.1.2.1.dcm")
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.SOPClassUID = CT
    ds.PatientName = "Bench^Mark"
    ds.PatientID = "BENCH"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(64 * 64 * 2)
    del template
    for i in range(count):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"ct{i:04d}.dcm", enforce_file_format=True)


def test_storescu_throughput(server, tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    make_small_ct_series(folder, 200)
    start = time.perf_counter()
    result = dcmtk("storescu", "+sd", "-aec", "TESTSCP", "127.0.0.1", str(server.port), str(folder))
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert len(server.stored()) == 200
    rate = 200 / elapsed
    print(f"\nC-STORE throughput, one storescu association: {rate:.0f} instances/s")
    (HERE.parent / ".pytest_cache").mkdir(exist_ok=True)
    assert rate > 20
