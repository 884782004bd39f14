"""Auto-routing with the Orthanc Book's Lua samples, verbatim, to a real
destination: the real Orthanc 1.13.0 as the "sample" modality.  One orthancd
and one destination for the module; each test installs its OnStoredInstance
through /tools/execute-script (the callbacks run in the same Lua state)."""
import io
import json
import time

import pydicom
import pytest

from tests.support.daemon import Daemon, read_sample
from tests.support.oracle import RealOrthanc

# OrthancServer/Resources/Samples/Lua/Autorouting.lua
AUTOROUTING = """function OnStoredInstance(instanceId, tags, metadata)
   Delete(SendToModality(instanceId, 'sample'))
end
"""

# OrthancServer/Resources/Samples/Lua/AutoroutingConditional.lua
AUTOROUTING_CONDITIONAL = """function OnStoredInstance(instanceId, tags, metadata, origin)
   -- The "origin" is only available since Orthanc 0.9.4
   PrintRecursive(origin)

   -- Extract the value of the "PatientName" DICOM tag
   local patientName = string.lower(tags['PatientName'])

   if string.find(patientName, 'david') ~= nil then
      -- Only send patients whose name contains "David"
      Delete(SendToModality(instanceId, 'sample'))

   else
      -- Delete the patients that are not called "David"
      Delete(instanceId)
   end
end
"""

# The Book's HTTP variant: to an Orthanc peer.
AUTOROUTING_HTTP = """function OnStoredInstance(instanceId, tags, metadata)
   Delete(SendToPeer(instanceId, 'peer'))
end
"""

# The Book's sample with another local AET ("SendToModality(id, modality, localAet)").
AUTOROUTING_CHANGED_AET = """function OnStoredInstance(instanceId, tags, metadata)
   Delete(SendToModality(instanceId, 'sample', 'LUA_ROUTER'))
end
"""


def _wait_for(predicate, timeout=40):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def _variant(name, patient_name, uid_suffix):
    dataset = pydicom.dcmread(io.BytesIO(read_sample(name)))
    dataset.PatientName = patient_name
    dataset.SOPInstanceUID = dataset.SOPInstanceUID + uid_suffix
    out = io.BytesIO()
    dataset.save_as(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def routing(tmp_path_factory):
    destination = RealOrthanc(tmp_path_factory.mktemp("destination")).start()
    try:
        ours = Daemon(tmp_path_factory.mktemp("router"), DicomModalities={
            "sample": ["ORACLE", "127.0.0.1", destination.dicom_port]}, OrthancPeers={
            "peer": ["http://127.0.0.1:%d/" % destination.http_port]}).start()
    except Exception:
        destination.stop()
        raise
    yield ours, destination
    ours.stop()
    destination.stop()


def _install(ours, script):
    answer = ours.client().post("/tools/execute-script", script)
    assert answer.status == 200, answer.body


def _received(destination, instance_id):
    return instance_id in destination.client().get_json("/instances")


def test_unconditional(routing):
    ours, destination = routing
    _install(ours, AUTOROUTING)
    client = ours.client()
    uploaded = client.upload(_variant("ColorTestMalaterre.dcm", "ANYONE", ".1"))
    _wait_for(lambda: _received(destination, uploaded["ID"]))
    # Delete() acts on what SendToModality() returns: the routed instance.
    _wait_for(lambda: uploaded["ID"] not in client.get_json("/instances"))
    metadata = destination.client().get_json("/instances/%s/metadata?expand" % uploaded["ID"])
    assert metadata["RemoteAET"] == "ORTHANCD" and metadata["CalledAET"] == "ORACLE"


def test_conditional(routing):
    ours, destination = routing
    _install(ours, AUTOROUTING_CONDITIONAL)
    client = ours.client()
    david = client.upload(_variant("ColorTestMalaterre.dcm", "Smith^David", ".2"))
    other = client.upload(_variant("ColorTestMalaterre.dcm", "Doe^John", ".3"))
    _wait_for(lambda: _received(destination, david["ID"]))
    _wait_for(lambda: not set(client.get_json("/instances")) & {david["ID"], other["ID"]})
    assert not _received(destination, other["ID"])
    # PrintRecursive(origin) went to the log, as Orthanc's "Lua says".
    assert "Lua says: " in ours.log() and "RestApi" in ours.log()


def test_changed_local_aet(routing):
    ours, destination = routing
    _install(ours, AUTOROUTING_CHANGED_AET)
    client = ours.client()
    uploaded = client.upload(_variant("ColorTestMalaterre.dcm", "ANYONE", ".4"))
    _wait_for(lambda: _received(destination, uploaded["ID"]))
    metadata = destination.client().get_json("/instances/%s/metadata?expand" % uploaded["ID"])
    assert metadata["RemoteAET"] == "LUA_ROUTER"


def test_routing_job_as_orthanc_shows_it(routing):
    """The job the samples submit, as 1.13.0 shows it in /jobs."""
    ours, destination = routing
    _install(ours, AUTOROUTING)
    client = ours.client()
    uploaded = client.upload(_variant("ColorTestMalaterre.dcm", "ANYONE", ".5"))
    _wait_for(lambda: _received(destination, uploaded["ID"]))

    def finished():
        jobs = [client.get_json("/jobs/" + job_id) for job_id in client.get_json("/jobs")]
        return [job for job in jobs if job["Type"] == "SequenceOfOperations"
                and job["State"] == "Success"]
    job = _wait_for(finished)[-1]
    assert job["Content"]["Description"] == "Lua"
    assert job["Content"]["CountOperations"] >= 2
    assert job["Priority"] == 0 and job["ErrorCode"] == 0
    assert json.dumps(job)  # JSON all the way


def test_to_a_peer(routing):
    ours, destination = routing
    _install(ours, AUTOROUTING_HTTP)
    client = ours.client()
    uploaded = client.upload(_variant("ColorTestMalaterre.dcm", "ANYONE", ".6"))
    _wait_for(lambda: _received(destination, uploaded["ID"]))
    _wait_for(lambda: uploaded["ID"] not in client.get_json("/instances"))
    metadata = destination.client().get_json("/instances/%s/metadata?expand" % uploaded["ID"])
    assert metadata["Origin"] == "RestApi"
