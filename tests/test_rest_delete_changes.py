"""Deletion with cascade, the changes log and stable resources, on a fresh daemon."""
import glob
import os
import time

from tests.support.daemon import read_sample, sample


def upload_folder(rest, folder):
    answers = []
    for path in sorted(glob.glob(sample(folder, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                answer = rest.post("/instances", f.read())
            if answer.status == 200:
                answers.append(answer.json())
    return answers


def stored_files(daemon):
    root = daemon.options["StorageDirectory"]
    return [p for p in glob.glob(os.path.join(root, "??", "??", "*"))]


def eventually_stored(daemon, count, timeout=10):
    """Files of deleted resources are removed just after the answer: poll."""
    deadline = time.time() + timeout
    while len(stored_files(daemon)) != count and time.time() < deadline:
        time.sleep(0.05)
    return len(stored_files(daemon))


def test_changes_log_order_and_stability(fresh_daemon):
    rest = fresh_daemon.client()
    first = rest.upload(read_sample("DummyCT.dcm"))
    changes = rest.get_json("/changes")
    assert [c["ChangeType"] for c in changes["Changes"]] == \
        ["NewInstance", "NewSeries", "NewStudy", "NewPatient"]
    assert [c["Seq"] for c in changes["Changes"]] == [1, 2, 3, 4]
    assert changes["Done"] is True and changes["Last"] == 4
    assert changes["Changes"][0]["Path"] == "/instances/" + first["ID"]
    assert changes["Changes"][3]["ResourceType"] == "Patient"
    assert rest.get_json("/patients/" + first["ParentPatient"])["IsStable"] is False
    deadline = time.time() + 10
    while time.time() < deadline:
        types = [c["ChangeType"] for c in rest.get_json("/changes?since=4")["Changes"]]
        if len(types) >= 3:
            break
        time.sleep(0.2)
    assert types == ["StableSeries", "StableStudy", "StablePatient"]
    assert rest.get_json("/patients/" + first["ParentPatient"])["IsStable"] is True
    page = rest.get_json("/changes?since=0&limit=2")
    assert len(page["Changes"]) == 2 and page["Done"] is False and page["Last"] == 2
    last = rest.get_json("/changes?last")
    assert last["Last"] == 7 and len(last["Changes"]) == 1
    assert rest.delete("/changes").status == 200
    assert rest.get_json("/changes")["Changes"] == []


def test_delete_cascade_and_remaining_ancestor(fresh_daemon):
    rest = fresh_daemon.client()
    answers = upload_folder(rest, "Knee")
    assert len(answers) > 2
    series_ids = {a["ParentSeries"] for a in answers}
    study = answers[0]["ParentStudy"]
    patient = answers[0]["ParentPatient"]
    files_before = len(stored_files(fresh_daemon))
    assert files_before == len(answers)
    # Deleting one instance of a series leaves the series.
    one = answers[0]
    remaining = rest.delete("/instances/" + one["ID"]).json()
    assert remaining == {"RemainingAncestor": {
        "ID": one["ParentSeries"], "Path": "/series/" + one["ParentSeries"], "Type": "Series"}}
    assert rest.get("/instances/" + one["ID"]).status == 404
    assert eventually_stored(fresh_daemon, files_before - 1) == files_before - 1
    # Deleting every instance of a series removes the series, then the study...
    for series in series_ids:
        for instance in rest.get_json("/series/%s/instances" % series):
            result = rest.delete("/instances/" + instance["ID"]).json()
    assert result == {"RemainingAncestor": None}
    for path in ("/studies/" + study, "/patients/" + patient):
        assert rest.get(path).status == 404
    assert rest.get_json("/patients") == []
    assert eventually_stored(fresh_daemon, 0) == 0
    stats = rest.get_json("/statistics")
    assert stats["CountInstances"] == 0 and stats["TotalDiskSize"] == "0"


def test_delete_patient_and_bulk_delete(fresh_daemon):
    rest = fresh_daemon.client()
    ct = rest.upload(read_sample("DummyCT.dcm"))
    other = upload_folder(rest, "Brainix")
    assert rest.delete("/patients/" + ct["ParentPatient"]).json() == {"RemainingAncestor": None}
    assert rest.get("/instances/" + ct["ID"]).status == 404
    studies = sorted({a["ParentStudy"] for a in other})
    answer = rest.post("/tools/bulk-delete", {"Resources": studies})
    assert answer.status == 200
    assert rest.get_json("/studies") == []
    assert rest.delete("/patients/" + ct["ParentPatient"]).status == 404
    assert rest.post("/tools/bulk-delete", "{bad").status == 400


def test_overwrite_instances(tmp_path):
    from tests.support.daemon import Daemon
    d = Daemon(tmp_path, OverwriteInstances=True).start()
    try:
        rest = d.client()
        first = rest.upload(read_sample("DummyCT.dcm"))
        again = rest.upload(read_sample("DummyCT.dcm"))
        assert first["Status"] == "Success" and again["Status"] == "Success"
        overwritten = rest.upload(read_sample("DummyCT-overwrite.dcm"))
        assert overwritten["ID"] == first["ID"]
        assert rest.get("/instances/%s/file" % first["ID"]).body == read_sample("DummyCT-overwrite.dcm")
        assert eventually_stored(d, 1) == 1
        assert rest.get_json("/statistics")["CountInstances"] == 1
    finally:
        d.stop()


def test_protected_patient_and_recycling(tmp_path):
    from tests.support.daemon import Daemon
    d = Daemon(tmp_path, MaximumPatientCount=2).start()
    try:
        rest = d.client()
        brainix = upload_folder(rest, "Brainix")
        protected = brainix[0]["ParentPatient"]
        assert rest.put("/patients/%s/protected" % protected, "1").status == 200
        assert rest.get("/patients/%s/protected" % protected).text == "1"
        knee = upload_folder(rest, "Knee")
        ct = rest.upload(read_sample("DummyCT.dcm"))
        patients = rest.get_json("/patients")
        # Knee was the only unprotected patient: recycled to make room for DummyCT.
        assert protected in patients and ct["ParentPatient"] in patients
        assert knee[0]["ParentPatient"] not in patients
        assert len(patients) == 2
    finally:
        d.stop()
