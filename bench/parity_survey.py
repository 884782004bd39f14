#!/usr/bin/env python3
"""How many answers match Orthanc 1.13.0: a survey of the REST surface.

Both servers start empty on free ports (orthancd via tests/support/daemon.py,
the reference Orthanc 1.13.0 via tests/support/oracle.py), receive the same
samples, then get the same list of requests, one by one.  A comparison
matches when the status, the media type and the body agree, the body being
compared as JSON when both are JSON (fields that cannot agree, such as
dates, ports and file UUIDs, are masked on both sides first).

This is a measuring tool, not a test: the tests assert parity route by
route; this counts it, for the notes ("N of M comparisons match").

Usage: python3 bench/parity_survey.py [--show] [--only REGEX] [--json out.json]
"""
import argparse
import difflib
import json
import time
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.daemon import Daemon, read_sample  # noqa: E402
from tests.support.oracle import RealOrthanc  # noqa: E402

SAMPLES = [
    "DummyCT.dcm",
    "Knee/T1/IM-0001-0001.dcm",
    "Knee/T1/IM-0001-0002.dcm",
    "Knee/T2/IM-0001-0001.dcm",
    "Brainix/Flair/IM-0001-0001.dcm",
    "Brainix/Epi/IM-0001-0001.dcm",
    "Encodings/Lena-cyrillic.dcm",
    "Encodings/Lena-latin1.dcm",
    "Encodings/Lena-latin4.dcm",
    "Encodings/Lena-shift-jis.dcm",
    "PrivateTags.dcm",
    "sample-pdf.dcm",
    "MultiframeWindowing.dcm",
    "SignedCT.dcm",
    "Issue22-NoPixelData.dcm",
    "2021-02-19-MalaterreCP246.dcm",
    "DicomSeg.dcm",
    "WithEmptyPatientComments.dcm",
    "PatientIdsCollision/Image1.dcm",
    "PatientIdsCollision/Image2.dcm",
    "Formats/Jpeg.dcm",
]

# Values that cannot agree between two servers started apart.
MASKED_KEYS = {"LastUpdate", "ReceptionDate", "Date", "FileUuid", "Uuid", "HttpPort",
               "DicomPort", "DatabaseServerIdentifier", "ThirdPartyVersions", "Performance",
               "StorageDirectory", "IndexDirectory", "Timestamp", "CreationTime",
               "CompletionTime", "EffectiveRuntime", "ElapsedTime", "Job"}


