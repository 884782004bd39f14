"""DICOM benchmark: orthancd vs Orthanc 1.13.0, in the same run.

    python3 bench/dicom_bench.py [--instances 300] [--rounds 2] [--server orthancd|orthanc|both]

Measures, for each server:
  - C-STORE ingest: one DCMTK ``storescu`` association sending the whole
    corpus (CT-like 512x512 16-bit, the REST benchmark's generator);
  - C-STORE x4: four ``storescu`` at once, each sending a quarter of it, to
    a server just started (as several modalities sending at once);
  - C-MOVE: one ``movescu`` of the study to a ``storescp --ignore`` (which
    receives but does not write, so the sender is what is measured);
  - store job: ``POST /modalities/scp/store`` of the study (a synchronous
    DicomModalityStore job) to the same ``storescp --ignore``.
Figures are instances per second, best of the rounds; the servers take
turns within each round, so that both see the same spells of this machine's
speed.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from rest_bench import corpus_folder, cpu_seconds, generate_corpus  # noqa: E402
from tests.support import oracle  # noqa: E402
from bytecode import compile_tree  # noqa: E402
from tests.support.daemon import Daemon, free_port  # noqa: E402

# Orthanc (through DCMTK) reads it too: without it Nagle caps its C-STORE rate.
os.environ["TCP_NODELAY"] = "1"
ENV = dict(os.environ)
BENCH_AET = "BENCHSCU"
SCP_AET = "BENCHSCP"


def dcmtk(tool, *args):
    started = time.perf_counter()
    result = subprocess.run(["/usr/bin/" + tool] + list(args), env=ENV,
                            capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError("%s failed: %s" % (tool, result.stderr[-2000:]))
    return elapsed


def start_server(kind, folder, scp_port):
    modalities = {"scp": [SCP_AET, "127.0.0.1", scp_port],
                  "bench": [BENCH_AET, "127.0.0.1", 1]}
    os.makedirs(folder, exist_ok=True)
    if kind == "orthancd":
        server = Daemon(folder, DicomModalities=modalities, StableAge=60)
        aet = "ORTHANCD"
    else:
        server = oracle.RealOrthanc(folder, DicomModalities=modalities, StableAge=60)
        aet = "ORACLE"
    server.start()
    # Before anything is measured: orthancd imports its DICOM libraries at
    # the first association (about 0.2 s, once per process:
    # orthancd.lazy_modules), which a round of a few seconds would
    # otherwise carry.  Both servers get the same C-ECHO.
    dcmtk("echoscu", "-aet", BENCH_AET, "-aec", aet, "127.0.0.1", str(server.dicom_port))
    return server, aet


def study_uid(paths):
    import pydicom
    return str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)


def parallel_storescu(aet, port, paths, associations):
    """Seconds for ``associations`` storescu at once, each with its share."""
    started = time.perf_counter()
    senders = [subprocess.Popen(["/usr/bin/storescu", "-aet", BENCH_AET, "-aec", aet,
                                 "127.0.0.1", str(port)] + paths[i::associations],
                                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
               for i in range(associations)]
    errors = [sender.communicate(timeout=3600)[1] for sender in senders]
    elapsed = time.perf_counter() - started
    for sender, error in zip(senders, errors):
        if sender.returncode != 0:
            raise RuntimeError("storescu failed: %s" % error[-2000:])
    return elapsed


def run_round(kind, paths, scp_port):
    """Instances/s of (C-STORE, C-STORE x4, C-MOVE, store job), and the
    server's CPU milliseconds per instance of (C-STORE, C-STORE x4)."""
    uid = study_uid(paths)
    folder = tempfile.mkdtemp(prefix="dicom-bench-%s-" % kind)
    server, aet = start_server(kind, folder, scp_port)
    try:
        cpu = cpu_seconds([server.process.pid])
        elapsed = dcmtk("storescu", "-aet", BENCH_AET, "-aec", aet,
                        "127.0.0.1", str(server.dicom_port), *paths)
        store = len(paths) / elapsed
        store_cpu = (cpu_seconds([server.process.pid]) - cpu) * 1000 / len(paths)
        elapsed = dcmtk("movescu", "-S", "-aet", BENCH_AET, "-aec", aet, "-aem", SCP_AET,
                        "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + uid,
                        "127.0.0.1", str(server.dicom_port))
        move = len(paths) / elapsed
        client = server.client()
        study = client.get_json("/studies")[0]
        started = time.perf_counter()
        answer = client.post("/modalities/scp/store", [study])
        elapsed = time.perf_counter() - started
        assert answer.status == 200, answer.body
        job = len(paths) / elapsed
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", folder])
    subprocess.run(["sync"])
    folder = tempfile.mkdtemp(prefix="dicom-bench-%s-" % kind)
    server, aet = start_server(kind, folder, scp_port)
    try:
        cpu = cpu_seconds([server.process.pid])
        store4 = len(paths) / parallel_storescu(aet, server.dicom_port, paths, 4)
        store4_cpu = (cpu_seconds([server.process.pid]) - cpu) * 1000 / len(paths)
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", folder])
    subprocess.run(["sync"])
    return (store, store4, move, job), (store_cpu, store4_cpu)


def main():
    compile_tree(ROOT)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server", choices=("orthancd", "orthanc", "both"), default="both")
    parser.add_argument("--corpus-base", default=os.path.join(tempfile.gettempdir(), "orthancd-bench"))
    options = parser.parse_args()

    paths = generate_corpus(corpus_folder(options.corpus_base, options.instances, 1),
                            options.instances, 1)
    scp_port = free_port()
    scp = subprocess.Popen(["/usr/bin/storescp", "--ignore", "-aet", SCP_AET, str(scp_port)],
                           env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    kinds = ["orthancd", "orthanc"] if options.server == "both" else [options.server]
    figures = {kind: [0.0] * 4 for kind in kinds}
    cpu = {kind: [] for kind in kinds}
    try:
        for _ in range(options.rounds):
            for kind in kinds:
                measured, measured_cpu = run_round(kind, paths, scp_port)
                figures[kind] = [max(a, b) for a, b in zip(figures[kind], measured)]
                cpu[kind].append(measured_cpu)
    finally:
        scp.terminate()
        scp.wait(10)
    print("%d instances, best of %d rounds (instances/s)" % (len(paths), options.rounds))
    columns = ("C-STORE", "C-STORE x4", "C-MOVE", "store job")
    print("%-10s" % "server" + "".join("%12s" % column for column in columns))
    for kind, values in figures.items():
        print("%-10s" % kind + "".join("%12.1f" % value for value in values))
    if "orthancd" in figures and "orthanc" in figures:
        ours, theirs = figures["orthancd"], figures["orthanc"]
        print("%-10s" % "ratio" + "".join("%11.2fx" % (a / b) for a, b in zip(ours, theirs))
              + "   (goal 1.5x)")
    print("server CPU per instance (ms), each round: C-STORE / C-STORE x4")
    for kind, rounds in cpu.items():
        print("%-10s %s" % (kind, "   ".join("%.2f / %.2f" % r for r in rounds)))


if __name__ == "__main__":
    main()
