"""orthancd as a DICOM SCU (/modalities, /queries, /tools/dicom-echo) against
the live Orthanc 1.13.0.

Both servers hold the same samples and know the same modalities: "remote" is
the oracle's own DICOM port (so both query and retrieve from the same
server), "sink"/"fail" are in-process storage SCPs answering success and
0xA700, "down" a closed port.  Every request goes to both; the answers must
agree once the values that name each server (its AET, query IDs in URIs) are
masked.
"""
import json
import re

import pytest

from tests.support import oracle
from tests.support.daemon import Daemon, free_port, read_sample
from tests.support.dicom_peers import StorageScp

SAMPLES = [("Brainix", "Flair", "IM-0001-0001.dcm"), ("Brainix", "Flair", "IM-0001-0002.dcm"),
           ("Brainix", "Flair", "IM-0001-0003.dcm"), ("DummyCT.dcm",),
           ("Knee", "T1", "IM-0001-0001.dcm"), ("TransferSyntaxes", "1.2.840.10008.1.2.4.50.dcm")]
KNIX_STUDY = "1.2.840.113619.2.176.2025.1499492.7391.1171285944.390"
KNIX_SERIES = "1.2.840.113619.2.176.2025.1499492.7391.1171285944.394"
KNIX_INSTANCE = "1.2.840.113619.2.176.2025.1499492.7040.1171286242.109"
LOCAL_AETS = ("ORACLE", "ORTHANCD")


@pytest.fixture(scope="module")
def peers():
    scps = {"sink": StorageScp("SINK"), "fail": StorageScp("FAIL", 0xA700)}
    yield scps
    for scp in scps.values():
        scp.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, peers):
    ours = Daemon(tmp_path_factory.mktemp("orthancd"))
    real = oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), DicomAlwaysAllowFind=True,
                              DicomAlwaysAllowMove=True, DicomAlwaysAllowGet=True)
    common = {
        "remote": ["ORACLE", "127.0.0.1", real.dicom_port],
        "sink": ["SINK", "127.0.0.1", peers["sink"].port],
        "fail": ["FAIL", "127.0.0.1", peers["fail"].port],
        "down": ["DOWN", "127.0.0.1", free_port()],
        "lowcase": {"AET": "lowCase", "Host": "127.0.0.1", "Port": peers["sink"].port,
                    "LocalAet": "myLocal"},
    }
    # The oracle must know orthancd to retrieve to it: both know it alike.
    common["orthancd"] = ["ORTHANCD", "127.0.0.1", ours.dicom_port]
    ours.options["DicomModalities"] = common
    real.options["DicomModalities"] = common
    ours.start()
    real.start()
    try:
        ids = {}
        for parts in SAMPLES:
            data = read_sample(*parts)
            for client in (ours.client(), real.client()):
                ids[parts] = client.upload(data)
        yield ours, real, ids
    finally:
        ours.stop()
        real.stop()


def _masked(value, ids):
    """Mask what names each server: its AET and the IDs of its queries."""
    if isinstance(value, dict):
        return {k: ("<aet>" if k in ("LocalAet", "TargetAet") and v in LOCAL_AETS
                    else _masked(v, ids)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, ids) for v in value]
    if isinstance(value, str):
        for query_id in ids:
            value = value.replace(query_id, "<query>")
    return value


def _answer(response, ids=()):
    try:
        body = json.loads(response.body)
    except ValueError:
        body = response.body
    if isinstance(body, dict) and "ID" in body and "Path" in body:
        body = dict(body, ID="<query>", Path="<query>")
    return response.status, _masked(body, ids)


def both(servers, method, path, body=None, paths=None):
    """The same request to the oracle and to orthancd (``paths`` when each
    needs its own, e.g. its own query IDs)."""
    ours, real = servers[0], servers[1]
    reference_path, mine_path = paths or (path, path)
    reference = real.client().request(method, reference_path, body)
    mine = ours.client().request(method, mine_path, body)
    return reference, mine


