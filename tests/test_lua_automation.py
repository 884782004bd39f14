"""Lua automation (LuaScripts, callbacks, filters, key-value stores), against
the real daemon, with DCMTK and the real Orthanc 1.13.0 as peers."""
import json
import os
import subprocess
import time

import pytest

from tests.support.daemon import Daemon, read_sample, sample
from tests.support.oracle import RealOrthanc

MR = "DummyCT.dcm"                 # Modality MR, PatientName KNIX
COLOR = "ColorTestMalaterre.dcm"   # Modality OT or SC, with pixel data

EVENTS_SCRIPT = r"""
function Log(line)
  local f = assert(io.open(EVENTS_FILE, 'a'))
  f:write(line .. '\n')
  f:close()
end
function Initialize() Log('Initialize') end
function OnStoredInstance(instanceId, tags, metadata, origin)
  Log('STORED ' .. DumpJson({instanceId, tags['PatientName'], tags['PixelData'] == nil,
                             metadata, origin}, true))
  if tags['PatientName'] == 'DELETE-ME' then
    Delete(instanceId)
  end
end
function OnStableSeries(id, tags, metadata) Log('STABLESERIES ' .. DumpJson({id, tags, metadata}, true)) end
function OnStableStudy(id, tags, metadata) Log('STABLESTUDY ' .. DumpJson({id, tags}, true)) end
function OnStablePatient(id, tags, metadata) Log('STABLEPATIENT ' .. DumpJson({id, tags}, true)) end
function OnDeletedInstance(id) Log('DELETEDINSTANCE ' .. id) end
function OnDeletedPatient(id) Log('DELETEDPATIENT ' .. id) end
function OnUpdatedInstance(id) Log('UPDATEDINSTANCE ' .. id) end
function OnJobSubmitted(id) Log('JOBSUBMITTED ' .. id) end
function OnJobSuccess(id) Log('JOBSUCCESS ' .. id) end
function OnHeartBeat() Log('HEARTBEAT') end
"""

FILTER_SCRIPT = r"""
function ReceivedInstanceFilter(tags, origin, info)
  if tags['PatientName'] == 'REFUSE-ME' then return false end
  return true
end
function ReceivedCStoreInstanceFilter(tags, origin, info)
  if tags['Modality'] == 'MR' then return 0xA700 end
  return 0
end
function IncomingHttpRequestFilter(method, uri, ip, username, headers)
  if string.find(uri, 'forbidden') then return false end
  if string.find(uri, 'not-a-predicate') then return 1 end
  if string.find(uri, 'lua-error') then error('refusing') end
  if headers['x-refuse'] == 'yes' and method == 'DELETE' then return false end
  return true
end
"""


