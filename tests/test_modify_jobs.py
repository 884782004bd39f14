"""Modification jobs under control: paused, resumed, canceled, resubmitted,
and carried over a restart of the daemon (SaveJobs), ending with every
instance modified exactly once into the same new study and series.

The instances are small files made here (one study, one series), numerous
enough that a job is still running when it is paused, canceled or stopped.
"""
import io
import json
import time

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.support.daemon import Daemon

COUNT = 150


def small_files(count, patient="JOBS", study_uid=None):
    """``count`` instances of one series, a few hundred bytes each."""
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    for number in range(1, count + 1):
        ds = Dataset()
        ds.PatientID = patient
        ds.PatientName = "Jobs^Test"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.Modality = "OT"
        ds.InstanceNumber = str(number)
        ds.InstitutionName = "Somewhere"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out = io.BytesIO()
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
        yield out.getvalue()


def upload_study(client, count=COUNT):
    study = None
    for data in small_files(count):
        study = client.upload(data)["ParentStudy"]
    return study


def job_of(client, job_id):
    return client.get_json("/jobs/" + job_id)


def wait_state(client, job_id, states, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = job_of(client, job_id)
        if job["State"] in states:
            return job
        time.sleep(0.02)
    raise AssertionError("job %s never reached %s: %s" % (job_id, states, job_of(client, job_id)))


def submit(client, path, body):
    answer = client.post(path, json.dumps(dict(body, Asynchronous=True)))
    assert answer.status == 200, answer.body
    return answer.json()["ID"]


def anonymized_from(client, study):
    """{original instance: anonymized instance} of a new study."""
    out = {}
    for instance in client.get_json("/studies/%s/instances" % study):
        origin = client.get_json("/instances/%s/metadata?expand" % instance["ID"])["AnonymizedFrom"]
        assert origin not in out, "instance %s anonymized twice" % origin
        out[origin] = instance["ID"]
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("jobs"), StableAge=3600).start()
    yield daemon
    daemon.stop()


def test_pause_resume_a_long_modification(server):
    client = server.client()
    study = upload_study(client)
    job_id = submit(client, "/studies/%s/anonymize" % study, {})
    assert client.post("/jobs/%s/pause" % job_id).status == 200
    paused = wait_state(client, job_id, ("Paused",))
    progress = paused["Progress"]
    assert progress < 100
    time.sleep(0.5)
    # Nothing moves while paused.
    assert job_of(client, job_id)["State"] == "Paused"
    assert job_of(client, job_id)["Progress"] == progress
    assert client.post("/jobs/%s/resume" % job_id).status == 200
    done = wait_state(client, job_id, ("Success", "Failure"))
    assert done["State"] == "Success", done
    content = done["Content"]
    assert content["InstancesCount"] == COUNT and content["FailedInstancesCount"] == 0
    mapping = anonymized_from(client, content["ID"])
    assert len(mapping) == COUNT
    assert set(mapping) == {i["ID"] for i in client.get_json("/studies/%s/instances" % study)}
    series = client.get_json("/studies/%s" % content["ID"])["Series"]
    assert len(series) == 1


def test_cancel_a_long_modification(server):
    client = server.client()
    study = upload_study(client)
    instances_before = len(client.get_json("/instances"))
    job_id = submit(client, "/studies/%s/modify" % study,
                    {"Replace": {"InstitutionName": "Elsewhere"}, "KeepSource": False})
    # Let it start, then stop it half way.
    deadline = time.time() + 60
    while job_of(client, job_id)["Progress"] == 0 and time.time() < deadline:
        time.sleep(0.01)
    assert client.post("/jobs/%s/cancel" % job_id).status == 200
    canceled = wait_state(client, job_id, ("Failure", "Success"))
    assert canceled["State"] == "Failure", canceled
    assert canceled["ErrorCode"] == 37 and canceled["ErrorDescription"] == "This job was canceled"
    # What was modified stays; the sources were not deleted (that comes last).
    created = len(client.get_json("/instances")) - instances_before
    assert 0 < created < COUNT
    assert len(client.get_json("/studies/%s/instances" % study)) == COUNT
    # Resubmitted, it does the whole job again, into the same new study.
    assert client.post("/jobs/%s/resubmit" % job_id).status == 200
    done = wait_state(client, job_id, ("Success", "Failure"))
    assert done["State"] == "Success", done
    assert client.get("/studies/%s" % study).status == 404
    new_study = done["Content"]["ID"]
    assert len(client.get_json("/studies/%s/instances" % new_study)) == COUNT


def test_failed_synchronous_job_answers_its_error(server):
    client = server.client()
    study = upload_study(client, 3)
    answer = client.post("/studies/%s/modify" % study,
                         json.dumps({"Remove": ["SOPInstanceUID"], "Force": True}))
    assert answer.status == 400
    assert answer.json()["OrthancError"] == "Bad request" and "Details" not in answer.json()
    failed = [job for job in client.get_json("/jobs?expand")
              if job["State"] == "Failure" and job["ErrorCode"] == 8]
    assert failed and failed[-1]["Type"] == "ResourceModification"


def test_a_modification_survives_a_restart(tmp_path):
    """SaveJobs: a job stopped by the daemon's shutdown starts again with the
    daemon and finishes; the instances modified before and after the restart
    land in one study and one series, each exactly once."""
    daemon = Daemon(tmp_path, StableAge=3600).start()
    try:
        client = daemon.client()
        study = upload_study(client, 250)
        job_id = submit(client, "/studies/%s/anonymize" % study, {"UserData": {"restart": True}})
        deadline = time.time() + 60
        while job_of(client, job_id)["Progress"] < 10 and time.time() < deadline:
            time.sleep(0.01)
        daemon.stop()
        daemon.start()
        client = daemon.client()
        job = job_of(client, job_id)
        assert job["UserData"] == {"restart": True}
        done = wait_state(client, job_id, ("Success", "Failure"))
        assert done["State"] == "Success", done
        new_study = done["Content"]["ID"]
        mapping = anonymized_from(client, new_study)
        assert len(mapping) == 250
        assert len(client.get_json("/studies/%s" % new_study)["Series"]) == 1
        assert len(client.get_json("/patients")) == 2
    finally:
        daemon.stop()


def test_a_pending_split_survives_a_restart(tmp_path):
    daemon = Daemon(tmp_path, StableAge=3600, ConcurrentJobs=1).start()
    try:
        client = daemon.client()
        study = upload_study(client, 40)
        blocker = upload_study(client, 200)
        # A long job ahead keeps the split pending until the restart.
        first = submit(client, "/studies/%s/anonymize" % blocker, {})
        series = client.get_json("/studies/%s" % study)["Series"]
        job_id = submit(client, "/studies/%s/split" % study, {"Series": series})
        assert job_of(client, job_id)["State"] == "Pending"
        daemon.stop()
        daemon.start()
        client = daemon.client()
        done = wait_state(client, job_id, ("Success", "Failure"))
        assert done["State"] == "Success", done
        assert wait_state(client, first, ("Success", "Failure"))["State"] == "Success"
        target = done["Content"]["TargetStudy"]
        assert len(client.get_json("/studies/%s/instances" % target)) == 40
        assert client.get("/studies/%s" % study).status == 404
    finally:
        daemon.stop()
