"""Unit tests of the tag renderings' building blocks (no server).  The
expected values are those the live Orthanc 1.13.0 gives in
tests/test_tags_parity.py and tests/test_tags_crafted_parity.py."""
import struct

import pytest

from orthancd.dicom import charsets, dictionary
from orthancd.dicom.dicomweb import _string_values, dicomweb_to_xml, format_float
from orthancd.dicom.elements import decode_numbers, is_misaligned, little_endian_bytes
from orthancd.rest import jsonfmt


def test_utf8_skips_like_boost():
    # A bad continuation byte is consumed with the lead byte.
    assert charsets.decode(b"a\xe9\\b", "Utf8") == "ab"
    assert charsets.decode(b"\xc3\xa9t\xc3\xa9", "Utf8") == "\u00e9t\u00e9"
    assert charsets.decode(b"\xed\xa0\x80x", "Utf8") == "x"  # surrogate
    assert charsets.decode(b"\xc0\xafz", "Utf8") == "z"  # overlong


def test_korean_is_windows_949():
    assert charsets.decode(b"\xb0\xa1", "Korean") == "\uac00"
    assert charsets.decode(b"\x80\xff", "Korean") == "\x80\uf8f7"
    assert charsets.decode(b"\xc9\xa1\xfe\xa1", "Korean") == "\ue000\ue05e"
    assert charsets.decode(b"\xb0\\c", "Korean") == "c"  # invalid pair in the trail range
    assert charsets.decode(b"\xb0\x20c", "Korean") == " c"


def test_gb18030_2022_mappings():
    assert charsets.decode(b"\xa6\xd9", "Chinese") == "\ufe10"
    assert charsets.decode(b"\x84\x31\x82\x36", "Chinese") == "\ue78d"
    assert charsets.decode(b"\x82\x30", "Chinese") == "0"


def test_thai_has_no_c1_controls():
    assert charsets.decode(b"\x80\xa1", "Thai") == "\u0e01"


def test_shift_jis_lists_are_split_on_backslashes():
    assert charsets.decode(b"\x82\xa0\\~", "Japanese", split_values=True) == "\u3042\\\u203e"
    assert charsets.decode(b"\x82\xa0\\~", "Japanese") == "\u3042\u00a5\u203e"


def test_code_extensions():
    extended = charsets.detect_charset(b"ISO 2022 IR 100\\ISO 2022 IR 87")
    assert extended == charsets.Charset("Latin1", True)
    assert charsets.decode(b"a\x1b(Bb\x1b0c\x1bNd\x0e", extended) == "ab\x1b0cd"
    assert charsets.decode(b"a\x1b(Bb", "Latin1") == "a\x1b(Bb"
    assert charsets.detect_charset(b"FOO\\ISO_IR 100") == charsets.Charset("Ascii", True)


def test_ascii_keeps_line_feeds():
    assert charsets.to_ascii(b"a\tb\nc\x7f\xe9") == "ab\nc"


def test_numbers_with_odd_lengths():
    assert decode_numbers(b"\x01\x02\x03", "US") == "513\\3"
    assert decode_numbers(bytes(range(1, 10)), "SL") == "67305985"
    assert decode_numbers(b"", "FL") is None
    assert decode_numbers(b"", "OL") == ""
    assert decode_numbers(struct.pack("<f", 1e-7), "OF") == "1.00000001e-07"
    assert decode_numbers(struct.pack("<f", 1e-7), "FL") == "1.0000000116860974e-07"
    assert decode_numbers(struct.pack("<4H", 0x54, 0x10, 0x54, 0x20), "AT") == \
        "0054,0010\\0054,0020"
    assert is_misaligned(6, "OL") and is_misaligned(5, "AT") and not is_misaligned(7, "OL")
    assert not is_misaligned(5, "FL")


def test_big_endian_values_are_sent_little_endian():
    assert little_endian_bytes(b"\x01\xe0", "US", False) == b"\xe0\x01"
    assert little_endian_bytes(b"\x01\xe0", "OB", False) == b"\x01\xe0"


def test_dicomweb_values():
    assert _string_values("IS", "12\\ -3\\\\x1\\4294967296\\-2147483649") == [12, -3, None, 0,
                                                                             2147483647]
    assert _string_values("DS", "5.\\.\\abc\\1e3") == ["5", None, "1e3"]
    assert _string_values("PN", "A^B=C\\\\=x") == [{"Alphabetic": "A^B", "Ideographic": "C"}, {},
                                                   {"Alphabetic": "", "Ideographic": "x"}]
    assert format_float(4.68) == "4.6799999999999997"
    assert format_float(float("nan")) == "null"
    assert format_float(float("-inf")) == "-1e+9999"


def test_dicomweb_xml():
    model = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "A^B"}]},
             "00291000": {"vr": "FD", "Value": [4.68, None]},
             "00291001": {"vr": "SQ", "Value": [{}]}}
    xml = dicomweb_to_xml(model)
    assert '<DicomAttribute tag="00100010" vr="PN" keyword="PatientName">' in xml
    assert "<FamilyName>A</FamilyName>" in xml and "<GivenName>B</GivenName>" in xml
    assert '<Value number="1">4.67999983</Value>' in xml and '<Value number="2" />' in xml
    assert '<Item number="1" />\n    <Value number="1" />' in xml
    assert xml.endswith("</NativeDicomModel>\n")


def test_json_keeps_delete_raw():
    assert jsonfmt.dumps("a\x7fb\x01\\u007f") == '"a\x7fb\\u0001\\\\u007f"'


def test_dictionary_entries():
    entries = dictionary.parse_configured({
        "7053,03": ["ST", "OriginalImageFileName", 1, 1, "Philips PET Private Group"],
        "70531009": ["DS", "WithoutCreator", 1]})
    assert [(hex(tag), entry.name, creator) for tag, entry, creator in entries] == [
        ("0x70530003", "OriginalImageFileName", "Philips PET Private Group"),
        ("0x70531009", "WithoutCreator", "")]
    for bad in ({"7053,03": ["ST", "TwoItems"]}, {"0018,1000": ["LO", "Known", 1, 1]},
                {"0018,1000": ["LO", "Even", 1, 1, "X"]}, {"7053,03": ["XX", "VR", 1, 1]},
                {"7053,03": ["ST", "Zero", 0, 0]}, {"zz": ["ST", "Tag", 1, 1]}):
        with pytest.raises(dictionary.DictionaryError):
            dictionary.parse_configured(bad)
