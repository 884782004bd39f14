"""The Lua filters of C-FIND queries against the live Orthanc 1.13.0:
IncomingFindRequestFilter (queries the C-FIND SCP receives) and
OutgoingFindRequestFilter (queries /modalities/{id}/query and the child
queries send).

orthancd and a real Orthanc run the same script and hold the same samples.
The script keeps what its filters were given (read back through
/tools/execute-script) and rewrites the queries: what the C-FIND SCP
answers, what a recording Find SCP receives, and the errors of filters
returning something else than a table of strings, must agree.
"""
import json
import threading

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (PatientRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelFind)

from tests.support import oracle
from tests.support.daemon import Daemon, free_port, read_sample
from tests.support.dicom_peers import find_raw

SCRIPT = r"""
seen = {}

function IncomingFindRequestFilter(query, origin)
  table.insert(seen, { filter = 'incoming', query = query, origin = origin })
  local id = query['0010,0020']
  if id == 'REWRITE' then
    query['0010,0020'] = nil
    query['PatientName'] = 'KNIX'
    query['0008,0061'] = ''
  elseif id == 'NO-LEVEL' then
    query['0008,0052'] = nil
  elseif id == 'NOT-A-TABLE' then
    return 42
  elseif id == 'NUMBER' then
    query['0010,0020'] = 5
  elseif id == 'EMPTY' then
    return {}
  elseif id == 'FAIL' then
    error('refused by the script')
  end
  return query
end

function OutgoingFindRequestFilter(query, aet)
  table.insert(seen, { filter = 'outgoing', query = query, aet = aet })
  local id = query['0010,0020']
  if id == 'REWRITE' then
    query['0010,0020'] = nil
    query['0008,0090'] = 'DOCTOR'
    query['PatientSex'] = 'F'
  elseif id == 'NOT-A-TABLE' then
    return 'text'
  elseif id == 'NUMBER' then
    query['0010,0020'] = 5
  elseif id == 'UNKNOWN-TAG' then
    query['NoSuchTag'] = 'x'
  elseif id == 'EMPTY' then
    return {}
  elseif id == 'FAIL' then
    error('refused by the script')
  end
  return query
end
"""

SAMPLES = [("Knix", "Loc", "IM-0001-0010.dcm"),
           ("Brainix", "Flair", "IM-0001-0001.dcm"), ("DummyCT.dcm",)]


class RecordingFindScp:
    """A Find SCP that keeps the identifiers it receives; it answers one
    patient to a query for the patient ID "child", nothing to the others."""

    def __init__(self, aet):
        self.aet = aet
        self.port = free_port()
        self.received = []
        self._lock = threading.Lock()
        ae = AE(ae_title=aet)
        ae.require_called_aet = False
        for model in (PatientRootQueryRetrieveInformationModelFind,
                      StudyRootQueryRetrieveInformationModelFind):
            ae.add_supported_context(model)
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_FIND, self._find)])

    def _find(self, event):
        identifier = event.identifier
        with self._lock:
            self.received.append(sorted(
                (str(element.tag), str(element.value)) for element in identifier))
        if identifier.get("PatientID") == "child":
            answer = Dataset()
            answer.QueryRetrieveLevel = "PATIENT"
            answer.PatientID = "CHILD-1"
            answer.PatientName = "CHILD^ONE"
            yield 0xFF00, answer
        yield 0x0000, None

    def take(self):
        with self._lock:
            taken, self.received = self.received, []
        return taken

    def stop(self):
        self._server.shutdown()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    recorder = RecordingFindScp("RECORDER")
    script = tmp_path_factory.mktemp("lua") / "filters.lua"
    script.write_text(SCRIPT)
    options = {
        "LuaScripts": [str(script)], "ExecuteLuaEnabled": True,
        "DicomModalities": {
            "recorder": ["RECORDER", "127.0.0.1", recorder.port],
            "findscu": {"AET": "FINDSCU", "Host": "127.0.0.1", "Port": 1,
                        "Manufacturer": "GenericNoUniversalWildcard"},
        },
    }
    ours = Daemon(tmp_path_factory.mktemp("orthancd"), **options)
    real = oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), **options)
    try:
        with oracle.running((ours, real)):
            for parts in SAMPLES:
                data = read_sample(*parts)
                for server in (ours, real):
                    server.client().upload(data)
            yield ours, real, recorder
    finally:
        recorder.stop()


def _seen(server):
    """What the filters were given since the last call."""
    answer = server.client().post("/tools/execute-script",
                                  "print(DumpJson(seen)); seen = {}")
    assert answer.status == 200, answer.body
    return json.loads(answer.body)


