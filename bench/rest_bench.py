#!/usr/bin/env python3
"""REST benchmark: orthancd against the real Orthanc 1.13.0, interleaved in one run.

What it measures, for every server under test (each started from a command, in a
fresh temporary storage folder, on free ports):

* ingest      POST /instances, instances/s at concurrency 1 and at concurrency 4;
              each ingest goes into a freshly started, empty server;
* browse      GET /patients, /studies/{id}, /series/{id},
              /instances/{id}/simplified-tags, requests/s at concurrency 4 for a
              fixed duration per route, and their mean;
* delete      DELETE /instances/{id} for every instance, instances/s at concurrency 4;
* memory      peak RSS of the server's process tree while ingesting (VmRSS sampled
              every 50 ms and summed over the process and its children);
* disk        bytes on disk (allocated blocks, like du) of the storage and index
              folders after the first ingest, divided by the number of instances.

Each freshly started server first gets one upload, timed and reported ("first
upload after a start"), then deleted: orthancd imports its DICOM libraries at their
first use (orthancd.lazy_modules), a one-time cost the rates would otherwise carry.

Phases are interleaved: a phase runs on server A, then on server B, before the next
phase starts, so slow drift of the machine hits both servers; the order alternates
from one phase to the next (A B, B A, A B...).

With --ingest-rounds N, each ingest (c=1, c=4) runs N times, each time into freshly
started servers, interleaved the same way.  Rates vary by several per cent from one
run to the next on a small VM (Orthanc's more than orthancd's), so the table then
gives the run with the median rate of each server, and below it every round's
rates with the ratio of the two servers within that round, and the median of those
ratios: the figure to quote.

With --baseline-code TREE, the second server is not Orthanc but orthancd run from
another source tree (a git worktree of an earlier commit, say), in the same
interleaved way: a before/after comparison of a change.  The ratio column is
then this tree's orthancd over the baseline's, and the goals do not apply.
--drop-caches also drops the clean page cache before each measured phase
(root only): consecutive runs on this project's VM drifted down by up to 15%
as the page cache filled, and came back once it was dropped.  It evicts the
servers' libraries too, so the first upload after the next start then
includes reading pydicom from the disk.

The client is the same for both servers: keep-alive connections (one per unit of
concurrency) multiplexed by one epoll loop, request bodies read into memory
beforehand (--client threads / http.client: one thread per connection instead).  Its own CPU time is
measured for every phase and printed, with the request rate one core could sustain
at that cost, so one can check that the client is not the bottleneck.  On a 2-core
machine the client and the server share the CPU: the client share is printed too.

The corpus (default 1,200 CT-like instances, 512x512 16-bit, Explicit VR Little
Endian, 40 studies x 1 series x 30 instances, ~513 KB each) is generated once with
pydicom and cached in --corpus-dir.

Usage:
    python3 bench/rest_bench.py                      # both servers, full corpus
    python3 bench/rest_bench.py --quick              # ~200 instances smoke run
    python3 bench/rest_bench.py --server orthanc     # only the reference
    python3 bench/rest_bench.py --json figures.json  # also write the figures
    python3 bench/rest_bench.py --phases browse,delete  # the c=1 ingest, then those
    python3 bench/rest_bench.py --phases ingest1,ingest4 --ingest-rounds 3
    python3 bench/rest_bench.py --phases ingest4 --ingest-rounds 5 --drop-caches \
        --baseline-code ../before    # this tree against a worktree of the code before

Every process started is stopped at the end, on errors and on Ctrl-C too.
"""

import argparse
import http.client
import itertools
import json
import os
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bytecode import compile_tree

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_CORPUS_DIR = "/tmp/orthancd-bench-corpus"
CORPUS_FORMAT_VERSION = 1  # bump when the generated files change

# The reference Orthanc 1.13.0 (scripts/test installs it; ORTHANC_REFERENCE overrides).
ORTHANC_BINARY = os.environ.get("ORTHANC_REFERENCE", "/opt/orthanc-ref/bin/Orthanc")
ORTHANCD_COMMAND = (shlex.quote(sys.executable)
                    + ' -c "from twisted.scripts.twistd import run; run()"'
                    + " -n --pidfile= orthancd --config {config}")
ORTHANC_COMMAND = ORTHANC_BINARY + " {config}"

SERVER_LABELS = {"orthancd": "orthancd", "orthanc": "Orthanc 1.13.0"}

BROWSE_ROUTES = ["/patients", "/studies/{id}", "/series/{id}",
                 "/instances/{id}/simplified-tags"]

# What --phases may name, in the order they run.
PHASES = ("ingest1", "disk", "browse", "delete", "ingest4")

RSS_SAMPLE_PERIOD = 0.05
REQUEST_TIMEOUT = 120


def log(message):
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- corpus

def corpus_folder(base, instances, studies):
    return os.path.join(base, "ct-%dx%d-v%d" % (instances, studies, CORPUS_FORMAT_VERSION))


def instances_per_study(instances, studies):
    """Split N instances over M studies as evenly as possible (first ones get the rest)."""
    base, extra = divmod(instances, studies)
    return [base + (1 if s < extra else 0) for s in range(studies)]


