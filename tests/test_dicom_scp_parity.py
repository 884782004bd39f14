"""orthancd's DICOM SCP against the live Orthanc 1.13.0: C-FIND answers byte
for byte, C-MOVE/C-GET outcomes and counts, C-STORE of a file twice, and the
presentation contexts each accepts.

Both servers get the same samples, then the same requests from pynetdicom;
what comes back must agree (RetrieveAETitle, which names each server, is
left out).  The transcoding of JPEG 2000 is left out too: orthancd can
decode it, the oracle cannot.  Encodings/ISO_IR13.dcm is left out: its
multi-valued numbers are indexed with YEN SIGNs for separators (the
Shift-JIS decoding of orthancd.dicom), which 1.13.0 keeps as backslashes.
"""
import glob
import io
import os
import time

import pydicom
import pydicom.errors
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pynetdicom import AE, evt
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (
    CTImageStorage, MRImageStorage,
    PatientRootQueryRetrieveInformationModelFind as PATIENT_FIND,
    PatientRootQueryRetrieveInformationModelMove as PATIENT_MOVE,
    StudyRootQueryRetrieveInformationModelFind as STUDY_FIND,
    StudyRootQueryRetrieveInformationModelGet as STUDY_GET,
    StudyRootQueryRetrieveInformationModelMove as STUDY_MOVE)

from orthancd.dicom.summary import MAIN_DICOM_TAGS
from tests.support import oracle
from tests.support.daemon import Daemon, free_port, sample
from tests.support.dicom_peers import (
    StorageScp, associate, find_raw, retrieve_statuses)

CONFIG = {"DicomAlwaysAllowFind": True, "DicomAlwaysAllowMove": True,
          "DicomAlwaysAllowGet": True}
PATTERNS = ("Brainix/*/*", "Knee/*/*", "Encodings/*.dcm", "DummyCT.dcm", "PrivateTags.dcm",
            "Issue140.dcm")
MULTI_CLASS_STUDY = "1.2.826.0.1.3680043.99.1"
KNEE_STUDY = "2.16.840.1.113669.632.20.121711.10000160881"
KNEE_SERIES = "1.3.46.670589.11.17521.5.0.3124.2008081908564160709"
KNEE_INSTANCE = "1.3.46.670589.11.17521.5.0.3124.2008081908573721714"
BRAINIX_STUDY = "2.16.840.1.113669.632.20.1211.10000357775"
BRAINIX_SERIES = "1.3.46.670589.11.0.0.11.4.2.0.8743.5.5396.2006120114314125550"
PRIVATE_TAGS_INSTANCE = "1.2.840.113619.2.115.147416.1094281639.0.38"
ISSUE140_INSTANCE = "1.2.276.0.7230010.3.1.4.2942521726.11656.1556654942.33"


def _multi_class_study():
    """Three series of one study with three SOP classes (for SOPClassesInStudy)."""
    dataset = pydicom.dcmread(sample("DummyCT.dcm"))
    dataset.PatientID, dataset.PatientName = "MULTI", "MULTI^CLASS"
    dataset.StudyInstanceUID = MULTI_CLASS_STUDY
    files = []
    for index, (sop_class, modality) in enumerate((("1.2.840.10008.5.1.4.1.1.4", "MR"),
                                                    ("1.2.840.10008.5.1.4.1.1.2", "CT"),
                                                    ("1.2.840.10008.5.1.4.1.1.7", "OT"))):
        dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = sop_class
        dataset.SOPInstanceUID = "%s.%d.1" % (MULTI_CLASS_STUDY, index)
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.SeriesInstanceUID = "%s.%d" % (MULTI_CLASS_STUDY, index)
        dataset.Modality = modality
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        files.append(buffer.getvalue())
    return files


@pytest.fixture(scope="module")
def peers():
    scps = {"SINK": StorageScp("SINK"), "WARN": StorageScp("WARN", 0xB000),
            "FAIL": StorageScp("FAIL", 0xA700)}
    return scps


