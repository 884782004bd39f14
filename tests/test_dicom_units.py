"""Unit tests of orthancd.dicom over the sample files."""
import os

import pytest

from orthancd.dicom import charsets
from orthancd.dicom.dictionary import lookup, tag_name
from orthancd.dicom.json_tags import ContentPathError, content_at, dataset_to_json
from orthancd.dicom.modules import shared_tags_to_json
from orthancd.dicom.reading import DicomFormatError, read_dataset
from orthancd.dicom.main_tags import normalize_for_find
from orthancd.dicom.summary import MissingTagError, compute_expected_instances, summarize
from orthancd.ids import ResourceLevel

SAMPLES = "/work/shared/dicom-samples"


def sample(name):
    return os.path.join(SAMPLES, name)


def all_samples():
    for folder, _, files in os.walk(SAMPLES):
        for name in files:
            yield os.path.join(folder, name)


def test_every_sample_parses_or_is_refused_cleanly():
    parsed = refused = 0
    for path in all_samples():
        try:
            ds = read_dataset(path, stop_before_pixels=True)
            summarize(ds)
            dataset_to_json(ds, "full")
            parsed += 1
        except DicomFormatError as error:
            # Orthanc 1.13.0 says no more than "Inexistent tag" for a missing identifier.
            assert error.details or isinstance(error, MissingTagError)
            refused += 1
    assert parsed >= 238 and refused >= 5


def test_garbage_is_refused_with_orthanc_details():
    with pytest.raises(DicomFormatError) as error:
        read_dataset(b"garbage")
    assert error.value.details == "Cannot parse an invalid DICOM file (size: 7 bytes)"


def test_deeply_nested_sequences_are_refused():
    with pytest.raises(DicomFormatError):
        read_dataset(sample("2026-05-06-Deeply-Nested-Sequence.dcm"), stop_before_pixels=True)


def test_missing_and_empty_uids_are_distinguished():
    with pytest.raises(MissingTagError):
        summarize(read_dataset(sample("Issue196.dcm"), stop_before_pixels=True))
    with pytest.raises(DicomFormatError) as error:
        summarize(read_dataset(sample("ZeissOCT-cfind-query.dcm"), stop_before_pixels=True))
    assert not isinstance(error.value, MissingTagError)
    assert error.value.details == "missing StudyInstanceUID, SeriesInstanceUID or SOPInstanceUID"


def test_bytes_and_path_give_the_same_dataset():
    path = sample("Knee/T1/IM-0001-0001.dcm")
    with open(path, "rb") as f:
        from_bytes = read_dataset(f.read(), stop_before_pixels=True)
    assert dataset_to_json(from_bytes) == dataset_to_json(read_dataset(path))


def test_summary_of_a_ct_slice():
    summary = summarize(read_dataset(sample("Knee/T1/IM-0001-0001.dcm"), stop_before_pixels=True))
    assert summary.transfer_syntax == "1.2.840.10008.1.2.4.91"
    assert summary.main_tags[ResourceLevel.PATIENT]["PatientID"] == summary.patient_id
    assert summary.main_tags[ResourceLevel.INSTANCE]["SOPInstanceUID"] == summary.sop_uid
    assert summary.index_in_series_number == 1


def test_multiframe_number_of_frames():
    summary = summarize(read_dataset(sample("MultiframeWindowing.dcm"), stop_before_pixels=True))
    assert summary.number_of_frames and summary.number_of_frames > 1


def test_expected_instances_rules():
    assert compute_expected_instances({"ImagesInAcquisition": "24"}) is None
    assert compute_expected_instances({"ImagesInAcquisition": "24",
                                       "NumberOfTemporalPositions": "2"}) == 48
    assert compute_expected_instances({"NumberOfSlices": "10", "NumberOfTimeSlices": "3"}) == 30
    assert compute_expected_instances({"CardiacNumberOfImages": "12"}) == 12
    assert compute_expected_instances({"CardiacNumberOfImages": "0"}) is None
    assert compute_expected_instances({"CardiacNumberOfImages": "12 "}) is None


def test_normalize_for_find():
    assert normalize_for_find(" ab_c%d ") == "AB C D"
    assert normalize_for_find("jos\u00e9") == "JOS"


def test_dictionary_names():
    assert tag_name(0x00100010) == "PatientName"
    assert tag_name(0x00101000) == "OtherPatientIDs"
    assert tag_name(0x00090010) == "PrivateCreator"
    assert tag_name(0x00080000) == "GenericGroupLength"
    assert tag_name(0x60023000) == "OverlayData"
    assert tag_name(0x60013000) == "Unknown Tag & Data"
    assert lookup(0x00431028, "GEMS_PARM_01").vr == "OB"


def test_charsets():
    assert charsets.detect_encoding(None, "Latin1") == "Latin1"
    assert charsets.detect_encoding(b"ISO_IR 192", "Latin1") == "Utf8"
    assert charsets.detect_encoding(b"\\ISO 2022 IR 149") == "Korean"
    assert charsets.detect_encoding(b"49") == "Ascii"
    assert charsets.decode(b"caf\xe9", "Latin1") == "caf\u00e9"
    # Orthanc 1.13.0 keeps line feeds when it falls back to ASCII.
    assert charsets.decode(b"a\r\nb\xe9", "Ascii") == "a\nb"


def test_private_tags_carry_their_creator():
    tags = dataset_to_json(read_dataset(sample("PrivateTags.dcm"), stop_before_pixels=True))
    assert tags["6003,0010"] == {"Name": "PrivateCreator", "Type": "String",
                                 "Value": "GEMS_Ultrasound_ImageGroup_001"}
    assert tags["6003,1010"]["Type"] == "Sequence"
    assert tags["7fe0,0010"] == {"Name": "PixelData", "Type": "Null", "Value": None}


def test_too_long_values():
    ds = read_dataset(sample("DummyCTWithLongTag.dcm"), stop_before_pixels=True)
    full = dataset_to_json(ds, "full")
    long_ones = [k for k, v in full.items() if v["Type"] == "TooLong"]
    assert long_ones
    assert all(dataset_to_json(ds, "short")[k] is None for k in long_ones)


def test_content_navigation():
    ds = read_dataset(sample("PrivateTags.dcm"))
    top = content_at(ds, [])
    assert top[0] == "0008-0008" and "7fe0-0010" in top
    assert content_at(ds, ["6003-1010"]) == ["0", "1"]
    assert content_at(ds, ["6003-1010", "0", "0008-0008"]) == b"DERIVED\\SECONDARY "
    assert content_at(ds, ["0028-0010"]) == b"\xe0\x01"
    for bad in (["0028-9999"], ["6003-1010", "5"], ["0010-0020", "0"], ["zz"]):
        with pytest.raises(ContentPathError):
            content_at(ds, bad)


def test_shared_tags_keep_identical_strings_only():
    first = read_dataset(sample("Brainix/Flair/IM-0001-0001.dcm"), stop_before_pixels=True)
    second = read_dataset(sample("Brainix/Flair/IM-0001-0002.dcm"), stop_before_pixels=True)
    shared = shared_tags_to_json([first, second], "short")
    assert "0020,000e" in shared and "0008,0018" not in shared
    assert "7fe0,0010" not in shared
