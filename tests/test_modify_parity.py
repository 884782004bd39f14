"""Modification, anonymization, split and merge, compared with the real
Orthanc 1.13.0 (issue 7).

Both servers hold the same files (Brainix: one study, two series; Knee; a
few odd samples).  Every request goes to both; answers are compared field by
field where they are deterministic, and new files element by element (new
UIDs and UUIDs by the place they take, see tests/support/dicom_structure).
The anonymized Brainix study is also checked on its own with pydicom: what
the 2023b profile removes or empties is gone, UIDs are consistent across the
study and inside the references, pixel data is untouched.
"""
import io
import json
import os
import re

import pydicom
import pytest

from orthancd.modification import profiles
from tests.support import dicom_structure, oracle
from tests.support.daemon import Daemon, sample

BRAINIX_STUDY = "27f7126f-4f66fb14-03f4081b-f9341db2-53925988"
BRAINIX_PATIENT = "16738bc3-e47ed42a-43ce044c-a3414a45-cb069bd0"
FLAIR = "1e2c125c-411b8e86-3f4fe68e-a7584dd3-c6da78f0"
EPI = "2ac1316d-3e432022-62eabff2-c59f5475-9b1ac3f8"
FLAIR_1 = "4dc71dc0-6093b5f8-ca67aa8a-07b18ff5-95dbe3c8"
KNEE_STUDY = "0a9b3153-2512774b-2d9580de-1fc3dcf6-3bd83918"
# PatientWith2studies: patient TEST_1 has two studies.
TWO_STUDIES_STUDY = "2062b048-97cf01a8-01a36031-1f95d464-aae0f7dd"

ODD_SAMPLES = ["PrivateTags.dcm", "DummyCT.dcm", "Issue195.dcm", "sample-pdf.dcm",
               "HierarchicalAnonymization/RTH/RT.dcm",
               "HierarchicalAnonymization/StructuredReports/IM631",
               "HierarchicalAnonymization/2019-03-28/PR000000.dcm",
               "Encodings/Lena-latin1.dcm", "Encodings/Lena-utf8.dcm",
               "TransferSyntaxes/1.2.840.10008.1.2.dcm", "TransferSyntaxes/1.2.840.10008.1.2.2.dcm",
               "TransferSyntaxes/1.2.840.10008.1.2.1.99.dcm",
               "TransferSyntaxes/1.2.840.10008.1.2.4.91.dcm"]
ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")


def _files(folder):
    root = sample(folder)
    return sorted(os.path.join(dirpath, name) for dirpath, _, names in os.walk(root)
                  for name in names)


class Pair:
    """orthancd and Orthanc 1.13.0, the same request to both."""

    def __init__(self, ours, theirs):
        self.ours = ours
        self.theirs = theirs
        self._uploaded = {}

    def both(self, method, path, body=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        return (self.ours.client().request(method, path, body),
                self.theirs.client().request(method, path, body))

    def upload(self, path):
        """Store a file in both (once: the tests only ever add to them)."""
        if path not in self._uploaded:
            with open(path, "rb") as f:
                data = f.read()
            ours, theirs = self.both("POST", "/instances", data)
            assert ours.status == theirs.status == 200, path
            assert ours.json()["ID"] == theirs.json()["ID"]
            self._uploaded[path] = ours.json()
        return self._uploaded[path]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    ours = Daemon(tmp_path_factory.mktemp("orthancd"), StableAge=3600).start()
    theirs = oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), StableAge=3600).start()
    servers = Pair(ours, theirs)
    try:
        for path in _files("Brainix") + _files("Knee/T1")[:4]:
            servers.upload(path)
        for name in ODD_SAMPLES:
            servers.upload(sample(name))
        for path in _files("PatientWith2studies"):
            servers.upload(path)
        yield servers
    finally:
        ours.stop()
        theirs.stop()


def same_answer(ours, theirs, context=None):
    """Same status and body (JSON compared as JSON)."""
    assert ours.status == theirs.status, (context, ours.status, ours.body[:500], theirs.body[:500])
    if theirs.body[:1] in (b"{", b"["):
        assert ours.json() == theirs.json(), (context, ours.body[:800], theirs.body[:800])
    else:
        assert ours.body == theirs.body, (context, ours.body[:500], theirs.body[:500])
    assert ours.headers.get("Content-Type") == theirs.headers.get("Content-Type"), context


