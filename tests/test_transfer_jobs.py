"""The transfer jobs (C-STORE, C-MOVE, C-GET, peer store) against the live
Orthanc 1.13.0.

Two clients receive the same requests and hold the same samples: orthancd
and a real Orthanc ("oracle"), both knowing the same modalities and peers:
"dest" is a second real Orthanc (destination modality and peer, and the
source of the retrieves), "slow" a storage SCP taking its time per instance,
"fail" one refusing everything (0xA700), "down" a closed port.  Synchronous
answers, asynchronous ones and the /jobs/{id} of the jobs, once finished,
must agree field by field, once what names each server (its AET, job IDs,
times) is masked.
"""
import json
import re
import time

import pytest

from tests.support import oracle
from tests.support.daemon import Daemon, free_port, read_sample
from tests.support.dicom_peers import StorageScp

SAMPLES = [("Brainix", "Flair", "IM-0001-0001.dcm"), ("Brainix", "Flair", "IM-0001-0002.dcm"),
           ("Brainix", "Flair", "IM-0001-0003.dcm"), ("Knee", "T1", "IM-0001-0001.dcm")]
# Brainix: uncompressed, so that C-GET needs no transcoding.
BRAINIX_STUDY = "2.16.840.1.113669.632.20.1211.10000357775"
LOCAL_AETS = ("ORACLE", "ORTHANCD")
SLOW_SECONDS = 0.4
TIMES = ("CreationTime", "CompletionTime", "Timestamp", "EstimatedTimeOfArrival",
         "EffectiveRuntime", "Date")
UNIQUE = ("StorageCommitmentTransactionUID",)


def slow_resources(servers):
    """What the slow tests send: four instances (a series, and one more)."""
    ids = servers[3]
    return [ids[SAMPLES[0]]["ParentSeries"], ids[SAMPLES[3]]["ID"]]


def under_way(info):
    """Some instance was sent, and more than one is left."""
    return 0 < info["Progress"] < 75


def slowly(_count):
    time.sleep(SLOW_SECONDS)
    return 0x0000


@pytest.fixture(scope="module")
def scps():
    made = {"slow": StorageScp("SLOW", slowly), "fail": StorageScp("FAIL", 0xA700)}
    yield made
    for scp in made.values():
        scp.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, scps):
    ours = Daemon(tmp_path_factory.mktemp("orthancd"), LogExportedResources=True)
    real = oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), LogExportedResources=True)
    dest = oracle.RealOrthanc(tmp_path_factory.mktemp("dest"), DicomAet="DEST", Name="dest",
                              DicomAlwaysAllowMove=True, DicomAlwaysAllowGet=True,
                              DicomAlwaysAllowFind=True)
    down = free_port()
    modalities = {
        "dest": ["DEST", "127.0.0.1", dest.dicom_port],
        "slow": ["SLOW", "127.0.0.1", scps["slow"].port],
        "fail": ["FAIL", "127.0.0.1", scps["fail"].port],
        "down": ["DOWN", "127.0.0.1", down],
    }
    orthanc_peers = {
        "dest": [dest.url + "/"],
        "down": ["http://127.0.0.1:%d/" % down],
        "wrong": [dest.url + "/nothing-here/"],   # answers 404
        "headers": {"Url": dest.url, "Username": "alice", "Password": "secret",
                    "HttpHeaders": {"X-Custom": "yes"}, "Timeout": 7},
    }
    for server in (ours, real):
        server.options["DicomModalities"] = modalities
        server.options["OrthancPeers"] = orthanc_peers
    dest.options["DicomModalities"] = {
        "orthancd": ["ORTHANCD", "127.0.0.1", ours.dicom_port],
        "oracle": ["ORACLE", "127.0.0.1", real.dicom_port],
        "slow": ["SLOW", "127.0.0.1", scps["slow"].port],
    }
    started = []
    try:
        for server in (dest, ours, real):
            server.start()
            started.append(server)
        ids = {}
        for parts in SAMPLES:
            data = read_sample(*parts)
            for client in (ours.client(), real.client(), dest.client()):
                ids[parts] = client.upload(data)
        yield ours, real, dest, ids
    finally:
        for server in started:
            server.stop()


