#!/usr/bin/env python3
"""Where an upload's time goes inside orthancd: per-stage latencies of
POST /instances at concurrency 1 and 4, and the CPU of each of the daemon's
threads (orthancd alone; rest_bench.py compares with Orthanc).

The daemon is started with a tracer (``--tracer``, this file imported in the
daemon's process before twistd runs) that wraps a few methods of the ingest
path and stamps each upload as it passes.  An upload of up to 4 MiB is kept
in memory (most of them: a CT slice is half a MiB):

  store      the upload handler hands the bytes to the ingest path
  parse0/1   the file pool's job (hash, parse, write) starts / ends
  submit     the index operation is queued for the writer
  apply      the writer takes the batch holding it (syncs its files, runs it)
  committed  the batch is durable and committed
  deliver    the reactor gets the outcome (the answer follows)

A larger one is streamed to a file as it arrives; its first stages are

  body       the last byte of the body is in (HTTPChannel.allContentReceived)
  parse0/1   the header's parse and the file's adoption start / end, in the
             thread that wrote the file's last piece

It prints the median and 90th percentile of each step, the whole latency,
the rate and the server's CPU per instance (user and system), then each
thread's CPU per instance: the reactor, the index writer, the pools (their threads summed).  The wrappers cost a
little: the rates are lower than rest_bench's.

    python3 bench/ingest_stages_bench.py [--instances 600] [--concurrency 1,4]
        [--pad-kib N]   (each file padded by N KiB: past 4 MiB, streamed)
"""
import argparse
import collections
import http.client
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

from bytecode import compile_tree

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH)
IN_MEMORY_STAGES = ["store", "parse0", "parse1", "submit", "apply", "committed", "deliver"]
STREAMED_STAGES = ["body", "parse0", "parse1", "submit", "apply", "committed", "deliver"]


# -------------------------------------------------------------- in the daemon

def install_tracer(output):
    """Wrap the ingest path's methods to stamp every upload; the stamps,
    and the name of each thread, go to ``output`` (JSON) when the reactor
    stops."""
    import itertools
    import threading

    from twisted.internet import reactor
    from twisted.web import http

    from orthancd import ingest
    from orthancd.index import writer
    from orthancd.uploads import spool

    stamps = {}  # upload token -> {stage: time}
    tokens = itertools.count()
    upload_of = {}  # body path, id(bytes), stored uuid or id(Deferred) -> token

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

    def begin(key, stage):
        token = next(tokens)
        upload_of[key] = token  # a key reused by a later upload starts anew
        stamps[token] = {stage: time.perf_counter()}

    def stamp(key, stage):
        token = upload_of.get(key)
        if token is not None:
            stamps[token][stage] = time.perf_counter()

    def body(channel):
        content = getattr(channel.requests[-1], "content", None)
        if isinstance(content, spool.StreamedBody):
            begin(content.path, "body")

    def stored(data, *_, **__):
        if isinstance(data, (bytes, bytearray, memoryview)):
            begin(id(data), "store")

    def parsed_key(source):
        return id(source) if isinstance(source, (bytes, bytearray, memoryview)) else str(source)

    def parsed(result, _ingestor, source, *_):
        stamp(parsed_key(source), "parse1")
        token = upload_of.get(parsed_key(source))
        if token is not None:
            upload_of[result[1].uuid] = token

    def submitted(d, _writer, _operation, *args, files=()):
        for f in files:
            token = upload_of.get(getattr(f, "uuid", None))
            if token is not None:
                upload_of[id(d)] = token
                stamp(id(d), "submit")

    def batch(stage):
        def mark(*args):
            items = args[2] if stage == "committed" else args[1]
            for _, _, _, d in items:
                stamp(id(d), stage)
        return mark

    def preparation(name):
        wrap(ingest.Ingestor, name,
             before=lambda _, source, *__: stamp(parsed_key(source), "parse0"), after=parsed)

    wrap(http.HTTPChannel, "allContentReceived", before=body)
    wrap(ingest.Ingestor, "store", before=lambda _, data, *a, **k: stored(data))
    preparation("_prepare")
    preparation("_prepare_file")
    wrap(writer.IndexWriter, "submit", after=submitted)
    wrap(writer.IndexWriter, "_commit", before=batch("apply"))
    wrap(writer.IndexWriter, "_apply", after=batch("committed"))
    wrap(writer.IndexWriter, "_deliver",
         before=lambda _, results, events: [stamp(id(d), "deliver") for d, _ in results])

    def dump():
        threads = {thread.native_id: thread.name for thread in threading.enumerate()
                   if thread.native_id is not None}
        with open(output, "w") as f:
            json.dump({"stamps": stamps, "threads": threads}, f)
    # Before the services stop: their threads are still there to be named.
    reactor.addSystemEventTrigger("before", "shutdown", dump)