def shape(value, known):
    """A JSON answer with the identifiers each server made up replaced."""
    if isinstance(value, dict):
        return {k: shape(v, known) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v, known) for v in value]
    if isinstance(value, str):
        if ID.match(value) and value not in known:
            return "<new>"
        match = re.match(r"^/(patients|studies|series|instances)/(.*)$", value)
        if match and match.group(2) not in known:
            return "/%s/<new>" % match.group(1)
        if value.startswith("1.2.276.0.7230010.3.1."):
            return "<uid>"
    return value


def known_ids(server):
    ids = set()
    for level in ("patients", "studies", "series", "instances"):
        ids.update(server.client().get_json("/" + level))
    return ids


def same_shape(pair, ours, theirs, known, context=None):
    assert ours.status == theirs.status == 200, (context, ours.body[:500], theirs.body[:500])
    assert shape(ours.json(), known) == shape(theirs.json(), known), (context, ours.body[:900],
                                                                      theirs.body[:900])


def same_file(ours, theirs, context, ignore=()):
    assert ours.status == theirs.status == 200, (context, ours.body[:300], theirs.body[:300])
    assert ours.headers.get("Content-Type") == theirs.headers.get("Content-Type") \
        == "application/dicom"
    differences = dicom_structure.differences(ours.body, theirs.body, ignore)
    assert not differences, (context, differences[:20])


def last_change(server):
    return server.client().get_json("/changes?last")["Last"]


# -- single instances: the modified file comes back, nothing is stored --

MODIFY_BODIES = [
    {"Replace": {"PatientName": "Hé^Ünï", "StudyDescription": "Désc", "InstitutionName": "",
                 "ImageComments": None, "Rows": "12", "PixelSpacing": "1.5\\2",
                 "ReferencedStudySequence": [{"ReferencedSOPClassUID": "1.2.3",
                                              "ReferencedSOPInstanceUID": "4.5.6"}],
                 "0009-0010": "data:application/octet-stream;base64,SGVsbG8="},
     "Remove": ["SeriesDescription", "ProcedureCodeSequence[0].CodeMeaning"],
     "RemovePrivateTags": True},
    {"Replace": {"PatientID": "NEW", "StudyInstanceUID": "1.2.3.4"}, "Force": True},
    {"Keep": ["SOPInstanceUID"], "Force": True, "Replace": {"SeriesDescription": "X"}},
    {"Replace": {"SpecificCharacterSet": "ISO_IR 192", "PatientName": "Ç^é",
                 "StudyDescription": "é"}},
    {"Replace": {"FrameIncrementPointer": "0018,1063\\PatientName",
                 "ReferencedImageSequence[*].ReferencedSOPClassUID": "1.2.3"}},
]

JPEG_2000 = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                "1.2.840.10008.1.2.1.99")


@pytest.mark.parametrize("index", range(len(MODIFY_BODIES)))
def test_modified_instances_match_orthanc(pair, index):
    body = MODIFY_BODIES[index]
    before = last_change(pair.ours)
    for name in ODD_SAMPLES + ["Brainix/Flair/IM-0001-0001.dcm"]:
        instance = pair.upload(sample(name))["ID"]
        ours, theirs = pair.both("POST", "/instances/%s/modify" % instance, body)
        if theirs.status != 200:
            same_answer(ours, theirs, (name, body))
            continue
        same_file(ours, theirs, (name, body))
    # Nothing stored, nothing logged.
    assert last_change(pair.ours) == before


