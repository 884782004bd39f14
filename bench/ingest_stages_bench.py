#!/usr/bin/env python3
"""Where an upload's time goes inside orthancd: per-stage latencies of
POST /instances at concurrency 1 and 4 (orthancd alone; rest_bench.py
compares with Orthanc).

The daemon is started with a tracer (``--tracer``, this file imported in the
daemon's process before twistd runs) that wraps a few methods of the ingest
path and stamps each upload as it passes:

  body       the last byte of the body is in (HTTPChannel.allContentReceived)
  handed     the streamed file is written and handed to the reactor
  parse0/1   the header's parse and the file's adoption start / end
  submit     the index operation is queued for the writer
  apply      the writer starts the batch holding it (files syncing meanwhile)
  committed  the batch is durable and committed
  deliver    the reactor gets the outcome (the answer follows)

It prints the median and 90th percentile of each step, the whole
body-to-deliver latency, the rate and the server's CPU per instance.  The
wrappers cost a little: the rates are lower than rest_bench's.

    python3 bench/ingest_stages_bench.py [--instances 600] [--concurrency 1,4]
"""
import argparse
import collections
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH)
STAGES = ["body", "handed", "parse0", "parse1", "submit", "apply", "committed", "deliver"]


# -------------------------------------------------------------- in the daemon

def install_tracer(output):
    """Wrap the ingest path's methods to stamp every streamed upload; the
    stamps go to ``output`` (JSON) when the reactor stops."""
    from twisted.internet import reactor
    from twisted.web import http

    from orthancd import ingest
    from orthancd.index import writer
    from orthancd.uploads import spool

    stamps = collections.defaultdict(dict)  # upload path -> {stage: time}
    upload_of = {}  # stored uuid or id(Deferred) -> upload path

    def wrap(cls, name, before=None, after=None):
        original = getattr(cls, name)

        def traced(*args, **kwargs):
            if before is not None:
                before(*args, **kwargs)
            result = original(*args, **kwargs)
            if after is not None:
                after(result, *args, **kwargs)
            return result
        setattr(cls, name, traced)

    def stamp(key, stage):
        path = upload_of.get(key, key)
        if isinstance(path, str):
            stamps[path][stage] = time.perf_counter()

    def body(channel):
        content = getattr(channel.requests[-1], "content", None)
        if isinstance(content, spool.StreamedBody):
            stamp(content.path, "body")

    def parsed(result, _ingestor, path, *_):
        stamp(str(path), "parse1")
        upload_of[result[1].uuid] = str(path)

    def submitted(d, _writer, _operation, *args, files=()):
        for f in files:
            path = upload_of.get(getattr(f, "uuid", None))
            if path is not None:
                upload_of[id(d)] = path
                stamp(path, "submit")

    def batch(stage):
        def mark(*args):
            items = args[2] if stage == "committed" else args[1]
            for _, _, _, d in items:
                stamp(id(d), stage)
        return mark

    wrap(http.HTTPChannel, "allContentReceived", before=body)
    wrap(spool.StreamedBody, "_completed", before=lambda body, _: stamp(body.path, "handed"))
    wrap(ingest.Ingestor, "_prepare_file", before=lambda _, path, *__: stamp(str(path), "parse0"),
         after=parsed)
    wrap(writer.IndexWriter, "submit", after=submitted)
    wrap(writer.IndexWriter, "_apply", before=batch("apply"), after=batch("committed"))
    wrap(writer.IndexWriter, "_deliver",
         before=lambda _, results, events: [stamp(id(d), "deliver") for d, _ in results])

    def dump():
        with open(output, "w") as f:
            json.dump(stamps, f)
    reactor.addSystemEventTrigger("after", "shutdown", dump)


# ------------------------------------------------------------------ the driver

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(bodies, concurrency, folder):
    http_port = free_port()
    config = os.path.join(folder, "orthanc.json")
    stamps_path = os.path.join(folder, "stamps.json")
    with open(config, "w") as f:
        json.dump({"HttpPort": http_port, "DicomPort": free_port(),
                   "StorageDirectory": os.path.join(folder, "storage"),
                   "IndexDirectory": os.path.join(folder, "index"),
                   "RemoteAccessAllowed": False, "AuthenticationEnabled": False}, f)
    launcher = ("import sys; sys.path.insert(0, %r); import ingest_stages_bench as b; "
                "b.install_tracer(%r); from twisted.scripts.twistd import run; run()"
                % (BENCH, stamps_path))
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    with open(os.path.join(folder, "orthancd.log"), "wb") as log:
        server = subprocess.Popen([sys.executable, "-c", launcher, "-n", "--pidfile=", "orthancd",
                                   "--config", config], cwd=REPO_ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            try:
                connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
                connection.request("GET", "/system")
                connection.getresponse().read()
                break
            except OSError:
                time.sleep(0.1)
        queue = iter(bodies)
        lock = threading.Lock()
        errors = []

        def client():
            connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=120)
            while True:
                with lock:
                    body = next(queue, None)
                if body is None:
                    return
                connection.request("POST", "/instances", body=body)
                answer = connection.getresponse()
                answer.read()
                if answer.status != 200:
                    errors.append(answer.status)
        cpu_before, started = cpu_seconds(server.pid), time.monotonic()
        clients = [threading.Thread(target=client) for _ in range(concurrency)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait()
    with open(stamps_path) as f:
        stamps = json.load(f)
    return len(bodies) / elapsed, cpu / len(bodies) * 1000, errors, stamps


def report(concurrency, rate, cpu_ms, errors, stamps):
    rows = [s for s in stamps.values() if all(stage in s for stage in STAGES)]
    rows = rows[len(rows) // 10:]  # the first uploads warm up
    print("c=%d: %.1f instances/s, server CPU %.2f ms/instance, %d errors, %d uploads traced"
          % (concurrency, rate, cpu_ms, len(errors), len(rows)))
    if not rows:
        return
    for first, second in zip(STAGES, STAGES[1:]):
        spans = sorted((row[second] - row[first]) * 1000 for row in rows)
        print("  %-9s -> %-9s  median %7.3f ms   p90 %7.3f ms"
              % (first, second, statistics.median(spans), spans[int(len(spans) * 0.9)]))
    spans = sorted((row["deliver"] - row["body"]) * 1000 for row in rows)
    print("  body -> deliver          median %7.3f ms   p90 %7.3f ms"
          % (statistics.median(spans), spans[int(len(spans) * 0.9)]))


def main():
    sys.path.insert(0, BENCH)
    import rest_bench
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=600)
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--corpus-dir", default=rest_bench.DEFAULT_CORPUS_DIR)
    options = parser.parse_args()
    paths = rest_bench.generate_corpus(
        rest_bench.corpus_folder(options.corpus_dir, options.instances, options.studies),
        options.instances, options.studies)
    bodies, _ = rest_bench.load_corpus(paths)
    for concurrency in (int(c) for c in options.concurrency.split(",")):
        with tempfile.TemporaryDirectory(prefix="ingest-stages-") as folder:
            report(concurrency, *run(bodies, concurrency, folder))


if __name__ == "__main__":
    main()
