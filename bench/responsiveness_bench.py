#!/usr/bin/env python3
"""Does the REST API keep answering while a big study is being received?

For each server (orthancd and the real Orthanc 1.13.0, same run), while the
bench corpus (default 1,200 CT instances of ~513 KB: ~600 MB) is pushed
  * over DICOM by one /usr/bin/storescu association, then
  * over REST by 4 concurrent uploaders (POST /instances),
a probe sends GET /system every 10 ms on its own keep-alive connection and
records each answer's latency.  Prints p50 / p95 / p99 / max latency and the
ingest rate of each phase.

    python3 bench/responsiveness_bench.py [--quick] [--server orthancd]
"""
import argparse
import http.client
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rest_bench  # noqa: E402  (the corpus and the server launcher are shared)

STORESCU = "/usr/bin/storescu"
PROBE_PERIOD = 0.01


class LatencyProbe(threading.Thread):
    """GET /system in a loop; latencies in milliseconds."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.latencies = []
        self.errors = 0
        self._stopping = threading.Event()

    def run(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stopping.is_set():
            started = time.perf_counter()
            try:
                connection.request("GET", "/system")
                connection.getresponse().read()
                self.latencies.append((time.perf_counter() - started) * 1000)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            time.sleep(PROBE_PERIOD)

    def finish(self):
        self._stopping.set()
        self.join()
        return self.latencies


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def push_with_storescu(server, paths):
    env = dict(os.environ, TCP_NODELAY="1")
    command = [STORESCU, "-aet", "BENCH", "-aec", "ANY-SCP", "127.0.0.1",
               str(server.dicom_port)] + paths
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def push_with_rest(server, bodies, concurrency=4):
    def worker(chunk):
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=120)
        for body in chunk:
            connection.request("POST", "/instances", body)
            connection.getresponse().read()
    threads = [threading.Thread(target=worker, args=(bodies[i::concurrency],))
               for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def measure(server, phase, action, count):
    probe = LatencyProbe(server.http_port)
    probe.start()
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    latencies = probe.finish()
    return {
        "phase": phase, "server": server.label, "rate": count / elapsed,
        "probes": len(latencies), "errors": probe.errors,
        "p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99), "max": max(latencies) if latencies else float("nan"),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", action="append", choices=sorted(rest_bench.SERVER_LABELS))
    parser.add_argument("--quick", action="store_true", help="200 instances instead of 1,200")
    parser.add_argument("--corpus-dir", default=rest_bench.DEFAULT_CORPUS_DIR)
    options = parser.parse_args()
    # Debian's DCMTK (in Orthanc and storescu) waits 40 ms per round trip without it.
    os.environ["TCP_NODELAY"] = "1"
    instances, studies = (200, 10) if options.quick else (1200, 40)
    folder = rest_bench.corpus_folder(options.corpus_dir, instances, studies)
    if not os.path.isdir(folder):
        rest_bench.generate_corpus(folder, instances, studies)
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                   if name.endswith(".dcm"))
    bodies, _ = rest_bench.load_corpus(paths)
    commands = {"orthancd": rest_bench.ORTHANCD_COMMAND, "orthanc": rest_bench.ORTHANC_COMMAND}
    rows = []
    for kind in options.server or ["orthancd", "orthanc"]:
        for phase in ("storescu", "rest c=4"):
            server = rest_bench.ServerUnderTest(kind, commands[kind], rest_bench.REPO_ROOT)
            try:
                server.start()
                if phase == "storescu":
                    rows.append(measure(server, phase, lambda: push_with_storescu(server, paths),
                                        len(paths)))
                else:
                    rows.append(measure(server, phase, lambda: push_with_rest(server, bodies),
                                        len(bodies)))
            finally:
                server.stop()
    print("\nGET /system latency while %d instances (%.0f MB) are received\n"
          % (len(paths), sum(len(b) for b in bodies) / 1e6))
    print("%-16s %-10s %10s %8s %8s %8s %8s %8s %7s" % (
        "server", "ingest", "inst/s", "probes", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"))
    for r in rows:
        print("%-16s %-10s %10.1f %8d %8.1f %8.1f %8.1f %8.1f %7d" % (
            r["server"], r["phase"], r["rate"], r["probes"], r["p50"], r["p95"], r["p99"],
            r["max"], r["errors"]))


if __name__ == "__main__":
    main()
