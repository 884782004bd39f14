#!/usr/bin/env python3
"""Start-up time and idle RSS of ``twistd -n orthancd`` and of the real
Orthanc 1.13.0, side by side, on storages of the same instances.

Fills a storage with --instances small instances (100,000 by default:
1,000 patients, 2 series of 50 instances each) through orthancd's own ingest
path run in-process (parse, summarize, content-addressed file with its
pending entry, group-committed index operations), so the layout is the
real one; Orthanc 1.13.0's storage gets the same instances through its REST
API.  Then, --runs times each, starts the server and times it from its
launch until ``GET /system`` answers, with the CPU time the process used
until then (steadier than the wall clock on a loaded machine), and reads its
resident memory (VmRSS) once idle, 1 s later.  --instances 0: empty
storages.

    python3 bench/startup_bench.py [--instances N] [--runs 3] [--keep DIR]
        [--baseline-code DIR] [--drop-caches] [--no-orthanc]

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

from bytecode import compile_tree  # noqa: E402
from tests.support.daemon import free_port  # noqa: E402
from tests.support.oracle import ORTHANC_BINARY  # noqa: E402

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


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """User and system CPU time the process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """How to start one of the two servers on its storage."""

    def __init__(self, label, command, env, http_port, workdir):
        self.label, self.command, self.env = label, command, env
        self.http_port, self.workdir = http_port, workdir

    @classmethod
    def orthancd(cls, label, code, config_path, http_port, workdir):
        compile_tree(code)
        env = dict(os.environ, PYTHONPATH=code)
        return cls(label, [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                           "-n", "--pidfile=", "orthancd", "--config", config_path],
                   env, http_port, workdir)

    @classmethod
    def orthanc(cls, config_path, http_port, workdir):
        return cls("Orthanc 1.13.0", [ORTHANC_BINARY, config_path], dict(os.environ),
                   http_port, workdir)

    def launch(self):
        log = open(os.path.join(self.workdir, "server.log"), "ab")
        try:
            return subprocess.Popen(self.command, cwd=self.workdir, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT)
        finally:
            log.close()

    def wait_answering(self, process):
        while True:
            if process.poll() is not None:
                raise SystemExit("%s exited; see %s/server.log" % (self.label, self.workdir))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/system" % self.http_port,
                                            timeout=5) as answer:
                    answer.read()
                return
            except OSError:
                time.sleep(0.005)

    def start_once(self, cold):
        if cold:
            drop_caches()
        started = time.perf_counter()
        process = self.launch()
        try:
            self.wait_answering(process)
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(process.pid)
            with urllib.request.urlopen("http://127.0.0.1:%d/statistics"
                                        % self.http_port) as answer:
                count = json.load(answer)["CountInstances"]
            time.sleep(1)  # idle
            return elapsed, cpu, status_kib(process.pid, "VmRSS"), count
        finally:
            process.terminate()
            process.wait(60)

    def measure(self, runs, cold):
        self.start_once(False)  # warm-up: fills the page cache
        figures = [self.start_once(cold) for _ in range(runs)]
        times = [f[0] for f in figures]
        print("%-16s start-up to /system: median %5.2f s (min %.2f, max %.2f), CPU %5.2f s"
              "   idle RSS %5.0f MiB   %d instances"
              % (self.label, statistics.median(times), min(times), max(times),
                 statistics.median(f[1] for f in figures),
                 statistics.median(f[2] for f in figures) / 1024, figures[-1][3]), flush=True)


def fill_orthanc(server, count, connections=4):
    """Store the instances in Orthanc 1.13.0 through its REST API."""
    import http.client
    import threading
    process = server.launch()
    try:
        server.wait_answering(process)
        source = iter(enumerate(instances(count), 1))
        lock = threading.Lock()
        started = time.perf_counter()
        failures = []

        def upload():
            connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=600)
            while True:
                with lock:
                    n, data = next(source, (None, None))
                if data is None:
                    break
                connection.request("POST", "/instances", body=data,
                                   headers={"Content-Type": "application/dicom"})
                answer = connection.getresponse()
                answer.read()
                if answer.status != 200:
                    failures.append(answer.status)
                if n % 10000 == 0:
                    print("  %6d instances stored (%.0f/s)"
                          % (n, n / (time.perf_counter() - started)), flush=True)
            connection.close()
        threads = [threading.Thread(target=upload) for _ in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise SystemExit("%d instances refused by Orthanc, e.g. %s"
                             % (len(failures), failures[0]))
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", help="folder of the storages to reuse (filled if empty) and keep")
    parser.add_argument("--baseline-code", help="another orthancd source tree to compare with")
    parser.add_argument("--drop-caches", action="store_true")
    parser.add_argument("--no-orthanc", action="store_true",
                        help="orthancd only, without Orthanc 1.13.0")
    options = parser.parse_args()

    workdir = options.keep or tempfile.mkdtemp(prefix="orthancd-startup-")
    os.makedirs(workdir, exist_ok=True)
    config_path = os.path.join(workdir, "orthanc.json")
    http_port = free_port()
    with open(config_path, "w") as f:
        json.dump({"StorageDirectory": os.path.join(workdir, "storage"), "HttpPort": http_port,
                   "DicomPort": free_port(), "RemoteAccessAllowed": False,
                   "SyncStorageArea": False}, f)
    if options.instances and not os.path.isdir(os.path.join(workdir, "storage", "index.lmdb")):
        print("filling %s with %d instances" % (workdir, options.instances), flush=True)
        elapsed = fill(config_path, options.instances)
        print("  filled in %.0f s" % elapsed, flush=True)
    orthanc = None
    if not options.no_orthanc:
        orthanc_folder = os.path.join(workdir, "orthanc")
        os.makedirs(orthanc_folder, exist_ok=True)
        orthanc_config = os.path.join(orthanc_folder, "orthanc.json")
        orthanc_port = free_port()
        with open(orthanc_config, "w") as f:
            json.dump({"StorageDirectory": os.path.join(orthanc_folder, "db"),
                       "IndexDirectory": os.path.join(orthanc_folder, "db"),
                       "HttpPort": orthanc_port, "DicomPort": free_port(),
                       "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
                       "Plugins": []}, f)
        orthanc = Server.orthanc(orthanc_config, orthanc_port, orthanc_folder)
        if options.instances and not os.path.isdir(os.path.join(orthanc_folder, "db")):
            print("filling Orthanc 1.13.0's storage with %d instances" % options.instances,
                  flush=True)
            print("  filled in %.0f s" % fill_orthanc(orthanc, options.instances), flush=True)
    try:
        Server.orthancd("orthancd", REPO_ROOT, config_path, http_port, workdir).measure(
            options.runs, options.drop_caches)
        if options.baseline_code:
            Server.orthancd("orthancd (base)", os.path.abspath(options.baseline_code),
                            config_path, http_port, workdir).measure(options.runs,
                                                                     options.drop_caches)
        if orthanc is not None:
            orthanc.measure(options.runs, options.drop_caches)
    finally:
        if not options.keep:
            subprocess.run(["rm", "-rf", workdir])


if __name__ == "__main__":
    main()
