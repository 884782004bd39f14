"""Orthanc 1.13.0's newer REST surface, orthancd against the real 1.13.0:
labels, extended find and count-resources, RequestedTags, the extended
changes log, bulk-content, instances-tags, reconstruct and /system.

Both servers get the same samples (one sample to both, then the next, so
that LastUpdate stamps fall alike), then the same requests; the answers
must agree: status, content type, JSON (field order included) or bytes.
"""
import json
import time

import pytest

from tests.support import oracle
from tests.support.daemon import Daemon, read_sample

SAMPLES = [
    "DummyCT.dcm",
    "Knee/T1/IM-0001-0001.dcm",
    "Knee/T1/IM-0001-0002.dcm",
    "Knee/T2/IM-0001-0001.dcm",
    "Brainix/Flair/IM-0001-0001.dcm",
    "Brainix/Flair/IM-0001-0002.dcm",
    "Brainix/Epi/IM-0001-0001.dcm",
    "Encodings/Lena-cyrillic.dcm",
    "PrivateTags.dcm",
    "sample-pdf.dcm",
    "PatientIdsCollision/Image1.dcm",
    "PatientIdsCollision/Image2.dcm",
    "PatientIdsCollision/Image3.dcm",
    "Phenix/IM-0001-0001.dcm",
    "Comunix/Ct/IM-0001-0001.dcm",
]

# Values two servers started apart cannot share.
MASKED = {"LastUpdate", "ReceptionDate", "Date", "FileUuid", "Uuid", "IsStable", "HttpPort",
          "DicomPort", "DicomAet", "Name", "DatabaseServerIdentifier", "ThirdPartyVersions",
          "Performance"}


def mask(value):
    if isinstance(value, dict):
        return {k: ("<masked>" if k in MASKED else mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    ours = Daemon(tmp_path_factory.mktemp("orthancd"), StableAge=3600).start()
    theirs = oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), StableAge=3600).start()
    try:
        clients = ours.client(), theirs.client()
        for name in SAMPLES:
            data = read_sample(*name.split("/"))
            # LastUpdate has a one-second resolution: both servers must
            # stamp a sample within the same second for orderings by it
            # to agree.
            fraction = time.time() % 1
            if fraction > 0.75:
                time.sleep(1.02 - fraction)
            for client in clients:
                assert client.post("/instances", data).status == 200, name
        yield clients
    finally:
        ours.stop()
        theirs.stop()


@pytest.fixture(scope="module")
def ids(servers):
    """Resource IDs by kind, read from the oracle."""
    _, theirs = servers
    knee = theirs.post("/instances", read_sample("Knee", "T1", "IM-0001-0001.dcm")).json()
    brainix = theirs.post("/instances", read_sample("Brainix", "Flair",
                                                    "IM-0001-0001.dcm")).json()
    return {"knee": knee, "brainix": brainix}


def compare(servers, method, path, body=None, headers=None):
    ours, theirs = servers
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    a = ours.request(method, path, body, headers)
    b = theirs.request(method, path, body, headers)
    assert a.status == b.status, (method, path, a.body[:300], b.body[:300])
    type_a = a.headers.get("Content-Type", "").split(";")[0]
    type_b = b.headers.get("Content-Type", "").split(";")[0]
    if b.body:
        assert type_a == type_b, (method, path, type_a, type_b)
    if type_b == "application/json" and b.body:
        ja, jb = mask(a.json()), mask(b.json())
        assert ja == jb, (method, path)
        assert json.dumps(ja) == json.dumps(jb), (method, path, "field order")
    else:
        assert a.body == b.body, (method, path, a.body[:300], b.body[:300])
    return b


