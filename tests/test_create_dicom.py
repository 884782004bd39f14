"""POST /tools/create-dicom compared with the live Orthanc 1.13.0: the same
request to both servers gives the same status and error body, and, on
success, a stored file with the same data set (the generated UIDs, the
patient ID and the creation dates and times aside), including images
(PNG, JPEG, PAM), PDF and 3D models, series from a list of Content,
Parent, Force, PrivateCreator, InterpretBinaryTags, sequences and binary
tags.  Hostile images (a header promising gigapixels, truncated data)
get Orthanc's error without the memory they promise.
"""
import base64
import io
import json
import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image

from tests.support.daemon import Daemon, read_sample
from tests.support.oracle import RealOrthanc, running

# Generated anew by each server: UIDs, the patient ID, dates and times.
VOLATILE = {0x00080012, 0x00080013, 0x00080018, 0x00080020, 0x00080021, 0x00080022,
            0x00080023, 0x00080030, 0x00080031, 0x00080032, 0x00080033, 0x00100020,
            0x0020000D, 0x0020000E}


def _image_uri(image, kind, mime):
    out = io.BytesIO()
    image.save(out, kind)
    return _uri(mime, out.getvalue())


def _uri(mime, data):
    return "data:%s;base64,%s" % (mime, base64.b64encode(data).decode())


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width, height, depth=8, color=0, payload=b"\0" * 10):
    return (b"\x89PNG\r\n\x1a\n" +
            _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)) +
            _png_chunk(b"IDAT", zlib.compress(payload)) + _png_chunk(b"IEND", b""))


def _pam(width, height, depth, maximum, kind, payload):
    return (b"P7\nWIDTH %d\nHEIGHT %d\nDEPTH %d\nMAXVAL %d\nTUPLTYPE %s\nENDHDR\n"
            % (width, height, depth, maximum, kind) + payload)


def _rgba16_png():
    import imagecodecs
    pixels = (np.arange(5 * 3 * 4).reshape(3, 5, 4) * 2500).astype(np.uint16)
    return imagecodecs.png_encode(pixels)


GRADIENT = Image.fromarray((np.arange(64 * 48).reshape(48, 64) % 256).astype(np.uint8))
COLOUR = Image.fromarray((np.arange(40 * 30 * 3).reshape(30, 40, 3) % 256).astype(np.uint8))
GREY16 = Image.fromarray((np.arange(20 * 10).reshape(10, 20) * 300).astype(np.uint16))

