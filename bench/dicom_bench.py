"""DICOM benchmark: orthancd vs Orthanc 1.13.0, in the same run.

    python3 bench/dicom_bench.py [--instances 300] [--rounds 2] [--server orthancd|orthanc|both]

Measures, for each server:
  - C-STORE ingest: one DCMTK ``storescu`` association sending the whole
    corpus (CT-like 512x512 16-bit, the REST benchmark's generator);
  - C-MOVE: one ``movescu`` of the study to a ``storescp --ignore`` (which
    receives but does not write, so the sender is what is measured);
  - store job: ``POST /modalities/scp/store`` of the study (a synchronous
    DicomModalityStore job) to the same ``storescp --ignore``.
Figures are instances per second, best of the rounds.  
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

from rest_bench import corpus_folder, generate_corpus  # noqa: E402
from tests.support import oracle  # noqa: E402
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
    return server, aet


def study_uid(paths):
    import pydicom
    return str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)


def run(kind, paths, rounds, scp_port):
    best_store, best_move, best_job = 0.0, 0.0, 0.0
    uid = study_uid(paths)
    for _ in range(rounds):
        folder = tempfile.mkdtemp(prefix="dicom-bench-%s-" % kind)
        server, aet = start_server(kind, folder, scp_port)
        try:
            elapsed = dcmtk("storescu", "-aet", BENCH_AET, "-aec", aet,
                            "127.0.0.1", str(server.dicom_port), *paths)
            best_store = max(best_store, len(paths) / elapsed)
            elapsed = dcmtk("movescu", "-S", "-aet", BENCH_AET, "-aec", aet, "-aem", SCP_AET,
                            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + uid,
                            "127.0.0.1", str(server.dicom_port))
            best_move = max(best_move, len(paths) / elapsed)
            client = server.client()
            study = client.get_json("/studies")[0]
            started = time.perf_counter()
            answer = client.post("/modalities/scp/store", [study])
            elapsed = time.perf_counter() - started
            assert answer.status == 200, answer.body
            best_job = max(best_job, len(paths) / elapsed)
        finally:
            server.stop()
            subprocess.run(["rm", "-rf", folder])
    return best_store, best_move, best_job


def main():
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
    figures = {}
    try:
        for kind in kinds:
            figures[kind] = run(kind, paths, options.rounds, scp_port)
    finally:
        scp.terminate()
        scp.wait(10)
    print("%d instances, best of %d rounds (instances/s)" % (len(paths), options.rounds))
    print("%-10s %12s %12s %12s" % ("server", "C-STORE", "C-MOVE", "store job"))
    for kind, (store, move, job) in figures.items():
        print("%-10s %12.1f %12.1f %12.1f" % (kind, store, move, job))
    if "orthancd" in figures and "orthanc" in figures:
        ours, theirs = figures["orthancd"], figures["orthanc"]
        print("%-10s %11.2fx %11.2fx %11.2fx   (goal 1.5x)" % (
            "ratio", ours[0] / theirs[0], ours[1] / theirs[1], ours[2] / theirs[2]))


if __name__ == "__main__":
    main()