def mask(value):
    if isinstance(value, dict):
        return {k: ("<masked>" if k in MASKED_KEYS else mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def requests_for(ids):
    """(family, method, path, body) of every comparison; ``ids`` holds the
    upload answers of the samples, by sample name."""
    out = []
    first = ids[SAMPLES[1]]
    instance, series, study, patient = (first["ID"], first["ParentSeries"],
                                        first["ParentStudy"], first["ParentPatient"])

    def add(family, method, path, body=None):
        out.append((family, method, path, body))

    add("system", "GET", "/system")
    add("system", "GET", "/statistics")
    add("system", "GET", "/plugins")
    add("system", "GET", "/peers")
    add("system", "GET", "/jobs")
    add("system", "GET", "/modalities")
    add("system", "GET", "/tools")
    add("system", "GET", "/")
    for level in ("patients", "studies", "series", "instances"):
        for suffix in ("", "?expand", "?since=1&limit=2", "?since=0&limit=0", "?limit=3",
                       "?expand&requestedTags=PatientName;StudyDate;Modality;0008,0016",
                       "?since=2", "?expand&short", "?expand&full"):
            add("lists", "GET", "/" + level + suffix)
    for name, answer in ids.items():
        add("resources", "GET", "/instances/" + answer["ID"])
        add("resources", "GET", "/series/" + answer["ParentSeries"])
        add("resources", "GET", "/studies/" + answer["ParentStudy"])
        add("resources", "GET", "/patients/" + answer["ParentPatient"])
        add("resources", "GET", "/studies/%s?requestedTags=ModalitiesInStudy;"
            "NumberOfStudyRelatedInstances;NumberOfStudyRelatedSeries;SOPClassesInStudy"
            % answer["ParentStudy"])
        add("metadata", "GET", "/instances/%s/metadata?expand" % answer["ID"])
        add("metadata", "GET", "/series/%s/metadata?expand" % answer["ParentSeries"])
        add("metadata", "GET", "/studies/%s/metadata?expand" % answer["ParentStudy"])
        add("metadata", "GET", "/patients/%s/metadata?expand" % answer["ParentPatient"])
        for suffix in ("/tags", "/tags?simplify", "/tags?short", "/simplified-tags", "/header",
                       "/content", "/frames", "/content/0010-0010", "/content/7fe0-0010",
                       "/content/7fe0-0010/0", "/content/7fe0-0010/1",
                       "/attachments/dicom/info", "/statistics", "/labels",
                       "/study", "/tags?ignore-length=0010-0010"):
            add("tags", "GET", "/instances/" + answer["ID"] + suffix)
        add("dicom-json", "GET", "/instances/%s/file" % answer["ID"], {"Accept": "application/dicom+json"})
    for level, rid in (("patients", patient), ("studies", study), ("series", series)):
        for suffix in ("/instances-tags", "/instances-tags?simplify", "/instances-tags?short",
                       "/shared-tags", "/statistics", "/module", "/labels",
                       "/instances?requestedTags=SOPClassUID", "/series?expand=false",
                       "/studies?requestedTags=NumberOfStudyRelatedInstances", "/patient",
                       "/attachments"):
            add("children", "GET", "/%s/%s%s" % (level, rid, suffix))
    # Folders list their children.
    for path in ("/instances/%s" % instance, "/tools", "/instances/%s/attachments/dicom" % instance,
                 "/patients/%s/attachments" % patient, "/queries", "/storage-commitment"):
        add("folders", "GET", path)
    # Changes and exports.
    for suffix in ("", "?limit=5", "?since=3&limit=4", "?last", "?limit=0", "?type=NewSeries",
                   "?type=NewStudy;NewSeries&limit=3", "?to=5", "?since=2&to=8&limit=100",
                   "?limit=2&type=StableStudy"):
        add("changes", "GET", "/changes" + suffix)
    add("changes", "GET", "/exports")
    # Labels.
    add("labels", "GET", "/tools/labels")
    add("labels", "PUT", "/studies/%s/labels/MyLabel" % study, b"")
    add("labels", "PUT", "/series/%s/labels/Other_1" % series, b"")
    add("labels", "PUT", "/studies/%s/labels/bad%%20label" % study, b"")
    add("labels", "PUT", "/studies/%s/labels/%s" % (study, "x" * 70), b"")
    add("labels", "GET", "/studies/%s/labels/MyLabel" % study)
    add("labels", "GET", "/studies/%s/labels/Missing" % study)
    add("labels", "GET", "/studies/%s/labels" % study)
    add("labels", "GET", "/studies/%s" % study)
    add("labels", "GET", "/tools/labels")
    add("labels", "DELETE", "/studies/%s/labels/Missing" % study)
    # Find and count.
    finds = [
        {"Level": "Study", "Query": {}},
        {"Level": "Study", "Query": {}, "Expand": True},
        {"Level": "Series", "Query": {"Modality": "MR"}, "Expand": True},
        {"Level": "Study", "Query": {"PatientName": "K*"}, "RequestedTags": ["ModalitiesInStudy"],
         "Expand": True},
        {"Level": "Instance", "Query": {}, "Limit": 3, "Since": 2},
        {"Level": "Study", "Query": {}, "Labels": ["MyLabel"]},
        {"Level": "Study", "Query": {}, "Labels": ["MyLabel"], "LabelsConstraint": "None"},
        {"Level": "Series", "Query": {}, "Labels": ["Other_1", "MyLabel"],
         "LabelsConstraint": "Any"},
        {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "DicomTag", "Key": "StudyDate",
                                                    "Direction": "ASC"}]},
        {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "DicomTag", "Key": "PatientName",
                                                    "Direction": "DESC"}], "Limit": 3},
        {"Level": "Study", "Query": {}, "OrderBy": [{"Type": "Metadata", "Key": "LastUpdate",
                                                    "Direction": "DESC"}], "Limit": 2,
         "Since": 1},
        {"Level": "Series", "Query": {}, "ParentStudy": study},
        {"Level": "Instance", "Query": {}, "ParentPatient": patient},
        {"Level": "Instance", "Query": {}, "ParentSeries": series, "Expand": True},
        {"Level": "Study", "Query": {}, "ResponseContent": ["MainDicomTags", "Labels"]},
        {"Level": "Study", "Query": {}, "ResponseContent": ["Parent", "Children", "Metadata"]},
        {"Level": "Instance", "Query": {}, "MetadataQuery": {"TransferSyntax": "1.2.840.10008.1.2.1"}},
        {"Level": "Study", "Query": {}, "Limit": 0},
        {"Level": "Study", "Query": {"StudyDate": "20000101-"}, "Expand": True, "Short": True},
        {"Level": "Patient", "Query": {"PatientID": "*"}, "Full": True, "Expand": True},
    ]
    for body in finds:
        add("find", "POST", "/tools/find", json.dumps(body).encode())
        add("count", "POST", "/tools/count-resources", json.dumps(body).encode())
    for value in ("887", "2.16.840.1.113669.632.20.121711.10000160881", "nothing", "A10003245599"):
        add("lookup", "POST", "/tools/lookup", value.encode())
    add("bulk", "POST", "/tools/bulk-content", json.dumps({"Resources": [study, instance]}).encode())
    add("bulk", "POST", "/tools/bulk-content",
        json.dumps({"Resources": [study], "Level": "Series"}).encode())
    add("bulk", "POST", "/tools/bulk-content",
        json.dumps({"Resources": [patient], "Level": "Instance", "Metadata": True}).encode())
    # Tools.
    for tool in ("now", "dicom-conformance", "default-encoding", "accepted-transfer-syntaxes",
                 "unknown-sop-class-accepted", "log-level", "log-level-http", "log-level-dicom",
                 "log-level-generic", "log-level-jobs", "log-level-lua", "log-level-plugins",
                 "log-level-sqlite", "accepted-sop-classes"):
        add("tools", "GET", "/tools/" + tool)
    add("tools", "POST", "/tools/dicom-echo", b"{}")
    # Errors.
    for method, path, body in (
            ("GET", "/patients/00000000-00000000-00000000-00000000-00000000", None),
            ("GET", "/studies/nonsense", None),
            ("GET", "/nonexistent", None),
            ("POST", "/instances", b"garbage"),
            ("POST", "/tools/find", b"{bad"),
            ("POST", "/tools/find", b"[]"),
            ("GET", "/instances/%s/content/bad" % instance, None),
            ("GET", "/instances/%s/metadata/Bogus" % instance, None),
            ("PUT", "/instances/%s/metadata/IndexInSeries" % instance, b"3"),
            ("DELETE", "/system", None),
            ("POST", "/patients", None),
            ("GET", "/patients?since=1", None),
            ("PUT", "/tools/default-encoding", b"Bogus")):
        add("errors", method, path, body)
    # Method faking and XML.
    add("plumbing", "POST", "/patients", {"X-HTTP-Method-Override": "GET"})
    add("plumbing-xml", "GET", "/studies/%s" % study, {"Accept": "application/xml"})
    add("plumbing-xml", "GET", "/system", {"Accept": "application/xml"})
    return out