# ------------------------------------------------------------------ the driver

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def thread_cpu(pid):
    """{thread id: (user, system) CPU seconds} of a process's threads."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        found[int(tid)] = (int(fields[11]) / ticks, int(fields[12]) / ticks)
    return found


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
    compile_tree(REPO_ROOT)
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
        cpu_before, started = thread_cpu(server.pid), time.monotonic()
        clients = [threading.Thread(target=client) for _ in range(concurrency)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        elapsed = time.monotonic() - started
        cpu_after = thread_cpu(server.pid)
    finally:
        server.terminate()
        server.wait()
    with open(stamps_path) as f:
        traced = json.load(f)
    cpu = {tid: (user - cpu_before.get(tid, (0, 0))[0], system - cpu_before.get(tid, (0, 0))[1])
           for tid, (user, system) in cpu_after.items()}
    names = {int(tid): name for tid, name in traced["threads"].items()}
    names[server.pid] = "reactor"
    return len(bodies) / elapsed, errors, traced["stamps"], cpu, names


def thread_group(name):
    """Pool threads (PoolThread-file-io-3) are summed by pool."""
    if name.startswith("PoolThread-"):
        return name[len("PoolThread-"):].rsplit("-", 1)[0] + " pool"
    return name


def report(concurrency, instances, rate, errors, stamps, cpu, names):
    user = sum(u for u, _ in cpu.values())
    system = sum(s for _, s in cpu.values())
    print("c=%d: %.1f instances/s, server CPU %.2f ms/instance (user %.2f, system %.2f), %d errors"
          % (concurrency, rate, (user + system) / instances * 1000, user / instances * 1000,
             system / instances * 1000, len(errors)))
    groups = collections.Counter()
    for tid, (u, s) in cpu.items():
        groups[thread_group(names.get(tid, "other threads"))] += u + s
    for group, seconds in groups.most_common():
        if seconds > 0:
            print("  CPU of %-22s %6.3f ms/instance" % (group, seconds / instances * 1000))
    for label, stages in (("in memory", IN_MEMORY_STAGES), ("streamed", STREAMED_STAGES)):
        rows = [s for s in stamps.values() if all(stage in s for stage in stages)]
        rows = rows[len(rows) // 10:]  # the first uploads warm up
        if not rows:
            continue
        print("  %d uploads traced, %s:" % (len(rows), label))
        for first, second in zip(stages, stages[1:]):
            spans = sorted((row[second] - row[first]) * 1000 for row in rows)
            print("    %-9s -> %-9s  median %7.3f ms   p90 %7.3f ms"
                  % (first, second, statistics.median(spans), spans[int(len(spans) * 0.9)]))
        spans = sorted((row["deliver"] - row[stages[0]]) * 1000 for row in rows)
        print("    %-9s -> deliver    median %7.3f ms   p90 %7.3f ms"
              % (stages[0], statistics.median(spans), spans[int(len(spans) * 0.9)]))


def padded(body, kib):
    """The file with a Data Set Trailing Padding element (FFFC,FFFC) of
    ``kib`` KiB at its end (the corpus is Explicit VR Little Endian)."""
    size = kib * 1024
    return body + struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, size) + bytes(size)


def main():
    sys.path.insert(0, BENCH)
    import rest_bench
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=600)
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--corpus-dir", default=rest_bench.DEFAULT_CORPUS_DIR)
    parser.add_argument("--pad-kib", type=int, default=0,
                        help="pad each file by this many KiB (past 4 MiB: streamed uploads)")
    options = parser.parse_args()
    paths = rest_bench.generate_corpus(
        rest_bench.corpus_folder(options.corpus_dir, options.instances, options.studies),
        options.instances, options.studies)
    bodies, _ = rest_bench.load_corpus(paths)
    if options.pad_kib:
        bodies = [padded(body, options.pad_kib) for body in bodies]
    for concurrency in (int(c) for c in options.concurrency.split(",")):
        with tempfile.TemporaryDirectory(prefix="ingest-stages-") as folder:
            report(concurrency, len(bodies), *run(bodies, concurrency, folder))


if __name__ == "__main__":
    main()