REQUESTS = [
    # Tags only, with the default and other character sets, sequences,
    # private and binary tags.
    {"Tags": {"PatientName": "A", "StudyDescription": "plain"}},
    {"Tags": {"PatientName": "Hé^Ø", "SpecificCharacterSet": "ISO_IR 192",
              "ReferencedSeriesSequence": [{"SeriesInstanceUID": "1.2.3"}, {}],
              "0009,0010": "MYCREATOR",
              "0009,1001": "data:application/octet-stream;base64,AAECAw=="},
     "PrivateCreator": "MYCREATOR"},
    {"Tags": {"PatientName": "A", "0009,1001": "data:application/octet-stream;base64,AAEC"},
     "InterpretBinaryTags": False, "PrivateCreator": "MYCREATOR"},
    {"Tags": {"PatientName": "A", "StudyInstanceUID": "1.2.3"}},
    {"Tags": {"PatientName": "A", "StudyInstanceUID": "1.2.3", "SeriesInstanceUID": "1.2.3.4",
              "SOPInstanceUID": "1.2.3.4.5", "StudyDate": "20200101"}, "Force": True},
    # Images.
    {"Tags": {"PatientName": "Images"}, "Content": _image_uri(GRADIENT, "PNG", "image/png")},
    {"Tags": {"PatientName": "Images"}, "Content": _image_uri(COLOUR, "PNG", "image/png")},
    {"Tags": {"PatientName": "Images"}, "Content": _image_uri(GREY16, "PNG", "image/png")},
    {"Tags": {"PatientName": "Images"},
     "Content": _image_uri(COLOUR.convert("RGBA"), "PNG", "image/png")},
    {"Tags": {"PatientName": "Images"}, "Content": _uri("image/png", _rgba16_png())},
    {"Tags": {"PatientName": "Images", "PhotometricInterpretation": "MONOCHROME1"},
     "Content": _image_uri(GRADIENT, "PNG", "image/png")},
    {"Tags": {"PatientName": "Images"}, "Content": _image_uri(GRADIENT, "JPEG", "image/jpeg")},
    {"Tags": {"PatientName": "Images"}, "Content": _image_uri(COLOUR, "JPEG", "image/jpeg")},
    {"Tags": {"PatientName": "Images"},
     "Content": _uri("image/x-portable-arbitrarymap",
                     _pam(2, 2, 1, 65535, b"GRAYSCALE", b"\0\1\0\2\1\3\0\4"))},
    {"Tags": {"PatientName": "Images"},
     "Content": _uri("image/x-portable-arbitrarymap",
                     _pam(2, 1, 3, 255, b"RGB", b"\1\2\3\4\5\6"))},
    {"Tags": {"PatientName": "Images"},
     "Content": _uri("image/x-portable-arbitrarymap",
                     _pam(2, 1, 3, 65535, b"RGB", b"\0" * 12))},
    {"Tags": {"PatientName": "Images"}, "Content": _image_uri(GRADIENT.convert("P"), "PNG",
                                                             "image/png")},
    {"Tags": {"PatientName": "Raw", "Rows": "2", "Columns": "2", "BitsAllocated": "8"},
     "Content": "data:application/octet-stream;base64,AAECAw=="},
    # Documents and 3D models.
    {"Tags": {"PatientName": "Docs"}, "Content": _uri("application/pdf", b"%PDF-1.4 hello")},
    {"Tags": {"PatientName": "Docs", "Modality": "DOC"},
     "Content": _uri("application/pdf", b"%PDF-1.4 odd")},
    {"Tags": {"PatientName": "Docs"}, "Content": _uri("application/pdf", b"hello")},
    {"Tags": {"PatientName": "Docs"}, "Content": _uri("model/stl", b"solid x\nendsolid x\n")},
    {"Tags": {"PatientName": "Docs"}, "Content": _uri("model/obj", b"v 0 0 0\n")},
    {"Tags": {"PatientName": "Docs"}, "Content": _uri("model/mtl", b"newmtl a\n")},
    {"Tags": {"PatientName": "Docs"}, "Content": "data:text/plain;base64,aGVsbG8="},
    # JPEG kept as it is (1.12.7's Encapsulate).
    {"Tags": {"PatientName": "Encapsulated"}, "Encapsulate": True,
     "Content": _image_uri(COLOUR, "JPEG", "image/jpeg")},
    {"Tags": {"PatientName": "Encapsulated"}, "Encapsulate": True,
     "Content": _image_uri(GRADIENT, "JPEG", "image/jpeg")},
    {"Tags": {"PatientName": "Encapsulated"}, "Encapsulate": True,
     "Content": _image_uri(GRADIENT, "PNG", "image/png")},
    {"Tags": {"PatientName": "Encapsulated"}, "Encapsulate": True, "Content": "nothing"},
    {"Tags": {"PatientName": "Encapsulated"}, "Encapsulate": True,
     "Content": [_image_uri(GRADIENT, "JPEG", "image/jpeg")]},
    # The form of Orthanc <= 0.9.3.
    {"PatientName": "V1", "StudyDescription": "old"},
    {"PatientName": "V1", "PixelData": _image_uri(GRADIENT, "PNG", "image/png")},
    {"PatientName": 3},
    # Mistakes.
    {"Tags": "x"}, {"Tags": {"PixelData": "x"}}, {"Tags": {"PatientName": "A"}, "Content": 3},
    {"Tags": {"PatientName": "A"}, "Parent": "nope"},
    {"Tags": {"PatientName": "A", "SpecificCharacterSet": "nope"}},
    {"Tags": {"PatientName": "A"}, "Force": "x"},
    {"Tags": {"PatientName": "A"}, "PrivateCreator": 3},
    {"Tags": {"PatientName": "A"}, "InterpretBinaryTags": "yes"},
    {"Tags": {"PatientName": "A"}, "Content": [{"Tags": {}}]},
    {"Tags": {"PatientName": "A"}, "Content": [3]},
    # Hostile images.
    {"Tags": {}, "Content": _uri("image/png", _png(100000, 100000))},
    {"Tags": {}, "Content": _uri("image/png", _png(30000, 30000))},
    {"Tags": {}, "Content": _uri("image/png", _png(100, 100)[:40])},
    {"Tags": {}, "Content": _uri("image/png", _png(100, 100))},
    {"Tags": {}, "Content": _uri("image/png", b"\x89PNG\r\n")},
    {"Tags": {}, "Content": _uri("image/x-portable-arbitrarymap",
                                 _pam(100000, 100000, 1, 255, b"GRAYSCALE", b"\0" * 10))},
    {"Tags": {}, "Content": _uri("image/x-portable-arbitrarymap",
                                 _pam(60000, 60000, 1, 255, b"GRAYSCALE", b"\0" * 10))},
    {"Tags": {}, "Content": _uri("image/x-portable-arbitrarymap",
                                 _pam(4, 4, 1, 255, b"GRAYSCALE", b"\0" * 15))},
    {"Tags": {}, "Content": _uri("image/jpeg", b"\xff\xd8\xff\xe0garbage")},
    {"Tags": {}, "Content": _uri("image/jpeg", b"not a jpeg")},
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    pair = (Daemon(tmp_path_factory.mktemp("orthancd")), RealOrthanc(tmp_path_factory.mktemp("oracle")))
    with running(pair) as (ours, theirs):
        yield ours.client(), theirs.client()


def _stored(client, answer):
    """The data set of a created instance (volatile tags removed), or the
    instances of a created series."""
    if answer.status != 200:
        return None
    created = answer.json()
    if created["Path"].startswith("/series/"):
        return [_stored_instance(client, instance["ID"])
                for instance in client.get_json("/series/%s/instances" % created["ID"])]
    return _stored_instance(client, created["ID"])


def _stored_instance(client, instance_id):
    dataset = pydicom.dcmread(io.BytesIO(client.get("/instances/%s/file" % instance_id).body))
    return (str(dataset.file_meta.TransferSyntaxUID),
            [(int(e.tag), e.VR, e.value) for e in dataset if int(e.tag) not in VOLATILE])


def _create(servers, body):
    answers = [client.post("/tools/create-dicom", json.dumps(body)) for client in servers]
    assert answers[0].status == answers[1].status, (answers[0].body[:400], answers[1].body[:400])
    if answers[0].status != 200:
        assert answers[0].body == answers[1].body
        assert answers[0].headers.get("Content-Type") == answers[1].headers.get("Content-Type")
    else:
        assert list(answers[0].json()) == list(answers[1].json())
        assert answers[0].json()["Status"] == answers[1].json()["Status"]
    return answers


@pytest.mark.parametrize("index", range(len(REQUESTS)))
def test_create_dicom_matches_orthanc(servers, index):
    answers = _create(servers, REQUESTS[index])
    assert _stored(servers[0], answers[0]) == _stored(servers[1], answers[1])


def test_series_from_a_list_of_content(servers):
    """A list of Content makes a series: one instance per item, numbered,
    each with its own tags."""
    body = {"Tags": {"PatientName": "Series", "SeriesDescription": "frames"},
            "Content": [_image_uri(GRADIENT, "PNG", "image/png"),
                        {"Content": _image_uri(COLOUR, "PNG", "image/png"),
                         "Tags": {"ImageComments": "second"}}]}
    answers = _create(servers, body)
    assert answers[0].json()["Path"].startswith("/series/")
    series = [sorted(_stored(client, answer), key=str)
              for client, answer in zip(servers, answers)]
    assert series[0] == series[1] and len(series[0]) == 2


def test_failed_series_is_removed(servers):
    """The second item has no payload: the error of 1.13.0, and the
    series made so far is gone."""
    before = [len(client.get_json("/series")) for client in servers]
    body = {"Tags": {"PatientName": "Broken"},
            "Content": [_image_uri(GRADIENT, "PNG", "image/png"), {"Tags": {}}]}
    _create(servers, body)
    assert [len(client.get_json("/series")) for client in servers] == before


@pytest.mark.parametrize("level", ["ParentPatient", "ParentStudy", "ParentSeries"])
def test_parent(servers, level):
    """Attached to an existing patient, study or series: its modules are
    copied (and may not be overridden), in its character set."""
    data = read_sample("Encodings", "Lena-latin1.dcm")
    stored = [client.upload(data) for client in servers]
    parent = stored[0][level]
    assert parent == stored[1][level]
    answers = _create(servers, {"Tags": {"ImageComments": "child", "SeriesDescription": "new"}
                                if level != "ParentSeries" else {"ImageComments": "child"},
                                "Parent": parent})
    assert _stored(servers[0], answers[0]) == _stored(servers[1], answers[1])
    assert answers[0].json()[level] == parent
    _create(servers, {"Tags": {"PatientName": "Override"}, "Parent": parent})
    _create(servers, {"Tags": {"PatientName": "Override"}, "Parent": stored[0]["ID"]})
