"""/modalities/{id}/find-worklist (C-FIND SCU on modality worklists), orthancd
against the live Orthanc 1.13.0, both querying the same DCMTK worklist SCP
(wlmscpfs) serving the worklist samples and one written here in UTF-8."""
import json
import os
import shutil
import subprocess
import time

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian

from tests.support import oracle
from tests.support.daemon import Daemon, free_port

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "dicom-samples",
                       "Worklists")


def _utf8_worklist(path):
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Gérard^Zoë"
    ds.PatientID = "WL-UTF8"
    ds.AccessionNumber = "ACC-UTF8"
    ds.RequestedProcedureDescription = "Échographie cœur"
    step = Dataset()
    step.Modality = "US"
    step.ScheduledStationAETitle = "ECHO1"
    step.ScheduledProcedureStepStartDate = "20260101"
    ds.ScheduledProcedureStepSequence = [step]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.276.0.7230010.3.1.0.1"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.777"
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("worklists")
    aet_folder = folder / "WLAET"
    aet_folder.mkdir()
    for root, _, names in os.walk(SAMPLES):
        for name in names:
            shutil.copy(os.path.join(root, name), aet_folder / name)
    _utf8_worklist(str(aet_folder / "utf8.wl"))
    (aet_folder / "lockfile").touch()
    port = free_port()
    # -dfr: the samples lack some type 1 attributes; serve them anyway.
    scp = subprocess.Popen(["/usr/bin/wlmscpfs", "-dfr", "-dfp", str(folder), str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    modalities = {"wl": ["WLAET", "127.0.0.1", port],
                  "wrongaet": ["NOTWL", "127.0.0.1", port],
                  "down": ["DOWN", "127.0.0.1", free_port()]}
    ours = Daemon(tmp_path_factory.mktemp("orthancd"), DicomModalities=modalities)
    real = oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), DicomModalities=modalities)
    ours.start()
    real.start()
    time.sleep(0.2)
    try:
        yield ours.client(), real.client()
    finally:
        ours.stop()
        real.stop()
        scp.terminate()
        scp.wait()


def _without_volatile(text):
    """Error details name the server's own AET and log file positions."""
    value = json.loads(text)
    if isinstance(value, dict):
        value.pop("Details", None)
    return value


BODIES = [
    {"PatientName": "", "PatientID": "",
     "ScheduledProcedureStepSequence": [{"Modality": "", "ScheduledStationAETitle": ""}]},
    {"PatientName": "", "SpecificCharacterSet": "",
     "ScheduledProcedureStepSequence": [{"Modality": "CT"}]},
    {"Query": {"PatientName": "", "RequestedProcedureDescription": "", "SOPInstanceUID": ""},
     "Short": True},
    {"Query": {"PatientName": "", "AccessionNumber": ""}, "Full": True},
    {"Query": {"PatientName": "VAN*", "AccessionNumber": ""}},
    {"Query": {"PatientName": "", "PatientID": "WL-UTF8", "RequestedProcedureDescription": ""},
     "Simplify": True},
    {"Query": {"PatientName": "", "SpecificCharacterSet": "ISO_IR 192",
               "RequestedProcedureDescription": ""}},
    {"Query": {"PatientName": "", "AccessionNumber": "nothing"}},
    {"Query": {"PatientName": "", "0010,0020": "", "PatientBirthDate": "19500101-19600101"}},
    {"Query": {"PatientName": ""}, "Short": "yes"},
    {"Query": {"NoSuchTag": ""}},
    {"Query": {"PatientName": ""}, "SpecificCharacterSet": "Bogus"},
    {"Query": {"PatientName": "", "SpecificCharacterSet": "Bogus"}},
    {"Query": {"PatientName": 5}},
    {"Query": {"ScheduledProcedureStepSequence": "CT"}},
]


@pytest.mark.parametrize("body", BODIES, ids=[str(i) for i in range(len(BODIES))])
def test_find_worklist_like_orthanc(servers, body):
    ours, theirs = servers
    raw = json.dumps(body).encode()
    a = ours.request("POST", "/modalities/wl/find-worklist", raw)
    b = theirs.request("POST", "/modalities/wl/find-worklist", raw)
    assert a.status == b.status, (a.body[:400], b.body[:400])
    if b.status == 200:
        assert a.json() == b.json()
        assert json.dumps(a.json()) == json.dumps(b.json())
    elif b.body:
        assert _without_volatile(a.body) == _without_volatile(b.body)


@pytest.mark.parametrize("path,body", [
    ("/modalities/nope/find-worklist", b"{}"),
    ("/modalities/wl/find-worklist", b"[]"),
    ("/modalities/wl/find-worklist", b'"x"'),
    ("/modalities/wl/find-worklist", b"null"),
    ("/modalities/wl/find-worklist", b'{"Query": []}'),
    ("/modalities/wl/find-worklist", b"not json"),
    ("/modalities/down/find-worklist", b'{"PatientName": ""}'),
    ("/modalities/wrongaet/find-worklist", b'{"PatientName": ""}'),
])
def test_find_worklist_errors_like_orthanc(servers, path, body):
    ours, theirs = servers
    a = ours.request("POST", path, body)
    b = theirs.request("POST", path, body)
    assert a.status == b.status, (a.body[:400], b.body[:400])
    assert bool(a.body) == bool(b.body)
    if b.body:
        assert _without_volatile(a.body) == _without_volatile(b.body)
