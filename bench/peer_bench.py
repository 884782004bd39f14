#!/usr/bin/env python3
"""Peer transfer benchmark: POST /peers/{id}/store from orthancd to Orthanc
1.13.0, beside Orthanc 1.13.0 to Orthanc 1.13.0, in the same run.

Three servers start (fresh storage, free ports, default configuration):
orthancd and a first Orthanc are the senders, a second Orthanc is the one
receiver of both (so the receiving side is the same for both figures).  The
senders learn the receiver through PUT /peers/dest and are given the same
CT-like study (the corpus of bench/rest_bench.py: 512x512 16-bit slices,
~513 KB each).  Then, for each mode (plain, and "Compress": true), each
sender in turn sends the whole study synchronously (--rounds times, or
--gzip-rounds when compressed; the receiver emptied before each round),
and the benchmark reports per sender:

* MB/s: the study's DICOM bytes over the wall time of the synchronous
  POST (the median of the rounds);
* the sender's peak RSS during the transfer, above its RSS before it: a
  sender that streams instance by instance stays flat whatever the study
  size.

Every transfer is checked: the receiver must hold the whole study after it.

Usage:
    python3 bench/peer_bench.py                  # 120 instances (~60 MB), 3 rounds
    python3 bench/peer_bench.py --instances 400 --rounds 5
    python3 bench/peer_bench.py --json figures.json
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from archive_bench import rss_kib, upload  # noqa: E402
from rest_bench import (DEFAULT_CORPUS_DIR, ORTHANC_COMMAND, ORTHANCD_COMMAND,  # noqa: E402
                        RssSampler, ServerUnderTest, corpus_folder, generate_corpus, log)

MB = 1024 * 1024
MODES = (("plain", False), ("gzip", True))
# gzip at level 9 (as Orthanc sends it) runs at a few MB/s on noisy pixels:
# one round of it keeps the benchmark near a minute.


def call(server, method, path, body=None):
    connection = server.connect()
    try:
        payload = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=payload)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError("%s %s on %s: HTTP %d %r" % (method, path, server.label,
                                                            response.status, answer[:300]))
        return json.loads(answer) if answer else None
    finally:
        connection.close()


def empty(server):
    for study in server.get_json("/studies"):
        call(server, "DELETE", "/studies/" + study)


def transfer(sender, receiver, study, compress, instances):
    """One synchronous send of the study: (seconds, peak RSS above the start in KiB)."""
    empty(receiver)
    before = rss_kib(sender)
    with RssSampler(sender.pid) as sampler:
        started = time.monotonic()
        call(sender, "POST", "/peers/dest/store",
             {"Resources": [study], "Compress": compress, "Synchronous": True})
        seconds = time.monotonic() - started
    held = len(receiver.get_json("/instances"))
    if held != instances:
        raise RuntimeError("%s sent %d instances of %d" % (sender.label, held, instances))
    return seconds, max(0, sampler.peak_kib - before)


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3, help="rounds without compression")
    parser.add_argument("--gzip-rounds", type=int, default=1)
    parser.add_argument("--corpus-dir", default=DEFAULT_CORPUS_DIR)
    parser.add_argument("--orthancd-cmd", default=ORTHANCD_COMMAND)
    parser.add_argument("--orthanc-cmd", default=ORTHANC_COMMAND)
    parser.add_argument("--json", help="also write the figures to this file")
    return parser.parse_args()


def main():
    args = parse_arguments()
    paths = generate_corpus(corpus_folder(args.corpus_dir, args.instances, 1), args.instances, 1)
    study_bytes = sum(os.path.getsize(path) for path in paths)
    root = os.path.dirname(HERE)
    senders = [ServerUnderTest("orthancd", args.orthancd_cmd, root),
               ServerUnderTest("orthanc", args.orthanc_cmd, root)]
    receiver = ServerUnderTest("orthanc", args.orthanc_cmd, root)
    receiver.label = "Orthanc 1.13.0 (receiver)"
    figures = {"instances": args.instances, "study_mb": study_bytes / MB, "senders": {}}
    try:
        for server in [receiver] + senders:
            server.start()
        for sender in senders:
            call(sender, "PUT", "/peers/dest", ["http://127.0.0.1:%d/" % receiver.http_port])
            study = upload(sender, paths)
            figures["senders"][sender.label] = {"study": study}
        log("%d instances, %.1f MB, uploaded to both senders" % (args.instances,
                                                                 study_bytes / MB))
        for mode, compress in MODES:
            for sender in senders:
                entry = figures["senders"][sender.label]
                count = args.gzip_rounds if compress else args.rounds
                rounds = [transfer(sender, receiver, entry["study"], compress, args.instances)
                          for _ in range(count)]
                seconds = statistics.median(r[0] for r in rounds)
                entry[mode] = {"seconds": seconds, "mb_per_s": study_bytes / MB / seconds,
                               "peak_rss_delta_mb": max(r[1] for r in rounds) / 1024.0}
                log("%-16s %-5s %6.2f s  %7.1f MB/s  RSS +%.0f MB" % (
                    sender.label, mode, seconds, entry[mode]["mb_per_s"],
                    entry[mode]["peak_rss_delta_mb"]))
    finally:
        for server in senders + [receiver]:
            server.stop()
    print()
    print("Peer store of one study (%d instances, %.1f MB) to Orthanc 1.13.0, median of %d "
          "rounds (gzip: %d):" % (args.instances, study_bytes / MB, args.rounds,
                                  args.gzip_rounds))
    print("%-18s %14s %14s %16s %16s" % ("sender", "plain MB/s", "gzip MB/s",
                                         "plain RSS +MB", "gzip RSS +MB"))
    for label, entry in figures["senders"].items():
        print("%-18s %14.1f %14.1f %16.0f %16.0f" % (
            label, entry["plain"]["mb_per_s"], entry["gzip"]["mb_per_s"],
            entry["plain"]["peak_rss_delta_mb"], entry["gzip"]["peak_rss_delta_mb"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
