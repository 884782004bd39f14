#!/usr/bin/env python3
"""Archive benchmark: GET /studies/{id}/archive on orthancd and Orthanc 1.13.0, same run.

Both servers are started (fresh storage, free ports, default configuration)
and given the same CT-like study (the corpus of bench/rest_bench.py: 512x512
16-bit slices with noise, ~513 KB each, one study, one series).  The study
grows in stages (--instances, e.g. 400 then 2000 instances, ~200 MB then
~1 GB): after each stage, its ZIP archive is downloaded from each server in
turn (one synchronous GET, read as fast as the client can), and for each
download the benchmark reports:

* the time, the study's DICOM bytes per second (input) and the ZIP bytes
  per second (output);
* the server's RSS before the download and its peak during it (VmRSS of
  the process tree sampled every 50 ms): a streamed archive keeps the peak
  flat whatever the study size;
* the server's CPU seconds during the download (above 1 s per second: more
  than one core at work).

A last phase (--slow-seconds, 0 to skip) reads the archive of the full
study at --slow-rate MB/s for a few seconds and reports the peak RSS: a
server that respects back-pressure does not buffer the archive a slow
client has not read yet.

The archive must be complete and valid: every download is checked (ZIP
central directory read, member count).

Usage:
    python3 bench/archive_bench.py                         # 400 then 2000 instances
    python3 bench/archive_bench.py --instances 100,300     # a quick run
    python3 bench/archive_bench.py --json figures.json
"""
import argparse
import io
import json
import os
import socket
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from rest_bench import (DEFAULT_CORPUS_DIR, ORTHANC_COMMAND, ORTHANCD_COMMAND,  # noqa: E402
                        RssSampler, ServerUnderTest, corpus_folder, cpu_seconds,
                        generate_corpus, log, process_tree, status_kib)

MB = 1024 * 1024
UPLOAD_CONCURRENCY = 4


def upload(server, paths):
    """POST every file (4 connections); returns the study ID."""
    local = threading.local()

    def post(path):
        if not hasattr(local, "connection"):
            local.connection = server.connect()
        with open(path, "rb") as f:
            body = f.read()
        local.connection.request("POST", "/instances", body=body,
                                 headers={"Content-Type": "application/dicom"})
        response = local.connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError("upload to %s: HTTP %d %r" % (server.label, response.status,
                                                            answer[:200]))
        return json.loads(answer)["ParentStudy"]

    with ThreadPoolExecutor(UPLOAD_CONCURRENCY) as pool:
        studies = set(pool.map(post, paths))
    if len(studies) != 1:
        raise RuntimeError("expected one study, got %d" % len(studies))
    return studies.pop()


def rss_kib(server):
    return sum(status_kib(pid, "VmRSS") for pid in process_tree(server.pid))