@pytest.fixture(scope="module")
def servers(tmp_path_factory, peers):
    modalities = {name.lower(): [name, "127.0.0.1", scp.port] for name, scp in peers.items()}
    modalities["down"] = ["DOWN", "127.0.0.1", free_port()]
    modalities["vitrea"] = {"AET": "VITREA", "Host": "127.0.0.1", "Port": free_port(),
                            "Manufacturer": "Vitrea"}
    config = dict(CONFIG, DicomModalities=modalities)
    ours = Daemon(tmp_path_factory.mktemp("orthancd"), **config)
    real = oracle.RealOrthanc(tmp_path_factory.mktemp("oracle"), **config)
    ours.start()
    real.start()
    try:
        files = []
        for pattern in PATTERNS:
            for path in sorted(glob.glob(sample(pattern))):
                if os.path.isfile(path) and not path.endswith("ISO_IR13.dcm"):
                    with open(path, "rb") as f:
                        files.append(f.read())
        files.extend(_multi_class_study())
        for client in (ours.client(), real.client()):
            for data in files:
                assert client.post("/instances", data).status == 200
        yield ours, real
    finally:
        ours.stop()
        real.stop()
        for scp in peers.values():
            scp.stop()


def both(servers, call):
    ours, real = servers
    return call(real.dicom_port, "ORACLE"), call(ours.dicom_port, "ORTHANCD")


# -- C-FIND ------------------------------------------------------------------

def _raw(dataset, tag, vr, value):
    data = value.encode("latin-1") if isinstance(value, str) else value
    if len(data) % 2:
        data += b" "
    dataset[tag] = RawDataElement(Tag(tag), vr, len(data), data, 0, False, True)


def _query(level, *tags, **values):
    """A C-FIND identifier asking for ``tags`` (universal matching) and
    matching ``values`` (keyword or 0xggggeeee -> str, or (VR, raw))."""
    dataset = Dataset()
    dataset.QueryRetrieveLevel = level
    for tag in tags:
        vr = dictionary_VR(tag)
        dataset.add_new(tag, vr.split(" or ")[0], Sequence() if vr == "SQ" else None)
    for key, value in values.items():
        tag = int(key[1:], 16) if key.startswith("x") else Tag(key)
        if isinstance(value, tuple):
            _raw(dataset, tag, *value)
        elif isinstance(value, Sequence):
            dataset.add_new(tag, "SQ", value)
        else:
            _raw(dataset, tag, dictionary_VR(tag).split(" or ")[0], value)
    return dataset


def _item(**values):
    item = Dataset()
    for key, value in values.items():
        setattr(item, key, value)
    return item


ALL_MAIN_TAGS = sorted({tag for tags in MAIN_DICOM_TAGS.values() for tag in tags})
COMPUTED = (0x00080061, 0x00201200, 0x00201202, 0x00201204, 0x00201206, 0x00201208, 0x00201209)
OTHER_TAGS = (0x00101030, 0x00080008, 0x00180050, 0x00280030, 0x00280010, 0x00080016,
              0x00281050, 0x00100021, 0x00280106)

