"""Configuration loading, checked against Orthanc 1.10.1's observed rules."""

import json
import os
from pathlib import Path

import pytest
from twisted.logger import Logger

from orthancd import config
from orthancd.config import (
    EMBEDDED_SOURCE, ConfigurationError, load_configuration, parse_modality,
    parse_peer, peer_public_view, read_defaults)

REPO = Path(__file__).resolve().parent.parent
REFERENCES = REPO.parent / "shared" / "reference"
REFERENCE_DEFAULTS = REFERENCES / "orthanc-1.13.0" / "default-configuration.json"
# 1.13.0 still honours options its default file no longer lists (KeepAlive...).
OLDER_REFERENCE_DEFAULTS = REFERENCES / "orthanc-1.10.1" / "default-configuration.json"


@pytest.fixture
def log_events(monkeypatch):
    events = []
    monkeypatch.setattr(config, "log", Logger(observer=events.append))
    return events


def warnings_of(events):
    return [event["log_format"].format(**event) for event in events
            if event["log_level"].name == "warn"]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- defaults -------------------------------------------------------------

def test_embedded_default_is_a_working_server(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    configuration = load_configuration(None)
    assert configuration.source == EMBEDDED_SOURCE
    assert configuration.files == ()
    assert configuration["HttpPort"] == 8042
    assert configuration["DicomPort"] == 4242
    assert configuration["DicomAet"] == "ORTHANC"
    assert configuration.storage_directory == str(tmp_path / "OrthancStorage")
    assert configuration.index_directory == str(tmp_path / "OrthancStorage")
    assert configuration.dicom_modalities() == {}
    assert configuration.orthanc_peers() == {}


def test_every_default_is_present_when_user_sets_little(tmp_path):
    path = write(tmp_path / "o.json", '{ "HttpPort" : 8043 }')
    configuration = load_configuration(path)
    defaults = read_defaults()
    assert set(defaults) <= set(configuration)
    assert configuration["HttpPort"] == 8043
    assert configuration["StableAge"] == 60
    assert configuration["AcceptedTransferSyntaxes"] == ["1.2.840.10008.1.*"]
    assert configuration["DicomScuPreferredTransferSyntax"] == \
        "1.2.840.10008.1.2.1"
    assert configuration.source == path
    assert configuration.files == (path,)
    assert configuration.is_set_by_user("HttpPort")
    assert not configuration.is_set_by_user("StableAge")


def test_default_file_matches_orthanc_reference():
    extracted = config.extract_defaults(
        REFERENCE_DEFAULTS.read_text(encoding="utf-8"))
    older = config.extract_defaults(OLDER_REFERENCE_DEFAULTS.read_text(encoding="utf-8"))
    defaults = read_defaults()
    assert {name: defaults[name] for name in extracted} == extracted
    assert {name: defaults[name] for name in older if name not in extracted} == \
        {name: value for name, value in older.items() if name not in extracted}
    assert set(defaults) == set(extracted) | set(older)
    assert len(extracted) == 82 and len(defaults) == 103


def test_configuration_is_read_only(tmp_path):
    configuration = load_configuration(None)
    with pytest.raises(TypeError):
        configuration["HttpPort"] = 1
    configuration["LuaScripts"].append("x.lua")
    assert configuration["LuaScripts"] == []


def test_index_directory_follows_storage_directory(tmp_path):
    path = write(tmp_path / "o.json", '{ "StorageDirectory" : "data" }')
    configuration = load_configuration(path)
    assert configuration.storage_directory == str(tmp_path / "data")
    assert configuration.index_directory == str(tmp_path / "data")


def test_relative_paths_are_resolved_against_the_config_folder(
        tmp_path, monkeypatch):
    folder = tmp_path / "etc"
    folder.mkdir()
    path = write(folder / "o.json", """{
        "StorageDirectory" : "files", "IndexDirectory" : "/abs/index",
        "TemporaryDirectory" : "tmp", "LuaScripts" : [ "a.lua" ] }""")
    monkeypatch.chdir(tmp_path)
    configuration = load_configuration(os.path.relpath(path))
    assert configuration.storage_directory == str(folder / "files")
    assert configuration.index_directory == "/abs/index"
    assert configuration.temporary_directory == str(folder / "tmp")
    assert configuration.lua_scripts == [str(folder / "a.lua")]
    assert load_configuration(None).temporary_directory is None


def test_authentication_defaults_to_remote_access(tmp_path):
    remote = write(tmp_path / "r.json", '{ "RemoteAccessAllowed" : true }')
    assert load_configuration(remote).authentication_enabled is True
    assert load_configuration(None).authentication_enabled is False
    explicit = write(tmp_path / "e.json", """{ "RemoteAccessAllowed" : true,
        "AuthenticationEnabled" : false,
        "RegisteredUsers" : { "alice" : "secret" } }""")
    configuration = load_configuration(explicit)
    assert configuration.authentication_enabled is False
    assert configuration.registered_users == {"alice": "secret"}


# --- syntax ---------------------------------------------------------------

def test_comments_are_ignored_but_slashes_in_strings_survive(tmp_path):
    path = write(tmp_path / "o.json", r"""
    {
      // a line comment with "quotes" and /* a fake block
      "Name" : "http://example.org//x /* not a comment */", /* block
         spanning lines */ "DicomAet" : "A\"//B",
      "HttpProxy" : "proxy:3128" // trailing comment
    }
    """)
    configuration = load_configuration(path)
    assert configuration["Name"] == "http://example.org//x /* not a comment */"
    assert configuration["DicomAet"] == 'A"//B'
    assert configuration["HttpProxy"] == "proxy:3128"


def test_trailing_commas_are_accepted_like_orthanc(tmp_path):
    path = write(tmp_path / "o.json",
                 '{ "LuaScripts" : [ "a.lua", ], "Name" : ",]", }')
    configuration = load_configuration(path)
    assert configuration["LuaScripts"] == ["a.lua"]
    assert configuration["Name"] == ",]"


def test_syntax_error_names_file_line_and_column(tmp_path):
    path = write(tmp_path / "o.json",
                 '{\n  // comment\n  "Name" : "x"\n  "DicomAet" : "y"\n}\n')
    with pytest.raises(ConfigurationError) as error:
        load_configuration(path)
    assert str(error.value).startswith(f"{path}:4:3: expecting ',' delimiter")


def test_syntax_error_position_ignores_substituted_text(tmp_path):
    path = write(tmp_path / "o.json",
                 '{ "Name" : "${LONG_NAME}" "DicomAet" : "y" }')
    with pytest.raises(ConfigurationError) as error:
        load_configuration(path, environ={"LONG_NAME": "x" * 40})
    assert str(error.value).startswith(f"{path}:1:27:")


def test_unterminated_comment_is_reported(tmp_path):
    path = write(tmp_path / "o.json", '{ "Name" : "x"\n /* no end }')
    with pytest.raises(ConfigurationError, match=r"o\.json:2:2: unterminated"):
        load_configuration(path)


def test_top_level_must_be_an_object(tmp_path):
    path = write(tmp_path / "o.json", "[ 1, 2 ]")
    with pytest.raises(ConfigurationError, match="must be a JSON object"):
        load_configuration(path)


def test_missing_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="no such configuration"):
        load_configuration(str(tmp_path / "absent.json"))


