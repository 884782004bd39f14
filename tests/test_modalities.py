"""orthancd driving remote modalities (REST /modalities, /queries), against
real peers: DCMTK's storescp and the real Orthanc 1.13.0."""
import glob
import os
import shutil
import subprocess
import time

import pydicom
import pytest

from tests.support import oracle as oracle_support
from tests.support.daemon import Daemon, free_port, read_sample, sample


KNEE = sorted(glob.glob(sample("Knee", "T1", "*.dcm")))[:4]
ENV = dict(os.environ, TCP_NODELAY="1")


class StoreScp:
    """DCMTK storescp writing what it receives to a folder."""

    def __init__(self, folder, aet="STORESCP", accept_all=True):
        self.folder = str(folder)
        os.makedirs(self.folder, exist_ok=True)
        self.port = free_port()
        self.aet = aet
        self.process = subprocess.Popen(
            ["/usr/bin/storescp", "-aet", aet, "-od", self.folder]
            + (["+xa"] if accept_all else []) + [str(self.port)],
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def files(self):
        return sorted(os.listdir(self.folder))

    def clear(self):
        for name in os.listdir(self.folder):
            os.unlink(os.path.join(self.folder, name))

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    root = tmp_path_factory.mktemp("modalities")
    scp = StoreScp(root / "scp")
    closed_port = free_port()
    for name in ("orthancd", "oracle"):
        (root / name).mkdir()
    ours = Daemon(root / "orthancd")
    theirs = oracle_support.RealOrthanc(root / "oracle")
    ours.options["DicomModalities"] = {
        "scp": [scp.aet, "127.0.0.1", scp.port],
        "oracle": {"AET": "ORACLE", "Host": "127.0.0.1", "Port": theirs.dicom_port},
        "closed": ["CLOSED", "127.0.0.1", closed_port],
    }
    ours.options["LogExportedResources"] = True
    theirs.options["DicomModalities"] = {
        "orthancd": ["ORTHANCD", "127.0.0.1", ours.dicom_port],
        "scp": [scp.aet, "127.0.0.1", scp.port],
    }
    ours.start()
    theirs.start()
    yield ours, theirs, scp
    ours.stop()
    theirs.stop()
    scp.stop()


def upload_knee(client):
    return [client.upload(read_sample(*path.split(os.sep)[-3:]))["ID"] for path in KNEE]


def test_listing_and_configuration(peers):
    ours, theirs, _ = peers
    rest = ours.client()
    assert rest.get_json("/modalities") == ["closed", "oracle", "scp"]
    expanded = rest.get_json("/modalities?expand")
    assert expanded["oracle"]["AET"] == "ORACLE"
    # The oracle knows "scp" with the same configuration.
    assert expanded["scp"] == theirs.client().get_json("/modalities?expand")["scp"]
    assert rest.get_json("/modalities/scp/configuration") == expanded["scp"]
    assert rest.get_json("/modalities/scp") == theirs.client().get_json("/modalities/scp")


def test_put_delete_and_errors_like_orthanc(peers):
    ours, theirs, _ = peers
    for client in (ours.client(), theirs.client()):
        assert client.put("/modalities/tmp", ["TMP", "127.0.0.1", 1234]).status == 200
        assert client.get_json("/modalities/tmp/configuration")["Port"] == 1234
        assert client.put("/modalities/tmp", {"AET": "TMP2", "Host": "h", "Port": 5,
                                              "AllowMove": False}).status == 200
        assert client.get_json("/modalities/tmp/configuration")["AllowMove"] is False
        assert client.delete("/modalities/tmp").status == 200
    pairs = [
        ("GET", "/modalities/nope/configuration", None),
        ("POST", "/modalities/nope/echo", b""),
        ("DELETE", "/modalities/nope", None),
        ("PUT", "/modalities/tmp", b"xx"),
        ("PUT", "/modalities/tmp", {"AET": "X"}),
        ("POST", "/modalities/scp/store", b"garbage"),
        ("POST", "/modalities/scp/store", ["nonexist"]),
        ("POST", "/modalities/scp/query", {"Level": "Bogus", "Query": {}}),
        ("POST", "/modalities/scp/query", {"Query": {}}),
        ("POST", "/modalities/scp/query", [1]),
        ("GET", "/queries/nonexist", None),
    ]
    for method, path, body in pairs:
        mine = ours.client().request(method, path, body)
        reference = theirs.client().request(method, path, body)
        assert mine.status == reference.status, (path, mine.body, reference.body)
        if reference.body:
            assert mine.json() == reference.json(), path


def test_echo(peers):
    ours, theirs, _ = peers
    rest = ours.client()
    assert rest.post("/modalities/scp/echo").json() == {}
    assert rest.post("/modalities/oracle/echo", {"Timeout": 5}).json() == {}
    answer = rest.post("/modalities/closed/echo")
    assert answer.status == 500
    assert answer.json()["OrthancStatus"] == 9
    # DCMTK's non-blocking connect words a refused connection so (1.13.0).
    assert "TCP Initialization Error: Operation now in progress" in answer.json()["Details"]


def test_store_to_storescp_and_exports(peers):
    ours, _, scp = peers
    rest = ours.client()
    ids = upload_knee(rest)
    scp.clear()
    study = rest.get_json("/instances/%s/study" % ids[0])["ID"]
    answer = rest.post("/modalities/scp/store", [study])
    assert answer.status == 200, answer.body
    report = answer.json()
    assert report == {"Description": "REST API", "FailedInstancesCount": 0,
                      "InstancesCount": len(ids), "LocalAet": "ORTHANCD",
                      "ParentResources": [study], "RemoteAet": "STORESCP",
                      "Resources": [{"ID": study, "Type": "Study"}]}
    assert len(scp.files()) == len(ids)
    assert rest.post("/modalities/scp/store", ids[0]).json()["InstancesCount"] == 1
    # Orthanc 1.13.0 logs each resource named, under the modality's symbolic name.
    exports = rest.get_json("/exports")["Exports"]
    assert exports[-1]["RemoteModality"] == "scp"
    assert exports[-1]["ID"] == ids[0]
    assert exports[-2]["ResourceType"] == "Study" and exports[-2]["ID"] == study
    refused = rest.post("/modalities/closed/store", [study])
    assert refused.status == 500 and refused.json()["OrthancStatus"] == 9


def test_store_transcodes_for_an_uncompressed_peer(peers, tmp_path):
    ours, _, _ = peers
    rest = ours.client()
    plain = StoreScp(tmp_path / "plain", aet="PLAIN", accept_all=False)
    try:
        rest.put("/modalities/plain", ["PLAIN", "127.0.0.1", plain.port])
        jpeg2000 = upload_knee(rest)[0]
        answer = rest.post("/modalities/plain/store", [jpeg2000])
        assert answer.status == 200, answer.body
        received = pydicom.dcmread(os.path.join(plain.folder, plain.files()[0]))
        assert received.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        original = rest.get_json("/instances/%s/simplified-tags" % jpeg2000)
        assert received.SOPInstanceUID == original["SOPInstanceUID"]
    finally:
        rest.delete("/modalities/plain")
        plain.stop()


def test_store_compressed_to_oracle(peers):
    ours, theirs, _ = peers
    rest = ours.client()
    jpeg = rest.upload(read_sample("TransferSyntaxes", "1.2.840.10008.1.2.4.50.dcm"))["ID"]
    assert rest.post("/modalities/oracle/store", [jpeg]).status == 200
    assert theirs.client().get("/instances/%s" % jpeg).status == 200


def test_query_and_retrieve_from_oracle(peers):
    ours, theirs, _ = peers
    rest, oracle = ours.client(), theirs.client()
    ids = upload_knee(oracle)
    study = oracle.get_json("/instances/%s/study" % ids[0])
    uid = study["MainDicomTags"]["StudyInstanceUID"]
    for client in (rest, oracle):
        for public_id in client.get_json("/studies"):
            if client is rest and public_id == study["ID"]:
                client.delete("/studies/" + public_id)
    body = {"Level": "Study", "Query": {"StudyInstanceUID": uid, "PatientName": "*"}}
    mine = rest.post("/modalities/oracle/query", body).json()
    oracle.put("/modalities/self", ["ORACLE", "127.0.0.1", theirs.dicom_port])
    reference = oracle.post("/modalities/self/query", body).json()
    try:
        for part in ("", "/level", "/modality", "/query", "/answers", "/answers?expand",
                     "/answers/0", "/answers/0/content?simplify", "/answers/0/content?short"):
            a = rest.get("/queries/%s%s" % (mine["ID"], part))
            b = oracle.get("/queries/%s%s" % (reference["ID"], part))
            assert a.status == b.status == 200, part
            if part == "/modality":
                assert a.text == "oracle" and b.text == "self"
            elif "expand" in part or "content" in part:
                assert a.json() == [
                    _same_aet(x) for x in b.json()] if isinstance(b.json(), list) else _same_aet(b.json())
            else:
                assert a.body == b.body, part
        retrieved = rest.post("/queries/%s/answers/0/retrieve" % mine["ID"], "ORTHANCD")
        assert retrieved.status == 200, retrieved.body
        assert retrieved.json()["Query"][0]["0020,000d"] == uid
        assert retrieved.json()["RemoteAet"] == "ORACLE"
        assert rest.get("/studies/%s" % study["ID"]).status == 200
        assert len(rest.get_json("/studies/%s/instances" % study["ID"])) == len(ids)
        assert rest.delete("/queries/%s" % mine["ID"]).status == 200
        assert rest.get("/queries/%s" % mine["ID"]).status == 404
    finally:
        oracle.delete("/modalities/self")


def _same_aet(value):
    return value


def test_move_and_get_from_oracle(peers):
    ours, theirs, scp = peers
    rest, oracle = ours.client(), theirs.client()
    ids = upload_knee(oracle)
    study = oracle.get_json("/instances/%s/study" % ids[0])
    uid = study["MainDicomTags"]["StudyInstanceUID"]
    rest.delete("/studies/%s" % study["ID"])
    move = rest.post("/modalities/oracle/move", {
        "Level": "Study", "Resources": [{"StudyInstanceUID": uid}], "TargetAet": "ORTHANCD"})
    assert move.status == 200, move.body
    # Orthanc 1.13.0's retrieve job report (test_scu_parity.py compares it live).
    report = move.json()
    assert report["TargetAet"] == "ORTHANCD" and report["Details"][0]["DimseErrorStatus"] == 0
    assert sorted(report["Details"][0]["ReceivedInstancesIds"]) == sorted(ids)
    assert len(rest.get_json("/studies/%s/instances" % study["ID"])) == len(ids)
    # To a third party
    scp.clear()
    assert rest.post("/modalities/oracle/move", {
        "Level": "Series", "Resources": [{"StudyInstanceUID": uid,
                                          "SeriesInstanceUID": study["MainDicomTags"].get(
                                              "StudyInstanceUID") and oracle.get_json(
                                              "/instances/%s/series" % ids[0])["MainDicomTags"][
                                              "SeriesInstanceUID"]}],
        "TargetAet": "STORESCP"}).status == 200
    assert len(scp.files()) == len(ids)
    # C-GET: the instances come back on the same association
    rest.delete("/studies/%s" % study["ID"])
    got = rest.post("/modalities/oracle/get", {"Level": "Study",
                                               "Resources": [{"StudyInstanceUID": uid}]})
    assert got.status == 200, got.body
    assert sorted(got.json()["Details"][0]["ReceivedInstancesIds"]) == sorted(ids)
    assert len(rest.get_json("/studies/%s/instances" % study["ID"])) == len(ids)
    origin = rest.get("/instances/%s/metadata/Origin" % ids[0]).text
    assert origin == "DicomProtocol"
    # A failing move: Orthanc does not know this AET
    failed = rest.post("/modalities/oracle/move", {
        "Level": "Study", "Resources": [{"StudyInstanceUID": uid}], "TargetAet": "NOBODY"})
    assert failed.status == 500 and failed.json()["OrthancStatus"] == 9
    assert failed.json()["Details"] == ('C-MOVE SCU to AET "ORACLE" has failed with DIMSE '
                                        'status 0xC000 (unable to process - resource not found ?)')


def test_deprecated_find_routes(peers):
    ours, theirs, _ = peers
    rest, oracle = ours.client(), theirs.client()
    ids = upload_knee(oracle)
    patient = oracle.get_json("/instances/%s/patient" % ids[0])["MainDicomTags"]
    patients = rest.post("/modalities/oracle/find-patient",
                         {"PatientID": patient["PatientID"]}).json()
    assert [p["PatientID"] for p in patients] == [patient["PatientID"]]
    studies = rest.post("/modalities/oracle/find-study", {"PatientID": patient["PatientID"]}).json()
    assert len(studies) == 1 and "StudyInstanceUID" in studies[0]
    series = rest.post("/modalities/oracle/find-series", {
        "PatientID": patient["PatientID"],
        "StudyInstanceUID": studies[0]["StudyInstanceUID"]}).json()
    assert len(series) >= 1
    instances = rest.post("/modalities/oracle/find-instance", {
        "PatientID": patient["PatientID"], "StudyInstanceUID": studies[0]["StudyInstanceUID"],
        "SeriesInstanceUID": series[0]["SeriesInstanceUID"]}).json()
    assert len(instances) == len(ids)
    tree = rest.post("/modalities/oracle/find", {"PatientID": patient["PatientID"]}).json()
    assert tree[0]["Studies"][0]["Series"][0]["SeriesInstanceUID"]
    unknown = rest.post("/modalities/nope/find-patient", {})
    assert unknown.status == 404


def test_modalities_in_database_persist(tmp_path):
    d = Daemon(tmp_path, DicomModalitiesInDatabase=True,
               IndexDirectory=str(tmp_path / "index"))
    d.start()
    try:
        assert d.client().put("/modalities/added", ["ADDED", "127.0.0.1", 104]).status == 200
    finally:
        d.stop()
    d.start()
    try:
        assert d.client().get_json("/modalities") == ["added"]
    finally:
        d.stop()
    shutil.rmtree(str(tmp_path / "index"), ignore_errors=True)