def test_system_reports_1_13_0(servers):
    ours, _ = servers
    system = ours.get_json("/system")
    assert system["Version"] == "1.13.0" and system["ApiVersion"] == 31
    theirs = servers[1].get_json("/system")
    # Every field of 1.13.0 is there; orthancd reports what it implements.
    assert sorted(system) == sorted(theirs)
    for key in ("HasLabels", "MainDicomTags", "OverwriteInstancesMode", "PatientLevelEnabled",
                "ReadOnly", "DicomDefaultRetrieveMethod", "CheckRevisions", "UserMetadata",
                "StoreMD5ForAttachments", "MaximumStorageMode", "IsHttpServerSecure"):
        assert system[key] == theirs[key], key
    assert system["Capabilities"]["HasExtendedFind"] is True
    assert system["Capabilities"]["HasExtendedChanges"] is True
    # Key-value stores as 1.13.0's (used by Lua); queues, plugin-only in
    # 1.13.0, are not implemented, so not claimed.
    assert system["Capabilities"]["HasKeyValueStores"] is theirs["Capabilities"]["HasKeyValueStores"]
    assert system["Capabilities"]["HasQueues"] is False


@pytest.mark.parametrize("suffix", [
    "", "?expand", "?since=0&limit=0", "?since=1&limit=2", "?since=100&limit=2",
    "?expand&requestedTags=PatientName;StudyDate;Modality;0008,0016",
    "?expand&requested-tags=ModalitiesInStudy;NumberOfStudyRelatedInstances",
    "?expand&short", "?expand&full", "?expand=false", "?expand=no",
    "?response-content=Labels;Parent", "?response-content=MainDicomTags;Metadata;Children",
    "?response-content=Bogus", "?limit=3", "?since=2", "?since=-1&limit=2",
    "?requestedTags=NoSuchTag&expand"])
@pytest.mark.parametrize("level", ["patients", "studies", "series", "instances"])
def test_lists(servers, level, suffix):
    compare(servers, "GET", "/" + level + suffix)


def test_resources_children_and_requested_tags(servers, ids):
    knee, brainix = ids["knee"], ids["brainix"]
    for answer in (knee, brainix):
        for level, key in (("patients", "ParentPatient"), ("studies", "ParentStudy"),
                           ("series", "ParentSeries"), ("instances", "ID")):
            base = "/%s/%s" % (level, answer[key])
            compare(servers, "GET", base)
            compare(servers, "GET", base + "?short")
            compare(servers, "GET", base + "?full")
            compare(servers, "GET", base + "?requestedTags=ModalitiesInStudy;SOPClassesInStudy;"
                    "NumberOfStudyRelatedInstances;NumberOfStudyRelatedSeries;"
                    "NumberOfPatientRelatedStudies;NumberOfSeriesRelatedInstances;"
                    "PatientName;StudyDate;Rows;PatientComments;RequestAttributesSequence;"
                    "0008,0005;NumberOfFrames;SOPClassUID;0002,0010")
            compare(servers, "GET", base + "?requestedTags=ModalitiesInStudy;Rows&full")
            compare(servers, "GET", base + "/metadata?expand")
            compare(servers, "GET", base + "/statistics")
        study, patient = answer["ParentStudy"], answer["ParentPatient"]
        for path in ("/patients/%s/studies" % patient, "/patients/%s/instances" % patient,
                     "/studies/%s/series?expand=false" % study,
                     "/studies/%s/instances?requestedTags=SOPInstanceUID;InstanceNumber" % study,
                     "/studies/%s/series?short" % study,
                     "/instances/%s/study" % answer["ID"], "/series/%s/patient" % answer["ParentSeries"]):
            compare(servers, "GET", path)
    unknown = "00000000-00000000-00000000-00000000-00000000"
    for path in ("/patients/" + unknown, "/studies/nonsense", "/patients/%s/studies" % unknown,
                 "/series/%s/statistics" % unknown, "/patients/%s/protected" % unknown,
                 "/instances/%s/patient" % unknown):
        compare(servers, "GET", path)


