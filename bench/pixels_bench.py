#!/usr/bin/env python3
"""Pixel benchmark: orthancd beside the real Orthanc 1.13.0, in one run.

* previews/s   GET /instances/{id}/preview at concurrency 1 and 4 (keep-alive
               connections, one thread each), over a CT-like series;
* numpy MB/s   GET /series/{id}/numpy (float32, rescaled), bytes answered per
               second;
* memory       the server's peak resident memory (VmHWM) after the run.

Both servers keep recently parsed files in memory (DicomParserCacheSize,
256 MB by default in both): the requests cycle over 64 files, which then
stay parsed.  --no-parser-cache sets it to 0 in both, to measure every
request reading and parsing its file.

The corpus, made once with pydicom: one series of 64 CT-like slices, 512x512,
signed 16 bits, Explicit VR Little Endian, with rescale and positions.

Usage: python3 bench/pixels_bench.py [--seconds 10] [--only orthancd|orthanc]
                                     [--no-parser-cache]
"""
import argparse
import http.client
import os
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bytecode import compile_tree  # noqa: E402
from tests.support.daemon import ROOT, Daemon  # noqa: E402
from tests.support.oracle import RealOrthanc  # noqa: E402

SLICES = 64


def make_series(folder):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    study, series = generate_uid(), generate_uid()
    paths = []
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:512, 0:512]
    body = ((x - 256) ** 2 + (y - 256) ** 2) < 200 ** 2
    for i in range(SLICES):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.PatientName, ds.Modality = "BENCH", "Bench^Pixels", "CT"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0, 0, i * 2.5]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.WindowCenter, ds.WindowWidth = 40, 400
        pixels = np.where(body, 1000 + rng.normal(0, 40, (512, 512)) + 30 * np.sin(x / 20.0 + i),
                          0).astype("<i2")
        ds.PixelData = pixels.tobytes()
        path = os.path.join(folder, "slice%03d.dcm" % i)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def peak_memory_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def hammer(port, paths, concurrency, seconds):
    """Requests/s and bytes/s of GETs on ``paths`` (cycled), for ``seconds``."""
    deadline = time.time() + seconds
    counts, sizes, errors = [0] * concurrency, [0] * concurrency, []

    def worker(n):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        i = n
        while time.time() < deadline:
            connection.request("GET", paths[i % len(paths)])
            answer = connection.getresponse()
            body = answer.read()
            if answer.status != 200:
                errors.append(answer.status)
                return
            counts[n] += 1
            sizes[n] += len(body)
            i += concurrency
        connection.close()
    start = time.time()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - start
    if errors:
        raise RuntimeError("HTTP %s" % errors[0])
    return sum(counts) / elapsed, sum(sizes) / elapsed


def measure(name, server, files, seconds):
    client = server.client()
    ids = [client.upload(open(p, "rb").read())["ID"] for p in files]
    series = client.get_json("/instances/%s" % ids[0])["ParentSeries"]
    port = server.http_port
    previews = ["/instances/%s/preview" % i for i in ids]
    hammer(port, previews[:4], 1, 1)  # warm-up
    figures = {}
    for concurrency in (1, 4):
        figures["previews/s c=%d" % concurrency] = hammer(port, previews, concurrency, seconds)[0]
    rate, throughput = hammer(port, ["/series/%s/numpy" % series], 1, seconds)
    figures["series numpy MB/s"] = throughput / 1e6
    figures["peak memory MB"] = peak_memory_mb(server.process.pid)
    return figures


def main():
    compile_tree(ROOT)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--only", choices=("orthancd", "orthanc"))
    parser.add_argument("--no-parser-cache", action="store_true")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        corpus = os.path.join(folder, "corpus")
        os.makedirs(corpus)
        files = make_series(corpus)
        results = {}
        options = {"DicomParserCacheSize": 0} if arguments.no_parser_cache else {}
        for name, factory in (("orthancd", lambda w: Daemon(w, **options)),
                              ("orthanc-1.13.0", lambda w: RealOrthanc(w, **options))):
            if arguments.only and name.split("-")[0] != arguments.only:
                continue
            workdir = os.path.join(folder, name)
            os.makedirs(workdir)
            server = factory(workdir).start()
            try:
                results[name] = measure(name, server, files, arguments.seconds)
            finally:
                server.stop()
        keys = list(next(iter(results.values())))
        print("%-22s" % "" + "".join("%18s" % n for n in results))
        for key in keys:
            print("%-22s" % key + "".join("%18.1f" % results[n][key] for n in results))


if __name__ == "__main__":
    main()