def test_transcoded_instances(pair):
    """Between uncompressed transfer syntaxes orthancd writes the files
    Orthanc writes; to or from compressed ones (orthancd.transcoding) the
    same answers, in the same syntax ("Not implemented yet" where Orthanc's
    transcoder fails).  JPEG 2000 is the deliberate difference: Orthanc's
    DCMTK cannot decode it, orthancd can and transcodes it."""
    for name in ODD_SAMPLES:
        instance = pair.upload(sample(name))["ID"]
        syntax = pair.ours.client().get("/instances/%s/metadata/TransferSyntax" % instance).text
        for target in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.4.70"):
            body = {"Transcode": target, "Replace": {"SeriesDescription": "T"}}
            ours, theirs = pair.both("POST", "/instances/%s/modify" % instance, body)
            if syntax == target or (syntax in UNCOMPRESSED and target in UNCOMPRESSED):
                same_file(ours, theirs, (name, target))
                assert dicom_structure.parse(ours.body).file_meta.TransferSyntaxUID == target
            elif theirs.status != 200 and syntax not in JPEG_2000:
                same_answer(ours, theirs, (name, target))
            else:
                assert ours.status == 200, (name, target)
                assert dicom_structure.parse(ours.body).file_meta.TransferSyntaxUID == target
                if theirs.status == 200:
                    assert dicom_structure.parse(theirs.body).file_meta.TransferSyntaxUID == \
                        target


def test_kept_identifiers_give_the_same_bytes(pair):
    """Keeping the SOPInstanceUID, nothing is generated: the files are the
    bytes Orthanc writes (meta header, explicit lengths, padding...)."""
    body = {"Keep": ["SOPInstanceUID"], "Force": True,
            "Replace": {"SeriesDescription": "X", "PatientName": "Hé"}}
    for name in ODD_SAMPLES:
        instance = pair.upload(sample(name))["ID"]
        ours, theirs = pair.both("POST", "/instances/%s/modify" % instance, body)
        assert ours.status == theirs.status == 200, name
        assert ours.body == theirs.body, name


@pytest.mark.parametrize("version", ["2008", "2017c", "2021b", "2023b", None])
def test_anonymized_instances_match_orthanc(pair, version):
    body = {} if version is None else {"DicomVersion": version}
    for name in ODD_SAMPLES + ["Brainix/Epi/IM-0001-0003.dcm"]:
        instance = pair.upload(sample(name))["ID"]
        ours, theirs = pair.both("POST", "/instances/%s/anonymize" % instance, body)
        # "AnonymizedN": each server counts its own anonymizations.
        same_file(ours, theirs, (name, version), ignore=("(0010,0010)",))
        name_ours = dicom_structure.parse(ours.body).PatientName
        assert re.match(r"^Anonymized\d+$", str(name_ours))


def test_anonymization_options_match_orthanc(pair):
    bodies = [
        {"KeepPrivateTags": True, "Keep": ["StudyDescription", "SeriesDescription"],
         "Replace": {"PatientName": "Hello", "0010-1001": "World"}, "DicomVersion": "2017c"},
        {"Remove": ["Modality", "ReferencedImageSequence[0].ReferencedSOPInstanceUID"],
         "Replace": {"ProcedureCodeSequence[*].CodeValue": "ZZ"}},
        {"Keep": ["ReferencedImageSequence"], "Replace": {"StudyInstanceUID": "1.2.3"},
         "Force": True},
    ]
    for body in bodies:
        for name in ("PrivateTags.dcm", "Brainix/Epi/IM-0001-0004.dcm",
                     "HierarchicalAnonymization/StructuredReports/IM631"):
            instance = pair.upload(sample(name))["ID"]
            ours, theirs = pair.both("POST", "/instances/%s/anonymize" % instance, body)
            same_file(ours, theirs, (name, body), ignore=("(0010,0010)",))


# -- bad requests: Orthanc's error, nothing changes --