def same(servers, method, path, body=None, paths=None, ids=()):
    reference, mine = both(servers, method, path, body, paths)
    assert _answer(mine, ids) == _answer(reference, ids), (method, path, body)
    return reference, mine


MODALITY_REQUESTS = [
    ("GET", "/modalities", None), ("GET", "/modalities?expand", None),
    ("GET", "/modalities/sink", None), ("GET", "/modalities/nope", None),
    ("GET", "/modalities/lowcase/configuration", None),
    ("GET", "/modalities/nope/configuration", None),
    ("POST", "/modalities/sink/echo", b""), ("POST", "/modalities/sink/echo", {}),
    ("POST", "/modalities/sink/echo", []), ("POST", "/modalities/sink/echo", b"xx"),
    ("POST", "/modalities/sink/echo", {"Timeout": "x"}),
    ("POST", "/modalities/sink/echo", {"CheckFind": "x"}),
    ("POST", "/modalities/sink/echo", {"CheckFind": True}),
    ("POST", "/modalities/remote/echo", {"CheckFind": True, "Timeout": 5}),
    ("POST", "/modalities/down/echo", {}), ("POST", "/modalities/nope/echo", {}),
    ("POST", "/tools/dicom-echo", {"AET": "SINK", "Host": "127.0.0.1", "Port": "<sink>"}),
    ("POST", "/tools/dicom-echo", ["SINK", "127.0.0.1", "<sink>"]),
    ("POST", "/tools/dicom-echo", {"AET": "SINK", "Host": "127.0.0.1", "Port": "<sink>",
                                   "CheckFind": True}),
    ("POST", "/tools/dicom-echo", {"AET": "DOWN", "Host": "127.0.0.1", "Port": "<down>"}),
    ("POST", "/tools/dicom-echo", {"AET": "SINK", "Host": "127.0.0.1"}),
    ("POST", "/tools/dicom-echo", {}), ("POST", "/tools/dicom-echo", b""),
    ("POST", "/tools/dicom-echo", {"AET": "SINK", "Host": "127.0.0.1", "Port": 1,
                                   "Manufacturer": "Foo"}),
    ("DELETE", "/modalities/nope", None),
]


@pytest.mark.parametrize("method,path,body", MODALITY_REQUESTS,
                         ids=["%s %s %r" % r for r in MODALITY_REQUESTS])
def test_modality_routes_like_orthanc(servers, peers, method, path, body):
    ports = {"<sink>": peers["sink"].port,
             "<down>": servers[0].options["DicomModalities"]["down"][2]}
    if isinstance(body, dict):
        body = {k: ports.get(v, v) for k, v in body.items()}
    elif isinstance(body, list):
        body = [ports.get(v, v) for v in body]
    same(servers, method, path, body)


PUT_BODIES = [
    ["X", "h", 1], ["X", "h", "104"], ["X", "h", 1, "GE"], ["X", "h", 1, "Foo"], ["X", "h"],
    ["X", "h", -1], [5, "h", 1], ["X", "h", 1, 5], b"5", [], b"xx",
    {"AET": "X"}, {"AET": "X", "Host": "h"}, {"AET": "X", "Host": "h", "Port": "12"},
    {"AET": "X", "Host": "h", "Port": 70000}, {"AET": "X", "Host": "h", "Port": 1.5},
    {"AET": "X", "Host": "h", "Port": True}, {"AET": "", "Host": "h", "Port": 1},
    {"AET": "lowCase", "Host": "h", "Port": 1, "Manufacturer": "AgfaImpax",
     "AllowStorageCommitment": False, "RetrieveMethod": "C-GET", "LocalAet": "Me",
     "Timeout": 5, "AllowEcho": False, "UseDicomTls": True, "Extra": 1},
    {"AET": "X", "Host": "h", "Port": 1, "RetrieveMethod": "Foo"},
    {"AET": "X", "Host": "h", "Port": 1, "AllowEcho": "x"},
    {"AET": "X", "Host": "h", "Port": 1, "LocalAet": 5},
    {"AET": "X", "Host": "h", "Port": 1, "Timeout": -1},
    {"AET": "X", "Host": "h", "Port": 1, "Manufacturer": 5},
]


