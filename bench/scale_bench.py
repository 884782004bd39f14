#!/usr/bin/env python3
"""Scale: orthancd against the real Orthanc 1.13.0 as the archive grows.

Both servers start empty, with the same configuration (defaults, separate
storage and index folders), and are fed the same instances through
POST /instances (REST, --concurrency keep-alive connections multiplexed by
rest_bench's epoll client), 10,000 at a time, alternating between the
servers so that the drift of a shared machine hits both.  At every size of
--sizes (default 10k and 100k; 1M fits this disk: ~4 KiB per instance) each
server is measured:

  ingest      instances/s of every window of 10,000 (first, last and worst
              window of the step), and the server's CPU per instance
  wild+range  POST /tools/find  Study, PatientName "SCALE^P00000*" (100
              patients at every size) and StudyDate 20100101-20141231
  uid         POST /tools/find  Study, exact StudyInstanceUID
  oe2-page    POST /tools/find  Orthanc Explorer 2's study list: OrderBy
              LastUpdate DESC, Limit 50, Expand, RequestedTags; Since 0
  oe2-page-n  the same, Since 1000
  count-wild  POST /tools/count-resources  Study, PatientName "SCALE^P00000*"
  count-10%   POST /tools/count-resources  Study, PatientName "SCALE^P0*"
              (a tenth of the patients: grows with N, shows the cost per match)
  study       GET /studies/{id}
  findscu     /usr/bin/findscu, STUDY level, the wild+range query (the
              process start is included: same for both)
  delete      DELETE /instances/{id} of 500 instances (then stored again,
              untimed, so N stays N), instances/s
  start-up    SIGTERM, then a new process until GET /system answers (polled
              every 10 ms), and its RSS once idle (1 s after)
  index/inst  bytes (allocated, as du) of the index folder per instance
              (LMDB for orthancd; SQLite and its WAL for Orthanc)

Instances are small but real: a CT header and a 16x16 16-bit pixel matrix
(~1.2 kB), made by patching fixed-width placeholders in one template
serialized by pydicom (building each with pydicom would cost more than
storing it).  Study s belongs to patient s*2//3, has 1 + s%4 series of 5 to
15 instances (~25 instances per study), StudyDate spread over 2000-2019.

Orthanc 1.13.0 stops being fed past --orthanc-max instances, or once its
ingest took more than --orthanc-budget seconds; the report says where.

Latencies are medians over --repeat requests (ranges: min-max of the
medians of --rounds rounds); figures are printed, never asserted.

    python3 bench/scale_bench.py [--sizes 10000,100000,1000000]
        [--orthanc-max 100000] [--orthanc-budget 1800] [--json out.json]
"""
import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO_ROOT)

import rest_bench as RB  # noqa: E402
from bytecode import compile_tree  # noqa: E402
from find_bench import median_ms  # noqa: E402

WINDOW = 10000
UID_ROOT = "1.2.826.0.1.3680043.8.498.99."
# Fixed-width placeholders (values of the same width replace them).
P_NAME, P_ID = b"SCALE^P9999990", b"SP9999990"
P_STUDY, P_SERIES, P_SOP = b"1999999990", b"2999999990", b"39999999990"
P_DATE, P_ACCESSION, P_NUMBER = b"19990909", b"A99999990", b"77770"
ENV = dict(os.environ, TCP_NODELAY="1")
WILD = "SCALE^P00000*"
WILD_RANGE = {"Level": "Study", "Query": {"PatientName": WILD, "StudyDate": "20100101-20141231"}}
OE2_TAGS = ["ModalitiesInStudy", "NumberOfStudyRelatedInstances",
            "NumberOfStudyRelatedSeries", "SOPClassesInStudy"]


def log(message):
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- corpus