def _bad_requests():
    instance, series, study, patient = FLAIR_1, FLAIR, BRAINIX_STUDY, BRAINIX_PATIENT
    out = []
    for body in ['{"Replace":{"PatientID":"x"}}', '{"Replace":{"Foo":"x"}}',
                 '{"Remove":["StudyInstanceUID"]}', '{"Remove":["SOPInstanceUID"],"Force":true}',
                 '{"Replace":{"PatientName":5}}', '[1]', 'xx', '', '{"Replace":[]}',
                 '{"Remove":"x"}', '{"Remove":[1]}', '{"Force":1}', '{"Keep":["PatientID"]}',
                 '{"Replace":{"SOPInstanceUID":5},"Force":true}', '{"Transcode":"1.2.3"}',
                 '{"Transcode":5}', '{"Transcode":"1.2.840.10008.1.2.4.100"}',
                 '{"PrivateCreator":5}', '{"Replace":{"Rows":"x"}}', '{"Replace":{"Rows":"70000"}}',
                 '{"Replace":{"ReferencedImageSequence":"x"}}', '{"Replace":{"Rows":[]}}',
                 '{"Replace":{"ReferencedImageSequence[x].ReferencedSOPInstanceUID":"1"}}',
                 '{"Replace":{"ReferencedImageSequence.ReferencedSOPInstanceUID":"1"}}',
                 '{"Replace":{"(zz)":"1"}}', '{"Replace":{"PixelData":"data:text/plain;base64,AA=="}}',
                 '{"DicomVersion":"2019"}', '{"DicomVersion":5}']:
        out.append(("/instances/%s/modify" % instance, body))
        out.append(("/instances/%s/anonymize" % instance, body))
    for level, public_id in (("series", series), ("studies", study), ("patients", patient)):
        for body in ['{"Replace":{"PatientID":"x"}}', '{"Replace":{"Foo":"x"}}',
                     '{"Remove":["StudyInstanceUID"]}', '[1]', 'xx', '{"KeepSource":1}',
                     '{"Transcode":5}', '{"Transcode":"1.2.3"}', '{"Permissive":1}',
                     '{"Priority":"a"}', '{"Priority":1.5}', '{"Priority":99999999999}',
                     '{"Synchronous":1}', '{"Asynchronous":"x"}',
                     '{"Keep":["StudyInstanceUID","SeriesInstanceUID","SOPInstanceUID"],'
                     '"Force":true}',
                     # Refused by the job itself: a failed job, nothing stored.
                     '{"Remove":["SOPInstanceUID"],"Force":true}', '{"Replace":{"Rows":"x"}}',
                     '{"Replace":{"PatientName":5}}']:
            out.append(("/%s/%s/modify" % (level, public_id), body))
        for body in ['{"DicomVersion":"2019"}', '[1]', '{"Force":"x"}', '{"Remove":["PatientID"]}']:
            out.append(("/%s/%s/anonymize" % (level, public_id), body))
        out.append(("/%s/nope/modify" % level, "{}"))
        out.append(("/%s/nope/anonymize" % level, "{}"))
    out.append(("/instances/nope/modify", "{}"))
    for body in ['{}', '{"Resources":"x"}', '{"Resources":["nope"]}',
                 '{"Resources":[], "Level":"Foo"}', '[]']:
        out.append(("/tools/bulk-modify", body))
        out.append(("/tools/bulk-anonymize", body))
    for body in ['{}', '{"Series":["%s"]}' % instance, '{"Series":["nope"]}', '{"Series":"x"}',
                 '{"Instances":["%s"],"KeepSource":1}' % instance,
                 '{"Instances":["%s"],"Remove":"x"}' % instance,
                 '{"Instances":["%s"],"Remove":["Modality"]}' % instance,
                 '{"Instances":["%s"],"Replace":{"Foo":"x"}}' % instance,
                 '{"Instances":["%s"],"Replace":{"PatientName":5}}' % instance, '[]', 'null', 'xx']:
        out.append(("/studies/%s/split" % study, body))
    out.append(("/studies/nope/split", "[]"))
    for body in ['{}', '{"Resources":"x"}', '{"Resources":["nope"]}', '{"Resources":["%s"]}' % study,
                 '{"Resources":["%s"]}' % patient, '{"Resources":["%s"]}' % series,
                 '{"Resources":["%s"]}' % instance, '[]', 'xx']:
        out.append(("/studies/%s/merge" % study, body))
    out.append(("/studies/nope/merge", "{}"))
    out.append(("/studies/%s/merge" % series, "{}"))
    return out


def test_bad_requests_get_orthancs_errors_and_change_nothing(pair):
    instances = len(pair.ours.client().get_json("/instances"))
    before = last_change(pair.ours)
    for path, body in _bad_requests():
        ours, theirs = pair.both("POST", path, body)
        if theirs.status == 200 and path.startswith("/instances/"):
            # Not an error for this route (DicomVersion of a modification...).
            same_file(ours, theirs, (path, body), ignore=("(0010,0010)",))
            continue
        same_answer(ours, theirs, (path, body))
    assert len(pair.ours.client().get_json("/instances")) == instances
    assert last_change(pair.ours) == before


