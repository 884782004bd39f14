"""Upload, browse and download through the real daemon over HTTP."""
import io
import zipfile

import pytest

from tests.support.daemon import read_sample

# IDs the real Orthanc computes for DummyCT.dcm (checked against Orthanc 1.10.1).
DUMMY_CT = {
    "ID": "66a662ce-7430e543-bad44d47-0dc5a943-ec7a538d",
    "ParentPatient": "6816cb19-844d5aee-85245eba-28e841e6-2414fae2",
    "ParentSeries": "f2635388-f01d497a-15f7c06b-ad7dba06-c4c599fe",
    "ParentStudy": "b9c08539-26f93bde-c81ab0d7-bffaf2cb-a4d0bdd0",
    "Path": "/instances/66a662ce-7430e543-bad44d47-0dc5a943-ec7a538d",
}


@pytest.fixture(scope="module")
def dummy_ct(rest):
    answer = rest.upload(read_sample("DummyCT.dcm"))
    return answer


def test_upload_answer_matches_orthanc(dummy_ct):
    assert {k: dummy_ct[k] for k in DUMMY_CT} == DUMMY_CT
    assert dummy_ct["Status"] in ("Success", "AlreadyStored")


def test_second_upload_is_already_stored(rest, dummy_ct):
    again = rest.upload(read_sample("DummyCT.dcm"))
    assert again["Status"] == "AlreadyStored"
    assert again["ID"] == dummy_ct["ID"]


def test_json_layout_is_orthancs(rest, dummy_ct):
    answer = rest.get("/patients")
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert answer.text.startswith('[\n   "')


def test_browse_down_the_hierarchy(rest, dummy_ct):
    assert dummy_ct["ParentPatient"] in rest.get_json("/patients")
    patient = rest.get_json("/patients/" + dummy_ct["ParentPatient"])
    assert patient["Type"] == "Patient"
    assert patient["MainDicomTags"]["PatientID"] == "ozp00SjY2xG"
    assert patient["Studies"] == [dummy_ct["ParentStudy"]]
    study = rest.get_json("/studies/" + dummy_ct["ParentStudy"])
    assert study["ParentPatient"] == dummy_ct["ParentPatient"]
    assert study["PatientMainDicomTags"]["PatientName"] == "KNIX"
    assert study["MainDicomTags"]["StudyDescription"] == "Knee (R)"
    series = rest.get_json("/series/" + dummy_ct["ParentSeries"])
    assert series["ParentStudy"] == dummy_ct["ParentStudy"]
    assert series["Instances"] == [dummy_ct["ID"]]
    assert series["Status"] == "Unknown"
    assert series["ExpectedNumberOfInstances"] is None
    assert series["MainDicomTags"]["Modality"] == "MR"
    instance = rest.get_json("/instances/" + dummy_ct["ID"])
    assert instance["ParentSeries"] == dummy_ct["ParentSeries"]
    assert instance["FileSize"] == len(read_sample("DummyCT.dcm"))
    assert instance["IndexInSeries"] == 1
    assert instance["MainDicomTags"]["SOPInstanceUID"] == \
        "1.2.840.113619.2.176.2025.1499492.7040.1171286242.109"


def test_child_and_parent_routes(rest, dummy_ct):
    studies = rest.get_json("/patients/%s/studies" % dummy_ct["ParentPatient"])
    assert [s["ID"] for s in studies] == [dummy_ct["ParentStudy"]]
    instances = rest.get_json("/studies/%s/instances" % dummy_ct["ParentStudy"])
    assert [i["ID"] for i in instances] == [dummy_ct["ID"]]
    assert rest.get_json("/instances/%s/patient" % dummy_ct["ID"])["ID"] == dummy_ct["ParentPatient"]
    assert rest.get_json("/instances/%s/series" % dummy_ct["ID"])["ID"] == dummy_ct["ParentSeries"]
    assert rest.get_json("/series/%s/study" % dummy_ct["ParentSeries"])["ID"] == dummy_ct["ParentStudy"]


def test_expand_since_limit(rest, dummy_ct):
    expanded = rest.get_json("/patients?expand")
    assert any(p["ID"] == dummy_ct["ParentPatient"] for p in expanded)
    assert rest.get_json("/patients?since=0&limit=1") == rest.get_json("/patients")[:1]
    missing = rest.get("/patients?since=1")
    assert missing.status == 400
    assert missing.json()["Details"].startswith('Missing "limit" argument')


def test_download_file_is_byte_identical(rest, dummy_ct):
    answer = rest.get("/instances/%s/file" % dummy_ct["ID"])
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/dicom"
    assert answer.body == read_sample("DummyCT.dcm")


def test_tags_renderings(rest, dummy_ct):
    tags = rest.get_json("/instances/%s/tags" % dummy_ct["ID"])
    assert tags["0010,0010"] == {"Name": "PatientName", "Type": "String", "Value": "KNIX"}
    simplified = rest.get_json("/instances/%s/simplified-tags" % dummy_ct["ID"])
    assert simplified["PatientName"] == "KNIX"
    assert rest.get_json("/instances/%s/tags?simplify" % dummy_ct["ID"]) == simplified
    short = rest.get_json("/instances/%s/tags?short" % dummy_ct["ID"])
    assert short["0010,0010"] == "KNIX"


