"""Transcoding to lossy JPEG 2000 (.4.91) and to HTJ2K (.4.201, .4.202,
.4.203), beside the live Orthanc 1.13.0.

1.13.0 writes neither (its DCMTK transcoder has no JPEG 2000 encoder): it
answers 500 "Not implemented yet", which the tests check so that the
deliberate difference stays known.  orthancd writes them: lossy JPEG 2000
as a new, derived instance (as the lossy JPEG targets), HTJ2K losslessly,
keeping the SOP Instance UID and every stored value.  The pixels are read
back with pydicom 3's own decoders (pylibjpeg-openjpeg), not orthancd's,
and orthancd decodes what it wrote once it is stored.
"""
import io
import json

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut

from tests.support.daemon import Daemon, read_sample
from tests.support.oracle import RealOrthanc, running

J2K_LOSSY = "1.2.840.10008.1.2.4.91"
HTJ2K = ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")
SAMPLES = [
    "TransferSyntaxes/1.2.840.10008.1.2.dcm",        # 8-bit grey, implicit little endian
    "TransferSyntaxes/1.2.840.10008.1.2.2.dcm",      # RGB, big endian
    "TransferSyntaxes/1.2.840.10008.1.2.4.57.dcm",   # 12-bit grey, lossless JPEG
    "TransferSyntaxes/1.2.840.10008.1.2.5.dcm",      # RLE, 16-bit grey
    "Implicit-vr-us-palette.dcm",                    # palette colour
]
PALETTE = "Implicit-vr-us-palette.dcm"
NOT_IMPLEMENTED = {"HttpError": "Internal Server Error", "HttpStatus": 500,
                   "Message": "Not implemented yet", "Method": "GET",
                   "OrthancError": "Not implemented yet", "OrthancStatus": 2}


def _dataset(data):
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _original(name):
    dataset = _dataset(read_sample(*name.split("/")))
    if "TransferSyntaxUID" not in dataset.file_meta:
        # A raw data set (no meta header): implicit little endian.
        dataset.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    return dataset


def _pixels(dataset):
    """pydicom's decoding, RGB for colour (YBR and palettes converted, a
    16-bit palette to 8 bits)."""
    array = dataset.pixel_array
    if "PALETTE" in str(dataset.PhotometricInterpretation):
        array = apply_color_lut(array, dataset)
        if dataset.RedPaletteColorLookupTableDescriptor[2] == 16:
            array = array >> 8
    return array.astype(np.float64)