def test_labels(servers, ids):
    study, series = ids["knee"]["ParentStudy"], ids["knee"]["ParentSeries"]
    instance = ids["brainix"]["ID"]
    compare(servers, "GET", "/tools/labels")
    for label in ("Hello", "A_b-c", "1", "_", "x" * 64):
        compare(servers, "PUT", "/studies/%s/labels/%s" % (study, label), b"")
    compare(servers, "PUT", "/studies/%s/labels/Hello" % study, b"")  # twice
    compare(servers, "PUT", "/series/%s/labels/Other" % series, b"")
    compare(servers, "PUT", "/instances/%s/labels/Other" % instance, b"")
    for bad in ("a.b", "a%20b", "%C3%A9", "x" * 65):
        compare(servers, "PUT", "/studies/%s/labels/%s" % (study, bad), b"")
    compare(servers, "PUT", "/studies/00000000-00000000-00000000-00000000-00000000/labels/X", b"")
    for path in ("/studies/%s/labels" % study, "/studies/%s/labels/Hello" % study,
                 "/studies/%s/labels/Missing" % study, "/studies/%s/labels/a.b" % study,
                 "/studies/%s" % study, "/series/%s" % series, "/tools/labels"):
        compare(servers, "GET", path)
    compare(servers, "DELETE", "/studies/%s/labels/Missing" % study)
    compare(servers, "DELETE", "/studies/%s/labels/1" % study)
    compare(servers, "GET", "/studies/%s/labels" % study)
    compare(servers, "GET", "/tools/labels")