def _wait_for(predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def _storescu(port, aet, path):
    return subprocess.run(["/usr/bin/storescu", "-v", "-aec", aet, "127.0.0.1", str(port), path],
                          capture_output=True, text=True, timeout=60)


def _write(directory, name, text):
    path = os.path.join(str(directory), name)
    with open(path, "w") as f:
        f.write(text)
    return path


class Both:
    """orthancd and Orthanc 1.13.0 running the same scripts."""

    def __init__(self, tmp, scripts, **options):
        self.ours_dir = tmp / "ours"
        self.theirs_dir = tmp / "theirs"
        self.ours_dir.mkdir()
        self.theirs_dir.mkdir()
        self.events = {}
        names = []
        for index, text in enumerate(scripts):
            names.append("script%d.lua" % index)
        for kind, directory in (("ours", self.ours_dir), ("theirs", self.theirs_dir)):
            events = os.path.join(str(directory), "events.txt")
            self.events[kind] = events
            # Relative paths: resolved against the configuration file's folder.
            _write(directory, names[0], "EVENTS_FILE = %s\n%s" % (json.dumps(events), scripts[0]))
            for name, text in zip(names[1:], scripts[1:]):
                _write(directory, name, text)
        self.ours = Daemon(self.ours_dir, LuaScripts=names, **options)
        self.theirs = RealOrthanc(self.theirs_dir, LuaScripts=names, ExecuteLuaEnabled=True,
                                  **options)

    def start(self):
        self.ours.start()
        try:
            self.theirs.start()
        except Exception:
            self.ours.stop()
            raise
        return self

    def stop(self):
        self.ours.stop()
        self.theirs.stop()

    def lines(self, kind):
        try:
            with open(self.events[kind]) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    servers = Both(tmp_path_factory.mktemp("lua"), [EVENTS_SCRIPT, FILTER_SCRIPT],
                   LuaHeartBeatPeriod=1, StableAge=1).start()
    yield servers
    servers.stop()


def _events(both, kind, prefix):
    return [line[len(prefix) + 1:] for line in both.lines(kind) if line.startswith(prefix + " ")]


def test_initialize_runs_once_the_scripts_are_loaded(both):
    for kind in ("ours", "theirs"):
        _wait_for(lambda: "Initialize" in both.lines(kind))


def test_heartbeat(both):
    for kind in ("ours", "theirs"):
        _wait_for(lambda: "HEARTBEAT" in both.lines(kind))


def test_stored_instance_callback_gets_what_orthanc_gives(both):
    """Same upload (REST) and same C-STORE to both: same arguments, but the
    reception date."""
    results = {}
    for kind, server in (("ours", both.ours), ("theirs", both.theirs)):
        client = server.client()
        uploaded = client.upload(read_sample(COLOR))
        stored = _wait_for(lambda: [json.loads(e) for e in _events(both, kind, "STORED")
                                    if json.loads(e)[0] == uploaded["ID"]])
        results[kind] = stored[0]
    for result in results.values():
        result[3].pop("ReceptionDate")
    assert results["ours"] == results["theirs"]
    assert results["ours"][4] == {"RemoteIp": "127.0.0.1", "RequestOrigin": "RestApi",
                                  "Username": ""}


def test_stable_callbacks_get_main_tags_and_metadata(both):
    results = {}
    for kind, server in (("ours", both.ours), ("theirs", both.theirs)):
        client = server.client()
        uploaded = client.upload(read_sample("Brainix", "Flair", "IM-0001-0001.dcm"))
        for prefix, key in (("STABLESERIES", "ParentSeries"), ("STABLESTUDY", "ParentStudy"),
                            ("STABLEPATIENT", "ParentPatient")):
            found = _wait_for(lambda: [json.loads(e) for e in _events(both, kind, prefix)
                                       if json.loads(e)[0] == uploaded[key]])
            results[(kind, prefix)] = found[0]
    for prefix in ("STABLESERIES", "STABLESTUDY", "STABLEPATIENT"):
        ours, theirs = results[("ours", prefix)], results[("theirs", prefix)]
        if prefix == "STABLESERIES":
            for metadata in (ours[2], theirs[2]):
                metadata.pop("LastUpdate")
        assert ours == theirs, prefix


def test_deleted_updated_callbacks(both):
    for kind, server in (("ours", both.ours), ("theirs", both.theirs)):
        client = server.client()
        uploaded = client.upload(read_sample("Brainix", "Flair", "IM-0001-0002.dcm"))
        assert client.put("/instances/%s/metadata/1024" % uploaded["ID"], "x").status == 200
        _wait_for(lambda: uploaded["ID"] in _events(both, kind, "UPDATEDINSTANCE"))
        # The patient has other instances: only the instance goes.
        assert client.delete("/instances/%s" % uploaded["ID"]).status == 200
        _wait_for(lambda: uploaded["ID"] in _events(both, kind, "DELETEDINSTANCE"))


def test_lua_job_and_job_callbacks(both):
    """Delete(instanceId) in OnStoredInstance: a "SequenceOfOperations" job
    deletes the instance; OnJobSubmitted and OnJobSuccess follow it."""
    jobs = {}
    data = _renamed_patient(read_sample(COLOR), "DELETE-ME")
    for kind, server in (("ours", both.ours), ("theirs", both.theirs)):
        client = server.client()
        uploaded = client.upload(data)
        job_id = _wait_for(lambda: _events(both, kind, "JOBSUBMITTED"))[-1]
        _wait_for(lambda: uploaded["ID"] not in client.get_json("/instances"))
        _wait_for(lambda: uploaded["ID"] in _events(both, kind, "DELETEDINSTANCE"))
        _wait_for(lambda: job_id in _events(both, kind, "JOBSUCCESS"))
        jobs[kind] = client.get_json("/jobs/" + job_id)
    for job in jobs.values():
        for key in ("CompletionTime", "CreationTime", "EffectiveRuntime", "ID", "Timestamp"):
            job.pop(key)
    assert jobs["ours"] == jobs["theirs"]
    assert jobs["ours"]["Type"] == "SequenceOfOperations"


def test_received_instance_filter_over_rest(both):
    """A refused upload answers as 1.13.0: 200 with Status FilteredOut."""
    answers = {}
    for kind, server in (("ours", both.ours), ("theirs", both.theirs)):
        client = server.client()
        data = _renamed_patient(read_sample(COLOR), "REFUSE-ME")
        answer = client.post("/instances", data)
        answers[kind] = (answer.status, answer.json())
        assert answer.json()["ID"] not in client.get_json("/instances")
    assert answers["ours"] == answers["theirs"]
    assert answers["ours"][1]["Status"] == "FilteredOut"


def _renamed_patient(data, name):
    import io
    import pydicom
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.PatientName = name
    dataset.SOPInstanceUID = dataset.SOPInstanceUID + ".9"
    out = io.BytesIO()
    dataset.save_as(out)
    return out.getvalue()


def test_received_cstore_instance_filter_answers_its_status(both):
    for server, aet in ((both.ours, "ORTHANCD"), (both.theirs, "ORACLE")):
        refused = _storescu(server.dicom_port, aet, sample(MR))
        assert "Refused: OutOfResources" in refused.stderr, refused.stderr
        accepted = _storescu(server.dicom_port, aet, sample(COLOR))
        assert "Received Store Response (Success)" in accepted.stderr, accepted.stderr


def test_incoming_http_request_filter(both):
    answers = {}
    for kind, server in (("ours", both.ours), ("theirs", both.theirs)):
        client = server.client()
        out = []
        for path in ("/system", "/forbidden", "/not-a-predicate", "/lua-error"):
            answer = client.get(path)
            body = answer.json() if answer.body else None
            out.append((answer.status, answer.headers.get("Content-Type"), body))
        patients = client.get_json("/patients")
        out.append(client.delete("/patients/%s" % patients[0],
                                 headers={"X-Refuse": "yes"}).status)
        # Lua's own REST calls are not filtered.
        script = "print(RestApiGet('/system') ~= nil)"
        out.append(client.post("/tools/execute-script", script).text)
        answers[kind] = out
    assert answers["ours"][0][0] == 200
    assert answers["ours"][1:] == answers["theirs"][1:]
    assert answers["ours"][1] == (403, None, None)
    assert answers["ours"][4] == 403


def test_key_value_store(both):
    outputs = {}
    script = "\n".join([
        "print(StoreKeyValue('store', 'key', 'value'))",
        "print(GetKeyValue('store', 'key'))",
        "print(GetKeyValue('store', 'missing'))",
        "print(StoreKeyValue('store', 1, 2.5))",
        "print(GetKeyValue('store', '1'))",
        "print(GetKeyValue('other', 'key'))",
        "print(DeleteKeyValue('store', 'key'))",
        "print(GetKeyValue('store', 'key'))",
        "print(StoreKeyValue('store', 'key'))",
        "print(StoreKeyValue('store', 'key', {}))",
    ])
    for kind, server in (("ours", both.ours), ("theirs", both.theirs)):
        outputs[kind] = server.client().post("/tools/execute-script", script).text
    assert outputs["ours"] == outputs["theirs"]
    assert outputs["ours"].splitlines()[:3] == ["value", "value", "nil"]
    assert both.ours.client().get_json("/system")["Capabilities"]["HasKeyValueStores"] is True


def test_key_values_survive_a_restart(tmp_path):
    daemon = Daemon(tmp_path).start()
    try:
        daemon.client().post("/tools/execute-script", "StoreKeyValue('s', 'k', 'kept')")
    finally:
        daemon.stop()
    daemon.start()
    try:
        assert daemon.client().post("/tools/execute-script",
                                    "print(GetKeyValue('s', 'k'))").text == "kept\n"
    finally:
        daemon.stop()


def test_a_sleeping_callback_does_not_stall_the_server(tmp_path):
    """OnStoredInstance sleeps until told to stop (a file appears); meanwhile
    GET /system answers, and so do uploads, which the filters let through."""
    release = tmp_path / "release"
    started = tmp_path / "started"
    script = _write(tmp_path, "sleepy.lua", r"""
function OnStoredInstance(instanceId)
  local f = io.open(%s, 'w') f:write('x') f:close()
  while io.open(%s, 'r') == nil do os.execute('sleep 0.05') end
  print(RestApiGet('/instances/' .. instanceId) ~= nil)
end
function ReceivedInstanceFilter(tags) return true end
""" % (json.dumps(str(started)), json.dumps(str(release))))
    daemon = Daemon(tmp_path, LuaScripts=[script]).start()
    try:
        client = daemon.client()
        client.upload(read_sample(MR))
        _wait_for(started.exists)
        # The callback is asleep in the Lua thread: the reactor still answers.
        assert client.get("/system").status == 200
        assert client.upload(read_sample(COLOR))["Status"] == "Success"
        assert not release.exists()
        release.write_text("go")
        # And its RestApiGet, dispatched to the reactor, is answered.
        _wait_for(lambda: "Lua says: true" in daemon.log())
    finally:
        daemon.stop()


def test_http_functions(tmp_path):
    """HttpGet/HttpPost/HttpPut/HttpDelete with credentials, on a real
    server (the daemon itself, with authentication)."""
    daemon = Daemon(tmp_path, AuthenticationEnabled=True,
                    RegisteredUsers={"alice": "secret"}).start()
    try:
        client = daemon.client(("alice", "secret"))
        url = daemon.url
        script = "\n".join([
            "print(HttpGet('%s/system') ~= nil)" % url,
            "SetHttpCredentials('alice', 'secret')",
            "SetHttpTimeout(10)",
            "print(ParseJson(HttpGet('%s/system'))['Name'])" % url,
            "local answer = ParseJson(HttpPost('%s/tools/lookup', 'nothing'))" % url,
            "print(#answer)",
            # An error answer's body comes back, as Orthanc's libcurl client gives it.
            "print(string.find(HttpPut('%s/patients/none/metadata/1024', 'x'), 'HttpError') ~= nil)"
            % url,
            "print(HttpDelete('%s/patients/none'))" % url,
            "print(HttpGet('http://127.0.0.1:1/'))",
            "print(HttpGet('%s/system', {['X-Custom'] = 'yes'}) ~= nil)" % url,
        ])
        lines = client.post("/tools/execute-script", script).text.splitlines()
        # Unauthenticated: the 401 answer's (empty) body comes back.
        assert lines[0] == "true"
        assert lines[1] == "orthancd-test"
        assert lines[2] == "0"
        assert lines[3] == "true"
        assert lines[4] == "nil"            # a 404 for DELETE is a failure
        assert lines[5] == "nil"            # no server there
        assert lines[6] == "true"
    finally:
        daemon.stop()