CFIND = {
    # every main, computed and a few other tags, at every level
    "patient-all": ("P", _query("PATIENT", *ALL_MAIN_TAGS, *COMPUTED, *OTHER_TAGS)),
    "study-all": ("S", _query("STUDY", *ALL_MAIN_TAGS, *COMPUTED, 0x00080062, *OTHER_TAGS)),
    "series-all": ("S", _query("SERIES", *ALL_MAIN_TAGS, *COMPUTED, 0x00080062, *OTHER_TAGS)),
    "image-all": ("S", _query("IMAGE", *ALL_MAIN_TAGS, *COMPUTED, *OTHER_TAGS)),
    # matching
    "wildcards": ("S", _query("STUDY", 0x00100010, StudyDescription="*GENOU", PatientName="?N*")),
    "wildcard-on-uid": ("S", _query("SERIES", SeriesInstanceUID="1.3*")),
    "wildcard-on-is": ("S", _query("SERIES", SeriesNumber=("IS", "4*"))),
    "date-range": ("S", _query("STUDY", 0x00100010, StudyDate="20060101-20071231")),
    "open-ranges": ("S", _query("STUDY", 0x00080020, StudyTime="080000-",
                                PatientBirthDate="-20000101")),
    "list": ("S", _query("STUDY", 0x00100020, PatientName="KNIX\\BRAINIX")),
    "case-of-pn": ("S", _query("STUDY", PatientName="knix")),
    "leading-space": ("S", _query("STUDY", PatientID=" ozp00SjY2xG")),
    "trailing-spaces": ("S", _query("STUDY", PatientID=("LO", b"ozp00SjY2xG   "))),
    "accession": ("S", _query("IMAGE", 0x00080018, AccessionNumber="A10003245599")),
    "numbers": ("S", _query("IMAGE", 0x00280010, 0x00280011, PatientName="KNIX",
                            Rows=("US", b"\x00\x02"))),
    # computed tags as constraints
    "modalities-in-study": ("S", _query("STUDY", 0x00080061, ModalitiesInStudy="MR\\CT")),
    "modalities-at-series": ("S", _query("SERIES", ModalitiesInStudy="MR")),
    "sop-classes-in-study": ("S", _query("STUDY", 0x00080062,
                                         SOPClassesInStudy="1.2.840.10008.5.1.4.1.1.2")),
    "sop-classes-list": ("S", _query("STUDY", 0x00080062,
                                     SOPClassesInStudy="1.2.840.10008.5.1.4.1.1.2\\1.2.3")),
    "sop-classes-at-image": ("S", _query("IMAGE", 0x00080062, PatientName="KNIX")),
    # sequences, private tags, odd elements
    "sequences": ("S", _query("IMAGE", 0x00081140, 0x00089215, 0x00081110, PatientName="KNIX")),
    "sequence-with-item": ("S", _query("STUDY", PatientName="KNIX",
                                       ReferencedStudySequence=Sequence(
                                           [_item(ReferencedSOPClassUID="1.2")]))),
    "private-tags": ("S", _query("IMAGE", x43210010=("LO", b""), x43211010=("UN", b""),
                                 SOPInstanceUID=ISSUE140_INSTANCE)),
    "private-sequence": ("S", _query("IMAGE", x60031010=("UN", b""),
                                     SOPInstanceUID=PRIVATE_TAGS_INSTANCE)),
    "group-lengths-and-meta": ("S", _query("STUDY", 0x00020010, PatientName="KNIX",
                                           x00080000=("UL", b"\x10\x00\x00\x00"),
                                           x00100000=("UL", b"\x08\x00\x00\x00"))),
    "pixel-data": ("S", _query("STUDY", 0x7FE00010, PatientName="KNIX")),
    # character sets
    "utf8-query": ("P", _query("PATIENT", 0x00100010, SpecificCharacterSet="ISO_IR 192",
                               PatientName=("PN", "Test-éüäöò".encode("utf-8")))),
    "latin1-query": ("P", _query("PATIENT", 0x00100020, PatientName="Test-éüäöò")),
    # levels
    "patient-root-study": ("P", _query("STUDY", 0x0020000D, PatientName="KNIX")),
    "lowercase-level": ("S", _query("Study", PatientName="KNIX")),
    "bad-level": ("S", _query("FOO", PatientName="KNIX")),
}


@pytest.mark.parametrize("name", sorted(CFIND))
def test_cfind_answers_like_orthanc(servers, name):
    model, query = CFIND[name]
    model = PATIENT_FIND if model == "P" else STUDY_FIND
    reference, mine = both(servers, lambda port, aet: find_raw(port, aet, query, model))
    assert mine == reference


def test_cfind_with_private_creators_like_orthanc(servers):
    """Private creators (such as the one a Vitrea puts in its queries) do
    not constrain the answers.  (The VR of an absent creator in the answers
    is left out: 1.13.0 answers LO here, UN elsewhere.)"""
    query = _query("STUDY", 0x00100020, PatientName="KNIX",
                   x56530010=("LO", b"Vital Images SW 3.4"))
    for calling in ("VITREA", "FINDSCU"):
        reference, mine = both(servers, lambda port, aet: find_raw(
            port, aet, query, STUDY_FIND, ignored=(0x00080054, 0x56530010), calling=calling))
        assert mine == reference, calling
        assert len(reference[1]) == 1


def test_cfind_without_level_like_orthanc(servers):
    query = Dataset()
    query.PatientName = "KNIX"
    reference, mine = both(servers, lambda port, aet: find_raw(port, aet, query, STUDY_FIND))
    assert mine == reference == ("0xc000", [])


# -- C-MOVE and C-GET ----------------------------------------------------------

def _identifier(level=None, **values):
    dataset = Dataset()
    if level is not None:
        dataset.QueryRetrieveLevel = level
    for key, value in values.items():
        setattr(dataset, key, value)
    return dataset