def _query(patient_id, level="STUDY", **fields):
    dataset = Dataset()
    dataset.QueryRetrieveLevel = level
    dataset.PatientID = patient_id
    dataset.PatientName = ""
    dataset.StudyInstanceUID = ""
    for keyword, value in fields.items():
        setattr(dataset, keyword, value)
    return dataset


def test_incoming_find_filter_like_orthanc(servers):
    ours, real, _ = servers
    answers = {}
    for patient_id in ("REWRITE", "NO-LEVEL", "NOT-A-TABLE", "NUMBER", "EMPTY", "FAIL",
                       "*", "nobody"):
        outcomes = []
        for server in (real, ours):
            outcome = find_raw(server.dicom_port, "ANY-SCP", _query(patient_id),
                               StudyRootQueryRetrieveInformationModelFind)
            outcomes.append((outcome, _seen(server)))
        assert outcomes[1] == outcomes[0], patient_id
        answers[patient_id] = outcomes[0][0]
    # The rewritten query found the Knix study only; without a level the
    # query fails.
    assert answers["REWRITE"][0] == "0x0000" and len(answers["REWRITE"][1]) == 1
    assert len(answers["*"][1]) > 1
    assert answers["NO-LEVEL"][0] != "0x0000"


def _rest_query(server, patient_id, level="Study"):
    answer = server.client().post("/modalities/recorder/query", {
        "Level": level, "Query": {"PatientID": patient_id, "StudyDescription": "*"}})
    try:
        body = json.loads(answer.body)
    except ValueError:
        body = answer.body
    if answer.status == 200:
        query = server.client().get_json("%s/query" % body["Path"])
        body = ("query", query)
    return answer.status, body


def test_outgoing_find_filter_like_orthanc(servers):
    ours, real, recorder = servers
    for patient_id in ("REWRITE", "NOT-A-TABLE", "NUMBER", "UNKNOWN-TAG", "EMPTY", "FAIL",
                       "plain"):
        outcomes = []
        for server in (real, ours):
            answer = _rest_query(server, patient_id)
            outcomes.append((answer, _seen(server), recorder.take()))
        assert outcomes[1] == outcomes[0], patient_id
    # What the modality received, once rewritten.
    received = outcomes[0][2]
    assert received and ("(0010,0020)", "plain") in received[0]


def test_outgoing_filter_applies_to_child_queries(servers):
    """POST /queries/{id}/answers/{n}/query-studies goes through the filter
    too: its query holds the identifiers of the answer."""
    ours, real, recorder = servers
    outcomes = []
    for server in (real, ours):
        client = server.client()
        created = client.post("/modalities/recorder/query",
                              {"Level": "Patient", "Query": {"PatientID": "child"}}).json()
        _seen(server)
        recorder.take()
        child = client.post("/queries/%s/answers/0/query-studies" % created["ID"],
                            {"Query": {"StudyDescription": "*"}})
        assert child.status == 200, child.body
        outcomes.append((client.get_json("%s/query" % child.json()["Path"]), _seen(server),
                         recorder.take()))
    assert outcomes[1] == outcomes[0]
    assert outcomes[0][1][0]["query"]["0010,0020"] == "CHILD-1"


# Main DICOM tags outside the modules Orthanc keeps, and module attributes
# that are no main tags: what a normalized query keeps of them.  (Not
# SOPClassUID: Orthanc 1.13.0 sends it twice, once as a file meta element
# (0002,0002) in the identifier.)
NORMALIZED_FIELDS = {
    "PatientID": "normalized", "InstitutionName": "I", "StationName": "S",
    "IssuerOfPatientID": "X", "OtherPatientIDs": "O", "PatientComments": "C",
    "ReferringPhysicianName": "R", "SeriesDate": "20200101", "ProtocolName": "P",
    "BodyPartExamined": "B", "InstanceCreationDate": "20200101", "InstanceNumber": "1",
    "ImagePositionPatient": "1\\2\\3", "ModalitiesInStudy": "MR",
    "NumberOfStudyRelatedSeries": "", "NumberOfSeriesRelatedInstances": "",
    "Manufacturer": "M", "AcquisitionDate": "20200101",
}


def test_normalized_queries_keep_what_orthanc_keeps(servers):
    """After the filter, the query is normalized as 1.13.0's
    NormalizeFindQuery does: the attributes of the level's modules."""
    ours, real, recorder = servers
    recorder.take()
    for level in ("Patient", "Study", "Series", "Instance"):
        for normalize in (True, False):
            received = []
            for server in (real, ours):
                answer = server.client().post("/modalities/recorder/query", {
                    "Level": level, "Query": NORMALIZED_FIELDS, "Normalize": normalize})
                assert answer.status == 200, answer.body
                _seen(server)
                received.append(recorder.take())
            assert received[1] == received[0], (level, normalize)
