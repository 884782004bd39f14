"""Same uploads, same requests to orthancd and to the real Orthanc 1.13.0: same answers.

Fields that legitimately differ are named and removed before comparing:
timestamps, file UUIDs (orthancd's are content-addressed) and stability
(a matter of timing).
"""
import pytest

from tests.support import oracle
from tests.support.daemon import Daemon, read_sample


SAMPLES = [
    "DummyCT.dcm",
    "Knee/T1/IM-0001-0001.dcm",
    "Knee/T1/IM-0001-0002.dcm",
    "Knee/T2/IM-0001-0001.dcm",
    "Brainix/Flair/IM-0001-0001.dcm",
    "Encodings/Lena-cyrillic.dcm",
    "Encodings/Lena-latin1.dcm",
    "PrivateTags.dcm",
    "sample-pdf.dcm",
    "MultiframeWindowing.dcm",
    "SignedCT.dcm",
    "Issue22-NoPixelData.dcm",
    "2021-02-19-MalaterreCP246.dcm",
    "DicomSeg.dcm",
    "WithEmptyPatientComments.dcm",
]

VOLATILE = {"LastUpdate", "FileUuid", "IsStable"}
VOLATILE_METADATA = {"ReceptionDate", "LastUpdate"}


def strip(value, keys=VOLATILE):
    if isinstance(value, dict):
        return {k: strip(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [strip(v, keys) for v in value]
    return value


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    ours = Daemon(tmp_path_factory.mktemp("orthancd"), StableAge=3600).start()
    theirs = oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), StableAge=3600).start()
    yield ours.client(), theirs.client()
    ours.stop()
    theirs.stop()


@pytest.fixture(scope="module")
def uploaded(servers):
    ours, theirs = servers
    pairs = []
    for name in SAMPLES:
        data = read_sample(*name.split("/"))
        a, b = ours.post("/instances", data), theirs.post("/instances", data)  # interleaved
        assert a.status == b.status, name
        pairs.append((name, a.json(), b.json()))
    return pairs


def same(ours, theirs, path, keys=VOLATILE):
    a, b = ours.get(path), theirs.get(path)
    assert a.status == b.status, (path, a.body[:300], b.body[:300])
    if not b.body:
        # Orthanc answers nothing when a handler does not answer (an unknown
        # resource...): neither does orthancd (test_rest_plumbing_parity).
        assert a.body == b"", path
        return a
    if b.headers.get("Content-Type", "").startswith("application/json"):
        assert strip(a.json(), keys) == strip(b.json(), keys), path
    else:
        assert a.body == b.body, path
    return a


def test_upload_answers_and_ids(uploaded):
    for name, a, b in uploaded:
        assert a == b, name


def test_resources_at_every_level(servers, uploaded):
    ours, theirs = servers
    for name, answer, _ in uploaded:
        same(ours, theirs, "/instances/" + answer["ID"])
        same(ours, theirs, "/series/" + answer["ParentSeries"])
        same(ours, theirs, "/studies/" + answer["ParentStudy"])
        same(ours, theirs, "/patients/" + answer["ParentPatient"])


def test_lists_in_the_same_order(servers, uploaded):
    ours, theirs = servers
    for level in ("patients", "studies", "series", "instances"):
        same(ours, theirs, "/" + level)
        same(ours, theirs, "/%s?expand" % level)
        same(ours, theirs, "/%s?since=1&limit=2" % level)


def test_tags_renderings(servers, uploaded):
    ours, theirs = servers
    for name, answer, _ in uploaded:
        for suffix in ("/tags", "/tags?simplify", "/tags?short", "/simplified-tags", "/header",
                       "/content", "/frames"):
            same(ours, theirs, "/instances/" + answer["ID"] + suffix)


def test_content_paths(servers, uploaded):
    """Walk /content down through sequences, comparing every step."""
    ours, theirs = servers
    for name, answer, _ in uploaded:
        base = "/instances/%s/content" % answer["ID"]
        for leaf in ("/0008-0018", "/0010-0010", "/0002-0010", "/ffff-ffff", "/PatientName",
                     "/0010,0010", "/00100010", "/bad"):
            same(ours, theirs, base + leaf)
        listing = same(ours, theirs, base).json()
        # Pixel data lists its blocks, not items (tests/test_tags_parity.py).
        sequences = [entry for entry in listing if entry != "7fe0-0010"
                     and ours.get("%s/%s" % (base, entry)).headers.get("Content-Type", "").startswith(
                         "application/json")]
        for entry in sequences[:2]:
            path = "%s/%s" % (base, entry)
            items = same(ours, theirs, path).json()
            if items:
                children = same(ours, theirs, "%s/%s" % (path, items[0])).json()
                for child in children[:3]:
                    same(ours, theirs, "%s/%s/%s" % (path, items[0], child))


def test_metadata_and_attachments(servers, uploaded):
    ours, theirs = servers
    for name, answer, _ in uploaded:
        base = "/instances/" + answer["ID"]
        same(ours, theirs, base + "/metadata")
        a = ours.get_json(base + "/metadata?expand")
        b = theirs.get_json(base + "/metadata?expand")
        assert strip(a, VOLATILE_METADATA) == strip(b, VOLATILE_METADATA), name
        same(ours, theirs, base + "/attachments")
        same(ours, theirs, base + "/attachments/dicom/size")
        same(ours, theirs, base + "/attachments/dicom/md5")
        same(ours, theirs, base + "/attachments/dicom/info", VOLATILE | {"Uuid"})