def test_metadata(rest, dummy_ct):
    names = rest.get_json("/instances/%s/metadata" % dummy_ct["ID"])
    for name in ("IndexInSeries", "ReceptionDate", "RemoteAET", "Origin", "TransferSyntax",
                 "SopClassUid", "RemoteIP", "HttpUsername"):
        assert name in names
    expanded = rest.get_json("/instances/%s/metadata?expand" % dummy_ct["ID"])
    assert expanded["Origin"] == "RestApi"
    assert expanded["TransferSyntax"] == "1.2.840.10008.1.2.4.70"
    assert expanded["RemoteIP"] == "127.0.0.1"
    answer = rest.get("/instances/%s/metadata/SopClassUid" % dummy_ct["ID"])
    assert answer.text == "1.2.840.10008.5.1.4.1.1.4"


def test_user_metadata_roundtrip(rest, dummy_ct):
    path = "/instances/%s/metadata/1025" % dummy_ct["ID"]
    assert rest.put(path, "hello").status == 200
    assert rest.get(path).text == "hello"
    assert rest.delete(path).status == 200
    assert rest.get(path).status == 404


def test_attachments(rest, dummy_ct):
    base = "/instances/%s/attachments" % dummy_ct["ID"]
    assert rest.get_json(base) == ["dicom"]
    info = rest.get_json(base + "/dicom/info")
    assert info["UncompressedSize"] == len(read_sample("DummyCT.dcm"))
    assert info["ContentType"] == 1
    assert rest.get(base + "/dicom/data").body == read_sample("DummyCT.dcm")
    assert rest.get(base + "/dicom/md5").text == info["UncompressedMD5"]
    assert rest.post(base + "/dicom/verify-md5").status == 200


def test_statistics(rest, dummy_ct):
    stats = rest.get_json("/statistics")
    assert stats["CountInstances"] >= 1 and stats["CountPatients"] >= 1
    assert int(stats["TotalDiskSize"]) >= len(read_sample("DummyCT.dcm"))
    patient = rest.get_json("/patients/%s/statistics" % dummy_ct["ParentPatient"])
    assert patient["CountInstances"] == 1 and patient["CountStudies"] == 1
    assert patient["DiskSize"] == str(len(read_sample("DummyCT.dcm")))


def test_lookup(rest, dummy_ct):
    found = rest.post("/tools/lookup", "ozp00SjY2xG").json()
    assert found == [{"ID": dummy_ct["ParentPatient"], "Path": "/patients/" + dummy_ct["ParentPatient"],
                      "Type": "Patient"}]
    assert rest.post("/tools/lookup", "1.2.3.4.nothing").json() == []


def test_zip_upload_answers_a_list(rest):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/ct.dcm", read_sample("DummyCT.dcm"))
        archive.writestr("a/readme.txt", b"not dicom")
        archive.writestr("b/phenix.dcm", read_sample("Issue16.dcm"))
    answer = rest.post("/instances", buffer.getvalue())
    assert answer.status == 200
    body = answer.json()
    assert isinstance(body, list) and len(body) == 2
    assert body[0]["ID"] == DUMMY_CT["ID"]


def test_bad_dicom_is_refused_and_changes_nothing(rest, dummy_ct):
    before = rest.get_json("/statistics")
    answer = rest.post("/instances", b"garbage")
    assert answer.status == 400
    error = answer.json()
    assert error["OrthancStatus"] == 15
    assert error["HttpError"] == "Bad Request"
    assert error["Message"] == "Bad file format"
    assert error["Method"] == "POST" and error["Uri"] == "/instances"
    truncated = read_sample("DummyCT.dcm")[:300]
    assert rest.post("/instances", truncated).status == 400
    assert rest.get_json("/statistics") == before


def test_unknown_resource_is_404(rest):
    # As Orthanc 1.13.0: the resource itself answers an empty 404, the routes
    # below it and unknown routes the JSON error (see test_rest_plumbing_parity).
    answer = rest.get("/patients/00000000-00000000-00000000-00000000-00000000")
    assert (answer.status, answer.body) == (404, b"")
    assert rest.get("/no/such/route").json()["OrthancStatus"] == 17
    answer = rest.get("/instances/not-an-id/tags")
    assert answer.status == 404
    assert answer.json()["OrthancStatus"] == 17


def test_wrong_method_is_405_with_allow(rest):
    answer = rest.delete("/system")
    assert answer.status == 405
    assert answer.headers["Allow"] == "GET"
    assert answer.body == b""


def test_system(rest, daemon):
    system = rest.get_json("/system")
    assert system["Version"] == "1.13.0" and system["ApiVersion"] == 31
    assert system["Capabilities"]["HasExtendedFind"] is True
    assert system["Capabilities"]["HasExtendedChanges"] is True
    assert system["HasLabels"] is True
    assert system["HttpPort"] == daemon.http_port
    assert system["DicomAet"] == "ORTHANCD"
    assert system["Name"] == "orthancd-test"


def test_tools(rest):
    assert len(rest.get("/tools/now").text) == 15
    uid = rest.get("/tools/generate-uid?level=series").text
    assert uid.startswith("1.2.276.0.7230010.3.1.3.")
    assert rest.get("/tools/default-encoding").text == "Latin1"
    assert rest.put("/tools/default-encoding", "Utf8").status == 200
    assert rest.get("/tools/default-encoding").text == "Utf8"
    assert rest.put("/tools/default-encoding", "Bogus").status == 400
    assert rest.put("/tools/default-encoding", "Latin1").status == 200
    assert "1.2.840.10008.1.2" in rest.get_json("/tools/accepted-transfer-syntaxes")
    assert rest.get("/tools/unknown-sop-class-accepted").text == "0"
    assert rest.get("/tools/log-level").text == "default"
    assert rest.put("/tools/log-level", "verbose").status == 200
    assert rest.get("/tools/log-level").text == "verbose"
    assert rest.put("/tools/log-level", "default").status == 200
