"""Transcoding (orthancd.transcoding) compared with the live Orthanc 1.13.0:
/instances/{id}/file?transcode=, lossy-quality, IngestTranscoding and the
C-STORE SCU's fallback when the peer refuses the stored syntax.

Where 1.13.0 transcodes, orthancd answers the same status with a file in
the same transfer syntax, a new SOP Instance UID exactly when Orthanc gives
one (lossy targets), and, for lossless targets, decoded pixels equal to
the original's.  Where 1.13.0 fails, orthancd gives its error, except for
the deliberate differences: orthancd also writes RLE, JPEG 2000 (lossless
and lossy) and HTJ2K, and decodes JPEG 2000 sources (Orthanc's DCMTK does
neither); there it must succeed, losslessly but for lossy JPEG 2000
(tests/test_transcode_jpeg2000.py has the details).
"""
import io
import json
import time

import numpy as np
import pydicom
import pytest

from orthancd.pixels.decoding import DicomPixels
from tests.support.daemon import Daemon, read_sample
from tests.support.oracle import RealOrthanc, running

SAMPLES = [
    "TransferSyntaxes/1.2.840.10008.1.2.dcm", "TransferSyntaxes/1.2.840.10008.1.2.2.dcm",
    "TransferSyntaxes/1.2.840.10008.1.2.4.50.dcm", "TransferSyntaxes/1.2.840.10008.1.2.4.57.dcm",
    "TransferSyntaxes/1.2.840.10008.1.2.4.80.dcm", "TransferSyntaxes/1.2.840.10008.1.2.4.91.dcm",
    "TransferSyntaxes/1.2.840.10008.1.2.5.dcm", "ColorTestMalaterre.dcm",
    "Implicit-vr-us-palette.dcm", "Issue22-NoPixelData.dcm",
]
TARGETS = [
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
]
LOSSY = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
         "1.2.840.10008.1.2.4.91")
BEYOND_ORTHANC = ("1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
                  "1.2.840.10008.1.2.4.201")
LOSSY_SOURCES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
JPEG_2000_SOURCES = ("1.2.840.10008.1.2.4.91",)
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"


def _dataset(data):
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _frames(data):
    dataset = _dataset(data)
    if "PixelData" not in dataset:
        return None
    pixels = DicomPixels(dataset)
    return [pixels.decode(i).pixels for i in range(min(pixels.frames_count() or 1, 2))]


def _same_pixels(a, b, tolerance=0):
    if a is None or b is None:
        return a is b
    return all(x.shape == y.shape and
               np.abs(x.astype(np.int32) - y.astype(np.int32)).max() <= tolerance
               for x, y in zip(a, b))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    pair = (Daemon(tmp_path_factory.mktemp("orthancd")), RealOrthanc(tmp_path_factory.mktemp("oracle")))
    with running(pair) as (ours, theirs):
        yield ours.client(), theirs.client()


@pytest.fixture(scope="module")
def instances(servers):
    ids = {}
    for name in SAMPLES:
        data = read_sample(*name.split("/"))
        answers = [client.upload(data) for client in servers]
        assert answers[0]["ID"] == answers[1]["ID"]
        ids[name] = answers[0]["ID"]
    return ids


@pytest.mark.parametrize("name", SAMPLES)
def test_file_transcode_matches_orthanc(servers, instances, name):
    ours, theirs = servers
    original = read_sample(*name.split("/"))
    source_syntax = ours.get("/instances/%s/metadata/TransferSyntax" % instances[name]).text
    source_uid = str(_dataset(original).SOPInstanceUID)
    reference = _frames(original)
    for target in TARGETS:
        path = "/instances/%s/file?transcode=%s" % (instances[name], target)
        mine, oracle = ours.get(path), theirs.get(path)
        where = (name, target)
        if target == source_syntax:
            # No transcoding: the stored file as it is.
            assert mine.status == oracle.status == 200
            assert mine.body == oracle.body, where
            continue
        beyond = target in BEYOND_ORTHANC or source_syntax in JPEG_2000_SOURCES
        if oracle.status != 200 and not (beyond and mine.status == 200):
            assert (mine.status, mine.body) == (oracle.status, oracle.body), where
            assert mine.headers.get("Content-Type") == oracle.headers.get("Content-Type")
            continue
        assert mine.status == 200, (where, mine.body[:300])
        assert mine.headers.get("Content-Type") == "application/dicom"
        transcoded = _dataset(mine.body)
        assert transcoded.file_meta.TransferSyntaxUID == target, where
        if oracle.status == 200:
            assert _dataset(oracle.body).file_meta.TransferSyntaxUID == target
            assert (str(transcoded.SOPInstanceUID) == source_uid) == \
                (str(_dataset(oracle.body).SOPInstanceUID) == source_uid), where
        if target not in LOSSY or str(transcoded.SOPInstanceUID) == source_uid:
            # Lossless: the very same pixels (a lossy target that kept the
            # UID had no pixel data to compress).
            assert str(transcoded.SOPInstanceUID) == source_uid, where
            # From lossy JPEG, the decoders may differ by one level
            # (libjpeg-turbo against DCMTK's IJG, as in the pixels tests).
            tolerance = 1 if source_syntax in LOSSY_SOURCES else 0
            assert _same_pixels(_frames(mine.body), reference, tolerance), where
            if oracle.status == 200:
                assert _same_pixels(_frames(oracle.body), reference, tolerance), where