# --- folders --------------------------------------------------------------

def test_directory_merges_json_files(tmp_path):
    write(tmp_path / "b-http.json", '{ "HttpPort" : 8050 }')
    write(tmp_path / "a-dicom.json", '{ "DicomAet" : "FOLDER" }')
    write(tmp_path / "c.JSON", '{ "Name" : "upper-case extension" }')
    write(tmp_path / "notes.txt", '{ "Name" : "ignored" }')
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "d.json", '{ "DicomPort" : 1 }')
    configuration = load_configuration(str(tmp_path))
    assert configuration["HttpPort"] == 8050
    assert configuration["DicomAet"] == "FOLDER"
    assert configuration["Name"] == "upper-case extension"
    assert configuration["DicomPort"] == 4242
    assert [os.path.basename(f) for f in configuration.files] == \
        ["a-dicom.json", "b-http.json", "c.JSON"]
    assert configuration.source == str(tmp_path)
    assert configuration.storage_directory == \
        str(tmp_path / "OrthancStorage")


def test_same_option_in_two_files_is_refused(tmp_path):
    write(tmp_path / "a.json", '{ "Name" : "one" }')
    write(tmp_path / "b.json", '{ "Name" : "two" }')
    with pytest.raises(ConfigurationError) as error:
        load_configuration(str(tmp_path))
    message = str(error.value)
    assert '"Name"' in message and "a.json" in message and "b.json" in message


def test_repeated_key_in_one_file_keeps_the_last(tmp_path):
    path = write(tmp_path / "o.json", '{ "Name" : "one", "Name" : "two" }')
    assert load_configuration(path)["Name"] == "two"


# --- options --------------------------------------------------------------