@pytest.mark.parametrize("body", PUT_BODIES, ids=[repr(b) for b in PUT_BODIES])
def test_put_modality_like_orthanc(servers, body):
    reference, _ = same(servers, "PUT", "/modalities/tmp", body)
    if reference.status == 200:
        same(servers, "GET", "/modalities/tmp/configuration")
        same(servers, "GET", "/modalities?expand")
        same(servers, "DELETE", "/modalities/tmp")


def test_store_like_orthanc(servers, peers):
    ids = servers[2]
    instance = ids[("Brainix", "Flair", "IM-0001-0001.dcm")]["ID"]
    series = ids[("Brainix", "Flair", "IM-0001-0001.dcm")]["ParentSeries"]
    study = ids[("DummyCT.dcm",)]["ParentStudy"]
    bodies = [
        [instance], instance, {"Resources": [series, study]}, {"Resources": []}, {},
        {"Resources": "abc"}, {"Resources": [5]}, [5], b"5", b"garbage", ["nonexist"],
        {"Resources": ["00402ce7-ac05c687-4d0839bc-cecd4fad-00000000"]},
        {"Resources": [instance], "Port": 0}, {"Resources": [instance], "Port": "x"},
        {"Resources": [instance], "Port": -5}, {"Resources": [instance], "Host": 5},
        {"Resources": [instance], "CalledAet": 5}, {"Resources": [instance], "Timeout": "x"},
        {"Resources": [instance], "LocalAet": 5}, {"Resources": [instance], "LocalAet": "Other"},
        {"Resources": [instance], "MoveOriginatorID": "x"},
        {"Resources": [instance], "MoveOriginatorAet": "MOVER", "MoveOriginatorID": 7},
        {"Resources": [instance], "Synchronous": "x"},
    ]
    for body in bodies:
        same(servers, "POST", "/modalities/sink/store", body)
    for name in ("fail", "down"):
        for body in ([instance], {"Resources": [series], "Permissive": True}):
            same(servers, "POST", "/modalities/%s/store" % name, body)
    # Another destination than the modality's, named in the body
    same(servers, "POST", "/modalities/down/store", {
        "Resources": [instance], "CalledAet": "SINK", "Host": "127.0.0.1",
        "Port": peers["sink"].port})


def test_store_straight_like_orthanc(servers):
    for parts in (("Brainix", "Flair", "IM-0001-0001.dcm"),
                  ("TransferSyntaxes", "1.2.840.10008.1.2.4.50.dcm")):
        data = read_sample(*parts)
        for name in ("sink", "fail", "down", "nope"):
            same(servers, "POST", "/modalities/%s/store-straight" % name, data)
    for body in (b"garbage", b""):
        same(servers, "POST", "/modalities/sink/store-straight", body)


def _query(servers, body):
    reference, mine = both(servers, "POST", "/modalities/remote/query", body)
    assert reference.status == mine.status == 200, (reference.body, mine.body)
    return reference.json()["ID"], mine.json()["ID"]


QUERY_PARTS = ["", "/level", "/modality", "/query", "/query?simplify", "/query?short",
               "/answers", "/answers?expand", "/answers?expand&simplify",
               "/answers?expand&short", "/answers/0", "/answers/0/content",
               "/answers/0/content?simplify", "/answers/0/content?short", "/answers/1",
               "/answers/x", "/answers/-1"]


@pytest.mark.parametrize("level,normalize", [("Patient", False), ("Patient", True),
                                             ("Study", True), ("Series", False),
                                             ("Instance", True)])
