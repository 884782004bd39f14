"""/tools/metrics and /tools/metrics-prometheus against Orthanc 1.13.0: the
same metric names and types, the same counts after the same uploads, the
same switch; orthancd's own metrics, typed and described.  The Prometheus
text is read with prometheus_client's parser."""
import time
import types

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import task

from orthancd.changes import JOB_FAILURE, JOB_SUCCESS, ChangeStream
from orthancd.index.base import Change
from orthancd.metrics import MAX_OVER_10_SECONDS, MetricsRegistry, ServerMetrics, format_float
from tests.support.daemon import Daemon, read_sample
from tests.support.oracle import RealOrthanc
from tests.support.replay import differences

SAMPLES = ("2020-08-12-Christopher.dcm", "DummyCT.dcm", "ColorTestMalaterre.dcm")
COUNTS = ("orthanc_count_patients", "orthanc_count_studies", "orthanc_count_series",
          "orthanc_count_instances", "orthanc_disk_size_mb", "orthanc_uncompressed_size_mb",
          "orthanc_jobs_pending", "orthanc_jobs_running", "orthanc_last_change")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    oracle = RealOrthanc(tmp_path_factory.mktemp("oracle")).start()
    daemon = Daemon(tmp_path_factory.mktemp("orthancd")).start()
    try:
        for name in SAMPLES:
            data = read_sample(name)
            oracle.client().upload(data)
            daemon.client().upload(data)
        clients = oracle.client(), daemon.client()
        # Both log their stable resources after StableAge (1 s): wait for
        # the same last change.
        deadline = time.time() + 20
        while time.time() < deadline:
            last = [c.get_json("/changes?last")["Last"] for c in clients]
            if last[0] == last[1] and last[0] >= 3 * len(SAMPLES) + 3:
                break
            time.sleep(0.2)
        yield clients
    finally:
        daemon.stop()
        oracle.stop()


def families(client):
    answer = client.get("/tools/metrics-prometheus")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/plain; version=0.0.4"
    return {f.name: f for f in text_string_to_metric_families(answer.body.decode())}


def test_names_types_and_counts_agree_with_orthanc(servers):
    oracle, ours = (families(client) for client in servers)
    orthanc_names = [name for name in ours if name.startswith("orthanc_")]
    assert set(COUNTS) <= set(orthanc_names)
    for name in orthanc_names:
        assert name in oracle, name
        # Orthanc writes neither TYPE nor HELP lines: untyped, undescribed.
        assert (ours[name].type, ours[name].documentation) == \
            (oracle[name].type, oracle[name].documentation) == ("unknown", "")
        assert ours[name].samples[0].timestamp is not None
    for name in COUNTS:
        assert ours[name].samples[0].value == oracle[name].samples[0].value, name
    assert oracle["orthanc_count_instances"].samples[0].value == len(SAMPLES)


def test_orthancd_metrics_are_typed_and_described(servers):
    ours = families(servers[1])
    own = {name: family for name, family in ours.items() if name.startswith("orthancd_")}
    assert {name: family.type for name, family in own.items()} == {
        "orthancd_reactor_lag_seconds": "gauge",
        "orthancd_index_writer_queue_depth": "gauge",
        "orthancd_index_group_commit_size": "gauge",
        "orthancd_index_group_commits": "counter",
        "orthancd_index_committed_operations": "counter",
        "orthancd_jobs": "gauge",
    }
    assert all(family.documentation for family in own.values())
    assert 0 <= own["orthancd_reactor_lag_seconds"].samples[0].value < 5
    assert own["orthancd_index_writer_queue_depth"].samples[0].value == 0
    commits = {s.name: s.value for s in own["orthancd_index_group_commits"].samples}
    assert commits["orthancd_index_group_commits_total"] >= 1
    operations = {s.name: s.value for s in own["orthancd_index_committed_operations"].samples}
    assert operations["orthancd_index_committed_operations_total"] >= len(SAMPLES)
    states = {s.labels["state"]: s.value for s in own["orthancd_jobs"].samples}
    assert states == {"Pending": 0, "Running": 0, "Success": 0, "Failure": 0, "Paused": 0,
                      "Retry": 0}


def test_switching_metrics_off_and_on(servers):
    oracle, ours = servers
    assert differences(oracle, ours, [
        ("GET", "/tools/metrics"),
        ("PUT", "/tools/metrics", "maybe"),
        ("PUT", "/tools/metrics", "0"),
        ("GET", "/tools/metrics"),
        ("GET", "/tools/metrics-prometheus"),
        ("PUT", "/tools/metrics", " true "),
        ("GET", "/tools/metrics"),
        ("POST", "/tools/metrics"),
        ("DELETE", "/tools/metrics-prometheus"),
    ]) == []
    assert "orthanc_count_instances" in families(ours)


def test_metrics_enabled_option_is_honoured(tmp_path):
    daemon = Daemon(tmp_path, MetricsEnabled=False).start()
    try:
        client = daemon.client()
        assert client.get("/tools/metrics").body == b"0"
        assert client.get("/tools/metrics-prometheus").body == b""
        assert client.get("/system").status == 200
    finally:
        daemon.stop()


# -- units --------------------------------------------------------------------

def test_floats_are_written_as_orthanc_writes_them():
    assert format_float(526502 / 1048576) == "0.502111435"
    assert [format_float(v) for v in (0, 256, 1e-05, 0.5)] == ["0", "256", "9.99999975e-06", "0.5"]


def test_maximum_over_ten_seconds():
    clock = task.Clock()
    registry = MetricsRegistry(clock=clock.seconds)
    registry.set_integer("d", 50, MAX_OVER_10_SECONDS)
    clock.advance(2)
    registry.set_integer("d", 20, MAX_OVER_10_SECONDS)
    assert registry.value("d") == 50
    registry.set_integer("d", 70, MAX_OVER_10_SECONDS)
    assert registry.value("d") == 70
    clock.advance(1)
    registry.set_integer("d", 30, MAX_OVER_10_SECONDS)
    clock.advance(11)
    # As Orthanc: the time of the old maximum, the value refreshed.
    assert registry.prometheus_lines() == ["d 30 2000\n"]
    assert registry.value("d") == 30
    registry.enabled = False
    registry.set_integer("d", 99)
    assert registry.value("d") == 30 and registry.prometheus_lines() == []


def test_job_completions_come_from_the_change_stream():
    clock = task.Clock()
    server = types.SimpleNamespace(changes=ChangeStream())
    metrics = ServerMetrics(server, clock)
    metrics.startService()
    try:
        server.changes.publish([Change(None, JOB_SUCCESS, None, "a", ""),
                                Change(None, JOB_FAILURE, None, "b", ""),
                                Change(None, JOB_SUCCESS, None, "c", "")])
        values = {name: metrics.registry.value(name) for name in (
            "orthanc_jobs_total_completed", "orthanc_jobs_total_success",
            "orthanc_jobs_total_failed")}
        assert values == {"orthanc_jobs_total_completed": 3, "orthanc_jobs_total_success": 2,
                          "orthanc_jobs_total_failed": 1}
    finally:
        metrics.stopService()
    server.changes.publish([Change(None, JOB_SUCCESS, None, "d", "")])
    assert metrics.registry.value("orthanc_jobs_total_completed") == 3