def test_unknown_option_is_warned_once_and_ignored(tmp_path, log_events):
    path = write(tmp_path / "o.json",
                 '{ "HttpPortt" : 1, "Worklists" : { "Enable" : true } }')
    configuration = load_configuration(path)
    warnings = warnings_of(log_events)
    assert len([w for w in warnings if '"HttpPortt"' in w]) == 1
    assert len([w for w in warnings if '"Worklists"' in w]) == 1
    assert configuration["HttpPort"] == 8042


def test_known_options_without_default_do_not_warn(tmp_path, log_events):
    path = write(tmp_path / "o.json",
                 '{ "AuthenticationEnabled" : true, "Locale" : "C" }')
    load_configuration(path)
    assert warnings_of(log_events) == []


@pytest.mark.parametrize("text, fragment", [
    ('{ "HttpPort" : "abc" }', '"HttpPort" must be an integer'),
    ('{ "HttpPort" : "8042" }', '"HttpPort" must be an integer'),
    ('{ "HttpPort" : 8042.5 }', '"HttpPort" must be an integer'),
    ('{ "HttpPort" : true }', '"HttpPort" must be an integer'),
    ('{ "HttpPort" : -1 }', '"HttpPort" must be a positive integer'),
    ('{ "RemoteAccessAllowed" : "true" }',
     '"RemoteAccessAllowed" must be a Boolean'),
    ('{ "Name" : 12 }', '"Name" must be a string'),
    ('{ "LuaScripts" : "a.lua" }', '"LuaScripts" must be a list'),
    ('{ "DicomModalities" : [] }', '"DicomModalities" must be an object'),
    ('{ "AuthenticationEnabled" : 1 }',
     '"AuthenticationEnabled" must be a Boolean'),
    ('{ "RegisteredUsers" : { "bob" : 1 } }', 'password of user "bob"'),
    ('{ "DicomAet" : "" }', '"DicomAet" must have between 1 and 16'),
    ('{ "DicomAet" : "SEVENTEEN_CHARSXX" }', '"DicomAet" must have'),
])
def test_wrong_types_are_refused(tmp_path, text, fragment):
    path = write(tmp_path / "o.json", text)
    with pytest.raises(ConfigurationError) as error:
        load_configuration(path)
    assert fragment in str(error.value)
    assert path in str(error.value)


def test_accepted_transfer_syntaxes_may_be_a_single_string(tmp_path):
    path = write(tmp_path / "o.json",
                 '{ "AcceptedTransferSyntaxes" : "1.2.840.10008.1.2" }')
    assert load_configuration(path)["AcceptedTransferSyntaxes"] == \
        "1.2.840.10008.1.2"


def test_storage_compression_is_accepted(tmp_path):
    path = write(tmp_path / "o.json", '{ "StorageCompression" : true }')
    assert load_configuration(path)["StorageCompression"] is True


@pytest.mark.parametrize("option, value, message", [
    ("UserMetadata", '{ "A" : 1023 }', "between 1024 and 65535"),
    ("UserMetadata", '{ "A" : 65536 }', "between 1024 and 65535"),
    ("UserMetadata", '{ "A" : "1025" }', "not a number"),
    ("UserMetadata", '{ "A" : 1025, "B" : 1025 }', "already used"),
    ("UserMetadata", '{ "12" : 1025 }', "the name is a number"),
    ("UserContentType", '{ "pdf" : [ 1026, 7 ] }', "not a number"),
    ("UserContentType", '{ "pdf" : 12 }', "between 1024 and 65535"),
])
def test_user_types_are_checked_as_orthanc_registers_them(tmp_path, option, value, message):
    path = write(tmp_path / "o.json", '{ "%s" : %s }' % (option, value))
    with pytest.raises(ConfigurationError, match=message):
        load_configuration(path)


def test_user_content_types_may_name_their_mime_type(tmp_path):
    path = write(tmp_path / "o.json",
                 '{ "UserContentType" : { "pdf" : [ 1026, "application/pdf" ], "raw" : 1027 } }')
    assert load_configuration(path)["UserContentType"]["pdf"] == [1026, "application/pdf"]


# --- environment ----------------------------------------------------------