@pytest.mark.parametrize("body", [
    {"Level": "Study", "Query": {}},
    {"Level": "Study", "Query": {}, "Expand": True},
    {"Level": "Series", "Query": {"Modality": "MR"}, "Expand": True, "Short": True},
    {"Level": "Study", "Query": {"PatientName": "K*"}, "RequestedTags": ["ModalitiesInStudy"],
     "Expand": True},
    {"Level": "Study", "Query": {"ModalitiesInStudy": "MR"}, "Expand": True},
    {"Level": "Study", "Query": {"Modality": "MR"}},
    {"Level": "Patient", "Query": {"Modality": "MR"}},
    {"Level": "Study", "Query": {"PatientComments": "*"}, "Expand": True},
    {"Level": "Study", "Query": {"PatientComments": "*"}, "Since": 1},
    {"Level": "Instance", "Query": {}, "Limit": 3, "Since": 2},
    {"Level": "Instance", "Query": {}, "Limit": 0},
    {"Level": "Study", "Query": {}, "Labels": ["Hello"]},
    {"Level": "Study", "Query": {}, "Labels": ["Hello", "Nope"], "LabelsConstraint": "Any"},
    {"Level": "Study", "Query": {}, "Labels": ["Hello"], "LabelsConstraint": "None"},
    {"Level": "Study", "Query": {}, "Labels": [], "LabelsConstraint": "None"},
    {"Level": "Study", "Query": {}, "LabelsConstraint": "Some"},
    {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "DicomTag", "Key": "StudyDate",
                                                "Direction": "ASC"}]},
    {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "DicomTag", "Key": "PatientName",
                                                "Direction": "DESC"}], "Limit": 3},
    {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "DicomTag", "Key": "StudyDescription",
                                                "Direction": "ASC"}]},
    {"Level": "Series", "Query": {}, "OrderBy": [{"Type": "DicomTagAsInt", "Key": "SeriesNumber",
                                                 "Direction": "DESC"}]},
    {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "Metadata", "Key": "LastUpdate",
                                                "Direction": "DESC"}], "Limit": 4, "Since": 1},
    # Pages past whole groups of equal stamps (skipped without sorting them).
    {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "Metadata", "Key": "LastUpdate",
                                                "Direction": "DESC"}], "Limit": 2, "Since": 3},
    {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "Metadata", "Key": "LastUpdate",
                                                "Direction": "ASC"}], "Limit": 3, "Since": 2},
    {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "Metadata", "Key": "LastUpdate",
                                                "Direction": "ASC"}]},
    {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "Bogus", "Key": "LastUpdate",
                                                "Direction": "ASC"}]},
    {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "Metadata", "Key": "LastUpdate",
                                                "Direction": "Up"}]},
    # Instances' metadata are not indexed by value (METADATA_VALUE_LEVELS):
    # ordering by them reads them.
    {"Level": "Instance", "Query": {}, "OrderBy": [{"Type": "Metadata", "Key": "IndexInSeries",
                                                   "Direction": "DESC"}], "Limit": 4},
    {"Level": "Instance", "Query": {}, "OrderBy": [{"Type": "Metadata", "Key": "SopClassUid",
                                                   "Direction": "ASC"}], "Limit": 5, "Since": 1},
    {"Level": "Instance", "Query": {}, "MetadataQuery": {"TransferSyntax": "1.2.840.10008.1.2.1"}},
    {"Level": "Instance", "Query": {}, "MetadataQuery": {"SopClassUid": "*.4"}},
    {"Level": "Instance", "Query": {}, "MetadataQuery": {"Bogus": "x"}},
    {"Level": "Study", "Query": {}, "ResponseContent": ["MainDicomTags", "Labels"]},
    {"Level": "Series", "Query": {}, "ResponseContent": ["Parent", "Children", "Metadata",
                                                        "Status", "Attachments"]},
    {"Level": "Study", "Query": {}, "ResponseContent": ["Bogus"]},
    {"Level": "Study", "Query": {"StudyDate": "20000101-"}, "Expand": True, "Full": True},
    {"Level": "Patient", "Query": {"PatientID": "*"}, "Expand": True, "Short": True},
    {"Level": "Patient", "Query": {}, "ParentPatient": "bogus"},
    {"Level": "Study", "Query": {}, "Limit": "2"},
    {"Level": "Study", "Query": {}, "Limit": -1},
    {"Level": "Study", "Query": {}, "Since": -2},
    {"Level": "Study", "Query": {}, "ParentStudy": 5},
    {"Level": "Study", "Query": {"PatientName": "knee"}, "CaseSensitive": True},
    # Computed tags: matched against their computed value at their level,
    # missing (so nothing matches) at the others.
    {"Level": "Study", "Query": {"SOPClassesInStudy": "1.2.840.10008.5.1.4.1.1.4"}},
    {"Level": "Study", "Query": {"SOPClassesInStudy": "1.2.840.10008.5.1.4.1.1.4\\1.2.3"}},
    {"Level": "Study", "Query": {"SOPClassesInStudy": "1.2.840.10008.5.1.4.1.1.*"}},
    {"Level": "Study", "Query": {"SOPClassesInStudy": "1.2.840.10008.5.1.4.1.1.4"}, "Since": 1},
    {"Level": "Series", "Query": {"SOPClassesInStudy": "1.2.840.10008.5.1.4.1.1.4"}},
    {"Level": "Study", "Query": {"NumberOfStudyRelatedSeries": "2"}, "Expand": True},
    {"Level": "Study", "Query": {"NumberOfStudyRelatedInstances": "1"}},
    {"Level": "Patient", "Query": {"NumberOfPatientRelatedStudies": "1"}},
    {"Level": "Series", "Query": {"NumberOfSeriesRelatedInstances": "2"}},
    {"Level": "Series", "Query": {"NumberOfStudyRelatedSeries": "2"}},
    {"Level": "Series", "Query": {"ModalitiesInStudy": "MR"}},
    {"Level": "Instance", "Query": {"ModalitiesInStudy": "MR\\CT"}},
    {"Level": "Study", "Query": {"ModalitiesInStudy": "MR\\CT"}, "Expand": True},
    {"Level": "Instance", "Query": {"InstanceAvailability": "ONLINE"}, "Limit": 3},
    {"Level": "Instance", "Query": {"InstanceAvailability": "OFFLINE"}},
    # A list on a tag that is no main tag matches any item of the value.
    {"Level": "Instance", "Query": {"ScanningSequence": "SE\\GR"}},
    {"Level": "Instance", "Query": {"ScanningSequence": "SE"}},
])
def test_find_and_count(servers, ids, body):
    compare(servers, "POST", "/tools/find", body)
    counted = {k: v for k, v in body.items()
               if k not in ("Expand", "Limit", "Since", "OrderBy", "RequestedTags",
                            "ResponseContent", "Short", "Full")}
    compare(servers, "POST", "/tools/count-resources", counted)


