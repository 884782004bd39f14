"""The metric names of Orthanc 1.13.0 in /tools/metrics-prometheus, beyond
the counts (tests/test_metrics.py): the storage area's bytes and durations,
the duration of stores and of C-FIND requests, the logged warnings and
errors, the available threads of the storage and transcoder pools.

orthancd and a real Orthanc get the same uploads, downloads, deletions and
C-FIND; the names orthancd publishes must be Orthanc's, the bytes written
the same, and what it leaves out exactly the metrics of mechanisms it does
not have (Orthanc's caches, memory pools and its other thread pools).
"""
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.dataset import Dataset
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from tests.support.daemon import Daemon, read_sample
from tests.support.dicom_peers import find_raw
from tests.support import oracle
from tests.support.oracle import RealOrthanc

SAMPLES = ("DummyCT.dcm", "ColorTestMalaterre.dcm")
# Orthanc's caches and memory pools, and the thread pools of mechanisms
# orthancd does otherwise (one reactor for HTTP and DICOM, one file pool).
NOT_PUBLISHED = {
    "orthanc_available_dicom_threads", "orthanc_available_http_threads_count",
    "orthanc_dicom_parser_available_threads", "orthanc_sequential_reader_available_threads",
} | {"orthanc_%s_%s" % (component, metric)
     for component in ("dicom_parser", "storage", "transcoder")
     for metric in ("cache_count", "cache_hit_count", "cache_miss_count", "cache_size_mb")} \
  | {"orthanc_%s_memory_%s" % (component, metric)
     for component in ("dicom_parser", "storage", "transcoder")
     for metric in ("capacity_mb", "count", "max_usage_mb", "usage_mb")}
MEASURED = ("orthanc_storage_written_bytes", "orthanc_storage_read_bytes",
            "orthanc_storage_create_duration_ms", "orthanc_storage_read_duration_ms",
            "orthanc_storage_remove_duration_ms", "orthanc_store_dicom_duration_ms",
            "orthanc_find_scp_duration_ms", "orthanc_storage_available_threads",
            "orthanc_transcoder_available_threads")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    pair = (RealOrthanc(tmp_path_factory.mktemp("oracle"), DicomAlwaysAllowFind=True),
            Daemon(tmp_path_factory.mktemp("orthancd"), DicomAlwaysAllowFind=True))
    with oracle.running(pair):
        yield pair


def values(server):
    text = server.client().get("/tools/metrics-prometheus").body.decode()
    return {family.name: family.samples[0].value
            for family in text_string_to_metric_families(text)}


def test_storage_store_and_find_metrics_like_orthanc(servers):
    for server in servers:
        client = server.client()
        ids = [client.upload(read_sample(name))["ID"] for name in SAMPLES]
        assert client.get("/instances/%s/file" % ids[0]).status == 200
        assert client.delete("/instances/" + ids[1]).status == 200
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        status, _ = find_raw(server.dicom_port, "ANY", query,
                             StudyRootQueryRetrieveInformationModelFind)
        assert status == "0x0000"
    reference, mine = (values(server) for server in servers)
    orthanc_names = {name for name in mine if name.startswith("orthanc_")}
    assert orthanc_names <= set(reference), orthanc_names - set(reference)
    assert set(reference) - orthanc_names - {"orthanc_logged_warnings_count",
                                             "orthanc_logged_errors_count"} == NOT_PUBLISHED
    for name in MEASURED:
        assert name in mine, name
    assert mine["orthanc_storage_written_bytes"] == reference["orthanc_storage_written_bytes"]
    assert mine["orthanc_storage_written_bytes"] == sum(len(read_sample(n)) for n in SAMPLES)
    assert mine["orthanc_storage_read_bytes"] >= len(read_sample(SAMPLES[0]))
    assert mine["orthanc_storage_available_threads"] >= 1


def test_logged_warnings_are_counted(servers):
    """A refused C-FIND (no level) is logged as a warning."""
    ours = servers[1]
    before = values(ours).get("orthanc_logged_warnings_count", 0)
    query = Dataset()
    query.PatientID = "*"
    find_raw(ours.dicom_port, "ANY", query, StudyRootQueryRetrieveInformationModelFind)
    assert values(ours)["orthanc_logged_warnings_count"] > before