# -- resources: jobs, new resources, metadata, changes --

def _changes_since(server, since):
    answer = server.client().get_json("/changes?since=%d&limit=10000" % since)
    return [(c["ChangeType"], c["ResourceType"]) for c in answer["Changes"]]


def _metadata(server, level, public_id):
    return server.client().get_json("/%s/%s/metadata?expand" % (level, public_id))


def test_anonymized_study_matches_orthanc(pair):
    """The whole Brainix study (44 files, two series) anonymized by both:
    same answer, same changes logged, same metadata, same files."""
    known = known_ids(pair.theirs)
    since = (last_change(pair.ours), last_change(pair.theirs))
    ours, theirs = pair.both("POST", "/studies/%s/anonymize" % BRAINIX_STUDY, {})
    same_shape(pair, ours, theirs, known)
    new = ours.json()["ID"], theirs.json()["ID"]
    assert _changes_since(pair.ours, since[0]) == _changes_since(pair.theirs, since[1])
    for server, study in zip((pair.ours, pair.theirs), new):
        metadata = _metadata(server, "studies", study)
        assert metadata["AnonymizedFrom"] == BRAINIX_STUDY
    assert set(_metadata(pair.ours, "studies", new[0])) == \
        set(_metadata(pair.theirs, "studies", new[1]))
    files = []
    for server, study in zip((pair.ours, pair.theirs), new):
        by_origin = {}
        for instance in server.client().get_json("/studies/%s/instances" % study):
            metadata = _metadata(server, "instances", instance["ID"])
            origin = metadata["AnonymizedFrom"]
            assert origin not in by_origin
            by_origin[origin] = (instance["ID"], metadata)
        files.append(by_origin)
    assert set(files[0]) == set(files[1])
    assert len(files[0]) == 44
    for origin in files[0]:
        (mine, mine_metadata), (reference, reference_metadata) = files[0][origin], files[1][origin]
        assert set(mine_metadata) == set(reference_metadata)
        ours_file = pair.ours.client().get("/instances/%s/file" % mine)
        theirs_file = pair.theirs.client().get("/instances/%s/file" % reference)
        assert not dicom_structure.differences(ours_file.body, theirs_file.body,
                                               ignore=("(0010,0010)",)), origin
    check_anonymized_brainix(pair.ours, new[0])


def check_anonymized_brainix(server, study):
    """Checked with pydicom alone: the 2023b profile applied, UIDs
    consistent, pixels intact."""
    client = server.client()
    profile = profiles.PROFILES["2023b"]
    study_uids, patient_ids, series_of = set(), set(), {}
    new_sop_of_original = {}
    datasets = []
    for instance in client.get_json("/studies/%s/instances" % study):
        original_id = _metadata(server, "instances", instance["ID"])["AnonymizedFrom"]
        new = pydicom.dcmread(io.BytesIO(
            client.get("/instances/%s/file" % instance["ID"]).body))
        original = pydicom.dcmread(io.BytesIO(
            client.get("/instances/%s/file" % original_id).body))
        datasets.append((original, new))
        new_sop_of_original[original.SOPInstanceUID] = new.SOPInstanceUID
        study_uids.add(new.StudyInstanceUID)
        patient_ids.add(new.PatientID)
        series_of.setdefault(original.SeriesInstanceUID, set()).add(new.SeriesInstanceUID)
        # Pixels untouched.
        assert new.PixelData == original.PixelData
        # New identifiers.
        assert new.SOPInstanceUID != original.SOPInstanceUID
        assert new.file_meta.MediaStorageSOPInstanceUID == new.SOPInstanceUID
        assert new.StudyInstanceUID != original.StudyInstanceUID
        assert new.PatientID != original.PatientID
        assert str(new.PatientName).startswith("Anonymized")
        assert new.PatientIdentityRemoved == "YES"
        assert new.DeidentificationMethod == \
            "Orthanc 1.13.0 - PS 3.15-2023b Table E.1-1 Basic Profile"
        for tag in profile.removed:
            assert tag not in new, hex(tag)
        for tag in profile.cleared:
            if tag in original:
                assert tag in new and not new[tag].value, hex(tag)
        assert not any(element.tag.is_private for element in new)
        if "FrameOfReferenceUID" in original:
            assert new.FrameOfReferenceUID != original.FrameOfReferenceUID
    assert len(study_uids) == 1 and len(patient_ids) == 1
    assert len(series_of) == 2 and all(len(v) == 1 for v in series_of.values())
    assert len({next(iter(v)) for v in series_of.values()}) == 2
    # References to instances of the study point to their new UIDs; the
    # others to new UIDs too, the same for the same original.
    mapped_elsewhere = {}
    for original, new in datasets:
        for before, after in zip(original.get("ReferencedImageSequence", []),
                                 new.get("ReferencedImageSequence", [])):
            target = before.ReferencedSOPInstanceUID
            if target in new_sop_of_original:
                assert after.ReferencedSOPInstanceUID == new_sop_of_original[target]
            else:
                assert mapped_elsewhere.setdefault(target, after.ReferencedSOPInstanceUID) \
                    == after.ReferencedSOPInstanceUID
                assert after.ReferencedSOPInstanceUID != target


