"""create-dicom with large images, beside the live Orthanc 1.13.0: its
limits (4 GB decoded, Rows and Columns that a US holds) give its errors,
and an image above the 512 MB orthancd used to refuse is created as 1.13.0
creates it, while the daemon's own (anonymous) memory stays far below the
image's size (the decoded pixels go through a file-backed spool).
"""
import base64
import io
import json
import struct
import threading
import time
import zlib

import imagecodecs
import numpy as np
import pydicom
import pytest

from tests.support.daemon import Daemon
from tests.support.oracle import RealOrthanc, running
from tests.test_create_dicom import VOLATILE

MB = 1024 * 1024


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width, height, depth=8, color=0, idat=None):
    """A PNG whose rows are each filled with their index (mod 256), made a
    row at a time; ``idat`` replaces the image data (a forged header)."""
    if idat is None:
        channels = {0: 1, 2: 3, 6: 4}[color]
        compressor = zlib.compressobj(1)
        parts = [compressor.compress(b"\0" + bytes([row % 256]) * (width * channels * depth // 8))
                 for row in range(height)]
        idat = b"".join(parts) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" +
            _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)) +
            _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def _jpeg_claiming(width, height, colour=True):
    """A real JPEG header whose frame claims ``width`` x ``height``."""
    data = bytearray(imagecodecs.jpeg8_encode(
        np.zeros((16, 16, 3) if colour else (16, 16), np.uint8)))
    position = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, position + 5, height, width)
    return bytes(data)


def _body(mime, data):
    return json.dumps({"Tags": {"PatientName": "LARGE"},
                       "Content": "data:%s;base64,%s" % (mime, base64.b64encode(data).decode())})


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    pair = (Daemon(tmp_path_factory.mktemp("orthancd")),
            RealOrthanc(tmp_path_factory.mktemp("oracle")))
    with running(pair) as (ours, theirs):
        yield ours, theirs


EDGES = [
    # Beyond 4 GB decoded: refused from the header, nothing decoded.
    ("image/png", _png(65535, 32769, 16, 0, idat=b"")),
    ("image/png", _png(32768, 16385, 16, 6, idat=b"")),
    ("image/png", _png(40000, 40000, 8, 2, idat=b"")),
    ("image/jpeg", _jpeg_claiming(40000, 40000)),
    # Within 4 GB but too wide or too tall for Columns or Rows.
    ("image/png", _png(65536, 16)),
    ("image/png", _png(16, 65536)),
]


@pytest.mark.parametrize("mime,data", EDGES, ids=["gray16-over", "rgba64-over", "rgb24-over",
                                                  "jpeg-over", "too-wide", "too-tall"])
def test_limits_like_orthanc(servers, mime, data):
    answers = [server.client().post("/tools/create-dicom", _body(mime, data))
               for server in servers]
    assert answers[0].status == answers[1].status == 400
    assert answers[0].body == answers[1].body
    assert answers[0].headers.get("Content-Type") == answers[1].headers.get("Content-Type")


def _anonymous_memory(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def test_image_beyond_512_mb(servers):
    """A 513 MiB grey image (the old cap was 512 MiB) becomes the same
    instance on both servers; orthancd's anonymous memory grows by a
    fraction of it."""
    ours, theirs = servers
    width = height = 23200   # 513.3 MiB decoded
    body = _body("image/png", _png(width, height))
    peak = {"value": 0}
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak["value"] = max(peak["value"], _anonymous_memory(ours.process.pid))
            time.sleep(0.02)
    before = _anonymous_memory(ours.process.pid)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        mine = ours.client().post("/tools/create-dicom", body)
    finally:
        done.set()
        watcher.join()
    oracle = theirs.client().post("/tools/create-dicom", body)
    assert mine.status == oracle.status == 200, mine.body[:300]
    assert list(mine.json()) == list(oracle.json())
    # The daemon's own memory holds the
    # JSON body and a few rows at a time.
    assert peak["value"] - before < 150 * MB, (before, peak["value"])
    files = [server.client().get("/instances/%s/file" % answer.json()["ID"]).body
             for server, answer in ((ours, mine), (theirs, oracle))]
    headers = []
    for data in files:
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        headers.append((str(dataset.file_meta.TransferSyntaxUID),
                        [(int(e.tag), e.VR, e.value) for e in dataset
                         if int(e.tag) not in VOLATILE]))
    assert headers[0] == headers[1]
    dataset = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
    assert (dataset.Rows, dataset.Columns) == (height, width)
    # The same pixels, the file's last bytes (row r holds r mod 256).
    pixels = [np.frombuffer(data, np.uint8, width * height, len(data) - width * height)
              for data in files]
    assert np.array_equal(pixels[0], pixels[1])
    for row in (0, 1, 7777, height - 1):
        assert (pixels[0][row * width:(row + 1) * width] == row % 256).all(), row
    del files, pixels
    for server, answer in ((ours, mine), (theirs, oracle)):
        assert server.client().delete("/instances/" + answer.json()["ID"]).status == 200