def test_statistics(servers, uploaded):
    ours, theirs = servers
    same(ours, theirs, "/statistics")
    for name, answer, _ in uploaded:
        same(ours, theirs, "/patients/%s/statistics" % answer["ParentPatient"])
        same(ours, theirs, "/studies/%s/statistics" % answer["ParentStudy"])
        same(ours, theirs, "/series/%s/statistics" % answer["ParentSeries"])


def test_shared_tags_and_modules(servers, uploaded):
    ours, theirs = servers
    for name, answer, _ in uploaded:
        same(ours, theirs, "/series/%s/shared-tags?simplify" % answer["ParentSeries"])
        same(ours, theirs, "/studies/%s/shared-tags" % answer["ParentStudy"])
        same(ours, theirs, "/instances/%s/module" % answer["ID"])
        same(ours, theirs, "/series/%s/module" % answer["ParentSeries"])
        same(ours, theirs, "/studies/%s/module" % answer["ParentStudy"])
        same(ours, theirs, "/studies/%s/module-patient" % answer["ParentStudy"])
        same(ours, theirs, "/patients/%s/module" % answer["ParentPatient"])


def test_child_and_parent_routes(servers, uploaded):
    ours, theirs = servers
    name, answer, _ = uploaded[1]
    for path in ("/patients/%s/studies" % answer["ParentPatient"],
                 "/patients/%s/series" % answer["ParentPatient"],
                 "/patients/%s/instances" % answer["ParentPatient"],
                 "/studies/%s/series" % answer["ParentStudy"],
                 "/studies/%s/instances" % answer["ParentStudy"],
                 "/series/%s/instances" % answer["ParentSeries"],
                 "/instances/%s/patient" % answer["ID"],
                 "/instances/%s/study" % answer["ID"],
                 "/instances/%s/series" % answer["ID"],
                 "/series/%s/patient" % answer["ParentSeries"],
                 "/series/%s/study" % answer["ParentSeries"],
                 "/studies/%s/patient" % answer["ParentStudy"]):
        same(ours, theirs, path)


def test_changes_sequence(servers, uploaded):
    ours, theirs = servers
    same(ours, theirs, "/changes?limit=1000", VOLATILE | {"Date"})


def test_errors(servers):
    ours, theirs = servers
    for method, path, body in (("POST", "/instances", b"garbage"),
                               ("GET", "/patients?since=1", None),
                               ("GET", "/patients?limit=2", None),
                               ("GET", "/nonexistent", None),
                               ("POST", "/tools/bulk-delete", b"{bad"),
                               ("PUT", "/tools/default-encoding", b"Bogus")):
        a, b = ours.request(method, path, body), theirs.request(method, path, body)
        assert a.status == b.status, path
        assert a.body == b.body, path


def test_method_not_allowed(servers, uploaded):
    ours, theirs = servers
    patient = ours.get_json("/patients")[0]
    for method, path in (("DELETE", "/system"), ("POST", "/patients"), ("PUT", "/statistics"),
                         ("POST", "/patients/" + patient), ("POST", "/changes"),
                         ("POST", "/tools/default-encoding")):
        a, b = ours.request(method, path), theirs.request(method, path)
        assert a.status == b.status == 405, path
        assert a.headers.get("Allow") == b.headers.get("Allow"), path


def test_lookup(servers, uploaded):
    ours, theirs = servers
    for value in ("ozp00SjY2xG", "1.2.840.113619.2.176.2025.1499492.7040.1171286242.109", "nothing"):
        a, b = ours.post("/tools/lookup", value), theirs.post("/tools/lookup", value)
        assert a.json() == b.json(), value


def test_delete_answers(servers, uploaded):
    ours, theirs = servers
    name, answer, _ = uploaded[1]
    for path in ("/instances/" + answer["ID"], "/series/" + uploaded[2][1]["ParentSeries"],
                 "/patients/" + uploaded[0][1]["ParentPatient"]):
        a, b = ours.delete(path), theirs.delete(path)
        assert (a.status, a.json()) == (b.status, b.json()), path
    same(ours, theirs, "/statistics")


def test_edge_answers(servers, uploaded):
    """Unusual arguments and refused writes: same status and error code."""
    ours, theirs = servers
    name, answer, _ = uploaded[4]  # a resource test_delete_answers leaves alone
    instance, patient, series = answer["ID"], answer["ParentPatient"], answer["ParentSeries"]
    for method, path, body in (
            ("GET", "/changes?limit=0", None),
            ("GET", "/patients?since=0&limit=0", None),
            ("GET", "/series/%s/instances?expand=false" % series, None),
            ("GET", "/tools/generate-uid?level=bogus", None),
            ("PUT", "/instances/%s/metadata/IndexInSeries" % instance, b"3"),
            ("GET", "/instances/%s/metadata/Bogus" % instance, None),
            ("GET", "/instances/%s/attachments/bogus" % instance, None),
            ("DELETE", "/instances/%s/metadata/1024" % instance, None),
            ("PUT", "/patients/%s/protected" % patient, b"2"),
            ("GET", "/patients/%s/protected" % patient, None)):
        a, b = ours.request(method, path, body), theirs.request(method, path, body)
        assert a.status == b.status, (method, path, a.body[:200], b.body[:200])
        if b.body and b.headers.get("Content-Type", "").startswith("application/json"):
            assert strip(a.json(), VOLATILE | {"Date"}) == strip(b.json(), VOLATILE | {"Date"}), path
        elif b.body:
            assert a.body == b.body, path
        else:
            assert not a.body, (method, path, a.body[:200])