def test_modified_series_matches_orthanc(pair):
    known = known_ids(pair.theirs)
    since = (last_change(pair.ours), last_change(pair.theirs))
    body = {"Replace": {"SeriesDescription": "Modified", "InstitutionName": "Clinic"},
            "UserData": {"who": ["me"]}}
    ours, theirs = pair.both("POST", "/series/%s/modify" % EPI, body)
    same_shape(pair, ours, theirs, known)
    assert _changes_since(pair.ours, since[0]) == _changes_since(pair.theirs, since[1])
    new = ours.json()["ID"], theirs.json()["ID"]
    for server, series in zip((pair.ours, pair.theirs), new):
        metadata = _metadata(server, "series", series)
        assert metadata["ModifiedFrom"] == EPI
        # Same study, same patient: only the series and instances are new.
        parent = server.client().get_json("/series/%s" % series)["ParentStudy"]
        assert parent == BRAINIX_STUDY
        assert "ModifiedFrom" not in _metadata(server, "studies", parent)
    assert set(_metadata(pair.ours, "series", new[0])) == \
        set(_metadata(pair.theirs, "series", new[1]))
    tags = [server.client().get_json("/series/%s" % series)["MainDicomTags"]
            for server, series in zip((pair.ours, pair.theirs), new)]
    assert shape(tags[0], known) == shape(tags[1], known)
    # The job as /jobs shows it.
    jobs = []
    for server in (pair.ours, pair.theirs):
        listed = server.client().get_json("/jobs?expand")
        job = max(listed, key=lambda j: j["CreationTime"])
        for key in ("ID", "CreationTime", "CompletionTime", "Timestamp", "EffectiveRuntime"):
            job.pop(key)
        jobs.append(shape(job, known))
    assert jobs[0] == jobs[1]
    assert jobs[0]["UserData"] == {"who": ["me"]}


def test_modified_patient_and_study_match_orthanc(pair):
    known = known_ids(pair.theirs)
    for path, body in (
            ("/patients/%s/modify" % BRAINIX_PATIENT,
             {"Replace": {"PatientID": "NEWP", "PatientName": "New^Name"}, "Force": True}),
            ("/studies/%s/modify" % BRAINIX_STUDY,
             {"Replace": {"StudyDescription": "Again", "PatientName": "Other^Name"},
              "Asynchronous": False}),
            ("/studies/%s/modify" % BRAINIX_STUDY,
             {"Replace": {"PatientID": "NEWP", "PatientName": "Other"}, "Force": True})):
        since = (last_change(pair.ours), last_change(pair.theirs))
        ours, theirs = pair.both("POST", path, body)
        if theirs.status != 200:
            same_answer(ours, theirs, (path, body))
            continue
        same_shape(pair, ours, theirs, known, (path, body))
        known = known_ids(pair.theirs) | known_ids(pair.ours)
        # The instances modified before have random IDs, which decide the
        # order the job takes them in: compare what was logged, not the order.
        assert sorted(_changes_since(pair.ours, since[0])) == \
            sorted(_changes_since(pair.theirs, since[1]))