def test_find_by_parent(servers, ids):
    knee = ids["knee"]
    for body in ({"Level": "Series", "Query": {}, "ParentStudy": knee["ParentStudy"]},
                 {"Level": "Instance", "Query": {}, "ParentPatient": knee["ParentPatient"],
                  "Expand": True},
                 {"Level": "Instance", "Query": {}, "ParentSeries": knee["ParentSeries"]},
                 {"Level": "Study", "Query": {}, "ParentSeries": knee["ParentSeries"]}):
        compare(servers, "POST", "/tools/find", body)
        compare(servers, "POST", "/tools/count-resources", body)


@pytest.mark.parametrize("query", [
    "", "?limit=5", "?since=3&limit=4", "?last", "?limit=0", "?since=10&limit=0",
    "?type=NewSeries", "?type=NewStudy;NewSeries&limit=3", "?type=NewInstance;",
    "?type=Bogus", "?type=all", "?to=5", "?to=5&limit=2", "?since=2&to=8&limit=100",
    "?since=5&to=3", "?to=0", "?to=-1", "?limit=-1", "?limit=4294967294", "?since=abc&limit=2",
    "?limit=2&type=StableStudy", "?since=1000"])
def test_changes(servers, query):
    compare(servers, "GET", "/changes" + query)


def test_lookup(servers, ids):
    for value in ("887", "887 ", "2.16.840.1.113669.632.20.121711.10000160881", "nothing",
                  "A10003245599", "knee", "COMMON", "common"):
        compare(servers, "POST", "/tools/lookup", value.encode())


def test_bulk_content(servers, ids):
    knee = ids["knee"]
    for body in ({"Resources": [knee["ParentStudy"], knee["ID"], "nonsense"]},
                 {"Resources": [knee["ParentStudy"]], "Level": "Series"},
                 {"Resources": [knee["ParentPatient"]], "Level": "Instance", "Metadata": False},
                 {"Resources": [knee["ID"]], "Level": "Patient", "Short": True},
                 {"Resources": "x"}, {"Resources": [knee["ID"]], "Metadata": "yes"}, []):
        compare(servers, "POST", "/tools/bulk-content", body)


def test_instances_tags(servers, ids):
    knee = ids["knee"]
    for level, key in (("patients", "ParentPatient"), ("studies", "ParentStudy"),
                       ("series", "ParentSeries")):
        for suffix in ("", "?simplify", "?short"):
            compare(servers, "GET", "/%s/%s/instances-tags%s" % (level, knee[key], suffix))


def test_reconstruct(servers, ids):
    brainix = ids["brainix"]
    compare(servers, "POST", "/studies/%s/reconstruct" % brainix["ParentStudy"], b"")
    compare(servers, "POST", "/series/%s/reconstruct" % brainix["ParentSeries"],
            {"LimitToThisLevelMainDicomTags": True})
    compare(servers, "POST", "/series/%s/reconstruct" % brainix["ParentSeries"],
            {"ReconstructFiles": "no"})
    compare(servers, "POST", "/tools/reconstruct", {"ReconstructFiles": False})
    for level, key in (("patients", "ParentPatient"), ("studies", "ParentStudy"),
                       ("series", "ParentSeries"), ("instances", "ID")):
        compare(servers, "GET", "/%s/%s" % (level, brainix[key]))
        compare(servers, "GET", "/%s/%s/metadata?expand" % (level, brainix[key]))
    compare(servers, "GET", "/changes?last")


def test_extra_main_dicom_tags(tmp_path):
    """The ExtraMainDicomTags option, with the same configuration on both."""
    extra = {"ExtraMainDicomTags": {"Instance": ["Rows", "Columns", "0028,0100"],
                                    "Series": ["BodyPartExamined", "SliceThickness"],
                                    "Study": ["PatientAge"], "Patient": []}}
    for name in ("orthancd", "oracle"):
        (tmp_path / name).mkdir()
    ours = Daemon(tmp_path / "orthancd", **extra).start()
    theirs = oracle.RealOrthanc(tmp_path / "oracle", **extra).start()
    try:
        pair = ours.client(), theirs.client()
        answer = None
        for client in pair:
            answer = client.upload(read_sample("Knee", "T1", "IM-0001-0001.dcm"))
        assert ours.client().get_json("/system")["MainDicomTags"] == \
            theirs.client().get_json("/system")["MainDicomTags"]
        for level, key in (("patients", "ParentPatient"), ("studies", "ParentStudy"),
                           ("series", "ParentSeries"), ("instances", "ID")):
            compare(pair, "GET", "/%s/%s" % (level, answer[key]))
            compare(pair, "GET", "/%s/%s/metadata?expand" % (level, answer[key]))
        compare(pair, "POST", "/tools/find", {"Level": "Instance", "Query": {"Rows": "512"}})
    finally:
        ours.stop()
        theirs.stop()


