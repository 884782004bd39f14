#!/usr/bin/env python3
"""Memory under large concurrent uploads: orthancd beside Orthanc 1.13.0.

Each server (fresh, empty, default configuration) receives --uploads
simultaneous POST /instances of one large DICOM instance each (--size-mb
MiB of pixel data: an OB PixelData after a small header, each with its own
UIDs, so every upload is a new instance).  The bodies are generated while
they are sent (nothing large is held by the client, nothing is read from
disk), with a Content-Length.

Printed for each server: the idle RSS after start-up, the peak RSS of its
process tree while the uploads run (VmRSS summed over the process and its
children, sampled every 50 ms), the RSS once they are done, the wall time,
and the status of each answer.  Figures are printed, never asserted.

    python3 bench/upload_memory_bench.py [--uploads 16] [--size-mb 1024]
        [--server orthancd] [--server orthanc]
"""
import argparse
import http.client
import io
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import rest_bench as RB  # noqa: E402

PIECE = 1 << 20


def header(index, pixel_bytes):
    """A Part-10 header whose PixelData (OB, ``pixel_bytes`` long) follows."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage
    root = "1.2.826.0.1.3680043.8.498.77.%d.%d" % (os.getpid(), index)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = root + ".3"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = "MEM%02d" % index
    ds.PatientName = "MEMORY^BENCH"
    ds.StudyInstanceUID = root + ".1"
    ds.SeriesInstanceUID = root + ".2"
    ds.Modality = "OT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.Rows = 1024
    ds.Columns = 1024
    ds.NumberOfFrames = pixel_bytes // (1024 * 1024)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    # PixelData, OB, 4-byte length: the pixels follow.
    return out.getvalue() + b"\xe0\x7f\x10\x00OB\x00\x00" + pixel_bytes.to_bytes(4, "little")


def upload(port, index, pixel_bytes, answers):
    head = header(index, pixel_bytes)
    piece = bytes((index + n) % 251 for n in range(PIECE))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    try:
        connection.putrequest("POST", "/instances")
        connection.putheader("Content-Type", "application/dicom")
        connection.putheader("Content-Length", str(len(head) + pixel_bytes))
        connection.endheaders()
        connection.send(head)
        left = pixel_bytes
        while left:
            connection.send(piece[:min(left, PIECE)])
            left -= min(left, PIECE)
        response = connection.getresponse()
        response.read()
        answers[index] = response.status
    except OSError as e:
        answers[index] = "error: %s" % e
    finally:
        connection.close()


def measure(server, uploads, pixel_bytes):
    time.sleep(1.0)
    idle = sum(RB.status_kib(pid, "VmRSS") for pid in RB.process_tree(server.pid))
    answers = {}
    threads = [threading.Thread(target=upload, args=(server.http_port, i, pixel_bytes, answers))
               for i in range(uploads)]
    started = time.monotonic()
    with RB.RssSampler(server.pid) as rss:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    elapsed = time.monotonic() - started
    time.sleep(1.0)
    after = sum(RB.status_kib(pid, "VmRSS") for pid in RB.process_tree(server.pid))
    statuses = sorted(answers.values(), key=str)
    return {"idle_mib": idle / 1024, "peak_mib": rss.peak_kib / 1024, "after_mib": after / 1024,
            "seconds": elapsed, "statuses": statuses}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=16)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--server", action="append", choices=["orthancd", "orthanc"])
    options = parser.parse_args()
    kinds = options.server or ["orthancd", "orthanc"]
    pixel_bytes = options.size_mb * 1024 * 1024
    results = {}
    for kind in kinds:
        command = RB.ORTHANCD_COMMAND if kind == "orthancd" else RB.ORTHANC_COMMAND
        server = RB.ServerUnderTest(kind, command, RB.REPO_ROOT)
        server.start()
        try:
            RB.log("%s: %d uploads of %d MiB at once..." % (server.label, options.uploads,
                                                              options.size_mb))
            results[kind] = measure(server, options.uploads, pixel_bytes)
            RB.log("  %s" % results[kind])
        finally:
            server.stop()
            RB.shutil.rmtree(server.folder, ignore_errors=True)
    print("%d concurrent uploads of %d MiB each" % (options.uploads, options.size_mb))
    print("%-16s %10s %10s %10s %9s  %s" % ("server", "idle MiB", "peak MiB", "after MiB",
                                           "seconds", "answers"))
    for kind, figures in results.items():
        print("%-16s %10.1f %10.1f %10.1f %9.1f  %s" % (
            RB.SERVER_LABELS[kind], figures["idle_mib"], figures["peak_mib"],
            figures["after_mib"], figures["seconds"],
            ", ".join("%dx %s" % (figures["statuses"].count(s), s)
                      for s in sorted(set(figures["statuses"]), key=str))))


if __name__ == "__main__":
    main()