def template():
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
    import io
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID_ROOT + P_SOP.decode()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = P_DATE.decode()
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AccessionNumber = P_ACCESSION.decode()
    ds.Modality = "CT"
    ds.Manufacturer = "ScaleCo"
    ds.InstitutionName = "Scale Hospital"
    ds.ReferringPhysicianName = "REFERRER^SCALE"
    ds.StudyDescription = "CT CHEST"
    ds.SeriesDescription = "AXIAL"
    ds.PatientName = P_NAME.decode()
    ds.PatientID = P_ID.decode()
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = UID_ROOT + P_STUDY.decode()
    ds.SeriesInstanceUID = UID_ROOT + P_SERIES.decode()
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = P_NUMBER.decode()
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(range(256)) * 2
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    for placeholder in (P_NAME, P_ID, P_STUDY, P_SERIES, P_SOP, P_DATE, P_ACCESSION, P_NUMBER):
        assert placeholder in data, placeholder
    return data


def study_layout(study):
    """Instances per series of a study."""
    return [5 + (study * 7 + series * 3) % 11 for series in range(1 + study % 4)]


def patient_of(study):
    return study * 2 // 3


def study_date(study):
    return "%04d%02d%02d" % (2000 + study % 20, 1 + study % 12, 1 + study % 28)


def study_uid(study):
    return UID_ROOT + "1%09d" % study


def public_id(*parts):
    return hashlib.sha1("|".join(parts).encode()).hexdigest()


def orthanc_id(text):
    return "-".join(text[i:i + 8] for i in range(0, 40, 8))


class Corpus:
    """Instances in order: study by study, series by series."""

    def __init__(self):
        data = template()
        # Where each placeholder sits: bodies are the template's pieces
        # joined with the values.
        spots = []
        for placeholder in (P_NAME, P_ID, P_STUDY, P_SERIES, P_SOP, P_DATE, P_ACCESSION,
                            P_NUMBER):
            start = data.find(placeholder)
            while start >= 0:
                spots.append((start, len(placeholder), placeholder))
                start = data.find(placeholder, start + 1)
        spots.sort()
        for (a, la, _), (b, _, _) in zip(spots, spots[1:]):
            assert a + la <= b, "overlapping placeholders"
        self.pieces, self.slots, position = [], [], 0
        for start, length, placeholder in spots:
            self.pieces.append(data[position:start])
            self.slots.append(placeholder)
            position = start + length
        self.tail = data[position:]
        self.study = 0
        self.series = 0
        self.instance = 0
        self.sequence = 0  # instances generated so far

    def _body(self, values):
        out = []
        for piece, slot in zip(self.pieces, self.slots):
            out.append(piece)
            out.append(values[slot])
        out.append(self.tail)
        return b"".join(out)

    def next_batch(self, count):
        """(bodies, instance IDs) of the next ``count`` instances."""
        bodies, ids = [], []
        while len(bodies) < count:
            layout = study_layout(self.study)
            patient = patient_of(self.study)
            pid = "SP%07d" % patient
            series_number = self.study * 4 + self.series
            study, series = study_uid(self.study), UID_ROOT + "2%09d" % series_number
            sop = UID_ROOT + "3%010d" % self.sequence
            bodies.append(self._body({
                P_NAME: b"SCALE^P%07d" % patient, P_ID: pid.encode(),
                P_STUDY: b"1%09d" % self.study, P_SERIES: b"2%09d" % series_number,
                P_SOP: b"3%010d" % self.sequence, P_DATE: study_date(self.study).encode(),
                P_ACCESSION: b"A%08d" % self.study, P_NUMBER: b"%05d" % (self.instance + 1)}))
            ids.append(orthanc_id(public_id(pid, study, series, sop)))
            self.sequence += 1
            self.instance += 1
            if self.instance >= layout[self.series]:
                self.instance = 0
                self.series += 1
                if self.series >= len(layout):
                    self.series = 0
                    self.study += 1
        return bodies, ids


# --------------------------------------------------------------------------- servers