def test_transcode_arguments_errors_and_quality(servers, instances):
    instance = instances["TransferSyntaxes/1.2.840.10008.1.2.4.50.dcm"]
    base = "/instances/%s/file?transcode=" % instance
    for query in ("1.2.3", "", "1.2.840.10008.1.2.4.51&lossy-quality=x",
                  "1.2.840.10008.1.2.4.51&lossy-quality=-3"):
        answers = [client.get(base + query) for client in servers]
        assert (answers[0].status, answers[0].body) == (answers[1].status, answers[1].body), query
    for client in servers:
        low = client.get(base + "1.2.840.10008.1.2.4.51&lossy-quality=10")
        high = client.get(base + "1.2.840.10008.1.2.4.51&lossy-quality=95")
        assert low.status == high.status == 200
        assert len(low.body) < len(high.body)
    answers = [client.get("/instances/%s/file?transcode=%s&filename=x.dcm"
                          % (instance, EXPLICIT_LITTLE)) for client in servers]
    assert answers[0].headers.get("Content-Disposition") == \
        answers[1].headers.get("Content-Disposition")


def test_modify_instance_lossy_quality(servers, instances):
    """The instance-level Transcode with LossyQuality, as 1.13.0."""
    instance = instances["TransferSyntaxes/1.2.840.10008.1.2.dcm"]
    sizes = []
    for client in servers:
        by_quality = []
        for quality in (5, 95):
            answer = client.post("/instances/%s/modify" % instance,
                                 json.dumps({"Transcode": "1.2.840.10008.1.2.4.51",
                                             "LossyQuality": quality,
                                             "Replace": {"SeriesDescription": "Q"}}))
            assert answer.status == 200, answer.body[:300]
            dataset = _dataset(answer.body)
            assert dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.51"
            assert dataset.SeriesDescription == "Q"
            by_quality.append(len(answer.body))
        sizes.append(by_quality)
        assert by_quality[0] < by_quality[1]


INGEST = {"IngestTranscoding": "1.2.840.10008.1.2.4.80", "IngestTranscodingOfCompressed": False}
INGESTED = ["TransferSyntaxes/1.2.840.10008.1.2.dcm", "TransferSyntaxes/1.2.840.10008.1.2.4.50.dcm",
            "Issue22-NoPixelData.dcm", "sample-pdf.dcm", "ColorTestMalaterre.dcm"]


def test_ingest_transcoding_matches_orthanc(tmp_path_factory):
    """Uncompressed images become JPEG-LS, compressed ones stay
    (IngestTranscodingOfCompressed false), files without pixel data are
    never compressed: the same IDs and stored syntaxes as 1.13.0."""
    ours = Daemon(tmp_path_factory.mktemp("orthancd-ingest"), **INGEST).start()
    try:
        theirs = RealOrthanc(tmp_path_factory.mktemp("oracle-ingest"), **INGEST).start()
        try:
            clients = ours.client(), theirs.client()
            for name in INGESTED:
                data = read_sample(*name.split("/"))
                stored = [client.upload(data) for client in clients]
                assert stored[0] == stored[1], name
                syntaxes = [client.get("/instances/%s/metadata/TransferSyntax"
                                       % stored[0]["ID"]).text for client in clients]
                assert syntaxes[0] == syntaxes[1], name
                if "PixelData" in _dataset(data):
                    pixels = _frames(clients[0].get("/instances/%s/file" % stored[0]["ID"]).body)
                    assert _same_pixels(pixels, _frames(data)), name
        finally:
            theirs.stop()
    finally:
        ours.stop()


