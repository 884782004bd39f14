"""The helper processes that parse incoming headers (orthancd.ingest_workers):
what they answer is what the daemon's own parse gives, uploads stored
through them give the same resources, a killed worker loses no request,
and stopping the daemon stops them."""
import concurrent.futures
import glob
import os
import signal
import time

import pytest

from orthancd.dicom.reading import DicomFormatError, read_dataset
from orthancd.dicom.summary import summarize
from orthancd.ingest_workers import _parse, default_worker_count
from tests.support.daemon import SAMPLES, Daemon, temporary_leftovers

WORKER_MODULE = b"orthancd.ingest_workers"


def all_samples():
    return sorted(glob.glob(os.path.join(SAMPLES, "**", "*.dcm"), recursive=True))


def in_process(path):
    """What the ingest path computes without workers, or the refusal."""
    try:
        dataset = read_dataset(path, stop_before_pixels=True)
        summary = summarize(dataset, "Latin1")
    except DicomFormatError as e:
        return ("refused", getattr(e, "orthanc_error", "BadFileFormat"), e.details)
    return ("parsed", summary, (getattr(dataset, "pixel_data_offset", None),
             getattr(dataset, "pixel_data_vr", None)))


def as_comparable(answer):
    if answer[0] == "refused":
        return answer
    _, summary, facts, _ = answer
    return ("parsed", summary, facts)


def test_worker_parse_is_the_daemons_parse(tmp_path):
    paths = all_samples()
    assert len(paths) > 200
    for path in paths:
        assert as_comparable(_parse(("path", path, "Latin1", None))) \
            == in_process(path), path


def test_worker_spools_bytes_with_their_digests(tmp_path):
    from orthancd.storage.digests import digests_of
    path = os.path.join(SAMPLES, "Brainix", "Epi", "IM-0001-0001.dcm")
    with open(path, "rb") as f:
        data = f.read()
    kind, _, _, (spooled, digests) = _parse(("bytes", data, "Latin1",
                                             str(tmp_path / "a.upload")))
    assert kind == "parsed"
    assert os.path.dirname(spooled) == str(tmp_path)
    with open(spooled, "rb") as f:
        assert f.read() == data
    assert digests == digests_of(data)
    refused = _parse(("bytes", b"not DICOM at all" * 10, "Latin1", str(tmp_path / "b.upload")))
    assert refused[0] == "refused" and refused[1] == "BadFileFormat"
    assert os.listdir(tmp_path) == [os.path.basename(spooled)]


# -- in the daemon

def children(pid):
    found = []
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                found.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return found


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def workers_of(daemon):
    return [p for p in children(daemon.process.pid) if WORKER_MODULE in cmdline(p)]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("workers"), IngestWorkers=2).start()
    yield d
    d.stop()


def upload_all(client, paths, concurrency=4):
    def one(path):
        with open(path, "rb") as f:
            return path, client.post("/instances", f.read())
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, paths))


def wait_for_workers(daemon, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        workers = workers_of(daemon)
        if workers:
            return workers
        time.sleep(0.1)
    raise AssertionError("no ingest worker started")


def check_answers(answers):
    for path, answer in answers:
        expected = in_process(path)
        if expected[0] == "refused":
            assert answer.status in (400, 404), path
            continue
        assert answer.status == 200, (path, answer.status, answer.body[:300])
        body = answer.json()
        patient, study, series, instance = expected[1].ids
        assert (body["ParentPatient"], body["ParentStudy"], body["ParentSeries"],
                body["ID"]) == (patient, study, series, instance), path


def test_uploads_through_workers_give_the_same_resources(daemon):
    client = daemon.client()
    paths = all_samples()
    check_answers(upload_all(client, paths[:5]))
    wait_for_workers(daemon)
    time.sleep(2)  # ready: they have imported what they parse with
    check_answers(upload_all(client, paths))
    # The stored files are the uploaded ones.
    with open(paths[-1], "rb") as f:
        data = f.read()
    instance = client.upload(data)["ID"]
    assert client.get("/instances/%s/file" % instance).body == data
    assert temporary_leftovers(os.path.join(daemon.workdir, "storage")) == []


def test_a_killed_worker_loses_no_request(daemon):
    client = daemon.client()
    paths = all_samples()
    upload_all(client, paths[:20])
    wait_for_workers(daemon)
    time.sleep(2)
    with concurrent.futures.ThreadPoolExecutor(1) as killer:
        def kill_workers():
            for _ in range(3):
                time.sleep(0.3)
                for pid in workers_of(daemon):
                    os.kill(pid, signal.SIGKILL)
        killing = killer.submit(kill_workers)
        answers = upload_all(client, paths * 2)
        killing.result()
    check_answers(answers)
    assert daemon.process.poll() is None
    assert temporary_leftovers(os.path.join(daemon.workdir, "storage")) == []


def test_stopping_the_daemon_stops_its_workers(tmp_path):
    d = Daemon(tmp_path, IngestWorkers=2).start()
    try:
        # Workers start when uploads come in together.
        check_answers(upload_all(d.client(), all_samples()[:40]))
        workers = wait_for_workers(d)
    finally:
        d.stop()
    # twistd reports the signal it stopped on, after a clean shut-down.
    assert d.process.returncode == -signal.SIGTERM
    assert "Server Shut Down." in d.log()
    for pid in workers:
        assert not os.path.exists("/proc/%d" % pid) or b"" == cmdline(pid)


def test_default_worker_count():
    """None on 2 cores, where they slow ingest down (bench/rest_bench.py);
    the cores beyond two elsewhere, at most 4."""
    assert [default_worker_count(cores) for cores in (1, 2, 3, 4, 8, 64)] == [0, 0, 1, 2, 4, 4]


def test_every_body_kept_in_memory_can_go_to_a_worker():
    # Otherwise the bodies between the two sizes would never reach a
    # worker: too large to send as bytes, and never written to a file.
    from orthancd.ingest_workers import MAX_BYTES_REQUEST
    from orthancd.rest.app import OrthancSite
    assert MAX_BYTES_REQUEST >= OrthancSite.IN_MEMORY_BODY_LIMIT