def test_bulk_modification_and_anonymization_match_orthanc(pair):
    known = known_ids(pair.theirs)
    dummy = pair.upload(sample("DummyCT.dcm"))["ParentStudy"]
    for path, body in (
            ("/tools/bulk-modify", {"Replace": {"SeriesDescription": "Bulk"},
                                    "Resources": [FLAIR_1, dummy]}),
            ("/tools/bulk-modify", {"Replace": {"SeriesDescription": "Bulk"}, "Level": "Series",
                                    "Resources": [FLAIR_1]}),
            ("/tools/bulk-anonymize", {"Resources": [FLAIR_1, dummy]})):
        ours, theirs = pair.both("POST", path, body)
        assert ours.status == theirs.status == 200
        mine, reference = ours.json(), theirs.json()
        # Resources: instances, series, studies, patients, each sorted by
        # their (new, random) IDs: compare the counts per type.
        for answer in (mine, reference):
            answer["Resources"] = sorted(r["Type"] for r in answer["Resources"])
        assert shape(mine, known) == shape(reference, known), path


def test_asynchronous_modification(pair):
    answers = pair.both("POST", "/series/%s/anonymize" % FLAIR,
                        {"Asynchronous": True, "Priority": 5, "UserData": "x"})
    for answer, server in zip(answers, (pair.ours, pair.theirs)):
        assert answer.status == 200
        content = answer.json()
        assert sorted(content) == ["ID", "Path"]
        assert content["Path"] == "/jobs/" + content["ID"]
        job = wait_for_job(server, content["ID"])
        assert job["State"] == "Success" and job["Priority"] == 5 and job["UserData"] == "x"
        assert job["Content"]["Type"] == "Series"


def wait_for_job(server, job_id, timeout=60):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = server.client().get_json("/jobs/" + job_id)
        if job["State"] in ("Success", "Failure"):
            return job
        time.sleep(0.05)
    raise AssertionError("job %s did not finish" % job_id)


def test_labels_kept_as_orthanc_keeps_them(pair):
    for server in (pair.ours, pair.theirs):
        client = server.client()
        assert client.put("/series/%s/labels/series-label" % EPI).status == 200
        assert client.put("/studies/%s/labels/study-label" % BRAINIX_STUDY).status == 200
        epi_instance = client.get_json("/series/%s/instances" % EPI)[0]["ID"]
        assert client.put("/instances/%s/labels/instance-label" % epi_instance).status == 200
    views = []
    for server, answer in zip((pair.ours, pair.theirs),
                              pair.both("POST", "/series/%s/modify" % EPI,
                                        {"Replace": {"SeriesDescription": "L"},
                                         "KeepLabels": True})):
        client = server.client()
        series = client.get_json("/series/%s" % answer.json()["ID"])
        views.append({
            "series": series["Labels"],
            "study": client.get_json("/studies/%s" % series["ParentStudy"])["Labels"],
            "instances": sorted(i["Labels"] for i in
                                client.get_json("/series/%s/instances" % series["ID"])),
        })
    assert views[0] == views[1]
    assert views[0]["series"] == ["series-label"]


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.4.51"])
def test_transcoding_jobs_match_orthanc(pair, syntax):
    """As Orthanc: each modified instance transcoded, keeping the SOP
    Instance UID the modification gave it (even through lossy JPEG)."""
    known = known_ids(pair.theirs)
    ours, theirs = pair.both("POST", "/series/%s/modify" % FLAIR,
                             {"Replace": {"SeriesDescription": "T"}, "Transcode": syntax})
    same_shape(pair, ours, theirs, known)
    for server, answer in zip((pair.ours, pair.theirs), (ours, theirs)):
        assert answer.json()["Transcode"] == syntax
        for instance in server.client().get_json("/series/%s/instances" % answer.json()["ID"]):
            metadata = _metadata(server, "instances", instance["ID"])
            assert metadata["TransferSyntax"] == syntax
            uid = server.client().get("/instances/%s/content/0008-0018" % instance["ID"])
            assert uid.text.rstrip("\0") == instance["MainDicomTags"]["SOPInstanceUID"]