def generate_corpus(folder, instances, studies):
    """Write the CT-like corpus into folder, unless a complete one is already there.

    Pixel data is a smooth body-like disc plus noise: random enough that nothing
    (filesystem, transport) can shortcut it, and values in a realistic CT range.
    UIDs are derived deterministically so the corpus is the same on every machine.
    """
    manifest_path = os.path.join(folder, "manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if all(os.path.exists(os.path.join(folder, name)) for name in manifest["files"]):
            return [os.path.join(folder, name) for name in manifest["files"]]
        log("corpus in %s is incomplete: regenerating" % folder)

    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(20240611)
    rows = columns = 512
    yy, xx = np.mgrid[0:rows, 0:columns]
    body = ((xx - 256) ** 2 / 200.0 ** 2 + (yy - 270) ** 2 / 170.0 ** 2) <= 1.0
    phantom = np.where(body, 1024 + 40, 0).astype(np.int32)  # stored values, HU + 1024

    started = time.monotonic()
    names = []
    counts = instances_per_study(instances, studies)
    for study_index, count in enumerate(counts):
        def uid(*parts):
            return generate_uid(entropy_srcs=["orthancd-bench", str(study_index)] + list(parts))

        patient_id = "BENCH%04d" % study_index
        study_uid, series_uid, frame_uid = uid("study"), uid("series"), uid("frame")
        study_date = "2023%02d%02d" % (1 + study_index % 12, 1 + study_index % 28)
        for instance_index in range(count):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = uid("instance", str(instance_index))
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = generate_uid(entropy_srcs=["orthancd-bench-impl"])

            ds = Dataset()
            ds.file_meta = meta
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
            ds.StudyTime = ds.SeriesTime = "101500"
            ds.ContentTime = "1015%02d" % (instance_index % 60)
            ds.AccessionNumber = "ACC%06d" % study_index
            ds.Modality = "CT"
            ds.Manufacturer = "BenchCo"
            ds.InstitutionName = "Benchmark Hospital"
            ds.ReferringPhysicianName = "REFERRER^BENCH"
            ds.StudyDescription = "CT CHEST W/O CONTRAST"
            ds.SeriesDescription = "AXIAL 1.0 mm"
            ds.ManufacturerModelName = "BenchScanner 64"
            ds.PatientName = "BENCH^PATIENT^%04d" % study_index
            ds.PatientID = patient_id
            ds.PatientBirthDate = "19%02d0101" % (40 + study_index % 50)
            ds.PatientSex = "MF"[study_index % 2]
            ds.PatientAge = "%03dY" % (30 + study_index % 50)
            ds.BodyPartExamined = "CHEST"
            ds.SliceThickness = "1.0"
            ds.KVP = "120"
            ds.PatientPosition = "HFS"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.StudyID = str(study_index + 1)
            ds.SeriesNumber = 2
            ds.AcquisitionNumber = 1
            ds.InstanceNumber = instance_index + 1
            ds.ImagePositionPatient = ["-250.0", "-250.0", "%.1f" % (-instance_index * 1.0)]
            ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
            ds.FrameOfReferenceUID = frame_uid
            ds.PositionReferenceIndicator = ""
            ds.SliceLocation = "%.1f" % (-instance_index * 1.0)
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = rows, columns
            ds.PixelSpacing = ["0.976562", "0.976562"]
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 0
            ds.WindowCenter = "40"
            ds.WindowWidth = "400"
            ds.RescaleIntercept = "-1024"
            ds.RescaleSlope = "1"
            noise = rng.integers(-60, 61, size=(rows, columns), dtype=np.int32)
            pixels = np.clip(phantom + np.where(body, noise, noise // 4 + 15), 0, 4095)
            ds.PixelData = pixels.astype("<u2").tobytes()

            name = "s%03d-i%04d.dcm" % (study_index, instance_index)
            ds.save_as(os.path.join(folder, name), enforce_file_format=True)
            names.append(name)
        log("  corpus: study %d/%d written" % (study_index + 1, studies))
    with open(manifest_path, "w") as f:
        json.dump({"instances": instances, "studies": studies, "files": names}, f)
    os.sync()  # or the write-back of the new corpus would run during the first phase
    log("corpus generated in %.1f s" % (time.monotonic() - started))
    return [os.path.join(folder, name) for name in names]


def load_corpus(paths):
    """Read every file into memory, so the ingest measures the server, not our disk."""
    started = time.monotonic()
    bodies = []
    for path in paths:
        with open(path, "rb") as f:
            bodies.append(f.read())
    elapsed = time.monotonic() - started
    return bodies, elapsed


# --------------------------------------------------------------------------- servers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid):
    """pid and all its descendants (threads' children included)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in os.listdir("/proc/%d/task" % current):
                with open("/proc/%d/task/%s/children" % (current, task)) as f:
                    pending.extend(int(child) for child in f.read().split())
        except OSError:
            pass  # exited meanwhile
    return found


def status_kib(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def settle_disk(drop_caches=False):
    """Before a measured phase: nothing left dirty in the page cache by what
    ran before (the other server's uploads).  A server that syncs the file
    system before answering (orthancd's syncfs) would otherwise write the
    other server's files back too, during its own measurement.  With
    ``drop_caches`` (--drop-caches), the clean page cache goes too."""
    os.sync()
    if drop_caches:
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("1")
        except OSError as e:
            log("cannot drop the page cache (%s): measuring with it" % e)


def cpu_seconds(pids):
    """User + system CPU time of the given processes (clock ticks -> seconds)."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds():
    """CPU seconds spent busy by the whole machine (all cores) since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples the summed VmRSS of a process tree every 50 ms in a thread."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            rss = sum(status_kib(pid, "VmRSS") for pid in process_tree(self.pid))
            self.peak_kib = max(self.peak_kib, rss)
            self.samples += 1
            self._stop.wait(RSS_SAMPLE_PERIOD)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def disk_usage_bytes(folders):
    """Allocated bytes (du semantics: sparse files count what they use), each inode once."""
    seen, total = set(), 0
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                try:
                    st = os.lstat(os.path.join(root, name))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


class ServerUnderTest:
    """One server process started from a command, with its own temporary folder."""

    def __init__(self, kind, command_template, cwd, keep_folder=False, label=None,
                 orthancd_tree=None):
        """``orthancd_tree``: the source tree of an orthancd command (put on
        PYTHONPATH and compiled before each start); None for Orthanc."""
        self.kind = kind
        self.label = label or SERVER_LABELS[kind]
        self.orthancd_tree = orthancd_tree
        self.command_template = command_template
        self.cwd = cwd
        self.keep_folder = keep_folder
        self.process = None
        self.folder = None
        self.phase = "start"
        self.died = None  # text explaining why the current process is out, once it is
        self.deaths = []  # every such text over the run (a round restarts the server)

    # -- lifecycle

    def start(self, timeout=120):
        self.phase = "start"
        self.folder = tempfile.mkdtemp(prefix="rest-bench-%s-" % self.kind)
        self.http_port, self.dicom_port = free_port(), free_port()
        self.storage = os.path.join(self.folder, "storage")
        self.index = os.path.join(self.folder, "index")
        # The same configuration for both: defaults except what isolates the instance.
        configuration = {
            "Name": "bench-%s" % self.kind,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "StorageDirectory": self.storage,
            "IndexDirectory": self.index,
            "Plugins": [],
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
        }
        config_path = os.path.join(self.folder, "config.json")
        with open(config_path, "w") as f:
            json.dump(configuration, f, indent=2)
        self.log_path = os.path.join(self.folder, "server.log")
        # exec: the shell becomes the server, so the pid we sample is the server's.
        command = "exec " + self.command_template.format(
            config=shlex.quote(config_path), http_port=self.http_port, dicom_port=self.dicom_port)
        tree = self.orthancd_tree or REPO_ROOT
        env = dict(os.environ, PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if self.orthancd_tree is not None:
            compile_tree(self.orthancd_tree)
        with open(self.log_path, "ab") as log_file:
            # Own session: a Ctrl-C in the terminal reaches us only, and we stop it cleanly.
            self.process = subprocess.Popen(command, shell=True, cwd=self.cwd, env=env,
                                            stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.server_pid()
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError("%s exited with %s while starting:\n%s"
                                   % (self.label, self.process.returncode, self.log_tail()))
            try:
                status, _ = self.request_once("GET", "/system")
                if status == 200:
                    self.pid = self.server_pid()
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("%s did not answer GET /system within %d s:\n%s"
                           % (self.label, timeout, self.log_tail()))

    def server_pid(self):
        """The shell execs the command, so the Popen pid is normally the server itself."""
        return self.process.pid

    def stop(self, grace=20):
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                log("%s did not stop within %d s after SIGTERM: killing it" % (self.label, grace))
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        self.process = None
        if self.folder and not self.keep_folder:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def check_alive(self):
        """Record the death of the server (once) and tell whether it still runs."""
        if self.died is None and not self.alive():
            code = self.process.returncode if self.process is not None else None
            self.died = "exited with code %s" % code
            self.deaths.append("%s (during %s)" % (self.died, self.phase))
            log("!! %s died (%s); log tail:\n%s" % (self.label, self.died, self.log_tail()))
        return self.died is None

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return "(no log)"

    # -- REST helpers (outside measured loops)

    def connect(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=REQUEST_TIMEOUT)
        connection.connect()
        # Requests leave in one send() anyway; no Nagle delay on the small ones either.
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def request_once(self, method, path):
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def get_json(self, path):
        connection = self.connect()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError("GET %s: HTTP %d %r" % (path, response.status, body[:200]))
            return json.loads(body)
        finally:
            connection.close()

    def storage_bytes(self):
        return disk_usage_bytes([self.storage, self.index])


# --------------------------------------------------------------------------- load generator

def parse_head(header_block):
    """Status line and headers of a response -> (status, content length or
    None, chunked, server will close)."""
    lines = header_block.split(b"\r\n")
    version, status = lines[0][:8], int(lines[0][9:12])
    length, chunked, will_close = None, False, version == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            will_close = b"close" in value.lower()
    return status, length, chunked, will_close


class LeanHttpConnection:
    """A minimal HTTP/1.1 keep-alive client connection: the measured loops' client.

    http.client costs ~150 us of CPU per small request (its header parsing goes
    through the email package); at thousands of requests/s on a 2-core machine that
    is a core taken from the server and a client close to its own limit.  This one
    writes the request in one send() and parses just what framing needs
    (Content-Length, chunked, Connection: close).  `--client http.client` switches
    back to the standard library for comparison.
    """

    def __init__(self, port, timeout=REQUEST_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = "127.0.0.1:%d" % port
        self.buffer = b""

    def close(self):
        self.sock.close()

    def _fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buffer += data

    def _read_exactly(self, size):
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _read_line(self):
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
                return line
            self._fill()

    def request(self, method, path, body=None, headers=None):
        """Send one request, read the whole answer: (status, payload, will_close)."""
        head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self.host)
        for name, value in (headers or {}).items():
            head += "%s: %s\r\n" % (name, value)
        if body is not None or method in ("POST", "PUT"):
            head += "Content-Length: %d\r\n" % len(body or b"")
        message = head.encode("latin-1") + b"\r\n"
        self.sock.sendall(message + body if body else message)

        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            self._fill()
        header_block, self.buffer = self.buffer[:end], self.buffer[end + 4:]
        status, length, chunked, will_close = parse_head(header_block)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            payload = b""
        elif chunked:
            parts = []
            while True:
                size = int(self._read_line().split(b";")[0], 16)
                if size == 0:
                    while self._read_line():  # trailers, then the empty line
                        pass
                    break
                parts.append(self._read_exactly(size))
                self._read_exactly(2)
            payload = b"".join(parts)
        elif length is not None:
            payload = self._read_exactly(length)
        else:  # body delimited by the end of the connection
            try:
                while True:
                    self._fill()
            except ConnectionError:
                pass
            payload, self.buffer, will_close = self.buffer, b"", True
        return status, payload, will_close


class StdlibHttpConnection:
    """The same interface on top of http.client (for --client http.client)."""

    def __init__(self, port, timeout=REQUEST_TIMEOUT):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.connection.connect()
        self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        self.connection.close()

    def request(self, method, path, body=None, headers=None):
        self.connection.request(method, path, body=body, headers=headers or {})
        response = self.connection.getresponse()
        return response.status, response.read(), response.will_close


# "loop": one thread, epoll over all connections (default, cheapest per request);
# "threads": one thread per connection with LeanHttpConnection;
# "http.client": one thread per connection with the standard library.
CLIENTS = {"loop": "loop", "threads": LeanHttpConnection, "http.client": StdlibHttpConnection}


def parse_response(buffer, method):
    """Parse one complete HTTP/1.1 answer at the start of buffer.

    Returns None while incomplete, else (status, payload, will_close, consumed).
    Answers delimited by the end of the connection are finished by the caller.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    status, length, chunked, will_close = parse_head(bytes(buffer[:end]))
    start = end + 4
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, b"", will_close, start
    if length is not None:
        if len(buffer) < start + length:
            return None
        return status, bytes(buffer[start:start + length]), will_close, start + length
    if chunked:
        parts, position = [], start
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            position = line_end + 2
            if size == 0:
                trailer_end = buffer.find(b"\r\n", position)
                while trailer_end > position:  # skip trailers up to the empty line
                    position = trailer_end + 2
                    trailer_end = buffer.find(b"\r\n", position)
                if trailer_end < 0:
                    return None
                return status, b"".join(parts), will_close, trailer_end + 2
            if len(buffer) < position + size + 2:
                return None
            parts.append(bytes(buffer[position:position + size]))
            position += size + 2
    return status, None, True, start  # until the connection closes


class LoopConnection:
    """One keep-alive connection driven by EventLoopClient."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), REQUEST_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.host = "127.0.0.1:%d" % port
        self.inbound = bytearray()
        self.outbound = None
        self.sent = 0
        self.request = None  # (method, path) in flight
        self.started = 0.0


def run_requests_event_loop(server, make_request, concurrency, count, duration, result):
    """Same contract as run_requests, but one thread multiplexes `concurrency`
    keep-alive connections with epoll: no GIL hand-offs between worker threads,
    about half the client CPU per request of the threaded lean client."""
    import selectors
    selector = selectors.DefaultSelector()
    next_index = itertools.count()
    deadline = time.monotonic() + duration if duration is not None else None
    connections = []

    def record_error(text):
        result.errors += 1
        if len(result.error_samples) < 5:
            result.error_samples.append(text)

    def drop(connection):
        selector.unregister(connection.sock)
        connection.sock.close()
        connections.remove(connection)

    def start_next(connection):
        """Put the next request on this connection; False when there is none left."""
        i = next(next_index)
        if (count is not None and i >= count) or (deadline is not None and time.monotonic() >= deadline):
            return False
        method, path, body, headers = make_request(i)
        head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, connection.host)
        for name, value in (headers or {}).items():
            head += "%s: %s\r\n" % (name, value)
        if body is not None or method in ("POST", "PUT"):
            head += "Content-Length: %d\r\n" % len(body or b"")
        message = head.encode("latin-1") + b"\r\n"
        connection.outbound = memoryview(message + body if body else message)
        connection.sent = 0
        connection.request = (method, path)
        connection.started = time.monotonic()
        send_some(connection)
        return True

    def send_some(connection):
        try:
            connection.sent += connection.sock.send(connection.outbound[connection.sent:])
        except BlockingIOError:
            pass
        if connection.sent < len(connection.outbound):
            selector.modify(connection.sock, selectors.EVENT_WRITE, connection)
        else:
            connection.outbound = None
            selector.modify(connection.sock, selectors.EVENT_READ, connection)

    def open_connection():
        try:
            connection = LoopConnection(server.http_port)
        except OSError as e:
            record_error("connect -> %s: %s" % (type(e).__name__, e))
            return None
        selector.register(connection.sock, selectors.EVENT_READ, connection)
        connections.append(connection)
        return connection

    def finish(connection, status, payload):
        method, path = connection.request
        connection.request = None
        if 200 <= status < 300:
            result.ok += 1
        else:
            record_error("%s %s -> HTTP %d %r" % (method, path, status, (payload or b"")[:120]))

    def fail(connection, error):
        method, path = connection.request or ("?", "?")
        record_error("%s %s -> %s: %s" % (method, path, type(error).__name__, error))
        drop(connection)
        if not server.alive():
            return
        time.sleep(0.05)  # do not spin on a refusing server
        replacement = open_connection()
        if replacement is not None and not start_next(replacement):
            drop(replacement)

    try:
        for _ in range(concurrency):
            connection = open_connection()
            if connection is not None and not start_next(connection):
                drop(connection)
        while connections:
            events = selector.select(1.0)
            if not events:
                now = time.monotonic()
                for connection in list(connections):
                    if connection.request and now - connection.started > REQUEST_TIMEOUT:
                        fail(connection, TimeoutError("no answer in %d s" % REQUEST_TIMEOUT))
                if not server.alive():
                    break
                continue
            for key, mask in events:
                connection = key.data
                if connection not in connections:
                    continue
                try:
                    if mask & selectors.EVENT_WRITE:
                        send_some(connection)
                        continue
                    data = connection.sock.recv(262144)
                    if not data:
                        if connection.request and connection.inbound:
                            parsed = parse_response(connection.inbound, connection.request[0])
                            if parsed and parsed[1] is None:  # length given by the close
                                status = parsed[0]
                                finish(connection, status, bytes(connection.inbound[parsed[3]:]))
                                drop(connection)
                                replacement = open_connection()
                                if replacement is not None and not start_next(replacement):
                                    drop(replacement)
                                continue
                        raise ConnectionError("server closed the connection")
                    connection.inbound += data
                    parsed = parse_response(connection.inbound, connection.request[0])
                    if parsed is None or parsed[1] is None:
                        continue
                    status, payload, will_close, consumed = parsed
                    del connection.inbound[:consumed]
                    finish(connection, status, payload)
                    if will_close:
                        drop(connection)
                        connection = open_connection()
                        if connection is None:
                            continue
                    if not start_next(connection):
                        drop(connection)
                except BlockingIOError:
                    continue
                except (OSError, ValueError, IndexError) as e:
                    fail(connection, e)
    finally:
        for connection in list(connections):
            drop(connection)
        selector.close()


class PhaseResult:
    def __init__(self):
        self.ok = 0
        self.errors = 0
        self.error_samples = []
        self.elapsed = 0.0
        self.client_cpu = 0.0
        self.server_cpu = 0.0
        self.machine_cpu = 0.0  # busy CPU of the whole machine during the run
        self.aborted = None

    @property
    def other_cpu(self):
        """CPU used by neither the client nor the server: noise from the rest of the machine."""
        return max(0.0, self.machine_cpu - self.client_cpu - self.server_cpu)

    @property
    def rate(self):
        return self.ok / self.elapsed if self.elapsed > 0 and self.aborted is None else None

    def as_dict(self):
        return {"ok": self.ok, "errors": self.errors, "elapsed_s": round(self.elapsed, 3),
                "rate_per_s": self.rate, "client_cpu_s": round(self.client_cpu, 3),
                "server_cpu_s": round(self.server_cpu, 3),
                "other_cpu_s": round(self.other_cpu, 3), "aborted": self.aborted,
                "error_samples": self.error_samples[:5]}


def run_requests(server, make_request, concurrency, count=None, duration=None,
                 client=LeanHttpConnection):
    """Send requests from `concurrency` threads, each on its own keep-alive connection.

    make_request(i) -> (method, path, body, headers) for the i-th request.  The run
    stops after `count` requests or after `duration` seconds.  Non-2xx answers and
    transport errors are counted as errors; if the server process dies, the run
    stops and the result is marked aborted.
    """
    result = PhaseResult()
    lock = threading.Lock()
    next_index = itertools.count()
    stop = threading.Event()
    deadline = [None]

    def worker():
        connection = None
        ok = errors = 0
        samples = []
        try:
            while not stop.is_set():
                i = next(next_index)  # atomic under the GIL
                if count is not None and i >= count:
                    break
                if deadline[0] is not None and time.monotonic() >= deadline[0]:
                    break
                method, path, body, headers = make_request(i)
                try:
                    if connection is None:
                        connection = client(server.http_port)
                    status, payload, will_close = connection.request(method, path, body, headers)
                    if 200 <= status < 300:
                        ok += 1
                    else:
                        errors += 1
                        if len(samples) < 5:
                            samples.append("%s %s -> HTTP %d %r"
                                           % (method, path, status, payload[:120]))
                    if will_close:
                        connection.close()
                        connection = None
                except (OSError, http.client.HTTPException) as e:
                    errors += 1
                    if len(samples) < 5:
                        samples.append("%s %s -> %s: %s" % (method, path, type(e).__name__, e))
                    if connection is not None:
                        connection.close()
                        connection = None
                    if not server.alive():
                        stop.set()
                        break
                    time.sleep(0.05)  # do not spin on a refusing server
        finally:
            if connection is not None:
                connection.close()
            with lock:
                result.ok += ok
                result.errors += errors
                result.error_samples.extend(samples)

    threads = [] if client == "loop" else [
        threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    server_pids = process_tree(server.pid)
    server_cpu_before = cpu_seconds(server_pids)
    client_cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    machine_before = machine_busy_seconds()
    started = time.monotonic()
    if duration is not None:
        deadline[0] = started + duration
    if client == "loop":
        run_requests_event_loop(server, make_request, concurrency, count, duration, result)
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # stay responsive to Ctrl-C
    except BaseException:
        stop.set()
        raise
    result.elapsed = time.monotonic() - started
    client_cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    result.client_cpu = ((client_cpu_after.ru_utime - client_cpu_before.ru_utime)
                         + (client_cpu_after.ru_stime - client_cpu_before.ru_stime))
    result.server_cpu = cpu_seconds(server_pids) - server_cpu_before
    result.machine_cpu = machine_busy_seconds() - machine_before
    if not server.check_alive():
        result.aborted = "server died"
    return result


# --------------------------------------------------------------------------- phases

class Benchmark:
    def __init__(self, servers, bodies, options):
        self.servers = servers
        self.bodies = bodies
        self.options = options
        self.figures = {s.kind: {} for s in servers}
        self.client_notes = []  # (phase, server, client cpu µs/request, client share)
        self.phase_number = 0
        self.client = CLIENTS[options.client]

    def interleaved(self):
        """Servers still running, in an order that alternates from phase to phase."""
        order = [s for s in self.servers if s.died is None]
        if self.phase_number % 2:
            order.reverse()
        self.phase_number += 1
        return order

    def note_client(self, phase, server, result):
        requests = result.ok + result.errors
        if requests and result.elapsed > 0:
            per_request = result.client_cpu / requests
            self.client_notes.append({
                "phase": phase, "server": server.kind,
                "client_cpu_us_per_request": round(per_request * 1e6, 1),
                "client_max_rate_one_core": round(1 / per_request) if per_request else None,
                "measured_rate": round(requests / result.elapsed, 1),
                "client_cpu_share": round(result.client_cpu / result.elapsed, 3),
                "other_cpu_share": round(result.other_cpu / result.elapsed, 3),
            })

    def record(self, server, name, value):
        self.figures[server.kind][name] = value

    def record_round(self, server, phase, figures):
        """One more run of ``phase``: kept under phase + "_rounds"; the
        phase's figures are those of the run with the median rate (the
        lower middle one for an even count)."""
        rounds = self.figures[server.kind].setdefault(phase + "_rounds", [])
        rounds.append(figures)
        ranked = sorted(rounds, key=lambda f: f["rate_per_s"])
        self.record(server, phase, ranked[(len(ranked) - 1) // 2])

    def add_errors(self, server, result):
        figures = self.figures[server.kind]
        figures.setdefault("errors", 0)
        figures["errors"] += result.errors
        if result.error_samples:
            figures.setdefault("error_samples", []).extend(result.error_samples[:3])

    def start_all(self):
        for server in self.interleaved():
            try:
                startup = server.start()
                log("%s started in %.1f s (pid %d, http %d, folder %s)"
                    % (server.label, startup, server.pid, server.http_port, server.folder))
            except RuntimeError as e:
                server.died = "failed to start"
                server.deaths.append(server.died)
                log("!! %s" % e)
                continue
            self.warm_up(server)

    def warm_up(self, server):
        """One upload, timed, then deleted, before anything is measured:
        orthancd imports its DICOM libraries at their first use (about
        0.2 s, once per process: orthancd.lazy_modules), which the rates
        of a short phase would otherwise carry.  The time of that first
        upload is recorded for both servers."""
        connection = server.connect()
        try:
            started = time.perf_counter()
            connection.request("POST", "/instances", self.bodies[0],
                               {"Content-Type": "application/dicom"})
            response = connection.getresponse()
            answer = response.read()
            elapsed_ms = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise RuntimeError("warm-up upload: HTTP %d %r" % (response.status, answer[:200]))
            connection.request("DELETE", "/instances/" + json.loads(answer)["ID"])
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError("warm-up delete: HTTP %d" % response.status)
        finally:
            connection.close()
        self.figures[server.kind].setdefault("first_upload_ms", []).append(round(elapsed_ms, 1))
        log("  %s: first upload after start %.1f ms (not measured further)"
            % (server.label, elapsed_ms))

    def stop_all(self):
        for server in self.servers:
            server.stop()

    def ingest(self, concurrency):
        phase = "ingest_c%d" % concurrency
        bodies = self.bodies
        headers = {"Content-Type": "application/dicom"}

        def make_request(i):
            return "POST", "/instances", bodies[i], headers

        for server in self.interleaved():
            server.phase = phase
            log("%s: %s of %d instances..." % (server.label, phase, len(bodies)))
            settle_disk(self.options.drop_caches)
            with RssSampler(server.pid) as rss:
                result = run_requests(server, make_request, concurrency, count=len(bodies),
                                      client=self.client)
            self.record_round(server, phase, result.as_dict())
            self.record(server, phase + "_peak_rss_kib",
                        max(rss.peak_kib, self.figures[server.kind].get(phase + "_peak_rss_kib", 0)))
            self.record(server, phase + "_vmhwm_kib", status_kib(server.pid, "VmHWM"))
            self.add_errors(server, result)
            self.note_client(phase, server, result)
            log("  %s: %s instances/s, %d errors, peak RSS %.0f MiB, server CPU %.1f ms/instance"
                % (server.label, fmt(result.rate), result.errors, rss.peak_kib / 1024,
                   1000 * result.server_cpu / max(result.ok, 1)))

    def count_instances(self, server):
        try:
            return len(server.get_json("/instances"))
        except (OSError, RuntimeError, http.client.HTTPException) as e:
            log("  %s: cannot list instances: %s" % (server.label, e))
            server.check_alive()
            return None

    def disk(self):
        for server in self.interleaved():
            stored = self.count_instances(server)
            used = server.storage_bytes()
            self.record(server, "stored_instances", stored)
            self.record(server, "disk_bytes", used)
            self.record(server, "disk_bytes_per_instance", used / stored if stored else None)
            if stored != len(self.bodies):
                log("  %s stores %s instances, expected %d" % (server.label, stored, len(self.bodies)))

    def browse(self):
        seconds = self.options.browse_seconds
        identifiers = {}
        for server in self.servers:
            if server.died is None:
                try:
                    identifiers[server.kind] = {
                        "studies": server.get_json("/studies"),
                        "series": server.get_json("/series"),
                        "instances": server.get_json("/instances"),
                    }
                except (OSError, RuntimeError, http.client.HTTPException) as e:
                    log("!! %s: cannot list resources: %s" % (server.label, e))
                    server.check_alive()
        for route in BROWSE_ROUTES:
            for server in self.interleaved():
                if server.kind not in identifiers:
                    continue
                ids = identifiers[server.kind]
                pool = (ids["studies"] if route.startswith("/studies")
                        else ids["series"] if route.startswith("/series")
                        else ids["instances"] if route.startswith("/instances") else [None])
                if not pool:
                    log("  %s: nothing to browse for %s" % (server.label, route))
                    continue
                paths = [route.format(id=identifier) for identifier in pool]
                server.phase = "browse " + route

                def make_request(i, paths=paths):
                    return "GET", paths[i % len(paths)], None, {}

                # Warm-up, not counted: connections, caches, lazy initialisation.
                run_requests(server, make_request, 4, count=min(len(paths), 100), client=self.client)
                result = run_requests(server, make_request, 4, duration=seconds, client=self.client)
                name = "browse " + route
                self.record(server, name, result.as_dict())
                self.add_errors(server, result)
                self.note_client(name, server, result)
                log("  %s: GET %s: %s requests/s, %d errors"
                    % (server.label, route, fmt(result.rate), result.errors))

    def delete(self):
        for server in self.interleaved():
            try:
                ids = server.get_json("/instances")
            except (OSError, RuntimeError, http.client.HTTPException) as e:
                log("!! %s: cannot list instances: %s" % (server.label, e))
                server.check_alive()
                continue

            def make_request(i, ids=ids):
                return "DELETE", "/instances/" + ids[i], None, {}

            server.phase = "delete_c4"
            log("%s: deleting %d instances..." % (server.label, len(ids)))
            settle_disk(self.options.drop_caches)
            result = run_requests(server, make_request, 4, count=len(ids), client=self.client)
            self.record(server, "delete_c4", result.as_dict())
            self.add_errors(server, result)
            self.note_client("delete_c4", server, result)
            left = self.count_instances(server)
            self.record(server, "instances_left_after_delete", left)
            log("  %s: %s deletions/s, %d errors, %s instances left"
                % (server.label, fmt(result.rate), result.errors, left))

    def run(self):
        phases = self.options.phases
        try:
            # Round 1: fresh servers, ingest one by one, then disk, browse, delete
            # (the ingest is needed by the others: it runs whenever one of them does).
            if phases & {"ingest1", "disk", "browse", "delete"}:
                self.start_all()
                self.ingest(1)
                if "disk" in phases:
                    self.disk()
                if "browse" in phases:
                    self.browse()
                if "delete" in phases:
                    self.delete()
                self.stop_all()
                for server in self.servers:
                    server.died = None  # a new process: it gets its chance in round 2
            # Round 2: fresh servers again, so the c=4 ingest starts from the same state.
            if "ingest4" in phases:
                self.start_all()
                self.ingest(4)
            # More rounds of each ingest, each into fresh servers.
            for _ in range(self.options.ingest_rounds - 1):
                for concurrency in (1, 4):
                    if "ingest%d" % concurrency in phases:
                        self.stop_all()
                        for server in self.servers:
                            server.died = None
                        self.start_all()
                        self.ingest(concurrency)
        finally:
            self.stop_all()
        for server in self.servers:
            if server.deaths:
                self.record(server, "died", server.deaths)


# --------------------------------------------------------------------------- report

def fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return "%.*f" % (digits, value)
    return str(value)


def rate_of(figures, phase):
    entry = figures.get(phase)
    return entry["rate_per_s"] if entry else None


def build_rows(benchmark):
    """(metric, {kind: value}, goal ratio text or None, passes(ratio) or None, unit digits)."""
    rows = []
    per_server = benchmark.figures

    def values(getter):
        out = {}
        for kind, figures in per_server.items():
            try:
                out[kind] = getter(figures)
            except (KeyError, TypeError, ZeroDivisionError):
                out[kind] = None
        return out

    rows.append(("ingest c=1 (instances/s)", values(lambda f: rate_of(f, "ingest_c1")), None, None))
    rows.append(("ingest c=4 (instances/s)", values(lambda f: rate_of(f, "ingest_c4")),
                 ">= 1.5x", lambda r: r >= 1.5))
    browse_names = ["browse " + route for route in BROWSE_ROUTES]
    for name in browse_names:
        rows.append(("GET %s (req/s)" % name[len("browse "):],
                     values(lambda f, name=name: rate_of(f, name)), ">= 1x", lambda r: r >= 1.0))

    def browse_mean(f):
        rates = [rate_of(f, name) for name in browse_names]
        return None if any(r is None for r in rates) else sum(rates) / len(rates)

    rows.append(("browse mean (req/s)", values(browse_mean), ">= 1x", lambda r: r >= 1.0))
    rows.append(("delete c=4 (instances/s)", values(lambda f: rate_of(f, "delete_c4")),
                 ">= 1x", lambda r: r >= 1.0))

    def peak_rss(f):
        peaks = [f[k] for k in ("ingest_c1_peak_rss_kib", "ingest_c4_peak_rss_kib") if f.get(k)]
        return max(peaks) / 1024 if peaks else None

    rows.append(("peak RSS during ingest (MiB)", values(peak_rss), "<= 1.5x", lambda r: r <= 1.5))
    rows.append(("disk per instance (KiB)",
                 values(lambda f: f["disk_bytes_per_instance"] / 1024), None, None))
    rows.append(("server CPU per ingest c=4 (ms/inst)",
                 values(lambda f: 1000 * f["ingest_c4"]["server_cpu_s"] / f["ingest_c4"]["ok"]),
                 None, None))
    rows.append(("first upload after a start (ms, worst)",
                 values(lambda f: max(f["first_upload_ms"])), None, None))
    # "-" for a server on which nothing ran (it never started), not a misleading 0.
    rows.append(("request errors", values(lambda f: f.get("errors")), None, None))
    return rows


def print_ingest_rounds(benchmark):
    """Each round's ingest rates when there were several, with the ratio
    of the two servers within the round and the median of those ratios."""
    ours, theirs = benchmark.figures.get("orthancd", {}), benchmark.figures.get("orthanc", {})
    for phase in ("ingest_c1", "ingest_c4"):
        a, b = ours.get(phase + "_rounds", []), theirs.get(phase + "_rounds", [])
        if len(a) < 2 or len(a) != len(b):
            continue
        # A round where Orthanc stored nothing has no ratio.
        pairs = [(x["rate_per_s"], y["rate_per_s"]) for x, y in zip(a, b) if y["rate_per_s"]]
        if not pairs:
            continue
        median = statistics.median(x / y for x, y in pairs)
        benchmark.figures["orthancd"][phase + "_median_ratio"] = median
        labels = {s.kind: s.label for s in benchmark.servers}
        print("%s rounds (instances/s, %s / %s = ratio): %s; median ratio %.2fx"
              % (phase.replace("_", " "), labels["orthancd"], labels["orthanc"],
                 ", ".join("%.1f / %.1f = %.2fx" % (x, y, x / y) for x, y in pairs), median))


def print_report(benchmark, corpus_summary):
    kinds = [s.kind for s in benchmark.servers]
    rows = build_rows(benchmark)
    compare = "orthancd" in kinds and "orthanc" in kinds
    header = ["metric"] + [s.label for s in benchmark.servers] + (["ratio", "goal", ""] if compare else [])
    table = [header]
    verdicts = {}
    # The goals are against Orthanc, not against another orthancd.
    goals_apply = not getattr(benchmark.options, "baseline_code", None)
    for metric, values, goal, passes in rows:
        goal = goal if goals_apply else None
        line = [metric] + [fmt(values.get(k)) for k in kinds]
        if compare:
            a, b = values.get("orthancd"), values.get("orthanc")
            ratio = a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
            verdict = ""
            if goal and ratio is not None:
                verdict = "ok" if passes(ratio) else "MISSED"
                verdicts[metric] = {"ratio": ratio, "goal": goal, "met": passes(ratio)}
            elif goal:
                verdict = "n/a"
            line += [fmt(ratio, 2) + ("x" if ratio is not None else ""), goal or "", verdict]
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print()
    print(corpus_summary)
    for index, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(widths[i + 1]) for i, cell in enumerate(row[1:])]
        print(" | ".join(cells).rstrip())
        if index == 0:
            print("-+-".join("-" * w for w in widths))
    for server in benchmark.servers:
        for death in server.deaths:
            print("!! %s: %s" % (server.label, death))
        samples = benchmark.figures[server.kind].get("error_samples")
        if samples:
            print("!! %s errors, e.g.: %s" % (server.label, "; ".join(samples[:3])))
    if compare:
        print_ingest_rounds(benchmark)
    print()
    print("client check (same client for both; 'max' = requests/s one core could send at that CPU cost;")
    print("'other' = CPU used meanwhile by neither client nor server: other processes, kernel write-back):")
    for note in benchmark.client_notes:
        print("  %-40s %-8s %6.1f us/req  max %6s/s  measured %8.1f/s  client %3.0f%%  other %3.0f%% of a core"
              % (note["phase"], note["server"], note["client_cpu_us_per_request"],
                 note["client_max_rate_one_core"], note["measured_rate"],
                 100 * note["client_cpu_share"], 100 * note["other_cpu_share"]))
    return verdicts


# --------------------------------------------------------------------------- main

def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", action="append", choices=sorted(SERVER_LABELS),
                        help="server to test (repeatable; default: both)")
    parser.add_argument("--corpus-dir", default=DEFAULT_CORPUS_DIR)
    parser.add_argument("--instances", type=int, default=1200)
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 instances in 10 studies, 2 s per browse route")
    parser.add_argument("--browse-seconds", type=float, default=5.0,
                        help="measured duration of each browse route on each server")
    parser.add_argument("--orthancd-cmd", default=ORTHANCD_COMMAND,
                        help="command starting orthancd; {config} is the configuration file, "
                             "{http_port} and {dicom_port} the ports it holds")
    parser.add_argument("--orthanc-cmd", default=ORTHANC_COMMAND,
                        help="command starting Orthanc (same placeholders)")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="loop",
                        help="HTTP client of the measured loops (see CLIENTS)")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help="comma-separated phases to run, among %s (browse, disk and delete "
                             "run after the c=1 ingest, which they need)" % ", ".join(PHASES))
    parser.add_argument("--ingest-rounds", type=int, default=1,
                        help="runs of each ingest, each into fresh servers (the table gives "
                             "the median run; the ratio of each round is printed below it)")
    parser.add_argument("--baseline-code", metavar="TREE",
                        help="compare with orthancd run from this source tree instead of Orthanc")
    parser.add_argument("--drop-caches", action="store_true",
                        help="drop the clean page cache before each measured phase (root)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' temporary folders")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    options = parser.parse_args()
    if options.quick:
        options.instances, options.studies = 200, 10
        options.browse_seconds = min(options.browse_seconds, 2.0)
    if options.instances < 1 or not 1 <= options.studies <= options.instances:
        parser.error("need 1 <= --studies <= --instances")
    if options.ingest_rounds < 1:
        parser.error("need --ingest-rounds >= 1")
    options.server = options.server or ["orthancd", "orthanc"]
    options.phases = set(p.strip() for p in options.phases.split(",") if p.strip())
    unknown = options.phases - set(PHASES)
    if unknown:
        parser.error("unknown phases: %s" % ", ".join(sorted(unknown)))
    return options


def interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def main():
    options = parse_arguments()
    # A SIGTERM to the benchmark must stop the servers too: turn it into Ctrl-C.
    signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    # Also when started in the background, where SIGINT is inherited as ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    folder = corpus_folder(options.corpus_dir, options.instances, options.studies)
    paths = generate_corpus(folder, options.instances, options.studies)
    bodies, read_seconds = load_corpus(paths)
    total = sum(len(b) for b in bodies)
    corpus_summary = ("corpus: %d instances, %d studies, %.0f KiB each, %.0f MiB in %s; "
                      "read into memory in %.2f s (%.0f files/s)"
                      % (len(bodies), options.studies, total / len(bodies) / 1024, total / 2**20,
                         folder, read_seconds, len(bodies) / read_seconds))
    log(corpus_summary)

    commands = {"orthancd": options.orthancd_cmd, "orthanc": options.orthanc_cmd}
    trees = {"orthancd": REPO_ROOT, "orthanc": None}
    labels = dict(SERVER_LABELS)
    if options.baseline_code:
        # The reference's slot holds orthancd from the baseline tree.
        commands["orthanc"] = options.orthancd_cmd
        trees["orthanc"] = os.path.abspath(options.baseline_code)
        labels["orthancd"] = "orthancd (this tree)"
        labels["orthanc"] = "orthancd @ %s" % options.baseline_code
    servers = [ServerUnderTest(kind, commands[kind], cwd=trees[kind] or REPO_ROOT,
                               keep_folder=options.keep, label=labels[kind],
                               orthancd_tree=trees[kind])
               for kind in options.server]
    benchmark = Benchmark(servers, bodies, options)
    interrupted = False
    try:
        benchmark.run()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: servers stopped, partial figures follow")
    finally:
        benchmark.stop_all()

    verdicts = print_report(benchmark, corpus_summary)
    if options.json:
        with open(options.json, "w") as f:
            json.dump({"corpus": {"instances": len(bodies), "studies": options.studies,
                                  "bytes": total, "folder": folder,
                                  "read_seconds": read_seconds},
                       "browse_seconds": options.browse_seconds,
                       "servers": {k: SERVER_LABELS[k] for k in options.server},
                       "figures": benchmark.figures,
                       "goals": verdicts,
                       "client": benchmark.client_notes,
                       "interrupted": interrupted}, f, indent=2)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
