#!/usr/bin/env python3
"""Start-up time of ``twistd -n orthancd`` on a large storage, and idle RSS.

Fills a storage with --instances small instances (100,000 by default:
1,000 patients, 2 series of 50 instances each) through orthancd's own ingest
path run in-process (parse, summarize, content-addressed file with its
pending entry, group-committed index operations), so the layout is the
real one; then times, --runs times, the daemon from its launch until
``GET /system`` answers, and reads its resident memory once idle.

    python3 bench/startup_bench.py [--instances N] [--runs 3] [--keep DIR]
        [--baseline-code DIR] [--drop-caches]

--baseline-code runs the same measurement with another orthancd source tree
on the same storage, e.g. the code before a change:
    git archive <revision> | (mkdir -p /tmp/before && tar -x -C /tmp/before)
--drop-caches empties the kernel's page and dentry caches before each start
(as root): the cold start after a reboot.  Figures are printed, never asserted.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from io import BytesIO

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian  # noqa: E402

from tests.support.daemon import free_port  # noqa: E402

# Fixed-width placeholders, replaced in the serialized bytes: building each
# instance with pydicom would take longer than storing it.
_PATIENT, _STUDY, _SERIES, _SOP = b"P9999991", b"9999992", b"999999993", b"9999999994"
_ROOT = "1.2.826.0.1.3680043.10.1234."


def template():
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = _ROOT + "3." + _SOP.decode()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = _PATIENT.decode()
    ds.PatientName = "STARTUP^BENCH"
    ds.StudyInstanceUID = _ROOT + "1." + _STUDY.decode()
    ds.SeriesInstanceUID = _ROOT + "2." + _SERIES.decode()
    ds.StudyDate, ds.Modality, ds.StudyDescription = "20240101", "CT", "start-up bench"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = bytes(128)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def instances(count, per_series=50, series_per_study=2):
    data = template()
    for n in range(count):
        series = n // per_series
        study = series // series_per_study
        yield (data.replace(_SOP, b"%010d" % (1000000000 + n))
                   .replace(_SERIES, b"%09d" % (100000000 + series))
                   .replace(_STUDY, b"%07d" % (1000000 + study))
                   .replace(_PATIENT, b"P%07d" % study))


class _WriterThreadReactor:
    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


def fill(config_path, count):
    """Store ``count`` instances through the ingest path, in-process."""
    import threading

    from orthancd.config import load_configuration
    from orthancd.ingest import Origin
    from orthancd.pools import ThreadPoolService
    from orthancd.server import OrthancServer

    # The server's own pieces, without a reactor: results are delivered on
    # the thread that produces them.
    reactor = _WriterThreadReactor()
    file_io = ThreadPoolService("file-io", reactor, maxthreads=4)
    server = OrthancServer(load_configuration(config_path), reactor, file_io)
    server.open()
    server.index.writer.startService()
    file_io.startService()
    origin = Origin.rest("127.0.0.1")
    window = threading.Semaphore(2000)  # operations in flight: group commits fill up
    failures = []

    def done(result):
        if not hasattr(result, "ids"):
            failures.append(result)
        window.release()
    started = time.perf_counter()
    for n, data in enumerate(instances(count), 1):
        window.acquire()
        server.ingest.store(data, origin).addBoth(done)
        if n % 10000 == 0:
            print("  %6d instances stored (%.0f/s)" % (n, n / (time.perf_counter() - started)),
                  flush=True)
    for _ in range(2000):
        window.acquire()
    for service in (file_io, server.index.writer):
        stopped = []
        service.stopService().addCallback(stopped.append)
        while not stopped:
            time.sleep(0.01)
    server.close()
    if failures:
        raise SystemExit("%d instances failed, e.g. %s" % (len(failures), failures[0]))
    return time.perf_counter() - started


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_once(code, config_path, http_port, workdir, cold):
    if cold:
        drop_caches()
    env = dict(os.environ, PYTHONPATH=code)
    # As installed: the bytecode compiled once (by the warm-up start), not at
    # every start (PYTHONDONTWRITEBYTECODE, set on some machines, adds ~0.25 s).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(workdir, "bytecode")
    log = open(os.path.join(workdir, "daemon.log"), "ab")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
         "--pidfile=", "orthancd", "--config", config_path],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit("orthancd exited; see %s/daemon.log" % workdir)
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/system" % http_port,
                                            timeout=5) as answer:
                    answer.read()
                break
            except OSError:
                time.sleep(0.01)
        elapsed = time.perf_counter() - started
        with urllib.request.urlopen("http://127.0.0.1:%d/statistics" % http_port) as answer:
            count = json.load(answer)["CountInstances"]
        time.sleep(2)  # idle
        return elapsed, rss_kib(process.pid), count
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def measure(label, code, config_path, http_port, workdir, runs, cold):
    start_once(code, config_path, http_port, workdir, False)  # warm-up: compiles the bytecode
    figures = [start_once(code, config_path, http_port, workdir, cold) for _ in range(runs)]
    times = [t for t, _, _ in figures]
    print("%-10s start-up to /system: median %6.2f s (min %.2f, max %.2f)   idle RSS %5.0f MiB"
          "   %d instances" % (label, statistics.median(times), min(times), max(times),
                               statistics.median(r for _, r, _ in figures) / 1024,
                               figures[-1][2]), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", help="storage folder to reuse (filled if empty) and keep")
    parser.add_argument("--baseline-code", help="another orthancd source tree to compare with")
    parser.add_argument("--drop-caches", action="store_true")
    options = parser.parse_args()

    workdir = options.keep or tempfile.mkdtemp(prefix="orthancd-startup-")
    os.makedirs(workdir, exist_ok=True)
    config_path = os.path.join(workdir, "orthanc.json")
    http_port = free_port()
    with open(config_path, "w") as f:
        json.dump({"StorageDirectory": os.path.join(workdir, "storage"), "HttpPort": http_port,
                   "DicomPort": free_port(), "RemoteAccessAllowed": False,
                   "SyncStorageArea": False}, f)
    if not os.path.isdir(os.path.join(workdir, "storage", "index.lmdb")):
        print("filling %s with %d instances" % (workdir, options.instances), flush=True)
        elapsed = fill(config_path, options.instances)
        print("  filled in %.0f s" % elapsed, flush=True)
    try:
        measure("this code", REPO_ROOT, config_path, http_port, workdir, options.runs,
                options.drop_caches)
        if options.baseline_code:
            measure("baseline", os.path.abspath(options.baseline_code), config_path, http_port,
                    workdir, options.runs, options.drop_caches)
    finally:
        if not options.keep:
            subprocess.run(["rm", "-rf", workdir])


if __name__ == "__main__":
    main()