def test_split_and_merge_match_orthanc(pair):
    known = known_ids(pair.theirs)
    knee_series = pair.ours.client().get_json("/studies/%s" % KNEE_STUDY)["Series"]
    since = (last_change(pair.ours), last_change(pair.theirs))
    ours, theirs = pair.both("POST", "/studies/%s/split" % KNEE_STUDY,
                             {"Series": knee_series[:1], "Replace": {"PatientName": "SPLIT"},
                              "Remove": ["AccessionNumber"], "KeepSource": True})
    same_shape(pair, ours, theirs, known)
    assert _changes_since(pair.ours, since[0]) == _changes_since(pair.theirs, since[1])
    targets = ours.json()["TargetStudy"], theirs.json()["TargetStudy"]
    files = []
    for server, target in zip((pair.ours, pair.theirs), targets):
        client = server.client()
        study = client.get_json("/studies/%s" % target)
        assert study["PatientMainDicomTags"]["PatientName"] == "SPLIT"
        assert "AccessionNumber" not in study["MainDicomTags"]
        instances = sorted(client.get_json("/studies/%s/instances" % target),
                           key=lambda i: int(i["MainDicomTags"]["InstanceNumber"]))
        files.append([client.get("/instances/%s/file" % i["ID"]).body for i in instances])
    assert len(files[0]) == len(files[1]) > 0
    for mine, reference in zip(*files):
        assert not dicom_structure.differences(mine, reference)
    # Merge the split study back (its source goes: KeepSource is false).
    known = known_ids(pair.theirs) | known_ids(pair.ours)
    since = (last_change(pair.ours), last_change(pair.theirs))
    answers = [server.client().post("/studies/%s/merge" % KNEE_STUDY,
                                    json.dumps({"Resources": [target]}))
               for server, target in zip((pair.ours, pair.theirs), targets)]
    assert answers[0].status == answers[1].status == 200
    assert answers[0].json() == answers[1].json() == {
        "Description": "REST API", "FailedInstancesCount": 0,
        "InstancesCount": len(files[0]), "TargetStudy": KNEE_STUDY}
    assert _changes_since(pair.ours, since[0]) == _changes_since(pair.theirs, since[1])
    for server, target in zip((pair.ours, pair.theirs), targets):
        assert server.client().get("/studies/%s" % target).status == 404
    merged = [server.client().get_json("/studies/%s/instances" % KNEE_STUDY)
              for server in (pair.ours, pair.theirs)]
    assert len(merged[0]) == len(merged[1])
    # Every merged instance took the patient and study modules of the target.
    client = pair.ours.client()
    patient_name = client.get_json("/studies/%s" % KNEE_STUDY)["PatientMainDicomTags"]["PatientName"]
    for instance in merged[0]:
        tags = client.get_json("/instances/%s/simplified-tags" % instance["ID"])
        assert tags["PatientName"] == patient_name


def test_patient_tags_of_a_study_checked_as_orthanc(pair):
    """A study whose patient has other studies may only take patient tags
    that are those of an existing patient, all of them."""
    known = known_ids(pair.theirs)
    for body in ({"Replace": {"PatientName": "Other"}},
                 {"Replace": {"PatientName": "Test", "PatientBirthDate": "19000101",
                              "PatientSex": "M", "OtherPatientIDs": "x"}},
                 {"Replace": {"PatientID": "887", "PatientName": "KNEE"}, "Force": True},
                 {"Replace": {"PatientID": "887", "PatientName": "KNEE",
                              "PatientBirthDate": "20080822", "PatientSex": "0000",
                              "OtherPatientIDs": "887"}, "Force": True},
                 {"Replace": {"PatientID": "NOBODY", "PatientName": "KNEE"}, "Force": True}):
        ours, theirs = pair.both("POST", "/studies/%s/modify" % TWO_STUDIES_STUDY,
                                 dict(body, KeepSource=True))
        if theirs.status != 200:
            same_answer(ours, theirs, body)
        else:
            same_shape(pair, ours, theirs, known, body)
