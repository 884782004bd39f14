"""The quick header reading of the ingest path (orthancd.dicom.header_scan)
against the full one (reading.read_dataset + summarize): on every sample
file, and on damaged copies of them, the quick reading either steps aside
(None) or gives exactly what the full reading gives; it never takes a file
the full reading refuses."""
import io
import random

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from orthancd.dicom import header_scan
from orthancd.dicom.reading import read_dataset
from orthancd.dicom.summary import summarize
from tests.support.daemon import sample_files

def full_reading(data, encoding="Latin1"):
    """(summary, (pixel data offset, VR)), or the refusal's exception type."""
    try:
        dataset = read_dataset(data, stop_before_pixels=True)
        summary = summarize(dataset, encoding)
    except Exception as e:
        return type(e)
    return summary, (dataset.pixel_data_offset, dataset.pixel_data_vr)


def assert_same_or_none(data, encoding="Latin1"):
    """True when the quick reading took the file (and agreed)."""
    quick = header_scan._summary_of(data, encoding)
    if quick is None:
        return False
    full = full_reading(data, encoding)
    assert not isinstance(full, type), "the quick reading took a file the full one refuses"
    summary, facts = quick
    assert summary == full[0]
    assert (facts.pixel_data_offset, facts.pixel_data_vr) == full[1]
    return True


def test_every_sample_file_reads_the_same():
    taken = 0
    for path in sample_files():
        with open(path, "rb") as f:
            data = f.read()
        taken += assert_same_or_none(data)
        # Both readings of a file on disk (a mapping) too.
        quick = header_scan._quick_summary(path, "Latin1")
        assert quick is None or quick[0] == full_reading(data)[0]
    # Most real files are plain enough (with sequences, private tags,
    # implicit VR, compressed pixel data...).
    assert taken > 200


def test_default_encoding_is_honoured():
    for path in sample_files()[:60]:
        with open(path, "rb") as f:
            data = f.read()
        assert_same_or_none(data, "Japanese")


@pytest.mark.parametrize("seed", range(4))
def test_damaged_copies_are_refused_or_read_the_same(seed):
    """Cut short, bytes changed: whatever the quick reading takes, the full
    reading takes the same way (or the quick one leaves it to the full)."""
    rng = random.Random(seed)
    files = sample_files()
    for path in rng.sample(files, 40):
        with open(path, "rb") as f:
            data = f.read()[:200000]
        for _ in range(12):
            damaged = bytearray(data)
            if rng.random() < 0.4:
                damaged = damaged[:rng.randrange(132, len(damaged) + 1)]
            else:
                for _ in range(rng.randrange(1, 4)):
                    where = rng.randrange(132, min(len(damaged), 4000))
                    damaged[where] = rng.randrange(256)
            assert_same_or_none(bytes(damaged))


def _file(dataset, syntax):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    dataset.file_meta = meta
    out = io.BytesIO()
    dataset.save_as(out, implicit_vr=syntax == ImplicitVRLittleEndian,
                    little_endian=True, enforce_file_format=True)
    return out.getvalue()


def _dataset():
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Quick^Reading"
    ds.PatientID = "QR1"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.InstanceNumber = "7"
    item = Dataset()
    item.RequestedProcedureID = "RP1"
    item.ScheduledProcedureStepID = "SPS\xe91"
    ds.RequestAttributesSequence = Sequence([item])  # a main tag that is a sequence
    nested = Dataset()
    nested.CodeValue = "X"
    nested.CodeMeaning = "\xe9t\xe9"
    ds.ProcedureCodeSequence = Sequence([nested])
    ds.Rows, ds.Columns, ds.BitsAllocated = 2, 2, 16
    ds.PixelData = bytes(8)
    return ds


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_sequences_charsets_and_pixel_facts(syntax):
    data = _file(_dataset(), syntax)
    assert assert_same_or_none(data)
    summary, facts = header_scan._summary_of(data, "Latin1")
    assert summary.main_sequences  # RequestAttributesSequence
    assert facts.pixel_data_offset == data.index(b"\xe0\x7f\x10\x00")


def test_pixel_data_written_with_an_unexpected_vr():
    ds = _dataset()
    ds.BitsAllocated = 8
    ds.add_new(0x7FE00010, "OW", bytes(8))  # OB is what 8-bit pixels take
    data = _file(ds, ExplicitVRLittleEndian)
    assert assert_same_or_none(data)
    assert header_scan._summary_of(data, "Latin1")[1].pixel_data_vr == "OW"


def test_what_it_leaves_to_the_full_reading():
    plain = _file(_dataset(), ExplicitVRLittleEndian)
    # No preamble.
    assert header_scan.scan_header(plain[128:]) is None
    # Big endian (the meta group says so).
    big = plain.replace(ExplicitVRLittleEndian.encode(), b"1.2.840.10008.1.2.2\x00")
    assert header_scan.scan_header(big) is None
    # Missing identifiers: the full reading's error, not the quick one's.
    ds = _dataset()
    del ds.SeriesInstanceUID
    assert header_scan._summary_of(_file(ds, ExplicitVRLittleEndian), "Latin1") is None
    # Cut inside the pixel data.
    assert header_scan.scan_header(plain[:-3]) is None
    # Elements out of order.
    ds = _dataset()
    data = bytearray(_file(ds, ExplicitVRLittleEndian))
    name = data.index(b"\x10\x00\x10\x00PN")
    identifier = data.index(b"\x10\x00\x20\x00LO")
    data[name:name + 4], data[identifier:identifier + 4] = (data[identifier:identifier + 4],
                                                            data[name:name + 4])
    assert header_scan.scan_header(bytes(data)) is None


def test_the_ingest_path_reads_plain_files_quickly_and_others_fully(tmp_path):
    plain = _file(_dataset(), ExplicitVRLittleEndian)
    summary, header = header_scan.read_instance_header(plain, "Latin1", dataset_needed=False)
    assert isinstance(header, header_scan.HeaderFacts)
    summary_full, dataset = header_scan.read_instance_header(plain, "Latin1")
    assert isinstance(dataset, pydicom.dataset.Dataset) and summary_full == summary
    path = tmp_path / "plain.dcm"
    path.write_bytes(plain)
    assert header_scan.read_instance_header(str(path), "Latin1", False)[0] == summary
    # Without its preamble: read fully.
    summary_bare, header = header_scan.read_instance_header(plain[132:], "Latin1",
                                                            dataset_needed=False)
    assert isinstance(header, pydicom.dataset.Dataset) and summary_bare.ids == summary.ids
