"""Auto-routing with modification: the Orthanc Book's sample, verbatim, and
the ModifyInstance() chain of Orthanc's Lua toolbox, to the real Orthanc
1.13.0 as the "sample" modality.  Both rely on the modification of an
instance (POST /instances/{id}/modify, orthancd.modification)."""
import io
import time

import pydicom
import pytest

from tests.support.daemon import Daemon, read_sample
from tests.support.oracle import RealOrthanc

# OrthancServer/Resources/Samples/Lua/AutoroutingModification.lua
AUTOROUTING_MODIFICATION = """function OnStoredInstance(instanceId, tags, metadata, origin)
   -- Ignore the instances that result from the present Lua script to
   -- avoid infinite loops
   if origin['RequestOrigin'] ~= 'Lua' then

      -- The tags to be replaced
      local replace = {}
      replace['StationName'] = 'My Medical Device'
      replace['0031-1020'] = 'Some private tag'

      -- The tags to be removed
      local remove = { 'MilitaryRank' }

      -- Modify the instance
      local command = {}
      command['Replace'] = replace
      command['Remove'] = remove
      local modifiedFile = RestApiPost('/instances/' .. instanceId .. '/modify', DumpJson(command, true))

      -- Upload the modified instance to the Orthanc database so that
      -- it can be sent by Orthanc to other modalities
      local modifiedId = ParseJson(RestApiPost('/instances/', modifiedFile)) ['ID']

      -- Send the modified instance to another modality
      RestApiPost('/modalities/sample/store', modifiedId)

      -- Delete the original and the modified instances
      RestApiDelete('/instances/' .. instanceId)
      RestApiDelete('/instances/' .. modifiedId)
   end
end
"""

# The toolbox's chain: modify, send, delete the modified instance.
MODIFY_INSTANCE_CHAIN = """function OnStoredInstance(instanceId, tags, metadata, origin)
   if origin['RequestOrigin'] ~= 'Lua' then
      Delete(SendToModality(ModifyInstance(instanceId, { StationName = 'Routed by Lua' },
                                           { 'MilitaryRank' }, true), 'sample'))
   end
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


def _variant(patient_name, uid_suffix):
    dataset = pydicom.dcmread(io.BytesIO(read_sample("ColorTestMalaterre.dcm")))
    dataset.PatientName = patient_name
    dataset.PatientID = patient_name  # a patient of its own at the destination
    dataset.SOPInstanceUID = dataset.SOPInstanceUID + uid_suffix
    out = io.BytesIO()
    dataset.save_as(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def routing(tmp_path_factory):
    destination = RealOrthanc(tmp_path_factory.mktemp("destination")).start()
    try:
        ours = Daemon(tmp_path_factory.mktemp("router"), DicomModalities={
            "sample": ["ORACLE", "127.0.0.1", destination.dicom_port]}).start()
    except Exception:
        destination.stop()
        raise
    yield ours, destination
    ours.stop()
    destination.stop()


def _routed(destination, patient_name):
    found = destination.client().post("/tools/find", {"Level": "Instance", "Expand": True,
                                                      "Query": {"PatientName": patient_name}})
    return found.json() if found.status == 200 else []


def _station(destination, instance):
    return destination.client().get_json("/instances/%s/simplified-tags" % instance["ID"]).get(
        "StationName")


def test_book_sample(routing):
    ours, destination = routing
    assert ours.client().post("/tools/execute-script", AUTOROUTING_MODIFICATION).status == 200
    client = ours.client()
    client.upload(_variant("ROUTED^BOOK", ".21"))
    routed = _wait_for(lambda: _routed(destination, "ROUTED^BOOK"))
    assert _station(destination, routed[0]) == "My Medical Device"
    # The script deletes both the original and the modified instance.
    _wait_for(lambda: not client.post("/tools/find", {"Level": "Instance", "Query": {
        "PatientName": "ROUTED^BOOK"}}).json())


def test_modify_instance_chain(routing):
    ours, destination = routing
    assert ours.client().post("/tools/execute-script", MODIFY_INSTANCE_CHAIN).status == 200
    client = ours.client()
    uploaded = client.upload(_variant("ROUTED^CHAIN", ".22"))
    routed = _wait_for(lambda: _routed(destination, "ROUTED^CHAIN"))
    assert _station(destination, routed[0]) == "Routed by Lua"
    assert routed[0]["ID"] != uploaded["ID"]
    # The modified copy is deleted once sent; the original stays.
    _wait_for(lambda: routed[0]["ID"] not in client.get_json("/instances"))
    assert uploaded["ID"] in client.get_json("/instances")
    origin = client.get_json("/instances/%s/metadata?expand" % uploaded["ID"])["Origin"]
    assert origin == "RestApi"
