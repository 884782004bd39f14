"""GET /series/{id}/ordered-slices compared with the live Orthanc 1.13.0:
a volume ordered by position, localizers ordered by their index in the
series, a multi-frame instance, a series that cannot be ordered, an
unknown series."""
import json
import os

import pytest

from tests.support.daemon import Daemon, read_sample, sample
from tests.support.oracle import RealOrthanc

FLAIR = sorted(os.listdir(sample("Brainix", "Flair")))[:8]
LOCALIZERS = sorted(os.listdir(sample("Knix", "Loc")))[:3]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    ours = Daemon(tmp_path_factory.mktemp("orthancd")).start()
    try:
        theirs = RealOrthanc(tmp_path_factory.mktemp("oracle")).start()
    except Exception:
        ours.stop()
        raise
    clients = ours.client(), theirs.client()
    for parts in ([("Brainix", "Flair", name) for name in FLAIR] +
                  [("Knix", "Loc", name) for name in LOCALIZERS] + [("Issue164.dcm",)]):
        data = read_sample(*parts)
        assert clients[0].upload(data) == clients[1].upload(data)
    yield clients
    ours.stop()
    theirs.stop()


def _same(servers, path):
    answers = [client.get(path) for client in servers]
    assert (answers[0].status, answers[0].body) == (answers[1].status, answers[1].body), path
    assert answers[0].headers.get("Content-Type") == answers[1].headers.get("Content-Type")
    return answers[0]


def test_every_series_is_ordered_as_orthanc(servers):
    types = set()
    for series in servers[1].get_json("/series"):
        answer = _same(servers, "/series/%s/ordered-slices" % series)
        types.add(answer.json()["Type"])
    assert types == {"Volume", "Sequence"}


def test_unordered_and_unknown_series(servers):
    """Two slices without position nor index in the series: Orthanc's
    "Unable to order the slices"; an unknown series: its 404."""
    first = [client.post("/tools/create-dicom", json.dumps({"Tags": {"PatientName": "U"}}))
             for client in servers]
    series = [answer.json()["ParentSeries"] for answer in first]
    for client, parent in zip(servers, series):
        second = client.post("/tools/create-dicom",
                             json.dumps({"Tags": {"ImageComments": "x"}, "Parent": parent}))
        assert second.status == 200
    answers = [client.get("/series/%s/ordered-slices" % parent)
               for client, parent in zip(servers, series)]
    assert answers[0].status == answers[1].status
    assert answers[0].json()["OrthancError"] == answers[1].json()["OrthancError"]
    _same(servers, "/series/nope/ordered-slices")
    _same(servers, "/instances/%s/ordered-slices" % first[0].json()["ID"])