def test_patient_id_collision(servers):
    """Three patients sharing PatientID "COMMON": one Orthanc patient whose
    tags are the first instance's, each study keeping its own copy."""
    _, theirs = servers
    patient = theirs.post("/tools/lookup", b"COMMON").json()[0]["ID"]
    compare(servers, "GET", "/patients/" + patient)
    compare(servers, "GET", "/patients/%s/studies" % patient)
    compare(servers, "POST", "/tools/find", {"Level": "Study", "Query": {"PatientName": "WORLD"},
                                             "Expand": True})
    compare(servers, "POST", "/tools/find", {"Level": "Patient", "Query": {"PatientName": "WORLD"}})
    compare(servers, "GET", "/patients/%s?requestedTags=StudyInstanceUID;PatientName" % patient)


def _series_instance(number, total):
    """An instance of a series announcing ``total`` images (ImagesInAcquisition)."""
    import io
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian
    root = "1.2.826.0.1.3680043.8.498.99"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "%s.3.%d" % (root, number)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName = "COMPLETE", "COMPLETE^SERIES"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = root + ".1", root + ".2"
    ds.ImagesInAcquisition, ds.NumberOfTemporalPositions = total, 1
    ds.InstanceNumber = number
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_completed_series_is_logged(servers):
    """CompletedSeries goes to the changes log when the series' expected
    instances are all there (and again with each instance stored after)."""
    ours, theirs = servers
    before = [client.get_json("/changes?last")["Last"] for client in servers]
    for number in (2, 1, 1):
        data = _series_instance(number, 2)
        for client in servers:
            client.post("/instances", data)
    for client, since in zip(servers, before):
        client.since = since
    a = ours.get_json("/changes?since=%d" % ours.since)
    b = theirs.get_json("/changes?since=%d" % theirs.since)
    assert [(c["ChangeType"], c["ID"]) for c in a["Changes"]] == \
        [(c["ChangeType"], c["ID"]) for c in b["Changes"]]
    assert "CompletedSeries" in [c["ChangeType"] for c in b["Changes"]]
    series = ours.post("/tools/lookup", b"1.2.826.0.1.3680043.8.498.99.2").json()[0]["ID"]
    compare(servers, "GET", "/series/" + series)


def test_deleting_forgets_changes(servers):
    """Orthanc's changes log drops the changes of what is deleted (ON DELETE
    CASCADE): after storing, tagging and deleting a study, /changes is as
    if it had never been there, but the sequence numbers go on."""
    before = [client.get_json("/changes?last")["Last"] for client in servers]
    data = read_sample("Knee", "T2", "IM-0001-0002.dcm")
    answers = [client.post("/instances", data).json() for client in servers]
    for client, answer in zip(servers, answers):
        client.put("/studies/%s/metadata/1024" % answer["ParentStudy"], b"note")
    for query in ("?since=%d", "?since=%d&limit=3"):
        for client, since in zip(servers, before):
            assert client.get_json("/changes" + query % since)["Changes"], query
    for client, answer in zip(servers, answers):
        assert client.delete("/studies/" + answer["ParentStudy"]).status == 200
    for client, since in zip(servers, before):
        changes = client.get_json("/changes?since=%d" % since)
        assert changes["Changes"] == [] and changes["Last"] > since
    compare(servers, "GET", "/changes")
    compare(servers, "GET", "/changes?last")
