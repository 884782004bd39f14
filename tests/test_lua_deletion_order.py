"""OnDeletedPatient/Study/Series/Instance when a whole patient (two
series) or one series is deleted: the same callbacks, in the same order, as
Orthanc 1.13.0, which calls them from the changes its database reports."""
import json
import time

import pytest

from tests.support import oracle
from tests.support.daemon import Daemon, read_sample

SCRIPT = r"""
deleted = {}
function OnDeletedPatient(id) table.insert(deleted, 'patient ' .. id) end
function OnDeletedStudy(id) table.insert(deleted, 'study ' .. id) end
function OnDeletedSeries(id) table.insert(deleted, 'series ' .. id) end
function OnDeletedInstance(id) table.insert(deleted, 'instance ' .. id) end
"""

# Neither in the order of the files nor of the IDs: Orthanc calls back in
# the order the resources were created.
SAMPLES = [("Brainix", "Epi", "IM-0001-0003.dcm"), ("Brainix", "Flair", "IM-0001-0001.dcm"),
           ("Brainix", "Epi", "IM-0001-0001.dcm"), ("Brainix", "Flair", "IM-0001-0003.dcm"),
           ("Brainix", "Epi", "IM-0001-0002.dcm"), ("Brainix", "Flair", "IM-0001-0002.dcm")]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    script = tmp_path_factory.mktemp("lua") / "deleted.lua"
    script.write_text(SCRIPT)
    pair = (oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), LuaScripts=[str(script)],
                               ExecuteLuaEnabled=True),
            Daemon(tmp_path_factory.mktemp("orthancd"), LuaScripts=[str(script)]))
    with oracle.running(pair):
        yield pair


def _deleted(server, count, timeout=20):
    """The callbacks' record once it holds ``count`` entries (then emptied)."""
    client = server.client()
    deadline = time.time() + timeout
    while True:
        record = json.loads(client.post("/tools/execute-script",
                                        "print(DumpJson(deleted))").body)
        if len(record) >= count or time.time() > deadline:
            client.post("/tools/execute-script", "deleted = {}")
            return record
        time.sleep(0.1)


def _upload(server):
    return [server.client().upload(read_sample(*parts)) for parts in SAMPLES]


def test_deleting_a_patient_calls_back_like_orthanc(servers):
    records = []
    for server in servers:
        uploaded = _upload(server)
        patient = uploaded[0]["ParentPatient"]
        assert server.client().delete("/patients/" + patient).status == 200
        records.append(_deleted(server, len(SAMPLES) + 2 + 1 + 1))
    assert records[1] == records[0]
    assert len(records[0]) == len(SAMPLES) + 4


def test_deleting_a_series_calls_back_like_orthanc(servers):
    records = []
    for server in servers:
        uploaded = _upload(server)
        series = uploaded[0]["ParentSeries"]
        assert server.client().delete("/series/" + series).status == 200
        records.append(_deleted(server, 3 + 1))
        assert server.client().delete("/patients/" + uploaded[0]["ParentPatient"]).status == 200
        _deleted(server, 3 + 1 + 1 + 1)
    assert records[1] == records[0]