def _masked(value, ids, volatile=()):
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in volatile:
                out[key] = "<volatile>"
            elif key in TIMES:
                out[key] = "<time>"
            elif key in UNIQUE:
                out[key] = "<uid>"
            elif key in ("LocalAet", "TargetAet") and item in LOCAL_AETS:
                out[key] = "<aet>"
            else:
                out[key] = _masked(item, ids, volatile)
        return out
    if isinstance(value, list):
        return [_masked(item, ids, volatile) for item in value]
    if isinstance(value, str):
        for known in ids:
            value = value.replace(known, "<id>")
    return value


def _answer(response, ids=(), volatile=()):
    try:
        body = json.loads(response.body)
    except ValueError:
        body = response.body
    if isinstance(body, dict) and set(body) == {"ID", "Path"}:
        body = {"ID": "<id>", "Path": "<path>"}
    if isinstance(body, dict) and "Uri" in body:
        body["Uri"] = re.sub("[0-9a-f-]{36}", "<id>", body["Uri"])
    return response.status, _masked(body, ids, volatile)


def wait_job(client, job_id, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = client.get_json("/jobs/" + job_id)
        if info["State"] in ("Success", "Failure"):
            return info
        time.sleep(0.1)
    raise AssertionError("job %s did not end: %s" % (job_id, info))


def same(servers, method, path, body=None, paths=None, ids=(), volatile=()):
    """The same request to both; when it submitted a job, the same job once
    it ended (``volatile`` keys masked).  Returns (oracle's answer, ours)."""
    ours, real = servers[0], servers[1]
    reference_path, mine_path = paths or (path, path)
    reference = real.client().request(method, reference_path, body)
    mine = ours.client().request(method, mine_path, body)
    assert _answer(mine, ids, volatile) == _answer(reference, ids, volatile), \
        (method, path, body)
    jobs = []
    for server, answer in ((real, reference), (ours, mine)):
        if answer.status == 200 and set(answer.json()) == {"ID", "Path"} \
                and answer.json()["Path"].startswith("/jobs/"):
            jobs.append(wait_job(server.client(), answer.json()["ID"]))
    if jobs:
        job_ids = [job["ID"] for job in jobs] + list(ids)
        assert _masked(jobs[1], job_ids, volatile) == _masked(jobs[0], job_ids, volatile), \
            (method, path, body)
    return reference, mine


def test_store_like_orthanc(servers, scps):
    ids = servers[3]
    instance = ids[SAMPLES[0]]["ID"]
    series = ids[SAMPLES[0]]["ParentSeries"]
    study = ids[SAMPLES[3]]["ParentStudy"]
    for body in (
            [series], instance, {"Resources": [study, series]},
            {"Resources": [series], "Asynchronous": True, "Priority": 3, "UserData": {"a": [1]}},
            {"Resources": [instance], "Synchronous": False, "LocalAet": "OTHER"},
            {"Resources": [series], "Synchronous": True, "Asynchronous": True},
            {"Resources": [], "Asynchronous": True},
            {"Resources": [instance], "MoveOriginatorAet": "MOVER", "MoveOriginatorID": 7,
             "Asynchronous": True},
            {"Resources": [instance], "MoveOriginatorID": 0, "MoveOriginatorAet": "MOVER"},
            {"Resources": [instance], "Priority": "x"}, {"Resources": [instance], "Permissive": 1},
            {"Resources": [instance], "Asynchronous": "x"},
            {"Resources": [instance], "Synchronous": "x"},
            {"Resources": [instance], "Timeout": -1}, {"Resources": [instance], "Timeout": "x"},
            {"Resources": [instance], "MoveOriginatorID": 70000},
            {"Resources": [instance], "StorageCommitment": "x"},
            {"Resources": [instance], "StorageCommitment": True},
            {"Resources": [instance], "StorageCommitment": True, "Asynchronous": True}):
        same(servers, "POST", "/modalities/dest/store", body)
    for name in ("down", "fail"):
        for body in ([series], {"Resources": [series], "Asynchronous": True},
                     {"Resources": [series], "Permissive": True},
                     {"Resources": [series], "Permissive": True, "Asynchronous": True}):
            same(servers, "POST", "/modalities/%s/store" % name, body)
    same(servers, "POST", "/modalities/nope/store", {"Resources": [series], "Asynchronous": True})
    # The destination received each instance (a second time changes nothing).
    assert len(servers[2].client().get_json("/instances")) == len(SAMPLES)
    # What was sent is logged as exported, under the modality's name.
    exports = [_answer(server.client().get("/exports?limit=1000"))
               for server in servers[:2]]
    assert exports[0] == exports[1]


def test_retrieve_like_orthanc(servers):
    """dest is the source of the retrieves, to orthancd or the oracle (the
    client's own AET) or to the slow SCP."""
    study = {"Level": "Study", "Resources": [{"StudyInstanceUID": BRAINIX_STUDY}]}
    for route in ("move", "get"):
        for body in (study, dict(study, Asynchronous=True, UserData="u"),
                     dict(study, TargetAet="SLOW", Asynchronous=True),
                     {"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2.3"}]},
                     {"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2.3"}],
                      "Asynchronous": True},
                     {"Level": "Study", "Resources": [{"PatientID": "x"}], "Asynchronous": True},
                     {"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2.3"}],
                      "Permissive": True},
                     {"Level": "Study", "Resources": [], "Asynchronous": True},
                     dict(study, Priority="x"), dict(study, Timeout=-1),
                     dict(study, Permissive="x")):
            if route == "get" and "TargetAet" in body:
                continue
            same(servers, "POST", "/modalities/dest/" + route, body)
        same(servers, "POST", "/modalities/down/" + route, dict(study, Asynchronous=True))
        same(servers, "POST", "/modalities/nope/" + route, dict(study, Asynchronous=True))