def download(server, path, rate=None, seconds=None):
    """GET ``path`` on a raw socket, reading everything (at ``rate`` bytes/s
    when given, for at most ``seconds``).  Returns (status, headers,
    body or None, bytes read, elapsed); the body is kept only when read whole."""
    sock = socket.create_connection(("127.0.0.1", server.http_port), 600)
    try:
        sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
        started = time.monotonic()
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("%s closed the connection before answering" % server.label)
            buffer += data
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        length = int(headers["content-length"]) if "content-length" in headers else None
        keep = rate is None
        body = bytearray(rest) if keep else None
        received = len(rest)
        while length is None or received < length:
            if seconds is not None and time.monotonic() - started > seconds:
                break
            if rate is not None:
                # Pace the reads: never ahead of rate * elapsed.
                ahead = received - rate * (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(min(ahead / rate, 0.2))
                    continue
            data = sock.recv(1 << 20 if rate is None else 16384)
            if not data:
                break
            received += len(data)
            if keep:
                body += data
        return status, headers, (bytes(body) if keep else None), received, \
            time.monotonic() - started
    finally:
        sock.close()


def measure_download(server, study, study_bytes, instances):
    before = rss_kib(server)
    cpu_before = cpu_seconds(process_tree(server.pid))
    with RssSampler(server.pid) as sampler:
        status, headers, body, size, elapsed = download(server, "/studies/%s/archive" % study)
    cpu = cpu_seconds(process_tree(server.pid)) - cpu_before
    if status != 200:
        raise RuntimeError("%s: HTTP %d" % (server.label, status))
    members = zipfile.ZipFile(io.BytesIO(body)).namelist()
    if len(members) != instances:
        raise RuntimeError("%s: %d files in the archive, %d expected"
                           % (server.label, len(members), instances))
    return {
        "instances": instances,
        "study_MB": round(study_bytes / MB, 1),
        "zip_MB": round(size / MB, 1),
        "seconds": round(elapsed, 2),
        "input_MBps": round(study_bytes / MB / elapsed, 2),
        "output_MBps": round(size / MB / elapsed, 2),
        "rss_before_MB": round(before / 1024, 1),
        "rss_peak_MB": round(max(sampler.peak_kib, before) / 1024, 1),
        "cpu_seconds": round(cpu, 2),
        "cores_used": round(cpu / elapsed, 2),
    }


def measure_slow_client(server, study, rate_mb, seconds):
    before = rss_kib(server)
    with RssSampler(server.pid) as sampler:
        status, _, _, size, elapsed = download(server, "/studies/%s/archive" % study,
                                               rate=rate_mb * MB, seconds=seconds)
    # The server notices the client is gone; let it settle.
    time.sleep(1)
    return {
        "read_MB": round(size / MB, 1),
        "seconds": round(elapsed, 1),
        "rss_before_MB": round(before / 1024, 1),
        "rss_peak_MB": round(max(sampler.peak_kib, before) / 1024, 1),
        "rss_after_MB": round(rss_kib(server) / 1024, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", default="400,2000",
                        help="study sizes (instances), growing, comma-separated")
    parser.add_argument("--corpus-dir", default=DEFAULT_CORPUS_DIR)
    parser.add_argument("--slow-rate", type=float, default=2.0, help="MB/s of the slow client")
    parser.add_argument("--slow-seconds", type=float, default=15.0)
    parser.add_argument("--orthancd-cmd", default=ORTHANCD_COMMAND)
    parser.add_argument("--orthanc-cmd", default=ORTHANC_COMMAND)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    stages = [int(n) for n in args.instances.split(",")]
    if stages != sorted(stages):
        parser.error("--instances must grow")

    paths = generate_corpus(corpus_folder(args.corpus_dir, stages[-1], 1), stages[-1], 1)
    sizes = [os.path.getsize(p) for p in paths]
    servers = [ServerUnderTest("orthancd", args.orthancd_cmd, os.path.dirname(HERE)),
               ServerUnderTest("orthanc", args.orthanc_cmd, os.path.dirname(HERE))]
    figures = {server.label: {"downloads": []} for server in servers}
    try:
        for server in servers:
            server.start()
        uploaded = 0
        for stage, count in enumerate(stages):
            study = None
            for server in servers:
                log("uploading instances %d-%d to %s" % (uploaded + 1, count, server.label))
                study = upload(server, paths[uploaded:count])
            uploaded = count
            study_bytes = sum(sizes[:count])
            order = servers if stage % 2 == 0 else servers[::-1]
            for server in order:
                log("downloading the archive of %d instances (%.0f MB) from %s"
                    % (count, study_bytes / MB, server.label))
                result = measure_download(server, study, study_bytes, count)
                figures[server.label]["downloads"].append(result)
                log("  %s" % json.dumps(result))
        if args.slow_seconds > 0:
            for server in servers:
                log("slow client (%.1f MB/s for %.0f s) on %s"
                    % (args.slow_rate, args.slow_seconds, server.label))
                result = measure_slow_client(server, study, args.slow_rate, args.slow_seconds)
                figures[server.label]["slow_client"] = result
                log("  %s" % json.dumps(result))
    finally:
        for server in servers:
            server.stop()

    print()
    print("%-16s %9s %9s %8s %10s %10s %9s %9s %6s" % (
        "server", "instances", "study MB", "seconds", "in MB/s", "out MB/s", "RSS MB",
        "peak MB", "cores"))
    for label, data in figures.items():
        for row in data["downloads"]:
            print("%-16s %9d %9.0f %8.1f %10.2f %10.2f %9.0f %9.0f %6.2f" % (
                label, row["instances"], row["study_MB"], row["seconds"], row["input_MBps"],
                row["output_MBps"], row["rss_before_MB"], row["rss_peak_MB"], row["cores_used"]))
    for label, data in figures.items():
        slow = data.get("slow_client")
        if slow:
            print("%-16s slow client: read %.1f MB in %.0f s, RSS %.0f MB -> peak %.0f MB"
                  % (label, slow["read_MB"], slow["seconds"], slow["rss_before_MB"],
                     slow["rss_peak_MB"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
