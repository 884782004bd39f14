"""Unit tests of the find matching semantics (Orthanc 1.10.1's DatabaseLookup)."""
import pytest

from orthancd.errors import ErrorCode, OrthancError
from orthancd.find import constraints as C
from orthancd.find import parse_dicom_query, parse_rest_query
from orthancd.find import tags as T


def one(query, case_sensitive=False):
    found = parse_rest_query(query, case_sensitive)
    assert len(found) == 1
    return found[0]


def test_tag_names_and_hex_forms():
    assert T.parse_tag("PatientName") == 0x00100010
    assert T.parse_tag("0010,0010") == 0x00100010
    assert T.parse_tag("0010-0010") == 0x00100010
    for bad in ("patientname", "(0010,0010)", "Nope"):
        with pytest.raises(OrthancError) as e:
            T.parse_tag(bad)
        assert e.value.code == ErrorCode.UnknownDicomTag and e.value.http_status == 500


def test_empty_value_is_universal_but_star_is_a_constraint():
    assert parse_rest_query({"PatientName": ""}, False) == []
    star = one({"PatientName": "*"})
    assert star.kind == C.WILDCARD and star.matches("") and not star.matches(None)


def test_wildcards():
    c = one({"PatientName": "BRAIN?X"})
    assert c.matches("BRAINIX") and c.matches("brainix") and not c.matches("BRAINIIX")
    c = one({"StudyDescription": "*knee*"}, case_sensitive=True)
    assert c.matches("a knee b") and not c.matches("KNEE")
    # Regex specials are literal; '?' is one UTF-8 byte as with boost::regex.
    assert one({"PatientName": "a.b(c)*"}).matches("A.B(C)D")
    assert not one({"PatientName": "a.b*"}).matches("AXB")
    assert not one({"PatientName": "?"}).matches("é")
    assert one({"PatientName": "??"}).matches("é")
    assert one({"PatientName": "A*"}).literal_prefix() == "A"


def test_wildcards_refused_on_other_vrs():
    for tag in ("StudyInstanceUID", "StudyDate", "SeriesNumber", "PatientWeight"):
        with pytest.raises(OrthancError) as e:
            parse_rest_query({tag: "1*"}, False)
        assert e.value.code == ErrorCode.ParameterOutOfRange
        assert e.value.details.startswith("Wildcards are not allowed on tag ")


def test_ranges_on_dates_and_times_only():
    both = parse_rest_query({"StudyDate": "20200101-20201231"}, False)
    assert [c.kind for c in both] == [C.GREATER_OR_EQUAL, C.SMALLER_OR_EQUAL]
    assert all(c.matches("20200615") for c in both)
    assert not all(c.matches("20210101") for c in both)
    assert [c.kind for c in parse_rest_query({"StudyDate": "20200101-"}, False)] == \
        [C.GREATER_OR_EQUAL]
    assert [c.kind for c in parse_rest_query({"StudyTime": "-120000"}, False)] == \
        [C.SMALLER_OR_EQUAL]
    assert parse_rest_query({"StudyDate": "-"}, False) == []
    # Byte comparison, as Orthanc: fractional seconds sort after the bare time.
    assert not parse_rest_query({"StudyTime": "-120000"}, False)[0].matches("120000.000000")
    # No range on other VRs: a plain (never matching) value.
    assert one({"PatientID": "a-b"}).kind == C.EQUAL


def test_lists():
    c = one({"PatientName": "BRAINIX\\KNIX"})
    assert c.kind == C.LIST and c.matches("knix") and not c.matches("KNI")
    c = one({"SOPInstanceUID": "1.2\\1.3"}, case_sensitive=True)
    assert c.matches("1.3") and not c.matches("1.2.3")
    # A '-' takes precedence over the backslash on dates (Orthanc's order).
    assert [x.kind for x in parse_rest_query({"StudyDate": "20070101-20070101\\x"}, False)] \
        == [C.GREATER_OR_EQUAL, C.SMALLER_OR_EQUAL]


def test_modalities_in_study_is_a_list_on_modality():
    c = one({"ModalitiesInStudy": "MR"})
    assert c.tag == T.MODALITY and c.kind == C.LIST and c.from_modalities_in_study


def test_case_rules():
    # REST: CaseSensitive (default false) applies to every tag.
    assert one({"StudyDescription": "knee"}).matches("KNEE")
    assert not one({"StudyDescription": "knee"}, True).matches("KNEE")
    assert one({"PatientName": "éric"}).matches("ÉRIC")
    # DICOM: case-sensitive except PN, which follows CaseSensitivePN.
    pn, desc = parse_dicom_query([(0x00100010, "knix"), (0x00081030, "knee")], False)
    assert pn.matches("KNIX") and not desc.matches("KNEE")
    (pn,) = parse_dicom_query([(0x00100010, "knix")], True)
    assert not pn.matches("KNIX")


def test_dicom_query_skips_level_charset_and_empty_values():
    found = parse_dicom_query([(0x00080052, "STUDY"), (0x00080005, "ISO_IR 100"),
                               (0x00100010, ""), (0x00100020, None), (0x00080201, "+0100")],
                              False)
    assert found == []


def test_rest_values_must_be_strings():
    with pytest.raises(OrthancError) as e:
        parse_rest_query({"PatientName": 5}, False)
    assert e.value.details == 'Tag "PatientName" should be associated with a string'


def test_wildcard_regex_translation():
    assert C.wildcard_to_regex("a*b?c.") == "a.*b.c\\."