def test_query_retrieve_like_orthanc(servers):
    query = {"Level": "Series", "Query": {"StudyInstanceUID": BRAINIX_STUDY}}
    query_ids = [server.client().post("/modalities/dest/query", query).json()["ID"]
                 for server in servers[1::-1]]
    for route in ("/retrieve", "/answers/0/retrieve"):
        for body in ({"Asynchronous": True}, {"Asynchronous": True, "Simplify": True},
                     {"TargetAet": "SLOW", "Asynchronous": True, "Full": True},
                     {"RetrieveMethod": "C-GET", "Asynchronous": True},
                     {"RetrieveMethod": "C-GET"}, "SLOW", {"Timeout": "x"},
                     {"Timeout": -3, "Asynchronous": True}, {"Priority": "x"}):
            same(servers, "POST", None, body, ids=query_ids,
                 paths=["/queries/%s%s" % (q, route) for q in query_ids])


def test_peer_store_like_orthanc(servers):
    ids = servers[3]
    series = ids[SAMPLES[0]]["ParentSeries"]
    instance = ids[SAMPLES[3]]["ID"]
    for body in ([series], instance, {"Resources": [series], "Asynchronous": True},
                 {"Resources": [series], "Compress": True, "Asynchronous": True},
                 {"Resources": [instance], "Transcode": "1.2.3"},
                 {"Resources": [instance], "Transcode": 5},
                 {"Resources": [instance], "Compress": "x"},
                 {"Resources": ["abc"]}, {"Resources": [instance], "Priority": "x"}):
        same(servers, "POST", "/peers/dest/store", body)
    # DCMTK and pydicom do not write the same bytes.
    same(servers, "POST", "/peers/dest/store",
         {"Resources": [instance], "Transcode": "1.2.840.10008.1.2"},
         volatile=("Size", "SizeMB"))
    same(servers, "POST", "/peers/headers/store", {"Resources": [instance]})
    for name in ("down", "wrong"):
        for body in ([series], {"Resources": [series], "Asynchronous": True},
                     {"Resources": [series], "Permissive": True}):
            same(servers, "POST", "/peers/%s/store" % name, body)
    same(servers, "POST", "/peers/nope/store", [series])
    for name in ("dest", "down", "wrong", "nope"):
        reference, mine = same(servers, "GET", "/peers/%s/system" % name)
        assert mine.headers.get("Content-Type") == reference.headers.get("Content-Type")
    for name in ("dest", "down", "wrong", "nope"):
        for body in (read_sample("DummyCT.dcm"), b"garbage"):
            # The first one to send it stores it, the second finds it stored.
            same(servers, "POST", "/peers/%s/store-straight" % name, body,
                 volatile=("Status",))
    assert len(servers[2].client().get_json("/instances")) == len(SAMPLES) + 1