def test_environment_variables_are_substituted(tmp_path, monkeypatch):
    monkeypatch.setenv("ORTHANCD_TEST_NAME", "from-env")
    monkeypatch.setenv("ORTHANCD_TEST_PORT", "8123")
    monkeypatch.setenv("ORTHANCD_TEST_EMPTY", "")
    monkeypatch.delenv("ORTHANCD_TEST_UNSET", raising=False)
    path = write(tmp_path / "o.json", """{
      "Name" : "${ORTHANCD_TEST_NAME}",
      "HttpPort" : ${ORTHANCD_TEST_PORT},
      "DicomAet" : "${ORTHANCD_TEST_UNSET:-FALLBACK}",
      "HttpProxy" : "[${ORTHANCD_TEST_UNSET}][${ORTHANCD_TEST_EMPTY:-x}]",
      "DefaultPrivateCreator" : "$${ORTHANCD_TEST_NAME}"
    }""")
    configuration = load_configuration(path)
    assert configuration["Name"] == "from-env"
    assert configuration["HttpPort"] == 8123
    assert configuration["DicomAet"] == "FALLBACK"
    assert configuration["HttpProxy"] == "[][]"
    assert configuration["DefaultPrivateCreator"] == "$from-env"


def test_substituted_string_for_integer_option_is_a_type_error(tmp_path):
    path = write(tmp_path / "o.json", '{ "HttpPort" : "${PORT}" }')
    with pytest.raises(ConfigurationError, match="must be an integer"):
        load_configuration(path, environ={"PORT": "8042"})


# --- modalities and peers -------------------------------------------------

MODALITY_FIELDS = {
    "AET", "AllowEcho", "AllowEventReport", "AllowFind", "AllowFindWorklist",
    "AllowGet", "AllowMove", "AllowNAction", "AllowStore", "AllowTranscoding",
    "Host", "LocalAet", "Manufacturer", "Port", "RetrieveMethod", "Timeout", "UseDicomTls"}


def test_modalities_short_and_long_forms(tmp_path):
    path = write(tmp_path / "o.json", """{ "DicomModalities" : {
      "sample" : [ "STORESCP", "127.0.0.1", 2000 ],
      "vitrea" : [ "VITREA", "192.168.1.1", "104", "Vitrea" ],
      "untrusted" : { "AET" : "ORTHANC", "Host" : "10.0.0.1", "Port" : 104,
                      "Manufacturer" : "GE", "AllowEcho" : false,
                      "AllowStorageCommitment" : false, "UseDicomTls" : true,
                      "LocalAet" : "ME", "Timeout" : 60, "Extra" : 1 }
    } }""")
    modalities = load_configuration(path).dicom_modalities()
    assert set(modalities) == {"sample", "vitrea", "untrusted"}
    for modality in modalities.values():
        assert set(modality) == MODALITY_FIELDS
    assert modalities["sample"] == {
        "AET": "STORESCP", "Host": "127.0.0.1", "Port": 2000,
        "Manufacturer": "Generic", "AllowEcho": True,
        "AllowEventReport": True, "AllowFind": True,
        "AllowFindWorklist": True, "AllowGet": True, "AllowMove": True,
        "AllowNAction": True, "AllowStore": True, "AllowTranscoding": True,
        "LocalAet": "", "RetrieveMethod": "SystemDefault", "Timeout": 0, "UseDicomTls": False}
    assert modalities["vitrea"]["Port"] == 104
    assert modalities["vitrea"]["Manufacturer"] == "Vitrea"
    untrusted = modalities["untrusted"]
    assert untrusted["AllowEcho"] is False
    assert untrusted["AllowNAction"] is False
    assert untrusted["AllowEventReport"] is False
    assert untrusted["AllowStore"] is True
    assert (untrusted["UseDicomTls"], untrusted["LocalAet"],
            untrusted["Timeout"], untrusted["Manufacturer"]) == \
        (True, "ME", 60, "GE")


def test_obsolete_manufacturer_is_mapped_with_a_warning(log_events):
    modality = parse_modality("old", ["A", "h", 104, "AgfaImpax"])
    assert modality["Manufacturer"] == "GenericNoWildcardInDates"
    assert any("AgfaImpax" in w for w in warnings_of(log_events))


@pytest.mark.parametrize("description, fragment", [
    (["A", "h"], "expected"),
    (["A", "h", 70000], "range [1..65534]"),
    (["A", "h", 104, "generic"], "unknown modality manufacturer"),
    ({"AET": "A", "Port": 104}, '"Host" is missing'),
    ({"AET": "A", "Host": "h", "Port": 1, "AllowEcho": "no"},
     '"AllowEcho" must be a Boolean'),
    (5, "expected a list"),
])
def test_bad_modalities_are_refused(description, fragment):
    with pytest.raises(ConfigurationError) as error:
        parse_modality("m", description)
    assert fragment in str(error.value)


def test_bad_modality_in_file_stops_loading(tmp_path):
    path = write(tmp_path / "o.json",
                 '{ "DicomModalities" : { "x" : [ "A", "h", 0 ] } }')
    with pytest.raises(ConfigurationError, match='"x"'):
        load_configuration(path)