def test_queries_like_orthanc(servers, level, normalize):
    body = {"Level": level, "Query": {"PatientName": "KNIX", "SOPClassUID": ""},
            "Normalize": normalize}
    query_ids = _query(servers, body)
    for part in QUERY_PARTS:
        same(servers, "GET", None, paths=["/queries/%s%s" % (q, part) for q in query_ids],
             ids=query_ids)
    # Answers of answers (they inherit the query's Normalize)
    for child in ("query-studies", "query-series", "query-instances"):
        for child_body in ({}, {"Query": {"Modality": "MR"}, "Timeout": 5}, b""):
            reference, mine = same(servers, "POST", None, child_body, ids=query_ids, paths=[
                "/queries/%s/answers/0/%s" % (q, child) for q in query_ids])
            if reference.status == 200:
                child_ids = (reference.json()["ID"], mine.json()["ID"])
                for part in ("", "/level", "/query", "/answers?expand"):
                    same(servers, "GET", None, ids=child_ids, paths=[
                        "/queries/%s%s" % (q, part) for q in child_ids])
    # Deleted, then deleted again
    for _ in range(2):
        same(servers, "DELETE", None, ids=query_ids,
             paths=["/queries/%s" % q for q in query_ids])
    same(servers, "GET", None, ids=query_ids, paths=["/queries/%s" % q for q in query_ids])


QUERY_BODIES = [
    {"Level": "Study", "Query": {"PatientName": 5}}, {"Level": "Study", "Query": {"Foo": "x"}},
    {"Level": "Study", "Query": {"PatientName": "KNIX"}, "LocalAet": 5},
    {"Level": "Study", "Query": {"PatientName": "KNIX"}, "Normalize": "x"},
    {"Level": "Study", "Query": {"PatientName": "KNIX"}, "Timeout": "x"},
    {"Level": "Study", "Query": "x"}, {"Level": "Bogus", "Query": {}}, {"Query": {}}, [1],
    {"Level": "Study", "Query": {"StudyDate": "2007*"}},
]


@pytest.mark.parametrize("body", QUERY_BODIES, ids=[repr(b) for b in QUERY_BODIES])
def test_query_errors_like_orthanc(servers, body):
    same(servers, "POST", "/modalities/remote/query", body)


def test_query_of_modalities_without_find_like_orthanc(servers):
    for name in ("sink", "down", "nope"):
        same(servers, "POST", "/modalities/%s/query" % name, {"Level": "Study", "Query": {}})


RETRIEVE_BODIES = [
    "SINK", {"TargetAet": "SINK"}, {"TargetAet": "SINK", "Simplify": True},
    {"TargetAet": "SINK", "Full": True}, {"TargetAet": "SINK", "Timeout": 7}, {}, b"",
    {"TargetAet": "NOBODY"}, {"RetrieveMethod": "Foo"}, {"TargetAet": 5}, [1], '"SINK"',
]


@pytest.mark.parametrize("body", RETRIEVE_BODIES, ids=[repr(b) for b in RETRIEVE_BODIES])
def test_retrieve_like_orthanc(servers, body):
    query_ids = _query(servers, {"Level": "Study", "Query": {"PatientName": "KNIX"}})
    for route in ("/answers/0/retrieve", "/retrieve"):
        same(servers, "POST", None, body, ids=query_ids,
             paths=["/queries/%s%s" % (q, route) for q in query_ids])


