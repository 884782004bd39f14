"""GET /{level}/{id} and the ID listings are kept per index snapshot
(orthancd.rest.snapshot_cache): they must never be served stale, whatever
changed in between (new instances, deletes, labels, protection, stability)."""
import io
import time

import pydicom
import pytest

from orthancd.rest.snapshot_cache import SnapshotCache
from tests.support.daemon import Daemon, read_sample

# --------------------------------------------------------------------------- unit


class Snapshots:
    def __init__(self):
        self.current = 1

    def __call__(self):
        return self.current


def test_cache_renders_once_per_snapshot():
    snapshots = Snapshots()
    cache = SnapshotCache(snapshots)
    renders = []

    def render(body):
        def run():
            renders.append(body)
            return body
        return run

    assert cache.answer("a", render(b"1")) == b"1"
    assert cache.answer("a", render(b"2")) == b"1"  # same snapshot: kept
    assert cache.answer("b", render(b"3")) == b"3"
    snapshots.current = 2  # a commit
    assert cache.answer("a", render(b"4")) == b"4"
    assert cache.answer("b", render(b"5")) == b"5"
    assert renders == [b"1", b"3", b"4", b"5"]


def test_cache_keeps_no_failure_and_no_large_body():
    cache = SnapshotCache(Snapshots(), max_body=4)

    def fail():
        raise KeyError("gone")

    with pytest.raises(KeyError):
        cache.answer("a", fail)
    assert cache.answer("a", lambda: b"ok") == b"ok"
    assert cache.answer("big", lambda: b"12345") == b"12345"
    assert cache.answer("big", lambda: b"67890") == b"67890"  # too large to keep


def test_cache_is_bounded():
    cache = SnapshotCache(Snapshots(), max_entries=2)
    for key in "abc":
        cache.answer(key, lambda key=key: key.encode())
    assert cache.answer("a", lambda: b"again") == b"again"  # the oldest went
    assert cache.answer("c", lambda: b"not again") == b"c"

# --------------------------------------------------------------------------- daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    # Long enough to see a study unstable first, short enough to wait for it.
    d = Daemon(tmp_path_factory.mktemp("orthancd"), StableAge=3).start()
    yield d
    d.stop()


def instance(sop, series=None, patient=None):
    """DummyCT.dcm as another instance (of another series or patient)."""
    dataset = pydicom.dcmread(io.BytesIO(read_sample("DummyCT.dcm")))
    dataset.SOPInstanceUID = sop
    dataset.file_meta.MediaStorageSOPInstanceUID = sop
    if series:
        dataset.SeriesInstanceUID = series
    if patient:
        dataset.PatientID = patient
        dataset.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.777.%d" % sum(map(ord, patient))
    out = io.BytesIO()
    dataset.save_as(out, write_like_original=True)
    return out.getvalue()


def browse(rest, path):
    """The answer twice (the second from the cache when nothing changed)."""
    first = rest.get(path)
    second = rest.get(path)
    assert (first.status, first.body) == (second.status, second.body)
    return first


def test_resources_are_never_stale(daemon):
    rest = daemon.client()
    first = rest.upload(instance("1.2.826.0.1.3680043.8.498.1"))
    study, patient = first["ParentStudy"], first["ParentPatient"]
    answer = browse(rest, "/studies/" + study).json()
    assert answer["Series"] == [first["ParentSeries"]] and answer["IsStable"] is False
    assert answer["Labels"] == []

    # A new series in the study.
    second = rest.upload(instance("1.2.826.0.1.3680043.8.498.2", series="1.2.826.0.1.3680043.8.498.20"))
    assert sorted(browse(rest, "/studies/" + study).json()["Series"]) == \
        sorted([first["ParentSeries"], second["ParentSeries"]])

    # Labels, protection.
    assert rest.put("/studies/%s/labels/reviewed" % study).status == 200
    assert browse(rest, "/studies/" + study).json()["Labels"] == ["reviewed"]
    assert rest.delete("/studies/%s/labels/reviewed" % study).status == 200
    assert browse(rest, "/studies/" + study).json()["Labels"] == []
    assert browse(rest, "/patients/" + patient).json()["IsProtected"] is False
    assert rest.put("/patients/%s/protected" % patient, "1").status == 200
    assert browse(rest, "/patients/" + patient).json()["IsProtected"] is True

    # Stability is kept in memory, not in the index.
    deadline = time.time() + 15
    while browse(rest, "/studies/" + study).json()["IsStable"] is False \
            and time.time() < deadline:
        time.sleep(0.2)
    assert browse(rest, "/studies/" + study).json()["IsStable"] is True
    assert browse(rest, "/series/" + second["ParentSeries"]).json()["IsStable"] is True

    # A delete: the series goes, the study shows it, the instance is unknown.
    assert rest.delete("/instances/" + second["ID"]).status == 200
    assert browse(rest, "/studies/" + study).json()["Series"] == [first["ParentSeries"]]
    gone = browse(rest, "/series/" + second["ParentSeries"])
    assert (gone.status, gone.body) == (404, b"")
    gone = browse(rest, "/instances/" + second["ID"])
    assert (gone.status, gone.body) == (404, b"")

    # The last instance: nothing left.
    assert rest.delete("/instances/" + first["ID"]).status == 200
    gone = browse(rest, "/studies/" + study)
    assert (gone.status, gone.body) == (404, b"")


def test_listings_are_never_stale(daemon):
    rest = daemon.client()
    before = browse(rest, "/patients").json()
    one = rest.upload(instance("1.2.826.0.1.3680043.8.498.31", patient="LISTED1"))
    two = rest.upload(instance("1.2.826.0.1.3680043.8.498.32", patient="LISTED2"))
    patients = browse(rest, "/patients").json()
    assert sorted(patients) == sorted(before + [one["ParentPatient"], two["ParentPatient"]])
    everything = browse(rest, "/patients?since=0&limit=100").json()
    assert everything == patients
    assert browse(rest, "/patients?since=0&limit=1").json() == patients[:1]
    assert rest.delete("/patients/" + one["ParentPatient"]).status == 200
    assert one["ParentPatient"] not in browse(rest, "/patients").json()
    assert one["ParentPatient"] not in browse(rest, "/patients?since=0&limit=100").json()
    assert two["ParentStudy"] in browse(rest, "/studies").json()
    assert rest.delete("/instances/" + two["ID"]).status == 200
    assert two["ParentPatient"] not in browse(rest, "/patients").json()
    assert two["ParentStudy"] not in browse(rest, "/studies").json()
    assert two["ID"] not in browse(rest, "/instances").json()