def test_peer_store_transcodes(servers):
    """Transcoding (orthancd.transcoding: the JPEG 2000 knee goes as
    explicit little endian); as in Orthanc 1.13.0, an instance that cannot
    be transcoded (a 16-bit image to JPEG baseline) goes as it is, and an
    unknown syntax is refused before any job exists."""
    ours, dest = servers[0].client(), servers[2].client()
    knee = servers[3][SAMPLES[3]]["ID"]
    assert dest.delete("/instances/" + knee).status == 200
    answer = ours.post("/peers/dest/store", {"Resources": [knee],
                                             "Transcode": "1.2.840.10008.1.2.1"})
    assert answer.status == 200, answer.body
    assert dest.get("/instances/%s/metadata/TransferSyntax" % knee).text == \
        "1.2.840.10008.1.2.1"
    frame = dest.get("/instances/%s/frames/0/raw" % knee)
    assert frame.status == 200 and len(frame.body) == 2 * 512 * 512
    assert dest.delete("/instances/" + knee).status == 200
    answer = ours.post("/peers/dest/store", {"Resources": [knee],
                                             "Transcode": "1.2.840.10008.1.2.4.50"})
    assert answer.status == 200, answer.body
    assert dest.get("/instances/%s/metadata/TransferSyntax" % knee).text == \
        "1.2.840.10008.1.2.4.91"
    refused = ours.post("/peers/dest/store", {"Resources": [knee], "Transcode": "1.2.3"})
    assert refused.status == 400
    assert refused.json()["Details"] == "Unknown transfer syntax UID: 1.2.3"


def test_store_advances_per_instance_pauses_and_resumes(servers, scps):
    """Progress shows while the slow SCP takes the instances one by one; a
    paused job keeps its position and sends the rest once resumed."""
    ours = servers[0].client()
    scps["slow"].clear()
    job_id = ours.post("/modalities/slow/store",
                       {"Resources": slow_resources(servers), "Asynchronous": True}).json()["ID"]
    progress = _wait_for(ours, job_id, under_way)
    assert progress["State"] == "Running" and "EstimatedTimeOfArrival" in progress
    assert ours.post("/jobs/%s/pause" % job_id).json() == {}
    paused = _wait_for(ours, job_id, lambda info: info["State"] == "Paused")
    sent = len(scps["slow"].received)
    assert 0 < sent < 4 and paused["Progress"] == 25 * sent
    time.sleep(2 * SLOW_SECONDS)
    assert len(scps["slow"].received) == sent
    ours.post("/jobs/%s/resume" % job_id)
    done = wait_job(ours, job_id)
    assert done["State"] == "Success" and done["Progress"] == 100
    # Each instance went once.
    assert len(scps["slow"].received) == 4 == len(set(scps["slow"].received))


def test_cancel_then_resubmit(servers, scps):
    ours = servers[0].client()
    scps["slow"].clear()
    job_id = ours.post("/modalities/slow/store",
                       {"Resources": slow_resources(servers), "Asynchronous": True}).json()["ID"]
    _wait_for(ours, job_id, under_way)
    ours.post("/jobs/%s/cancel" % job_id)
    canceled = wait_job(ours, job_id)
    assert (canceled["State"], canceled["ErrorCode"]) == ("Failure", 37)
    assert canceled["ErrorDescription"] == "This job was canceled"
    sent = len(scps["slow"].received)
    time.sleep(2 * SLOW_SECONDS)
    assert sent < 4 and len(scps["slow"].received) == sent
    # Resubmitted, it starts over (Orthanc's SetOfInstancesJob::Reset).
    assert ours.post("/jobs/%s/resubmit" % job_id).json() == {}
    again = wait_job(ours, job_id)
    assert again["State"] == "Success" and again["ErrorCode"] == 0
    assert len(scps["slow"].received) == sent + 4


