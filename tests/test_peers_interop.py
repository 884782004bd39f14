"""Peer transfers between orthancd and the real Orthanc 1.13.0, both ways.

The real Orthanc knows orthancd as a peer (with credentials: orthancd has
authentication on) and orthancd knows the real Orthanc.  Each sends the
same resources to the other (instances, series, a study, lists of them),
plain and gzip-compressed, synchronously and as a job: the receiving side
must hold byte-identical files under the same IDs, and the two senders'
answers and jobs must agree field by field (once the peer's URL, which
names the other side, is masked).
"""
import glob
import time

import pytest

from tests.support import oracle
from tests.support.daemon import Daemon, read_sample, sample

USER = ("peer-user", "peer-password")
# Brainix: two series of one study (8 files of each); DummyCT: another
# patient.
BRAINIX = sorted(path for path in glob.glob(sample("Brainix", "*", "*.dcm"))
                 if int(path[-8:-4]) <= 8)
OTHER = sample("DummyCT.dcm")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    ours = Daemon(tmp_path_factory.mktemp("orthancd"), AuthenticationEnabled=True,
                  RegisteredUsers={USER[0]: USER[1]})
    # (The oracle's fixture waits for an open /system: no authentication
    # there, the credentials orthancd sends are ignored.)
    real = oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"))
    ours.options["OrthancPeers"] = {"remote": [real.url, USER[0], USER[1]]}
    real.options["OrthancPeers"] = {"remote": [ours.url, USER[0], USER[1]]}
    with oracle.running((ours, real)):
        clients = {"orthancd": ours.client(auth=USER),
                   "orthanc": real.client()}
        ids = {}
        for path in BRAINIX + [OTHER]:
            with open(path, "rb") as f:
                data = f.read()
            for client in clients.values():
                ids[path] = client.upload(data)
        yield clients, ids


def _forget(client, instances):
    for instance in instances:
        assert client.delete("/instances/" + instance).status == 200


def _md5s(client, instances):
    return {instance: client.get("/instances/%s/attachments/dicom/md5" % instance).text
            for instance in instances}


def _wait_job(client, job_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get_json("/jobs/" + job_id)
        if job["State"] in ("Success", "Failure"):
            return job
        time.sleep(0.1)
    raise AssertionError("job %s did not finish" % job_id)


_VOLATILE_JOB_FIELDS = ("ID", "CreationTime", "CompletionTime", "Timestamp",
                        "EffectiveRuntime", "EstimatedTimeOfArrival")


def _comparable_job(job):
    job = {key: value for key, value in job.items() if key not in _VOLATILE_JOB_FIELDS}
    job["Content"] = _without_url(job["Content"])
    return job


def _without_url(content):
    """The peer's URL names the other side."""
    return dict(content, Peer=["<url>"] + content["Peer"][1:])


def _send(sender, receiver, body, expected_instances):
    """The receiver forgets the instances, the sender sends them back: its
    answer (or its finished job), once the receiver holds the same files."""
    everything = sorted(receiver.get_json("/instances"))
    _forget(receiver, expected_instances)
    answer = sender.post("/peers/remote/store", body)
    assert answer.status == 200, answer.body
    outcome = answer.json()
    if isinstance(body, dict) and body.get("Asynchronous"):
        assert set(outcome) == {"ID", "Path"}
        outcome = _comparable_job(_wait_job(sender, outcome["ID"]))
    else:
        outcome = _without_url(outcome)
    assert sorted(receiver.get_json("/instances")) == everything
    assert _md5s(receiver, expected_instances) == _md5s(sender, expected_instances)
    return outcome


def _bodies(ids):
    study = ids[BRAINIX[0]]["ParentStudy"]
    series = ids[BRAINIX[0]]["ParentSeries"]
    series_instances = [ids[path]["ID"] for path in BRAINIX
                        if ids[path]["ParentSeries"] == series]
    brainix = [ids[path]["ID"] for path in BRAINIX]
    other = ids[OTHER]["ID"]
    return [
        (ids[OTHER]["ID"], [other]),
        ([series, other], series_instances + [other]),
        ({"Resources": [study], "Compress": True}, brainix),
        ({"Resources": [series, ids[OTHER]["ParentPatient"]], "Compress": True,
          "Asynchronous": True}, series_instances + [other]),
        ({"Resources": [study], "Asynchronous": True, "Priority": 3}, brainix),
        ({"Resources": [series], "Synchronous": True, "Compress": False}, series_instances),
    ]


def test_orthancd_and_orthanc_send_to_each_other_alike(servers):
    clients, ids = servers
    ours, real = clients["orthancd"], clients["orthanc"]
    for body, instances in _bodies(ids):
        from_orthanc = _send(real, ours, body, instances)
        from_orthancd = _send(ours, real, body, instances)
        assert from_orthancd == from_orthanc, body


def test_store_straight_both_ways(servers):
    clients, ids = servers
    ours, real = clients["orthancd"], clients["orthanc"]
    data = read_sample("Knee", "T1", "IM-0001-0001.dcm")
    answers = []
    for sender, receiver in ((real, ours), (ours, real)):
        answer = sender.post("/peers/remote/store-straight", data)
        assert answer.status == 200, answer.body
        stored = answer.json()
        assert receiver.get("/instances/%s/file" % stored["ID"]).body == data
        answers.append(stored)
    assert answers[0] == answers[1]