CMOVE = {
    "study": (_identifier("STUDY", StudyInstanceUID=KNEE_STUDY), "SINK"),
    "study-by-accession": (_identifier("STUDY", AccessionNumber="A10003245599"), "SINK"),
    "accession-lowercase": (_identifier("STUDY", AccessionNumber="a10003245599"), "SINK"),
    "empty-accession-and-uid": (_identifier("STUDY", AccessionNumber="",
                                            StudyInstanceUID=KNEE_STUDY), "SINK"),
    "unknown-accession-and-uid": (_identifier("STUDY", AccessionNumber="nope",
                                              StudyInstanceUID=KNEE_STUDY), "SINK"),
    "patient": (_identifier("PATIENT", PatientID="887"), "SINK"),
    "patient-id-case": (_identifier("PATIENT", PatientID="OZP00SJY2XG"), "SINK"),
    "patient-id-leading-space": (_identifier("PATIENT", PatientID=" ozp00SjY2xG"), "SINK"),
    "series": (_identifier("SERIES", SeriesInstanceUID=KNEE_SERIES), "SINK"),
    "instance": (_identifier("IMAGE", SOPInstanceUID=KNEE_INSTANCE), "SINK"),
    "instance-as-INSTANCE": (_identifier("INSTANCE", SOPInstanceUID=KNEE_INSTANCE), "SINK"),
    "uid-list-with-duplicate": (_identifier(
        "SERIES", SeriesInstanceUID=[KNEE_SERIES, KNEE_SERIES, "1.2.3"]), "SINK"),
    "no-level-instance": (_identifier(SOPInstanceUID=KNEE_INSTANCE), "SINK"),
    "no-level-accession": (_identifier(AccessionNumber="A10003245599"), "SINK"),
    "no-level-empty-sop": (_identifier(SOPInstanceUID="", StudyInstanceUID=KNEE_STUDY), "SINK"),
    "no-level-no-key": (_identifier(PatientName="KNEE"), "SINK"),
    "missing-key": (_identifier("STUDY", PatientID="887"), "SINK"),
    "series-by-study": (_identifier("SERIES", StudyInstanceUID=KNEE_STUDY), "SINK"),
    "unknown-uid": (_identifier("STUDY", StudyInstanceUID="1.2.3.4"), "SINK"),
    "wildcard": (_identifier("STUDY", StudyInstanceUID="2.16.*"), "SINK"),
    "bad-level": (_identifier("FOO", SOPInstanceUID=KNEE_INSTANCE), "SINK"),
    "unknown-destination": (_identifier("STUDY", StudyInstanceUID=KNEE_STUDY), "NOBODY"),
    "destination-lowercase": (_identifier("SERIES", SeriesInstanceUID=KNEE_SERIES), "sink"),
    "destination-down": (_identifier("SERIES", SeriesInstanceUID=KNEE_SERIES), "DOWN"),
    "destination-warns": (_identifier("SERIES", SeriesInstanceUID=KNEE_SERIES), "WARN"),
    "destination-fails": (_identifier("SERIES", SeriesInstanceUID=KNEE_SERIES), "FAIL"),
}


@pytest.mark.parametrize("name", sorted(CMOVE))
def test_cmove_like_orthanc(servers, peers, name):
    identifier, destination = CMOVE[name]
    model = PATIENT_MOVE if identifier.get("QueryRetrieveLevel") == "PATIENT" else STUDY_MOVE

    def move(port, aet):
        for scp in peers.values():
            scp.clear()
        association = associate(port, aet, [model])
        statuses = retrieve_statuses(association.send_c_move(identifier, destination, model))
        if association.is_established:
            association.release()
        time.sleep(0.2)
        return statuses, sorted(peers["SINK"].received)

    reference, mine = both(servers, move)
    assert mine == reference


CGET = {
    "series": (_identifier("SERIES", SeriesInstanceUID=BRAINIX_SERIES), 0x0000),
    "study-by-accession": (_identifier("STUDY", AccessionNumber="0"), 0x0000),
    "warnings": (_identifier("SERIES", SeriesInstanceUID=BRAINIX_SERIES), 0xB000),
    "failures": (_identifier("SERIES", SeriesInstanceUID=BRAINIX_SERIES), 0xA700),
    "mixed": (_identifier("SERIES", SeriesInstanceUID=BRAINIX_SERIES),
              lambda n: (0x0000, 0xB000, 0xA700)[n % 3]),
    "no-level": (_identifier(SeriesInstanceUID=BRAINIX_SERIES), 0x0000),
    "unknown": (_identifier("SERIES", SeriesInstanceUID="1.2.3"), 0x0000),
    "missing-key": (_identifier("SERIES", PatientID="5Yp0E"), 0x0000),
}


