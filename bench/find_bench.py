#!/usr/bin/env python3
"""Find latency: orthancd against the real Orthanc 1.13.0, in one run.

Both servers start empty (orthancd via tests/support/daemon.py, Orthanc via
tests/support/oracle.py), get the same synthetic corpus of tiny studies (one
instance each, no pixel data: PatientName NAME^nnnnn, StudyDate spread over
2000-2019) through POST /instances, and are measured at 100 studies, then
again after growing the corpus to --studies (default 10,000):

  wild+range  POST /tools/find  Level Study, PatientName "NAME^000*" (100 hits
              at every size) and StudyDate "20100101-20141231"
  uid         POST /tools/find  Level Study, exact StudyInstanceUID
  oe2-page    POST /tools/find  Orthanc Explorer 2's study list: OrderBy
              LastUpdate DESC, Limit 50, Since 0, Expand, RequestedTags
              ModalitiesInStudy, NumberOfStudyRelatedInstances,
              NumberOfStudyRelatedSeries, SOPClassesInStudy
  oe2-page-n  the same, a later page (Since 500)
  oe2-filter  the same, filtered on PatientName "NAME^0*" (Since 0)
  count       POST /tools/count-resources  Level Study, PatientName "NAME^0*"
  findscu     /usr/bin/findscu -S, STUDY level, the same wildcard + range,
              process start included

Latencies are medians over --repeat requests on one keep-alive connection
(findscu: over --findscu-repeat runs).

Usage: python3 bench/find_bench.py [--studies 10000] [--repeat 50] [--json out.json]
"""
import argparse
import concurrent.futures
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian  # noqa: E402

from bytecode import compile_tree  # noqa: E402
from tests.support.daemon import ROOT, Daemon  # noqa: E402
from tests.support.oracle import RealOrthanc  # noqa: E402

UID_ROOT = "1.2.826.0.1.3680043.8.498.7"
ENV = dict(os.environ, TCP_NODELAY="1")
WILD_RANGE = {"Level": "Study", "Query": {"PatientName": "NAME^000*",
                                          "StudyDate": "20100101-20141231"}}
OE2_REQUESTED_TAGS = ["ModalitiesInStudy", "NumberOfStudyRelatedInstances",
                      "NumberOfStudyRelatedSeries", "SOPClassesInStudy"]


def oe2_page(since, query=None):
    """The body Orthanc Explorer 2 sends for a page of its study list."""
    return {"Level": "Study", "Query": query or {}, "Expand": True, "Limit": 50,
            "Since": since, "RequestedTags": OE2_REQUESTED_TAGS,
            "OrderBy": [{"Type": "Metadata", "Key": "LastUpdate", "Direction": "DESC"}]}


def study_uid(i):
    return "%s.1.%d" % (UID_ROOT, i)


def tiny_instance(i):
    """A ~500-byte CT-like instance of its own patient/study/series."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "%s.3.%d" % (UID_ROOT, i)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName = "NAME^%05d" % i
    ds.PatientID = "PID%05d" % i
    ds.StudyInstanceUID = study_uid(i)
    ds.SeriesInstanceUID = "%s.2.%d" % (UID_ROOT, i)
    ds.StudyDate = "%04d%02d%02d" % (2000 + i % 20, 1 + i % 12, 1 + i % 28)
    ds.StudyTime = "120000"
    ds.StudyDescription = "Bench study %d" % i
    ds.AccessionNumber = "ACC%05d" % i
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return out.getvalue()


class Client:
    def __init__(self, url):
        host, port = url.split("//")[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port))

    def post(self, path, body):
        self.conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        answer = self.conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError("%s -> %d %s" % (path, answer.status, data[:200]))
        return data


def ingest(url, start, stop):
    def upload(chunk):
        client = Client(url)
        for i in chunk:
            client.post("/instances", tiny_instance(i))
    indexes = list(range(start, stop))
    chunks = [indexes[k::4] for k in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(upload, chunks))


def median_ms(func, repeat):
    func()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def measure(name, url, dicom_port, aet, repeat, findscu_repeat, studies):
    client = Client(url)
    wild = json.dumps(WILD_RANGE).encode()
    uid = json.dumps({"Level": "Study", "Query": {"StudyInstanceUID": study_uid(42)}}).encode()
    hits = len(json.loads(client.post("/tools/find", wild)))
    assert json.loads(client.post("/tools/find", uid)), "exact UID found nothing"
    figures = {
        "wild+range": median_ms(lambda: client.post("/tools/find", wild), repeat),
        "uid": median_ms(lambda: client.post("/tools/find", uid), repeat),
    }
    pages = {"oe2-page": oe2_page(0), "oe2-page-n": oe2_page(min(500, studies // 2)),
             "oe2-filter": oe2_page(0, {"PatientName": "NAME^0*"})}
    for key, body in pages.items():
        encoded = json.dumps(body).encode()
        assert json.loads(client.post("/tools/find", encoded)), key
        figures[key] = median_ms(lambda: client.post("/tools/find", encoded), repeat)
    count = json.dumps({"Level": "Study", "Query": {"PatientName": "NAME^0*"}}).encode()
    figures["count"] = median_ms(lambda: client.post("/tools/count-resources", count), repeat)
    args = ["/usr/bin/findscu", "-S", "-aec", aet, "127.0.0.1", str(dicom_port),
            "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=NAME^000*",
            "-k", "StudyDate=20100101-20141231", "-k", "StudyInstanceUID"]
    figures["findscu"] = median_ms(
        lambda: subprocess.run(args, env=ENV, check=True, capture_output=True), findscu_repeat)
    print("%-9s %6d studies  hits %3d  " % (name, studies, hits)
          + "  ".join("%s %7.2f ms" % (key, value) for key, value in figures.items()),
          flush=True)
    return figures


def main():
    compile_tree(ROOT)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--findscu-repeat", type=int, default=10)
    parser.add_argument("--json")
    options = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="find-bench-")
    config = {"DicomAlwaysAllowFind": True}
    servers = {
        "orthancd": Daemon(os.path.join(workdir, "orthancd"), **config),
        "orthanc": RealOrthanc(os.path.join(workdir, "orthanc"), **config),
    }
    aets = {"orthancd": "ORTHANCD", "orthanc": "ORACLE"}
    results = {}
    try:
        for name, server in servers.items():
            os.makedirs(server.workdir, exist_ok=True)
            server.start()
        done = 0
        for size in (100, options.studies):
            done_before = done
            for name, server in servers.items():
                t0 = time.time()
                ingest(server.url, done, size)
                print("%-9s ingested %d studies in %.1f s" % (name, size - done, time.time() - t0),
                      flush=True)
            done = size
            # Let the stable-resource timers (StableAge 1 s) and their change-log
            # writes for thousands of new resources finish before measuring.
            time.sleep(3 + (size - done_before) // 1000)
            for name, server in servers.items():
                results.setdefault(name, {})[size] = measure(
                    name, server.url, server.dicom_port, aets[name], options.repeat,
                    options.findscu_repeat, size)
    finally:
        for server in servers.values():
            server.stop()
    if options.json:
        with open(options.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