def upload_all(clients):
    """The samples to every server, one after the other for each sample, so
    that their LastUpdate stamps fall alike (orderings on them compare)."""
    answers = [{} for _ in clients]
    for name in SAMPLES:
        data = read_sample(*name.split("/"))
        # LastUpdate has a one-second resolution: stamp a sample within the
        # same second on every server.
        fraction = time.time() % 1
        if fraction > 0.75:
            time.sleep(1.02 - fraction)
        for client, out in zip(clients, answers):
            answer = client.post("/instances", data)
            out[name] = answer.json() if answer.status == 200 else None
    return answers


def send(client, method, path, body):
    headers = {}
    if isinstance(body, dict):  # a dict stands for request headers
        headers, body = body, None
    return client.request(method, path, body, headers=headers)


def compare(a, b):
    """'' when the answers match, else what differs."""
    if a.status != b.status:
        return "status %d != %d" % (a.status, b.status)
    type_a = a.headers.get("Content-Type", "").split(";")[0].strip()
    type_b = b.headers.get("Content-Type", "").split(";")[0].strip()
    if b.body and type_a != type_b:
        return "type %r != %r" % (type_a, type_b)
    if type_b == "application/json" and b.body:
        try:
            ja, jb = mask(a.json()), mask(b.json())
        except ValueError:
            return "body is not JSON"
        if ja != jb:
            return "JSON differs"
        # Field order counts too (clients print it, tests diff it).
        if json.dumps(ja) != json.dumps(jb):
            return "JSON field order differs"
        return ""
    if a.body != b.body:
        return "body differs (%d / %d bytes)" % (len(a.body), len(b.body))
    return ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--show", action="store_true", help="print each mismatch")
    parser.add_argument("--only", help="only the requests whose family or path match")
    parser.add_argument("--json", help="write the outcome to this file")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="parity-survey-")
    ours = Daemon(os.path.join(workdir, "orthancd"), StableAge=3600)
    theirs = RealOrthanc(os.path.join(workdir, "orthanc"), StableAge=3600)
    for server in (ours, theirs):
        os.makedirs(server.workdir, exist_ok=True)
    ours.start()
    theirs.start()
    try:
        a_ids, b_ids = upload_all([ours.client(), theirs.client()])
        uploads_match = sum(1 for n in SAMPLES if a_ids[n] == b_ids[n])
        ids = {n: v for n, v in b_ids.items() if v is not None}
        families = {}
        mismatches = []
        for family, method, path, body in requests_for(ids):
            if args.only and not (re.search(args.only, family) or re.search(args.only, path)):
                continue
            a = send(ours.client(), method, path, body)
            b = send(theirs.client(), method, path, body)
            why = compare(a, b)
            total, matched = families.get(family, (0, 0))
            families[family] = (total + 1, matched + (not why))
            if why:
                mismatches.append((family, method, path, why, a, b))
    finally:
        ours.stop()
        theirs.stop()
    print("uploads: %d of %d answers identical" % (uploads_match, len(SAMPLES)))
    print("%-14s %8s %8s" % ("family", "matched", "of"))
    for family, (total, matched) in families.items():
        print("%-14s %8d %8d" % (family, matched, total))
    total = sum(t for t, _ in families.values()) + len(SAMPLES)
    matched = sum(m for _, m in families.values()) + uploads_match
    print("%-14s %8d %8d  (%.0f%%)" % ("all", matched, total, 100.0 * matched / total))
    if args.show:
        for family, method, path, why, a, b in mismatches:
            print("\n[%s] %s %s: %s" % (family, method, path, why))
            if why.startswith("JSON"):
                # A unified diff of the two answers, masked, one key a line.
                ours = json.dumps(mask(a.json()), indent=1, sort_keys=True).splitlines()
                theirs = json.dumps(mask(b.json()), indent=1, sort_keys=True).splitlines()
                for line in list(difflib.unified_diff(theirs, ours, "orthanc", "orthancd",
                                                      n=2, lineterm=""))[:60]:
                    print("  " + line)
                continue
            print("  orthancd: %d %s" % (a.status, a.body[:300]))
            print("  orthanc : %d %s" % (b.status, b.body[:300]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"matched": matched, "total": total, "families": families,
                       "mismatches": [(f, m, p, w) for f, m, p, w, _, _ in mismatches]}, f,
                      indent=1)


if __name__ == "__main__":
    main()