@pytest.mark.parametrize("name", sorted(CGET))
def test_cget_like_orthanc(servers, name):
    identifier, store_status = CGET[name]

    def get(port, aet):
        received = []

        def stored(event):
            received.append(str(event.request.AffectedSOPInstanceUID))
            return store_status(len(received)) if callable(store_status) else store_status

        association = associate(
            port, aet, [STUDY_GET, (MRImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])],
            roles=[MRImageStorage], handlers=[(evt.EVT_C_STORE, stored)])
        statuses = retrieve_statuses(association.send_c_get(identifier, STUDY_GET))
        if association.is_established:
            association.release()
        return statuses, sorted(received)

    reference, mine = both(servers, get)
    assert mine == reference


def test_cget_without_storage_context_like_orthanc(servers):
    """No context for the instances' SOP class: Orthanc fails the C-GET."""
    def get(port, aet):
        association = associate(port, aet, [STUDY_GET, (CTImageStorage, ["1.2.840.10008.1.2"])],
                                roles=[CTImageStorage])
        statuses = retrieve_statuses(association.send_c_get(
            _identifier("SERIES", SeriesInstanceUID=BRAINIX_SERIES), STUDY_GET))
        if association.is_established:
            association.release()
        return statuses

    reference, mine = both(servers, get)
    assert mine == reference


# -- C-STORE -------------------------------------------------------------------

def test_storing_a_file_twice_like_orthanc(servers):
    path = sample("Phenix", "IM-0001-0001.dcm")
    dataset = pydicom.dcmread(path)

    def store_twice(port, aet):
        server = servers[0] if aet == "ORTHANCD" else servers[1]
        client = server.client()
        last = client.get_json("/changes?last")["Last"]
        statuses = []
        for _ in range(2):
            association = associate(port, aet, [(dataset.SOPClassUID,
                                                 [dataset.file_meta.TransferSyntaxUID])])
            status = association.send_c_store(dataset)
            statuses.append("0x%04x" % status.Status)
            association.release()
        changes = [(c["ChangeType"], c["ResourceType"]) for c in client.get_json(
            "/changes?since=%d" % last)["Changes"] if not c["ChangeType"].startswith("Stable")]
        counts = {k: v for k, v in client.get_json("/statistics").items()
                  if k.startswith("Count")}
        return statuses, changes, counts

    reference, mine = both(servers, store_twice)
    assert mine == reference


TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.100",
    "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.110",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.204", "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.6.1", "1.2.840.10008.1.2.8.1", "1.2.3.4"]
CLASSES = ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.77.1.6", "1.2.840.10008.1.1",
           "1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.1.2",
           "1.2.840.10008.5.1.4.1.2.2.3", "1.2.3.4.5.6.7", "1.3.12.2.1107.5.9.1",
           "1.2.840.10008.5.1.4.31"]


