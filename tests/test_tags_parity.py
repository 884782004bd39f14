"""Every sample, every tag rendering, compared with the live Orthanc 1.13.0.

One orthancd and one real Orthanc, both configured with the private tags of
PrivateMDNTags.dic through the "Dictionary" option, receive all the samples
of ../shared/dicom-samples.  For each stored instance the tag renderings
(/tags and its formats, /simplified-tags, /header, /module), the /content
listing and the pixel data blocks, and the DICOMweb JSON and XML of /file
must be the same bytes; uploads must get the same status and IDs.  Samples
without a SpecificCharacterSet are then rendered again under every
DefaultEncoding Orthanc knows.
"""
import glob
import json
import os

import pytest

from tests.support.daemon import SAMPLES, Daemon
from tests.support.oracle import RealOrthanc

ALL_SAMPLES = sorted(os.path.relpath(p, SAMPLES)
                     for p in glob.glob(os.path.join(SAMPLES, "**", "*"), recursive=True)
                     if os.path.isfile(p))
# The real Orthanc dies (stack overflow) on this one: it can only be checked
# against orthancd's own answer, a refusal.
CRASHES_THE_ORACLE = "2026-05-06-Deeply-Nested-Sequence.dcm"

# PrivateMDNTags.dic, in the "Dictionary" option's format.
PRIVATE_DICTIONARY = {
    "7053,03": ["ST", "OriginalImageFileName", 1, 1, "Philips PET Private Group"],
    "00e1,c2": ["UI", "PET-CT Multi Modality Name", 1, 1, "ELSCINT1"],
}