MOVE_BODIES = [
    {"Level": "Study", "Resources": [{"StudyInstanceUID": KNIX_STUDY}], "TargetAet": "SINK"},
    {"Level": "Study", "Resources": [{"StudyInstanceUID": KNIX_STUDY, "AccessionNumber": ""}],
     "TargetAet": "SINK"},
    {"Level": "Series", "Resources": [{"SeriesInstanceUID": KNIX_SERIES}]},
    {"Level": "Instance", "Resources": [{"StudyInstanceUID": KNIX_STUDY,
                                         "SeriesInstanceUID": KNIX_SERIES,
                                         "SOPInstanceUID": KNIX_INSTANCE}], "TargetAet": "SINK"},
    {"Level": "Instance", "Resources": [{"SOPInstanceUID": KNIX_INSTANCE}], "TargetAet": "SINK"},
    {"Level": "Study", "Resources": [{"AccessionNumber": "A10003245599"}], "TargetAet": "SINK"},
    {"Level": "Study", "Resources": [{"StudyInstanceUID": KNIX_STUDY}], "TargetAet": "NOBODY"},
    {"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2.3"}], "TargetAet": "SINK"},
    {"Level": "Study", "Resources": [], "TargetAet": "SINK"},
    {"Level": "Study", "TargetAet": "SINK"}, {"Resources": [{"StudyInstanceUID": KNIX_STUDY}]},
    {"Level": "Study", "Resources": ["x"]}, {"Level": "Foo", "Resources": [{}]},
    {"Level": "Study", "Resources": [{"StudyInstanceUID": KNIX_STUDY}], "TargetAet": 5}, [1],
]


@pytest.mark.parametrize("body", MOVE_BODIES, ids=[repr(b) for b in MOVE_BODIES])
def test_move_like_orthanc(servers, body):
    same(servers, "POST", "/modalities/remote/move", body)


def test_get_like_orthanc(servers):
    """C-GET from the oracle, for both (the oracle reaches itself as "remote")."""
    for body in ({"Level": "Series", "Resources": [{"SeriesInstanceUID": KNIX_SERIES}]},
                 {"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2.3"}]}):
        same(servers, "POST", "/modalities/remote/get", body)


FIND_ROUTES = [
    ("find-patient", {"PatientName": "KNIX"}), ("find-patient", {}),
    ("find-patient", {"PatientName": 5}), ("find-patient", []),
    ("find-study", {"PatientID": "ozp00SjY2xG"}), ("find-study", {}),
    ("find-study", {"Foo": "x"}), ("find-study", {"AccessionNumber": "A10003245599"}),
    ("find-study", {"PatientID": "ozp00SjY2xG", "StudyDate": "2007*"}),
    ("find-study", {"PatientID": "5Yp0E", "StudyDescription": "*", "InstitutionName": ""}),
    ("find-series", {"PatientID": "ozp00SjY2xG", "StudyInstanceUID": KNIX_STUDY}),
    ("find-series", {"PatientID": "ozp00SjY2xG"}),
    ("find-instance", {"PatientID": "ozp00SjY2xG", "StudyInstanceUID": KNIX_STUDY,
                       "SeriesInstanceUID": KNIX_SERIES}),
    ("find", {"PatientName": "KNIX"}), ("find", {"PatientName": "B*"}), ("find", [1]),
]


@pytest.mark.parametrize("route,body", FIND_ROUTES, ids=["%s %r" % r for r in FIND_ROUTES])
def test_deprecated_find_routes_like_orthanc(servers, route, body):
    same(servers, "POST", "/modalities/remote/" + route, body)


def test_aets_keep_their_case(servers, peers):
    """The modality's AET goes out as configured; the calling AET is the
    request's LocalAet, else the modality's, else DicomAet (echo: DicomAet)."""
    instance = servers[2][("Brainix", "Flair", "IM-0001-0001.dcm")]["ID"]
    seen = []
    for server in (servers[1], servers[0]):
        peers["sink"].clear()
        client = server.client()
        client.post("/modalities/lowcase/echo", {})
        client.post("/modalities/lowcase/store", [instance])
        client.post("/modalities/lowcase/store", {"Resources": [instance], "LocalAet": "body"})
        seen.append([(re.sub("^(ORACLE|ORTHANCD)$", "<aet>", calling), called)
                     for calling, called in peers["sink"].associations])
    assert seen[1] == seen[0]
    assert seen[0][0] == ("<aet>", "lowCase")