def negotiated(port, aet, calling="PROBE"):
    """For each SOP class: the syntaxes accepted one by one, and the one
    chosen among several in the requestor's orders."""
    outcome = {}
    orders = (TRANSFER_SYNTAXES, list(reversed(TRANSFER_SYNTAXES)),
              ["1.2.840.10008.1.2.2", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
    for sop_class in CLASSES:
        contexts = [build_context(sop_class, [syntax]) for syntax in TRANSFER_SYNTAXES]
        contexts += [build_context(sop_class, order) for order in orders]
        ae = AE(ae_title=calling)
        ae.requested_contexts = contexts
        association = ae.associate("127.0.0.1", port, ae_title=aet)
        if not association.is_established:
            outcome[sop_class] = "rejected"
            continue
        accepted = {c.context_id: c.transfer_syntax[0] for c in association.accepted_contexts}
        outcome[sop_class] = [accepted.get(2 * i + 1) for i in range(len(contexts))]
        association.release()
    return outcome


def test_negotiation_like_orthanc(servers):
    reference, mine = both(servers, negotiated)
    assert mine == reference


@pytest.mark.parametrize("config", [
    {"AcceptedTransferSyntaxes": ["1.2.840.10008.1.2", "1.2.840.10008.1.2.4.5*"],
     "JpegTransferSyntaxAccepted": False, "Jpeg2000TransferSyntaxAccepted": True,
     "UnknownSopClassAccepted": True},
    {"AcceptedTransferSyntaxes": "1.2.840.10008.1.2.4.*", "RleTransferSyntaxAccepted": True,
     "DicomAlwaysAllowStore": False, "DicomAlwaysAllowEcho": False,
     "DicomModalities": {"probe": {"AET": "PROBE", "Host": "127.0.0.1", "Port": 1,
                                   "AllowFind": False, "AllowStore": False}}},
    {"AcceptedSopClasses": ["1.2.840.10008.5.1.4.1.1.*", "1.3.12.2.1107.5.9.1"],
     "RejectedSopClasses": ["1.2.840.10008.5.1.4.1.1.?"], "UnknownSopClassAccepted": True},
], ids=["restricted-syntaxes", "compressed-only-known-aet", "sop-classes"])
def test_accepted_syntaxes_like_orthanc(tmp_path, config):
    (tmp_path / "o").mkdir()
    (tmp_path / "u").mkdir()
    real = oracle.RealOrthanc(tmp_path / "o", **config).start()
    ours = Daemon(tmp_path / "u", **config).start()
    try:
        reference, mine = both((ours, real), negotiated)
        assert mine == reference
        # A C-STORE of each compressed sample: accepted, stored, or refused alike.
        outcomes = []
        for path in sorted(glob.glob(sample("TransferSyntaxes", "*.dcm"))):
            try:
                dataset = pydicom.dcmread(path)
            except pydicom.errors.InvalidDicomError:
                continue  # not a Part-10 file: nothing to send
            if "TransferSyntaxUID" not in dataset.file_meta or "SOPClassUID" not in dataset:
                continue
            outcome = []
            for server, aet in ((real, "ORACLE"), (ours, "ORTHANCD")):
                association = associate(server.dicom_port, aet, [(
                    dataset.SOPClassUID, [dataset.file_meta.TransferSyntaxUID])], calling="PROBE")
                if association.is_established and association.accepted_contexts:
                    status = association.send_c_store(dataset)
                    outcome.append("0x%04x" % status.Status if "Status" in status else "none")
                    if association.is_established:
                        association.release()
                else:
                    outcome.append("no context")
                    if association.is_established:
                        association.release()
            outcomes.append((os.path.basename(path), outcome[0] == outcome[1], outcome))
        assert all(same for _, same, _ in outcomes), outcomes
    finally:
        ours.stop()
        real.stop()


def test_overwriting_like_orthanc(tmp_path):
    """With OverwriteInstances, a second copy (same or changed) replaces the
    first: statuses, changes and counts as 1.13.0 reports them."""
    (tmp_path / "o").mkdir()
    (tmp_path / "u").mkdir()
    real = oracle.RealOrthanc(tmp_path / "o", OverwriteInstances=True).start()
    ours = Daemon(tmp_path / "u", OverwriteInstances=True).start()
    path = sample("Phenix", "IM-0001-0001.dcm")
    original = pydicom.dcmread(path)
    changed = pydicom.dcmread(path)
    changed.InstanceNumber = "77"
    with open(path, "rb") as f:
        data = f.read()
    try:
        outcomes = []
        for server, aet in ((real, "ORACLE"), (ours, "ORTHANCD")):
            client = server.client()
            last = client.get_json("/changes?last")["Last"]
            statuses = [client.post("/instances", data).json()["Status"] for _ in range(2)]
            association = associate(server.dicom_port, aet, [(
                original.SOPClassUID, [original.file_meta.TransferSyntaxUID])])
            for dataset in (changed, original):
                statuses.append("0x%04x" % association.send_c_store(dataset).Status)
            association.release()
            changes = [(c["ChangeType"], c["ResourceType"]) for c in client.get_json(
                "/changes?since=%d" % last)["Changes"] if not c["ChangeType"].startswith("Stable")]
            counts = {k: v for k, v in client.get_json("/statistics").items()
                      if k.startswith("Count")}
            outcomes.append((statuses, changes, counts))
        assert outcomes[1] == outcomes[0]
    finally:
        ours.stop()
        real.stop()
