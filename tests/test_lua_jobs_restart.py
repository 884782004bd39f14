"""A Lua job ("SequenceOfOperations") survives a restart, as Orthanc's
saved jobs do: interrupted while it sends a series to a slow modality, it
comes back with its ID after the restart and sends what was left; a
finished one stays in the history."""
import time

from tests.support.daemon import Daemon, read_sample
from tests.support.dicom_peers import StorageScp

SCRIPT = r"""
function OnStoredInstance(instanceId, tags, metadata, origin)
  SendToModality(instanceId, 'slow')
end
"""
SAMPLES = [("Brainix", "Flair", "IM-0001-%04d.dcm" % number) for number in range(1, 5)]
SECONDS_PER_INSTANCE = 0.5


def _wait(predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def _lua_jobs(client):
    return [job for job in client.get_json("/jobs?expand")
            if job["Type"] == "SequenceOfOperations"]


def test_an_interrupted_lua_job_resumes_after_a_restart(tmp_path):
    def slowly(_count):
        time.sleep(SECONDS_PER_INSTANCE)
        return 0x0000
    scp = StorageScp("SLOW", slowly)
    script = tmp_path / "route.lua"
    script.write_text(SCRIPT)
    daemon = Daemon(tmp_path, LuaScripts=[str(script)],
                    DicomModalities={"slow": ["SLOW", "127.0.0.1", scp.port]})
    try:
        daemon.start()
        client = daemon.client()
        uploaded = [client.upload(read_sample(*parts))["ID"] for parts in SAMPLES]
        job = _wait(lambda: _lua_jobs(client))[0]
        _wait(lambda: len(scp.received) >= 1)
        daemon.stop()
        sent_before = len(set(scp.received))
        assert sent_before < len(SAMPLES)

        daemon.start()
        client = daemon.client()
        resumed = client.get_json("/jobs/" + job["ID"])
        assert resumed["Type"] == "SequenceOfOperations"
        assert resumed["Content"] == {"CountOperations": len(SAMPLES), "Description": "Lua"}
        _wait(lambda: client.get_json("/jobs/" + job["ID"])["State"] == "Success", timeout=60)
        expected = {client.get_json("/instances/%s/tags?simplify" % instance)["SOPInstanceUID"]
                    for instance in uploaded}
        assert set(scp.received) == expected

        # A finished Lua job stays in the history across a restart.
        daemon.stop()
        daemon.start()
        assert daemon.client().get_json("/jobs/" + job["ID"])["State"] == "Success"
    finally:
        daemon.stop()
        scp.stop()