def test_store_scu_transcodes_for_a_peer_refusing_the_syntax(tmp_path_factory):
    """1.13.0 accepting only explicit little endian: orthancd's C-STORE SCU
    proposes the stored syntax and the uncompressed ones, and transcodes
    the JPEG-LS instance to what was accepted, keeping its SOP Instance
    UID and its pixels; not to a modality whose AllowTranscoding is false."""
    theirs = RealOrthanc(tmp_path_factory.mktemp("oracle-scp"),
                         AcceptedTransferSyntaxes=[EXPLICIT_LITTLE])
    ours = Daemon(tmp_path_factory.mktemp("orthancd-scu"),
                  DicomModalities={"oracle": ["ORACLE", "127.0.0.1", theirs.dicom_port],
                                   "strict": {"AET": "ORACLE", "Host": "127.0.0.1",
                                              "Port": theirs.dicom_port,
                                              "AllowTranscoding": False}})
    theirs.start()
    try:
        ours.start()
        try:
            data = read_sample("TransferSyntaxes", "1.2.840.10008.1.2.4.80.dcm")
            instance = ours.client().upload(data)["ID"]
            # AllowTranscoding false: the stored syntax or nothing.
            refused = ours.client().post("/modalities/strict/store",
                                         json.dumps({"Resources": [instance],
                                                     "Synchronous": True}))
            assert refused.status != 200
            assert theirs.client().get("/instances/%s" % instance).status == 404
            answer = ours.client().post("/modalities/oracle/store",
                                        json.dumps({"Resources": [instance],
                                                    "Synchronous": True}))
            assert answer.status == 200, answer.body[:300]
            deadline = time.time() + 10
            while time.time() < deadline and \
                    theirs.client().get("/instances/%s" % instance).status != 200:
                time.sleep(0.1)
            received = theirs.client().get("/instances/%s/file" % instance)
            assert received.status == 200
            assert _dataset(received.body).file_meta.TransferSyntaxUID == EXPLICIT_LITTLE
            assert _same_pixels(_frames(received.body), _frames(data))
        finally:
            ours.stop()
    finally:
        theirs.stop()


def test_unknown_ingest_transcoding_stops_the_start(tmp_path_factory):
    """Both refuse to start with an IngestTranscoding they do not know, and
    say why."""
    ours = Daemon(tmp_path_factory.mktemp("orthancd-bad"), IngestTranscoding="1.2.3")
    theirs = RealOrthanc(tmp_path_factory.mktemp("oracle-bad"), IngestTranscoding="1.2.3")
    for server, log in ((ours, ours.log_path), (theirs, theirs.workdir + "/oracle.log")):
        with pytest.raises(RuntimeError, match="exited"):
            server.start(timeout=20)
        with open(log, "rb") as f:
            assert b"Unknown transfer syntax for ingest transcoding: 1.2.3" in f.read()


def test_store_scu_preferred_syntax(tmp_path_factory):
    """DicomScuPreferredTransferSyntax (JPEG-LS lossless here) is proposed
    and, accepted by 1.13.0 where the stored syntax is not, used to send
    an uncompressed instance: as Orthanc's own SCU does."""
    jpeg_ls = "1.2.840.10008.1.2.4.80"
    settings = dict(DicomScuPreferredTransferSyntax=jpeg_ls)
    receiver = RealOrthanc(tmp_path_factory.mktemp("oracle-ls"),
                           AcceptedTransferSyntaxes=[jpeg_ls])
    modality = {"dest": ["ORACLE", "127.0.0.1", receiver.dicom_port]}
    ours = Daemon(tmp_path_factory.mktemp("orthancd-ls"), DicomModalities=modality, **settings)
    sender = RealOrthanc(tmp_path_factory.mktemp("oracle-sender"), DicomModalities=modality,
                         **settings)
    data = read_sample("TransferSyntaxes", "1.2.840.10008.1.2.1.dcm")
    receiver.start()
    try:
        ours.start()
        sender.start()
        try:
            for client in (ours.client(), sender.client()):
                instance = client.upload(data)["ID"]
                answer = client.post("/modalities/dest/store",
                                     json.dumps({"Resources": [instance], "Synchronous": True}))
                assert answer.status == 200, answer.body[:300]
                received = receiver.client().get("/instances/%s/file" % instance)
                assert received.status == 200
                assert _dataset(received.body).file_meta.TransferSyntaxUID == jpeg_ls
                assert _same_pixels(_frames(received.body), _frames(data))
                assert receiver.client().delete("/instances/" + instance).status == 200
        finally:
            sender.stop()
            ours.stop()
    finally:
        receiver.stop()


def _forged(name, **changes):
    dataset = _dataset(read_sample("TransferSyntaxes", name))
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("data", [
    # A header promising gigapixels over a small codestream.
    _forged("1.2.840.10008.1.2.4.80.dcm", Rows=60000, Columns=60000),
    # The codestream does not have the size the data set says.
    _forged("1.2.840.10008.1.2.4.90.dcm", Rows=16, Columns=16),
    # More frames than fragments.
    _forged("1.2.840.10008.1.2.4.80.dcm", NumberOfFrames=40),
    # Native pixel data shorter than the image.
    _forged("1.2.840.10008.1.2.1.dcm", Rows=4000),
    b"not a DICOM file",
], ids=["gigapixels", "codestream-size", "missing-frames", "truncated", "garbage"])
def test_hostile_files_are_not_transcoded(data):
    """The transcoder refuses (as Orthanc's fails: None), allocating nothing
    near what the header promises, whatever other syntax is asked for."""
    from orthancd.transcoding.transcoder import source_syntax, transcode
    try:
        source = source_syntax(data)
    except Exception:
        source = None
    for target in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.51",
                   "1.2.840.10008.1.2.5"):
        if target != source:
            assert transcode(data, {target}) is None, target
