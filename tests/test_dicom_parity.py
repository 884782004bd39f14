"""Parity of orthancd.dicom with the real Orthanc.

Recorded answers of Orthanc 1.10.1 live in tests/fixtures/dicom_json/ (one
file per sample), kept where 1.13.0 answers the same; those that 1.13.0
changed (DCMTK 3.6.9's dictionary, Shift-JIS lists) were dropped, as
tests/test_tags_parity.py compares every sample with the live 1.13.0.  A
few samples are also compared live here with a real Orthanc the test starts.
"""
import glob
import json
import os
import urllib.error
import urllib.request

import pytest

from orthancd.dicom.json_tags import dataset_to_json, header_to_json
from orthancd.dicom.modules import module_to_json
from orthancd.dicom.reading import DicomFormatError, read_dataset
from orthancd.dicom.summary import MissingTagError, summarize
from orthancd.ids import ResourceLevel

SAMPLES = "/work/shared/dicom-samples"
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "dicom_json")

FIXTURE_FILES = sorted(glob.glob(os.path.join(FIXTURES, "*.json")))


def _sample_path(fixture):
    return os.path.join(SAMPLES, os.path.basename(fixture)[:-5].replace("__", "/"))


def test_fixtures_are_present():
    assert len(FIXTURE_FILES) >= 15


@pytest.mark.parametrize("fixture", FIXTURE_FILES, ids=os.path.basename)
def test_matches_recorded_orthanc(fixture):
    expected = json.load(open(fixture, encoding="utf-8"))
    path = _sample_path(fixture)
    if expected["upload_status"] != 200:
        with pytest.raises(DicomFormatError) as refused:
            summarize(read_dataset(path, stop_before_pixels=True))
        if expected["upload_status"] == 404:
            assert isinstance(refused.value, MissingTagError)
        else:
            assert not isinstance(refused.value, MissingTagError)
            assert refused.value.details == expected["error"]["Details"]
        return
    ds = read_dataset(path, stop_before_pixels=True)
    assert dataset_to_json(ds, "full") == expected["tags"]
    assert dataset_to_json(ds, "simplify") == expected["simplify"]
    assert dataset_to_json(ds, "short") == expected["short"]
    assert list(dataset_to_json(ds, "full")) == list(expected["tags"])
    assert module_to_json(ds, ResourceLevel.INSTANCE) == expected["module_instance"]
    if not path.endswith("1.2.840.10008.1.2.1.99.dcm"):
        assert header_to_json(ds) == expected["header"]
    summary = summarize(ds)
    assert list(summary.ids) == expected["ids"]
    assert summary.main_tags[ResourceLevel.INSTANCE] == expected["instance_main_tags"]
    assert summary.index_in_series_number == expected["index_in_series"]
    if "series_main_tags" in expected:
        # Recorded with 1.10.1, whose series had fewer main tags than 1.13.0's
        # (tests/test_extended_parity.py compares those with 1.13.0, live).
        series = summary.main_tags[ResourceLevel.SERIES]
        assert {k: series.get(k) for k in expected["series_main_tags"]} == \
            expected["series_main_tags"]
        assert summary.expected_instances == expected["expected_instances"]


LIVE_SAMPLES = ["PrivateTags.dcm", "Encodings/Lena-latin1.dcm",
                "TransferSyntaxes/1.2.840.10008.1.2.4.70.dcm"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The real Orthanc, started for this module on free ports."""
    from tests.support.oracle import RealOrthanc
    peer = RealOrthanc(tmp_path_factory.mktemp("oracle")).start()
    yield peer.url
    peer.stop()


@pytest.mark.parametrize("sample", LIVE_SAMPLES)
def test_matches_live_orthanc(reference, sample):
    """The recorded fixtures above, checked once more against the live oracle."""
    path = os.path.join(SAMPLES, sample)
    ds = read_dataset(path, stop_before_pixels=True)
    with open(path, "rb") as f:
        request = urllib.request.Request(reference + "/instances", data=f.read(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        uploaded = json.load(answer)
    assert uploaded["ID"] == summarize(ds).ids[3]
    for query, mode in (("", "full"), ("?simplify", "simplify"), ("?short", "short")):
        url = "%s/instances/%s/tags%s" % (reference, uploaded["ID"], query)
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert dataset_to_json(ds, mode) == json.load(answer)