class ScaleServer:
    """A server process on a folder that outlives its restarts."""

    def __init__(self, kind, root):
        self.kind = kind
        self.label = RB.SERVER_LABELS[kind]
        self.folder = os.path.join(root, kind)
        self.storage = os.path.join(self.folder, "storage")
        self.index = os.path.join(self.folder, "index")
        os.makedirs(self.folder)
        self.http_port, self.dicom_port = RB.free_port(), RB.free_port()
        self.aet = "SCALE" + kind.upper()[:8]
        configuration = {
            "Name": "scale-%s" % kind, "HttpPort": self.http_port,
            "DicomPort": self.dicom_port, "DicomAet": self.aet,
            "StorageDirectory": self.storage, "IndexDirectory": self.index,
            "Plugins": [], "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomAlwaysAllowFind": True,
        }
        self.config_path = os.path.join(self.folder, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(configuration, f, indent=2)
        template = RB.ORTHANCD_COMMAND if kind == "orthancd" else RB.ORTHANC_COMMAND
        self.command = "exec " + template.format(config=self.config_path)
        self.process = None
        self.died = None
        self.stopped_at = None  # why and where Orthanc stopped being fed
        self.ingest_seconds = 0.0
        self.count = 0

    def start(self, timeout=600):
        """Seconds from the launch until GET /system answers."""
        env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if self.kind == "orthancd":
            compile_tree(REPO_ROOT)
        log_file = open(os.path.join(self.folder, "server.log"), "ab")
        started = time.monotonic()
        self.process = subprocess.Popen(self.command, shell=True, cwd=self.folder, env=env,
                                        stdout=log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log_file.close()
        self.pid = self.process.pid
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError("%s exited while starting" % self.label)
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
                connection.request("GET", "/system")
                if connection.getresponse().status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            finally:
                connection.close()
            time.sleep(0.01)
        raise RuntimeError("%s did not start" % self.label)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def check_alive(self):
        if not self.alive():
            self.died = "died"
        return self.alive()

    def rss_kib(self):
        return sum(RB.status_kib(pid, "VmRSS") for pid in RB.process_tree(self.pid))

    def connect(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=600)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection


def call(connection, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    connection.request(method, path, body=body, headers=headers)
    answer = connection.getresponse()
    data = answer.read()
    if answer.status != 200:
        raise RuntimeError("%s %s -> %d %r" % (method, path, answer.status, data[:200]))
    return data


# --------------------------------------------------------------------------- phases

def ingest_window(server, bodies, concurrency):
    headers = {"Content-Type": "application/dicom"}
    result = RB.run_requests(server, lambda i: ("POST", "/instances", bodies[i], headers),
                             concurrency, count=len(bodies), client="loop")
    if result.errors:
        raise RuntimeError("%s: %d errors while ingesting: %s"
                           % (server.label, result.errors, result.error_samples[:3]))
    server.ingest_seconds += result.elapsed
    server.count += len(bodies)
    return {"rate": result.ok / result.elapsed,
            "server_cpu_ms": 1000 * result.server_cpu / max(result.ok, 1)}


def measure_queries(server, repeat, findscu_repeat, study_ids):
    connection = server.connect()
    figures = {}

    def post(path, body):
        encoded = json.dumps(body).encode()
        return lambda: call(connection, "POST", path, encoded)

    hits = len(json.loads(post("/tools/find", WILD_RANGE)()))
    figures["wild+range"] = median_ms(post("/tools/find", WILD_RANGE), repeat)
    uid = {"Level": "Study", "Query": {"StudyInstanceUID": study_uid(42)}}
    assert json.loads(post("/tools/find", uid)()), "exact UID found nothing"
    figures["uid"] = median_ms(post("/tools/find", uid), repeat)
    for name, since in (("oe2-page", 0), ("oe2-page-n", 1000)):
        body = {"Level": "Study", "Query": {}, "Expand": True, "Limit": 50, "Since": since,
                "RequestedTags": OE2_TAGS,
                "OrderBy": [{"Type": "Metadata", "Key": "LastUpdate", "Direction": "DESC"}]}
        figures[name] = median_ms(post("/tools/find", body), max(repeat // 4, 5))
    figures["count-wild"] = median_ms(
        post("/tools/count-resources", {"Level": "Study", "Query": {"PatientName": WILD}}), repeat)
    figures["count-10%"] = median_ms(
        post("/tools/count-resources", {"Level": "Study", "Query": {"PatientName": "SCALE^P0*"}}),
        max(repeat // 4, 5))
    study = study_ids[len(study_ids) // 2]
    figures["study"] = median_ms(lambda: call(connection, "GET", "/studies/" + study), repeat)
    connection.close()
    args = ["/usr/bin/findscu", "-S", "-aec", server.aet, "127.0.0.1", str(server.dicom_port),
            "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=" + WILD,
            "-k", "StudyDate=20100101-20141231", "-k", "StudyInstanceUID"]
    figures["findscu"] = median_ms(
        lambda: subprocess.run(args, env=ENV, check=True, capture_output=True), findscu_repeat)
    figures["hits"] = hits
    return figures


def measure_delete(server, bodies, ids):
    connection = server.connect()
    t0 = time.perf_counter()
    for public_id_ in ids:
        call(connection, "DELETE", "/instances/" + public_id_)
    elapsed = time.perf_counter() - t0
    for body in bodies:  # back to N, untimed
        connection.request("POST", "/instances", body=body,
                           headers={"Content-Type": "application/dicom"})
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError("re-store failed: %d" % answer.status)
    connection.close()
    return len(ids) / elapsed


def measure_restart(server):
    server.stop()
    startup = server.start()
    time.sleep(1.0)
    rss = server.rss_kib()
    index_bytes = RB.disk_usage_bytes([server.index])
    storage_bytes = RB.disk_usage_bytes([server.storage])
    return {"startup_s": startup, "idle_rss_mib": rss / 1024,
            "index_bytes_per_instance": index_bytes / max(server.count, 1),
            "storage_bytes_per_instance": storage_bytes / max(server.count, 1)}


def study_public_ids(corpus_studies, sample=50):
    out = []
    step = max(corpus_studies // sample, 1)
    for s in range(0, corpus_studies, step):
        pid = "SP%07d" % patient_of(s)
        out.append(orthanc_id(public_id(pid, study_uid(s))))
    return out


# --------------------------------------------------------------------------- report

ROWS = [
    ("ingest first window/s", "ingest_first", 0), ("ingest last window/s", "ingest_last", 0),
    ("ingest worst window/s", "ingest_worst", 0), ("server CPU ms/inst", "cpu_ms", 2),
    ("find wild+range ms", "wild+range", 2), ("find uid ms", "uid", 2),
    ("oe2 page ms", "oe2-page", 2), ("oe2 page since 1000 ms", "oe2-page-n", 2),
    ("count wild ms", "count-wild", 2), ("count 10% ms", "count-10%", 2),
    ("GET /studies/{id} ms", "study", 2), ("findscu ms", "findscu", 1),
    ("delete inst/s", "delete", 0), ("start-up s", "startup_s", 2),
    ("idle RSS MiB", "idle_rss_mib", 0), ("index B/inst", "index_bytes_per_instance", 0),
    ("storage B/inst", "storage_bytes_per_instance", 0), ("wild+range hits", "hits", 0),
]


def print_report(results, servers, sizes):
    kinds = [s.kind for s in servers]
    print()
    header = "%-24s" % "metric" + "".join(
        ("%12s" % ("%s %s" % ("od" if k == "orthancd" else "O", _size(n)))) for n in sizes
        for k in kinds) + "".join("%10s" % ("ratio " + _size(n)) for n in sizes)
    print(header)
    for label, key, digits in ROWS:
        line = "%-24s" % label
        for n in sizes:
            for k in kinds:
                value = results.get(k, {}).get(n, {}).get(key)
                line += "%12s" % ("-" if value is None else "%.*f" % (digits, value))
        for n in sizes:
            a = results.get("orthancd", {}).get(n, {}).get(key)
            b = results.get("orthanc", {}).get(n, {}).get(key)
            line += "%10s" % ("-" if not a or not b else "%.2f" % (a / b))
        print(line)
    print("(ratio: orthancd / Orthanc; for rates higher is better for orthancd, for times lower)")
    for s in servers:
        if s.stopped_at:
            print("%s: %s" % (s.label, s.stopped_at))


def _size(n):
    return "%dk" % (n // 1000) if n < 1000000 else "%gM" % (n / 1e6)


# --------------------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--server", action="append", choices=["orthancd", "orthanc"])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--orthanc-max", type=int, default=100000)
    parser.add_argument("--orthanc-budget", type=float, default=1800.0,
                        help="seconds of ingest after which Orthanc is no longer fed")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--findscu-repeat", type=int, default=5)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json")
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    root = tempfile.mkdtemp(prefix="scale-bench-", dir=options.workdir)
    servers = [ScaleServer(kind, root) for kind in (options.server or ["orthancd", "orthanc"])]
    results = {s.kind: {} for s in servers}
    windows = {s.kind: [] for s in servers}
    corpus = Corpus()
    try:
        for server in servers:
            log("%s started in %.2f s" % (server.label, server.start()))
        done = 0
        flip = False
        for size in sizes:
            first_window = len(windows[servers[0].kind])
            while done < size:
                bodies, ids = corpus.next_batch(min(WINDOW, size - done))
                order = servers[::-1] if flip else servers
                flip = not flip
                for server in order:
                    if server.stopped_at:
                        continue
                    figures = ingest_window(server, bodies, options.concurrency)
                    windows[server.kind].append(figures)
                    log("%-15s %8d instances: %6.0f inst/s, %.2f ms CPU/inst"
                        % (server.label, server.count, figures["rate"], figures["server_cpu_ms"]))
                last_bodies, last_ids = bodies, ids
                done += len(bodies)
            studies = study_public_ids(corpus.study)
            for server in servers:
                if server.stopped_at:
                    continue
                mine = windows[server.kind][first_window:]
                figures = {"ingest_first": mine[0]["rate"], "ingest_last": mine[-1]["rate"],
                           "ingest_worst": min(w["rate"] for w in mine),
                           "cpu_ms": statistics.mean(w["server_cpu_ms"] for w in mine)}
                time.sleep(2)  # let stability timers and write-back settle a little
                figures.update(measure_queries(server, options.repeat, options.findscu_repeat,
                                               studies))
                step = max(len(last_ids) // 500, 1)
                figures["delete"] = measure_delete(server, last_bodies[::step][:500],
                                                   last_ids[::step][:500])
                figures.update(measure_restart(server))
                results[server.kind][size] = figures
                log("%s at %d: %s" % (server.label, size, json.dumps(
                    {k: round(v, 2) for k, v in figures.items()})))
                if server.kind == "orthanc" and server.stopped_at is None:
                    if server.count >= options.orthanc_max:
                        server.stopped_at = "not fed past %d instances (--orthanc-max)" % server.count
                    elif server.ingest_seconds > options.orthanc_budget:
                        server.stopped_at = ("not fed past %d instances: its ingest took %.0f s "
                                             "(--orthanc-budget)" % (server.count,
                                                                     server.ingest_seconds))
                    if server.stopped_at:
                        server.stop()
    finally:
        for server in servers:
            server.stop()
        if not options.keep:
            shutil.rmtree(root, ignore_errors=True)
    print_report(results, servers, sizes)
    if options.json:
        with open(options.json, "w") as f:
            json.dump({"results": {k: {str(n): v for n, v in r.items()}
                                   for k, r in results.items()},
                       "windows": windows,
                       "stopped": {s.kind: s.stopped_at for s in servers}}, f, indent=2)


if __name__ == "__main__":
    main()