def _psnr(reference, decoded, bits):
    error = np.mean((reference - decoded) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(((1 << bits) - 1) ** 2 / error)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    pair = (Daemon(tmp_path_factory.mktemp("orthancd")), RealOrthanc(tmp_path_factory.mktemp("oracle")))
    with running(pair) as (ours, theirs):
        clients = ours.client(), theirs.client()
        ids = {}
        for name in SAMPLES:
            answers = [client.upload(read_sample(*name.split("/"))) for client in clients]
            assert answers[0]["ID"] == answers[1]["ID"]
            ids[name] = answers[0]["ID"]
        yield clients, ids


def _oracle_cannot(theirs, path):
    answer = theirs.get(path)
    assert answer.status == 500, path
    assert json.loads(answer.body) == dict(NOT_IMPLEMENTED, Uri=path.split("?")[0])


@pytest.mark.parametrize("name", SAMPLES)
def test_lossy_jpeg_2000(servers, name):
    (ours, theirs), ids = servers
    original = _original(name)
    path = "/instances/%s/file?transcode=%s" % (ids[name], J2K_LOSSY)
    _oracle_cannot(theirs, path)
    answer = ours.get(path)
    assert answer.status == 200, answer.body[:300]
    assert answer.headers.get("Content-Type") == "application/dicom"
    transcoded = _dataset(answer.body)
    assert transcoded.file_meta.TransferSyntaxUID == J2K_LOSSY
    # A lossy compression makes a new, derived instance, as DCMTK's JPEG.
    assert transcoded.SOPInstanceUID != original.SOPInstanceUID
    assert transcoded.file_meta.MediaStorageSOPInstanceUID == transcoded.SOPInstanceUID
    source = transcoded.SourceImageSequence[0]
    assert source.ReferencedSOPInstanceUID == original.SOPInstanceUID
    assert transcoded.DerivationCodeSequence[0].CodeValue == "113040"
    assert transcoded.LossyImageCompression == "01"
    methods = transcoded.LossyImageCompressionMethod
    assert (methods if isinstance(methods, str) else methods[-1]) == "ISO_15444_1"
    assert transcoded.DerivationDescription.startswith(
        "Lossy compression with JPEG 2000, quality factor 90, compression ratio ")
    # Close to the original: at the default quality (90), about 1.7 grey
    # levels of RMS error whatever the bit depth.
    bits = 8 if name == PALETTE else int(original.BitsStored)
    reference, decoded = _pixels(original), _pixels(transcoded)
    assert decoded.shape == reference.shape
    assert _psnr(reference, decoded, bits) > 20 * np.log10(((1 << bits) - 1) / 4.0), name
    if name == PALETTE:
        assert transcoded.PhotometricInterpretation == "RGB"
        assert "RedPaletteColorLookupTableData" not in transcoded
    else:
        assert transcoded.PhotometricInterpretation == original.PhotometricInterpretation


def test_lossy_jpeg_2000_quality(servers):
    """lossy-quality chooses the fidelity: lower, smaller and further."""
    (ours, _), ids = servers
    name = "TransferSyntaxes/1.2.840.10008.1.2.4.57.dcm"
    reference = _pixels(_original(name))
    sizes, fidelity = [], []
    for quality in (20, 60, 95):
        answer = ours.get("/instances/%s/file?transcode=%s&lossy-quality=%d"
                          % (ids[name], J2K_LOSSY, quality))
        assert answer.status == 200
        transcoded = _dataset(answer.body)
        assert "quality factor %d," % quality in transcoded.DerivationDescription
        sizes.append(len(answer.body))
        fidelity.append(_psnr(reference, _pixels(transcoded), 12))
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert fidelity == sorted(fidelity)


@pytest.mark.parametrize("name", SAMPLES)
def test_htj2k_lossless(servers, name):
    (ours, theirs), ids = servers
    original = _original(name)
    reference = original.pixel_array
    for syntax in HTJ2K:
        path = "/instances/%s/file?transcode=%s" % (ids[name], syntax)
        _oracle_cannot(theirs, path)
        answer = ours.get(path)
        assert answer.status == 200, (syntax, answer.body[:300])
        transcoded = _dataset(answer.body)
        assert transcoded.file_meta.TransferSyntaxUID == syntax
        assert transcoded.SOPInstanceUID == original.SOPInstanceUID
        assert "LossyImageCompression" not in transcoded or \
            transcoded.LossyImageCompression == original.get("LossyImageCompression")
        assert transcoded.PhotometricInterpretation == original.PhotometricInterpretation
        decoded = transcoded.pixel_array
        assert decoded.shape == reference.shape and (decoded == reference).all(), (name, syntax)


def _markers(codestream):
    """The main header's marker segments and the tile-part count."""
    position, found = 2, {}
    while codestream[position] == 0xFF and codestream[position + 1] != 0x90:
        marker = codestream[position + 1]
        length = int.from_bytes(codestream[position + 2:position + 4], "big")
        found[marker] = codestream[position + 4:position + 2 + length]
        position += 2 + length
    return found, codestream.count(b"\xff\x90")


def test_htj2k_rpcl_options(servers):
    """.4.202's codestream: HTJ2K code-blocks, RPCL progression, a TLM
    marker, a tile-part per resolution, the lowest resolution within
    64 x 64; .4.201 is plain HTJ2K."""
    (ours, _), ids = servers
    name = "TransferSyntaxes/1.2.840.10008.1.2.4.57.dcm"   # 1024 x 1024
    for syntax, rpcl in ((HTJ2K[0], False), (HTJ2K[1], True)):
        answer = ours.get("/instances/%s/file?transcode=%s" % (ids[name], syntax))
        dataset = _dataset(answer.body)
        codestream = pydicom.encaps.generate_frames(dataset.PixelData,
                                                    number_of_frames=1).__next__()
        markers, tile_parts = _markers(codestream)
        assert 0x50 in markers                      # CAP: Part 15 (HT)
        cod = markers[0x52]
        progression, levels, code_block_style, transform = cod[1], cod[5], cod[8], cod[9]
        assert progression == 2                     # RPCL
        assert code_block_style & 0x40              # HT code-blocks
        assert transform == 1                       # reversible 5/3
        if rpcl:
            assert 0x55 in markers                  # TLM
            assert 1024 >> levels <= 64
            assert tile_parts == levels + 1
        else:
            assert tile_parts == 1


def test_htj2k_and_lossy_jpeg_2000_files_are_decoded_once_stored(servers):
    """What orthancd wrote, uploaded as new instances, is decoded by
    orthancd's pixel routes: HTJ2K as the original, lossy JPEG 2000 close."""
    (ours, _), ids = servers
    name = "TransferSyntaxes/1.2.840.10008.1.2.4.57.dcm"
    original = ours.get("/instances/%s/image-uint16" % ids[name])
    assert original.status == 200
    for syntax in (HTJ2K[1], J2K_LOSSY):
        data = ours.get("/instances/%s/file?transcode=%s" % (ids[name], syntax)).body
        if syntax != J2K_LOSSY:
            # Same SOP Instance UID as the stored one: another patient
            # keeps the upload from replacing it.
            dataset = _dataset(data)
            dataset.PatientID = "HTJ2K"
            out = io.BytesIO()
            dataset.save_as(out, enforce_file_format=True)
            data = out.getvalue()
        stored = ours.upload(data)["ID"]
        assert ours.get("/instances/%s/metadata/TransferSyntax" % stored).text == syntax
        decoded = ours.get("/instances/%s/image-uint16" % stored)
        assert decoded.status == 200
        if syntax != J2K_LOSSY:
            assert decoded.body == original.body
        numpy = ours.get("/instances/%s/numpy?rescale=0" % stored)
        assert numpy.status == 200
        array = np.load(io.BytesIO(numpy.body))
        reference = _original(name).pixel_array
        difference = np.abs(array.reshape(reference.shape).astype(np.int32) - reference)
        assert difference.max() <= (0 if syntax != J2K_LOSSY else 64), syntax


def test_modify_to_lossy_jpeg_2000(servers):
    """The Transcode option of modify writes lossy JPEG 2000 with the
    LossyQuality asked for."""
    (ours, _), ids = servers
    instance = ids["TransferSyntaxes/1.2.840.10008.1.2.dcm"]
    sizes = []
    for quality in (10, 95):
        answer = ours.post("/instances/%s/modify" % instance,
                           json.dumps({"Transcode": J2K_LOSSY, "LossyQuality": quality,
                                       "Replace": {"SeriesDescription": "J2K"}}))
        assert answer.status == 200, answer.body[:300]
        dataset = _dataset(answer.body)
        assert dataset.file_meta.TransferSyntaxUID == J2K_LOSSY
        assert dataset.SeriesDescription == "J2K"
        sizes.append(len(answer.body))
    assert sizes[0] < sizes[1]