DEFAULT_ENCODINGS = ["Ascii", "Utf8", "Latin1", "Latin2", "Latin3", "Latin4", "Latin5",
                     "Cyrillic", "Windows1251", "Arabic", "Greek", "Hebrew", "Thai", "Japanese",
                     "Chinese", "Korean", "JapaneseKanji", "SimplifiedChinese"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    ours = Daemon(tmp_path_factory.mktemp("orthancd"), Dictionary=PRIVATE_DICTIONARY).start()
    try:
        theirs = RealOrthanc(tmp_path_factory.mktemp("oracle"),
                             Dictionary=PRIVATE_DICTIONARY).start()
    except Exception:
        ours.stop()
        raise
    yield ours.client(), theirs.client()
    ours.stop()
    theirs.stop()


@pytest.fixture(scope="module")
def uploads(servers):
    """{sample: (orthancd's answer, Orthanc's answer)} for every sample."""
    ours, theirs = servers
    answers = {}
    for name in ALL_SAMPLES:
        if name == CRASHES_THE_ORACLE:
            continue
        with open(os.path.join(SAMPLES, name), "rb") as f:
            data = f.read()
        answers[name] = (ours.post("/instances", data), theirs.post("/instances", data))
    return answers


@pytest.fixture(scope="module")
def instances(uploads):
    """{sample: instance ID} of the samples both servers stored."""
    return {name: theirs.json()["ID"] for name, (ours, theirs) in uploads.items()
            if theirs.status == 200}


def media_type(answer):
    return (answer.headers.get("Content-Type") or "").split(";")[0].strip()


def differences(ours, theirs, requests, headers=None):
    """The requests whose answers differ: status, media type, bytes.  Error
    bodies are compared as JSON (1.13.0 labels them text/plain, a choice of
    the HTTP layer, not of these routes)."""
    found = []
    for path in requests:
        a, b = ours.get(path, headers=headers), theirs.get(path, headers=headers)
        if a.status != b.status:
            found.append((path, "status %d != %d" % (a.status, b.status)))
        elif b.status >= 400 and b.body:
            if json.loads(a.body) != json.loads(b.body):
                found.append((path, "error %r != %r" % (a.body[:200], b.body[:200])))
        elif b.body and media_type(a) != media_type(b):
            found.append((path, "type %r != %r" % (media_type(a), media_type(b))))
        elif a.body != b.body:
            found.append((path, "body %r != %r" % (a.body[:200], b.body[:200])))
    return found


def test_all_samples_are_there():
    assert len(ALL_SAMPLES) == 247


def test_uploads_get_the_same_answers(uploads):
    for name, (ours, theirs) in uploads.items():
        assert ours.status == theirs.status, (name, ours.body[:300], theirs.body[:300])
        if theirs.status == 200:
            assert ours.json() == theirs.json(), name
        else:
            # The details of refusals belong to the upload path (another area).
            a, b = json.loads(ours.body), json.loads(theirs.body)
            assert (a["OrthancStatus"], a["Message"]) == (b["OrthancStatus"], b["Message"]), name
    assert sum(1 for _, theirs in uploads.values() if theirs.status == 200) > 230


def test_the_deeply_nested_sample_is_refused(servers):
    ours, _ = servers
    with open(os.path.join(SAMPLES, CRASHES_THE_ORACLE), "rb") as f:
        answer = ours.post("/instances", f.read())
    assert answer.status == 400 and answer.json()["OrthancError"] == "Bad file format"
    assert ours.get("/system").status == 200


TAG_ROUTES = ("/tags", "/tags?short", "/tags?simplify", "/simplified-tags", "/header",
              "/header?short", "/header?simplify", "/module", "/module?short")


def test_tag_renderings_of_every_sample(servers, instances):
    ours, theirs = servers
    found = []
    for name, instance in instances.items():
        for path, why in differences(ours, theirs,
                                     ["/instances/%s%s" % (instance, r) for r in TAG_ROUTES]):
            found.append((name, path, why))
    assert not found, found[:20]


CONTENT_ROUTES = ("/content", "/content/7fe0-0010", "/content/7fe0-0010/0",
                  "/content/7fe0-0010/1", "/content/PixelData/0/", "/content/7fe0-0010/x",
                  "/content/7fe0-0010/0/0", "/content/0010,0010", "/content/00280010",
                  "/content/0008-1140/0", "/content/0008-1140/0/0008-1150")


def test_content_of_every_sample(servers, instances):
    ours, theirs = servers
    found = []
    for name, instance in instances.items():
        for path, why in differences(ours, theirs,
                                     ["/instances/%s%s" % (instance, r) for r in CONTENT_ROUTES]):
            found.append((name, path, why))
    assert not found, found[:20]


@pytest.mark.parametrize("accept", ["application/dicom+json", "application/dicom+xml"])
def test_dicomweb_rendering_of_every_sample(servers, instances, accept):
    ours, theirs = servers
    found = []
    for name, instance in instances.items():
        for path, why in differences(ours, theirs, ["/instances/%s/file" % instance],
                                     headers={"Accept": accept}):
            found.append((name, path, why))
    assert not found, found[:10]


@pytest.mark.parametrize("accept", ["application/json", "application/xml", "*/*",
                                    "application/dicom+json; charset=utf-8",
                                    "application/dicom+json, application/json"])
def test_other_accept_values_download_the_file(servers, instances, accept):
    ours, theirs = servers
    instance = instances["DummyCT.dcm"]
    a = ours.get("/instances/%s/file" % instance, headers={"Accept": accept})
    b = theirs.get("/instances/%s/file" % instance, headers={"Accept": accept})
    assert (a.status, media_type(a), a.body) == (b.status, media_type(b), b.body)
    assert media_type(a) == "application/dicom"


def test_instances_tags_and_shared_tags(servers, uploads):
    """Per series: the tags of each instance, and those they share."""
    ours, theirs = servers
    parents = {answer.json()["ParentSeries"]: answer.json() for _, answer in uploads.values()
               if answer.status == 200}
    requests = []
    for series, answer in parents.items():
        requests += ["/series/%s/instances-tags?short" % series, "/series/%s/shared-tags" % series]
    first = next(iter(parents.values()))
    requests += ["/studies/%s/instances-tags" % first["ParentStudy"],
                 "/patients/%s/instances-tags?simplify" % first["ParentPatient"],
                 "/studies/%s/instances-tags?ignore-length=SoftwareVersions" % first["ParentStudy"],
                 "/studies/%s/instances-tags?ignore-length=bogus" % first["ParentStudy"],
                 "/studies/%s/shared-tags?short" % first["ParentStudy"]]
    assert not differences(ours, theirs, requests)


def test_main_dicom_tags_agree(servers, instances):
    """The main tags both versions store (the lists differ while another
    change brings orthancd's to 1.13.0's: only common names are compared)."""
    ours, theirs = servers
    found = []
    for name, instance in instances.items():
        a = ours.get_json("/instances/%s" % instance)["MainDicomTags"]
        b = theirs.get_json("/instances/%s" % instance)["MainDicomTags"]
        for key in set(a) & set(b):
            if a[key] != b[key]:
                found.append((name, key, a[key], b[key]))
    assert not found, found[:20]


def test_private_tags_named_by_the_dictionary_option(servers, instances):
    ours, _ = servers
    tags = ours.get_json("/instances/%s/tags" % instances["PrivateMDNTags.dcm"])
    assert tags["7053,1003"] == {"Name": "OriginalImageFileName",
                                 "PrivateCreator": "Philips PET Private Group",
                                 "Type": "String", "Value": "p37s0_na_ctac.img"}
    assert tags["00e1,10c2"]["Name"] == "PET-CT Multi Modality Name"


def test_ignore_length(servers, instances):
    ours, theirs = servers
    instance = instances["DummyCTWithLongTag.dcm"]
    requests = []
    for value in ("00181020", "0018-1020", "SoftwareVersions", "0010,0010", "", "bogus",
                  "softwareversions", "00181020,00100010", "00181020;00100010"):
        for route in ("/tags", "/tags?short", "/simplified-tags", "/module", "/header",
                      "/content"):
            separator = "&" if "?" in route else "?"
            requests.append("/instances/%s%s%signore-length=%s"
                            % (instance, route, separator, value))
    requests.append("/instances/%s/tags?ignore-length=0010,0010&ignore-length=00181020"
                    % instance)
    assert not differences(ours, theirs, requests)
    full = ours.get_json("/instances/%s/tags?ignore-length=SoftwareVersions" % instance)
    assert full["0018,1020"]["Type"] == "String"


def test_default_encodings(servers, instances):
    """Samples without SpecificCharacterSet decode with DefaultEncoding."""
    ours, theirs = servers
    without = []
    for name, instance in instances.items():
        tags = theirs.get_json("/instances/%s/tags?short" % instance)
        if "0008,0005" not in tags:
            without.append(instance)
    assert len(without) > 30
    found = []
    try:
        for encoding in DEFAULT_ENCODINGS:
            for server in (ours, theirs):
                assert server.put("/tools/default-encoding", encoding).status == 200
            assert ours.get("/tools/default-encoding").body == encoding.encode()
            for path, why in differences(ours, theirs, [
                    "/instances/%s%s" % (i, r) for i in without
                    for r in ("/tags?short", "/simplified-tags")]):
                found.append((encoding, path, why))
    finally:
        for server in (ours, theirs):
            server.put("/tools/default-encoding", "Latin1")
    assert not found, found[:20]