def test_failed_store_resubmitted_once_the_destination_is_back(servers):
    ours = servers[0].client()
    instance = servers[3][SAMPLES[0]]["ID"]
    port = free_port()
    ours.put("/modalities/late", ["LATE", "127.0.0.1", port])
    try:
        job_id = ours.post("/modalities/late/store",
                           {"Resources": [instance], "Asynchronous": True}).json()["ID"]
        failed = wait_job(ours, job_id)
        assert failed["State"] == "Failure" and failed["ErrorCode"] == 9
        late = _scp_on(port)
        try:
            assert ours.post("/jobs/%s/resubmit" % job_id).json() == {}
            assert wait_job(ours, job_id)["State"] == "Success"
            assert len(late.received) == 1
        finally:
            late.stop()
    finally:
        ours.delete("/modalities/late")


def _scp_on(port):
    """A storage SCP on a given port (StorageScp picks its own)."""
    import tests.support.dicom_peers as dicom_peers
    original = dicom_peers.free_port
    dicom_peers.free_port = lambda: port
    try:
        return StorageScp("LATE")
    finally:
        dicom_peers.free_port = original


def _wait_for(client, job_id, condition, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = client.get_json("/jobs/" + job_id)
        if condition(info):
            return info
        time.sleep(0.05)
    raise AssertionError("job %s never matched: %s" % (job_id, info))


def test_jobs_survive_a_restart(servers, scps):
    """A paused store job and a finished retrieve come back after a restart
    (SaveJobs); the store goes on where it stopped."""
    daemon = servers[0]
    ours = daemon.client()
    scps["slow"].clear()
    store_id = ours.post("/modalities/slow/store",
                         {"Resources": slow_resources(servers), "Asynchronous": True,
                          "UserData": "kept"}).json()["ID"]
    _wait_for(ours, store_id, under_way)
    ours.post("/jobs/%s/pause" % store_id)
    paused = _wait_for(ours, store_id, lambda info: info["State"] == "Paused")
    move_id = ours.post("/modalities/dest/move", {
        "Level": "Study", "Resources": [{"StudyInstanceUID": "1.2.3"}],
        "Asynchronous": True}).json()["ID"]
    moved = wait_job(ours, move_id)
    daemon.stop()
    daemon.start()
    again = ours.get_json("/jobs/" + store_id)
    for key in ("State", "Progress", "Content", "UserData", "Type", "Priority"):
        assert again[key] == paused[key], key
    assert _masked(ours.get_json("/jobs/" + move_id), []) == _masked(moved, [])
    sent = len(scps["slow"].received)
    ours.post("/jobs/%s/resume" % store_id)
    assert wait_job(ours, store_id)["State"] == "Success"
    assert len(scps["slow"].received) == 4 == len(set(scps["slow"].received))
    assert sent < 4


def test_instance_deleted_after_submission(servers, scps):
    """An instance gone before its turn counts as failed: a permissive job
    goes on, another fails with InternalError (Orthanc's SetOfInstancesJob)."""
    ours = servers[0].client()
    knee = servers[3][SAMPLES[3]]["ID"]
    jobs = [ours.post("/modalities/slow/store",
                      {"Resources": slow_resources(servers), "Asynchronous": True,
                       "Permissive": permissive}).json()["ID"] for permissive in (True, False)]
    assert ours.delete("/instances/" + knee).status == 200
    try:
        tolerant, strict = [wait_job(ours, job_id) for job_id in jobs]
        assert tolerant["State"] == "Success"
        assert tolerant["Content"]["FailedInstancesCount"] == 1
        assert (strict["State"], strict["ErrorCode"], strict["ErrorDetails"]) == \
            ("Failure", -1, "")
        assert strict["Content"]["FailedInstancesCount"] == 1
    finally:
        ours.upload(read_sample(*SAMPLES[3]))