def test_peers_short_and_long_forms(tmp_path):
    path = write(tmp_path / "o.json", """{ "OrthancPeers" : {
      "peer" : [ "http://127.0.0.1:8043/", "alice", "alicePassword" ],
      "peer2" : [ "http://127.0.0.1:8044" ],
      "peer3" : { "Url" : "https://h:8045/", "Username" : "bob",
                  "Password" : "pw", "HttpHeaders" : { "Token" : "t" },
                  "CertificateFile" : "c.crt", "CertificateKeyFile" : "c.key",
                  "CertificateKeyPassword" : "kp", "Pkcs11" : true,
                  "Timeout" : 42 }
    } }""")
    peers = load_configuration(path).orthanc_peers()
    assert peers["peer"]["Url"] == "http://127.0.0.1:8043/"
    assert (peers["peer"]["Username"], peers["peer"]["Password"]) == \
        ("alice", "alicePassword")
    assert peers["peer2"]["Url"] == "http://127.0.0.1:8044/"
    assert peers["peer2"]["Username"] is None
    assert peers["peer3"]["HttpHeaders"] == {"Token": "t"}
    assert peers["peer3"]["Timeout"] == 42
    assert peers["peer3"]["CertificateKeyPassword"] == "kp"

    # What GET /peers?expand shows in Orthanc 1.10.1.
    assert peer_public_view(peers["peer"]) == {
        "HttpHeaders": [], "Password": None, "Pkcs11": False, "Timeout": 0,
        "Url": "http://127.0.0.1:8043/", "Username": "alice"}
    assert peer_public_view(peers["peer2"]) == {
        "HttpHeaders": [], "Pkcs11": False, "Timeout": 0,
        "Url": "http://127.0.0.1:8044/"}
    assert peer_public_view(peers["peer3"]) == {
        "CertificateFile": "c.crt", "CertificateKeyFile": None,
        "CertificateKeyPassword": None, "HttpHeaders": ["Token"],
        "Password": None, "Pkcs11": True, "Timeout": 42,
        "Url": "https://h:8045/", "Username": "bob"}


@pytest.mark.parametrize("description, fragment", [
    (["http://h/", "user"], "expected"),
    ({"Username": "u"}, "URL is empty"),
    ({"Url": "http://h", "HttpHeaders": {"A": 1}}, 'header "A"'),
    ("http://h/", "expected a list"),
])
def test_bad_peers_are_refused(description, fragment):
    with pytest.raises(ConfigurationError) as error:
        parse_peer("p", description)
    assert fragment in str(error.value)


def test_peer_user_without_password_has_empty_password():
    peer = parse_peer("p", {"Url": "http://h", "Username": "u"})
    assert peer["Password"] == ""
    assert peer_public_view(peer)["Password"] is None


# --- shipped files --------------------------------------------------------

def test_shipped_configuration_is_complete_and_loads():
    configuration = load_configuration(str(REPO / "etc" / "orthanc.json"))
    defaults = read_defaults()
    assert configuration["Name"] == "orthancd"
    assert configuration["HttpPort"] == 8042
    assert configuration["DicomPort"] == 4242
    assert configuration["RemoteAccessAllowed"] is False
    assert configuration.authentication_enabled is False
    assert configuration.storage_directory == \
        str(REPO / "etc" / "OrthancStorage")
    # Complete: every option is written out, and only Name differs.
    for name, value in defaults.items():
        assert configuration.is_set_by_user(name), name
        if name != "Name":
            assert json.dumps(configuration[name]) == json.dumps(value), name


def test_systemd_unit_runs_twistd_with_system_config():
    unit = (REPO / "systemd" / "orthancd.service").read_text()
    assert "--config /etc/orthancd/orthanc.json" in unit
    assert "User=orthancd" in unit
    assert "Restart=on-failure" in unit
    assert "StateDirectory=orthancd" in unit


@pytest.mark.parametrize("value, mode", [
    ('"Never"', "Never"), ('"Always"', "Always"), ('"IfChanged"', "IfChanged"),
    ("true", "Always"), ("false", "Never")])
def test_overwrite_instances_modes_of_1_13(tmp_path, value, mode):
    path = write(tmp_path / "o.json", '{ "OverwriteInstances" : %s }' % value)
    assert load_configuration(path).overwrite_instances_mode == mode


def test_unknown_overwrite_mode_is_refused(tmp_path):
    path = write(tmp_path / "o.json", '{ "OverwriteInstances" : "Sometimes" }')
    with pytest.raises(ConfigurationError) as error:
        load_configuration(path)
    assert "IfChanged" in str(error.value)
