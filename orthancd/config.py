"""Reading Orthanc's configuration files.

orthancd accepts the configuration of Orthanc 1.13.0 unchanged: JSON with
``//`` and ``/* */`` comments and trailing commas (Orthanc's JSON reader is
lenient about those), ``${VAR}`` / ``${VAR:-default}`` environment
substitution in the raw text, and either one file or a folder whose
``*.json`` files are merged.  Behaviour was checked against the real
Orthanc binary:

* a folder is scanned non-recursively; the extension test ignores case
  (``x.JSON`` is read); a top-level option defined in two files is refused;
* inside one file a repeated key keeps its last value;
* an unset variable becomes the empty string; ``:-default`` is used only
  when the variable is unset (an empty variable stays empty); the
  substitution happens on the text, so ``"HttpPort" : ${PORT}`` works;
* relative paths (StorageDirectory, IndexDirectory, ...) are resolved
  against the folder holding the configuration file (or the folder given),
  not the working directory; with no configuration at all, the cwd is used;
* options of the wrong type stop the server (``"HttpPort": "8042"`` too).

Run ``python -m orthancd.config REFERENCE.json`` to regenerate
``default_configuration.json`` from Orthanc's commented default file.
"""

import copy
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from twisted.logger import Logger

from orthancd.dicom import dictionary

log = Logger()

EMBEDDED_SOURCE = "<embedded default>"
DEFAULTS_FILE = Path(__file__).with_name("default_configuration.json")

# Options that Orthanc understands but whose entry is commented out
# in its default configuration, so they have no default value: they are
# absent from the Configuration unless the user sets them.
OPTIONAL_OPTION_TYPES = {
    "TemporaryDirectory": str,
    "AuthenticationEnabled": bool,
    "DeflatedTransferSyntaxAccepted": bool,
    "JpegTransferSyntaxAccepted": bool,
    "Jpeg2000TransferSyntaxAccepted": bool,
    "JpegLosslessTransferSyntaxAccepted": bool,
    "JpipTransferSyntaxAccepted": bool,
    "Mpeg2TransferSyntaxAccepted": bool,
    "RleTransferSyntaxAccepted": bool,
    "Mpeg4TransferSyntaxAccepted": bool,
    "H265TransferSyntaxAccepted": bool,
    "SslCiphersAccepted": list,
    "DicomTlsCertificate": str,
    "DicomTlsPrivateKey": str,
    "DicomTlsTrustedCertificates": str,
    "Pkcs11": dict,
    "Locale": str,
    "ExternalDictionaries": list,
    "IngestTranscoding": str,
    "DatabaseServerIdentifier": str,
    "ExtraMainDicomTags": dict,
    # New in Orthanc 1.12.11, left out of its default file (defaults 8192
    # and 4096, see orthancd.uploads.uploader).
    "MaximumRequestBodySizeMB": int,
    "MaximumFileSizeInArchiveMB": int,
    # In 1.13.0's embedded defaults (256 MB), not in its documented file
    # (orthancd.pixels.parsed_files).
    "DicomParserCacheSize": int,
    # orthancd's own: how many helper processes parse the headers of
    # concurrent uploads (orthancd.ingest_workers.default_worker_count).
    "IngestWorkers": int,
}

# Orthanc accepts these options in more than one JSON shape.
EXTRA_ACCEPTED_TYPES = {
    "AcceptedTransferSyntaxes": (str,),
    # 1.13.0 takes "Never", "Always" or "IfChanged"; booleans still work.
    "OverwriteInstances": (bool,),
}

OVERWRITE_MODES = ("Never", "Always", "IfChanged")

MAXIMUM_AET_LENGTH = 16

MODALITY_MANUFACTURERS = (
    "Generic", "GenericNoWildcardInDates", "GenericNoUniversalWildcard",
    "Vitrea", "GE",
)
# Old manufacturer names Orthanc still accepts, mapped to their replacement.
OBSOLETE_MANUFACTURERS = {
    "AgfaImpax": "GenericNoWildcardInDates",
    "SyngoVia": "GenericNoWildcardInDates",
    "EFilm2": "Generic",
    "MedInria": "Generic",
    "ClearCanvas": "Generic",
    "Dcm4Chee": "Generic",
}
# How a modality's query answers are retrieved (new in Orthanc 1.13.0).
RETRIEVE_METHODS = ("C-MOVE", "C-GET", "SystemDefault")
MODALITY_PERMISSIONS = (
    "AllowEcho", "AllowEventReport", "AllowFind", "AllowFindWorklist",
    "AllowGet", "AllowMove", "AllowNAction", "AllowStore", "AllowTranscoding",
)

_TYPE_NAMES = {
    bool: "a Boolean (true or false)",
    int: "an integer",
    str: "a string",
    list: "a list",
    dict: "an object",
}


class ConfigurationError(Exception):
    """The configuration cannot be used; the message says where and why."""


# ---------------------------------------------------------------------------
# Text level: environment substitution, comments, trailing commas


_VARIABLE = re.compile(r"\$\{(.*?)\}")


def substitute_environment(text, environ=None):
    """Replace ``${NAME}`` and ``${NAME:-default}`` like Orthanc does.

    Returns ``(new_text, spans)`` where spans lists
    ``(new_start, new_end, old_start, old_end)`` of every replacement so that
    error positions can be reported in terms of the original file.
    """
    if environ is None:
        environ = os.environ
    pieces = []
    spans = []
    cursor = 0
    new_length = 0
    for match in _VARIABLE.finditer(text):
        name, separator, default = match.group(1).partition(":-")
        name = name.strip()
        value = environ.get(name)
        if value is None:
            value = default if separator else ""
        before = text[cursor:match.start()]
        pieces.append(before)
        new_length += len(before)
        pieces.append(value)
        spans.append((new_length, new_length + len(value),
                      match.start(), match.end()))
        new_length += len(value)
        cursor = match.end()
    pieces.append(text[cursor:])
    return "".join(pieces), spans


def _original_offset(offset, spans):
    """Map an offset in substituted text back to the original text."""
    shift = 0
    for new_start, new_end, old_start, old_end in spans:
        if offset < new_start:
            break
        if offset < new_end:
            return old_start
        shift = old_end - new_end
    return offset + shift


def _line_and_column(text, offset):
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


class _SyntaxProblem(Exception):
    def __init__(self, message, offset):
        super().__init__(message)
        self.message = message
        self.offset = offset


def strip_comments(text):
    """Blank out comments and trailing commas, keeping every offset intact.

    Comments become spaces (newlines are kept), so positions reported by the
    JSON parser still point at the right line and column of the file.
    """
    out = list(text)
    length = len(text)
    i = 0
    in_string = False
    pending_comma = None  # offset of a comma that may turn out to be trailing
    while i < length:
        char = text[i]
        if in_string:
            if char == "\\":
                i += 2
                continue
            if char == '"':
                in_string = False
            i += 1
            continue
        if char == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            end = length if end < 0 else end
            for k in range(i, end):
                out[k] = " "
            i = end
            continue
        if char == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise _SyntaxProblem("unterminated /* comment", i)
            for k in range(i, end + 2):
                if out[k] != "\n":
                    out[k] = " "
            i = end + 2
            continue
        if char.isspace():
            i += 1
            continue
        if char in "}]" and pending_comma is not None:
            out[pending_comma] = " "
        pending_comma = i if char == "," else None
        if char == '"':
            in_string = True
        i += 1
    return "".join(out)


def parse_configuration_text(text, filename, environ=None):
    """Parse one configuration file's text into a dict of options."""
    substituted, spans = substitute_environment(text, environ)

    def fail(message, offset):
        line, column = _line_and_column(text, _original_offset(offset, spans))
        raise ConfigurationError(f"{filename}:{line}:{column}: {message}")

    try:
        cleaned = strip_comments(substituted)
    except _SyntaxProblem as problem:
        fail(problem.message, problem.offset)
    decoder = json.JSONDecoder()
    start = len(cleaned) - len(cleaned.lstrip())
    if start == len(cleaned):
        fail("the file is empty, a JSON object was expected", start)
    try:
        document, end = decoder.raw_decode(cleaned, start)
    except json.JSONDecodeError as error:
        fail(_lowercase_first(error.msg), error.pos)
    if not isinstance(document, dict):
        fail("the configuration must be a JSON object { ... }", start)
    if cleaned[end:].strip():
        # Orthanc's JSON reader stops after the first value; so do we, but
        # leftovers usually mean a mistake, so say it.
        line, column = _line_and_column(text, _original_offset(end, spans))
        log.warn("{filename}:{line}:{column}: ignoring text after the end "
                 "of the JSON object", filename=filename, line=line,
                 column=column)
    return document


def _lowercase_first(message):
    return message[:1].lower() + message[1:]


# ---------------------------------------------------------------------------
# Files and folders


def configuration_files(path):
    """The files Orthanc would read for ``path`` (a file or a folder)."""
    if os.path.isdir(path):
        names = sorted(
            name for name in os.listdir(path)
            if name.lower().endswith(".json")
            and os.path.isfile(os.path.join(path, name)))
        return [os.path.join(path, name) for name in names]
    if os.path.isfile(path):
        return [path]
    raise ConfigurationError(f"{path}: no such configuration file or folder")


def _read_text(filename):
    try:
        with open(filename, "rb") as stream:
            raw = stream.read()
    except OSError as error:
        raise ConfigurationError(
            f"{filename}: cannot read the configuration: {error.strerror}")
    # A UTF-8 byte order mark is common in files edited on Windows.
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigurationError(
            f"{filename}:{line}: the configuration is not valid UTF-8")


def read_defaults():
    """Orthanc's default values (1.13.0's, completed with 1.10.1's for the
    options 1.13.0 still honours but no longer lists), as extracted from
    their references."""
    with open(DEFAULTS_FILE, encoding="utf-8") as stream:
        return json.load(stream)


def load_configuration(path=None, environ=None):
    """Load the configuration at ``path`` (file or folder), or the default.

    ``environ`` replaces ``os.environ`` for ``${VAR}`` substitution.
    """
    defaults = read_defaults()
    if path is None:
        return Configuration(defaults, {}, EMBEDDED_SOURCE, (), os.getcwd())

    path = os.fspath(path)
    files = configuration_files(path)
    user_options = {}
    defined_in = {}
    for filename in files:
        log.info("Reading the configuration from {filename}",
                 filename=filename)
        document = parse_configuration_text(
            _read_text(filename), filename, environ)
        for name, value in document.items():
            if name in defined_in:
                raise ConfigurationError(
                    f"{filename}: the option \"{name}\" is already defined "
                    f"in {defined_in[name]}; an option may appear in only "
                    f"one configuration file")
            defined_in[name] = filename
            user_options[name] = value

    if os.path.isdir(path):
        base_directory = os.path.abspath(path)
    else:
        base_directory = os.path.dirname(os.path.abspath(path))
    return Configuration(defaults, user_options, path, tuple(files),
                         base_directory, defined_in)


# ---------------------------------------------------------------------------
# Validation


def _has_type(value, expected):
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is bool:
        return isinstance(value, bool)
    return isinstance(value, expected)


def _check_option_types(options, defaults, defined_in):
    for name, value in options.items():
        if name in defaults:
            expected = type(defaults[name])
        elif name in OPTIONAL_OPTION_TYPES:
            expected = OPTIONAL_OPTION_TYPES[name]
        else:
            continue
        where = defined_in.get(name, EMBEDDED_SOURCE)
        accepted = (expected,) + EXTRA_ACCEPTED_TYPES.get(name, ())
        if not any(_has_type(value, kind) for kind in accepted):
            raise ConfigurationError(
                f"{where}: the option \"{name}\" must be "
                f"{_TYPE_NAMES[expected]}, not {json.dumps(value)}")
        if expected is int and value < 0:
            raise ConfigurationError(
                f"{where}: the option \"{name}\" must be a positive integer,"
                f" not {value}")


def _check_semantics(options, defined_in):
    def where(name):
        return defined_in.get(name, EMBEDDED_SOURCE)

    _check_user_types(options, "UserMetadata", where("UserMetadata"), False)
    _check_user_types(options, "UserContentType", where("UserContentType"), True)
    overwrite = options.get("OverwriteInstances")
    if isinstance(overwrite, str) and overwrite not in OVERWRITE_MODES:
        raise ConfigurationError(
            f"{where('OverwriteInstances')}: \"OverwriteInstances\" must be one of "
            f"{', '.join(OVERWRITE_MODES)} (or a Boolean), not {json.dumps(overwrite)}")
    if overwrite == "IfChanged" and not options.get("StoreMD5ForAttachments", True):
        raise ConfigurationError(
            f"{where('OverwriteInstances')}: Can not set \"OverwriteInstances\" to "
            f"\"IfChanged\" when \"StoreMD5ForAttachments\" is set to false.")
    aet = options["DicomAet"]
    if not aet or len(aet) > MAXIMUM_AET_LENGTH:
        raise ConfigurationError(
            f"{where('DicomAet')}: \"DicomAet\" must have between 1 and "
            f"{MAXIMUM_AET_LENGTH} characters, not {json.dumps(aet)}")
    try:
        dictionary.parse_configured(options.get("Dictionary"))
    except dictionary.DictionaryError as e:
        raise ConfigurationError(f"{where('Dictionary')}: {e}")
    for user, password in options["RegisteredUsers"].items():
        if not isinstance(password, str):
            raise ConfigurationError(
                f"{where('RegisteredUsers')}: the password of user "
                f"\"{user}\" in \"RegisteredUsers\" must be a string")


FIRST_USER_TYPE = 1024
LAST_USER_TYPE = 65535


def _is_integer(text):
    """Orthanc's Toolbox::IsInteger: such a name would read as a number."""
    text = text.strip(" \t\r\n")
    digits = text[1:] if text.startswith("-") else text
    return bool(digits) and all(c in "0123456789" for c in digits)


def _check_user_types(options, option, where, with_mime):
    """UserMetadata and UserContentType as Orthanc registers them: a number
    (for content types, or [number, MIME type]) in 1024..65535 per name, no
    number used twice, no name that reads as a number."""
    seen = set()
    for name, value in (options.get(option) or {}).items():
        if with_mime and (isinstance(value, list) and len(value) == 2
                          and _has_type(value[0], int) and isinstance(value[1], str)):
            number = value[0]
        elif _has_type(value, int):
            number = value
        else:
            kind = "attachment type" if with_mime else "metadata"
            raise ConfigurationError(
                f"{where}: not a number in this user-defined {kind}: {name}")
        if not FIRST_USER_TYPE <= number <= LAST_USER_TYPE:
            raise ConfigurationError(
                f"{where}: \"{name}\" in \"{option}\" must have an index between "
                f"{FIRST_USER_TYPE} and {LAST_USER_TYPE}, not {number}")
        if number in seen or _is_integer(name):
            raise ConfigurationError(
                f"{where}: cannot register \"{name}\" in \"{option}\": its index {number} "
                f"is already used, or the name is a number")
        seen.add(number)


def _port(value, context):
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not _has_type(value, int):
        raise ConfigurationError(
            f"{context}: the port must be an integer, not {json.dumps(value)}")
    if not 1 <= value <= 65534:
        raise ConfigurationError(
            f"{context}: a TCP port must be in range [1..65534], not {value}")
    return value


def _manufacturer(value, context):
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{context}: \"Manufacturer\" must be a string")
    if value in MODALITY_MANUFACTURERS:
        return value
    if value in OBSOLETE_MANUFACTURERS:
        replacement = OBSOLETE_MANUFACTURERS[value]
        log.warn("{context}: the manufacturer \"{old}\" is obsolete, use "
                 "\"{new}\" instead", context=context, old=value,
                 new=replacement)
        return replacement
    raise ConfigurationError(
        f"{context}: unknown modality manufacturer {json.dumps(value)} "
        f"(expected one of {', '.join(MODALITY_MANUFACTURERS)})")


def _field(description, key, kind, context, default):
    if key not in description:
        return default
    value = description[key]
    if not _has_type(value, kind):
        raise ConfigurationError(
            f"{context}: \"{key}\" must be {_TYPE_NAMES[kind]}, "
            f"not {json.dumps(value)}")
    return value


def parse_modality(name, description, context=None):
    """One DicomModalities entry, in either form, as Orthanc reports it.

    The result has exactly the fields of ``GET /modalities?expand``.
    """
    context = context or f"DicomModalities \"{name}\""
    if isinstance(description, list):
        if len(description) not in (3, 4) or not all(
                isinstance(item, str) for item in description[:2]):
            raise ConfigurationError(
                f"{context}: expected [\"AET\", \"host\", port] or "
                f"[\"AET\", \"host\", port, \"Manufacturer\"]")
        modality = _modality_defaults()
        modality["AET"] = description[0]
        modality["Host"] = description[1]
        modality["Port"] = _port(description[2], context)
        if len(description) == 4:
            modality["Manufacturer"] = _manufacturer(description[3], context)
        return modality

    if not isinstance(description, dict):
        raise ConfigurationError(
            f"{context}: expected a list [\"AET\", \"host\", port] or an "
            f"object {{\"AET\": ..., \"Host\": ..., \"Port\": ...}}")
    for required in ("AET", "Host", "Port"):
        if required not in description:
            raise ConfigurationError(f"{context}: \"{required}\" is missing")
    modality = _modality_defaults()
    modality["AET"] = _field(description, "AET", str, context, None)
    modality["Host"] = _field(description, "Host", str, context, None)
    modality["Port"] = _port(description["Port"], context)
    if "Manufacturer" in description:
        modality["Manufacturer"] = _manufacturer(
            description["Manufacturer"], context)
    for permission in MODALITY_PERMISSIONS:
        modality[permission] = _field(
            description, permission, bool, context, modality[permission])
    # A shorthand for the two DIMSE-N services storage commitment needs;
    # when present it wins over the individual settings.
    if "AllowStorageCommitment" in description:
        allowed = _field(description, "AllowStorageCommitment", bool,
                         context, True)
        modality["AllowNAction"] = allowed
        modality["AllowEventReport"] = allowed
    modality["UseDicomTls"] = _field(description, "UseDicomTls", bool,
                                     context, False)
    modality["LocalAet"] = _field(description, "LocalAet", str, context, "")
    modality["Timeout"] = _field(description, "Timeout", int, context, 0)
    if modality["Timeout"] < 0:
        raise ConfigurationError(f"{context}: \"Timeout\" must be positive")
    modality["RetrieveMethod"] = _field(description, "RetrieveMethod", str, context,
                                        "SystemDefault")
    if modality["RetrieveMethod"] not in RETRIEVE_METHODS:
        raise ConfigurationError(
            f"{context}: \"RetrieveMethod\" must be one of {', '.join(RETRIEVE_METHODS)}")
    return modality


def _modality_defaults():
    modality = {"AET": "", "Host": "", "Port": 104, "Manufacturer": "Generic"}
    for permission in MODALITY_PERMISSIONS:
        modality[permission] = True
    modality.update({"UseDicomTls": False, "LocalAet": "", "Timeout": 0,
                     "RetrieveMethod": "SystemDefault"})
    return dict(sorted(modality.items()))


def parse_peer(name, description, context=None):
    """One OrthancPeers entry, in either form, with its secrets, read as
    Orthanc does (orthancd.peer_registry.parse_peer); its name must be
    alphanumeric.  Use ``peer_public_view`` for what the REST API shows."""
    from orthancd import peer_registry
    context = context or f"OrthancPeers \"{name}\""
    try:
        peer_registry.check_name(name)
        return peer_registry.parse_peer(description)
    except peer_registry.BadPeer as error:
        raise ConfigurationError(f"{context}: {error.reason}") from None


def peer_public_view(peer):
    """A parsed peer as ``GET /peers?expand`` shows it: secrets are null."""
    from orthancd import peer_registry
    return peer_registry.public_view(peer)


# ---------------------------------------------------------------------------
# The configuration object


class Configuration(Mapping):
    """The merged configuration: every known option has a value.

    Values handed out are copies, so nobody can change the configuration
    behind the back of the rest of the server.
    """

    def __init__(self, defaults, user_options, source, files, base_directory,
                 defined_in=None):
        defined_in = defined_in or {}
        for name in user_options:
            if name not in defaults and name not in OPTIONAL_OPTION_TYPES:
                log.warn("{where}: unknown configuration option \"{name}\" "
                         "is ignored", where=defined_in.get(name, source),
                         name=name)
        _check_option_types(user_options, defaults, defined_in)

        options = dict(defaults)
        options.update(user_options)
        # Orthanc keeps its index next to the files unless told otherwise.
        if "IndexDirectory" not in user_options:
            options["IndexDirectory"] = options["StorageDirectory"]
        _check_semantics(options, defined_in)

        self._options = options
        self._user_option_names = frozenset(user_options)
        self.source = source
        self.files = files
        self.base_directory = base_directory
        self._modalities = {
            name: parse_modality(name, value)
            for name, value in options["DicomModalities"].items()}
        # Kept in the index instead, Orthanc's peers ignore the file's.
        self._peers = {} if options.get("OrthancPeersInDatabase") else {
            name: parse_peer(name, value)
            for name, value in options["OrthancPeers"].items()}

    def __getitem__(self, name):
        return copy.deepcopy(self._options[name])

    def __iter__(self):
        return iter(self._options)

    def __len__(self):
        return len(self._options)

    def __repr__(self):
        return f"<Configuration from {self.source}>"

    def is_set_by_user(self, name):
        """Whether the option comes from the user's files, not a default."""
        return name in self._user_option_names

    def resolve_path(self, path):
        """An absolute path, relative ones taken from the config folder."""
        path = os.path.expanduser(path)
        return os.path.normpath(os.path.join(self.base_directory, path))

    @property
    def storage_directory(self):
        return self.resolve_path(self._options["StorageDirectory"])

    @property
    def index_directory(self):
        return self.resolve_path(self._options["IndexDirectory"])

    @property
    def temporary_directory(self):
        """The configured temporary folder, or None for the system one."""
        if "TemporaryDirectory" not in self._options:
            return None
        return self.resolve_path(self._options["TemporaryDirectory"])

    @property
    def lua_scripts(self):
        return [self.resolve_path(script)
                for script in self._options["LuaScripts"]]

    @property
    def overwrite_instances_mode(self):
        """1.13.0's OverwriteInstances mode: "Never", "Always" or "IfChanged"
        (true and false are the old spellings of "Always" and "Never")."""
        value = self._options.get("OverwriteInstances", "Never")
        if isinstance(value, bool):
            return "Always" if value else "Never"
        return value

    @property
    def authentication_enabled(self):
        # Left unset, Orthanc protects exactly the servers reachable from
        # other hosts.
        if "AuthenticationEnabled" in self._options:
            return self._options["AuthenticationEnabled"]
        return self._options["RemoteAccessAllowed"]

    @property
    def registered_users(self):
        return dict(self._options["RegisteredUsers"])

    def dicom_modalities(self):
        """Symbolic name -> modality dict (fields of /modalities?expand)."""
        return copy.deepcopy(self._modalities)

    def orthanc_peers(self):
        """Symbolic name -> peer dict (see ``parse_peer``)."""
        return copy.deepcopy(self._peers)


# ---------------------------------------------------------------------------
# Regenerating default_configuration.json


def extract_defaults(reference_text):
    """The plain-JSON defaults of Orthanc's commented default file."""
    return parse_configuration_text(reference_text, "<reference>", environ={})


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(
            "usage: python -m orthancd.config REFERENCE.json [OLDER.json ...]\n"
            "  writes orthancd/default_configuration.json from Orthanc's "
            "default configuration; the older references give the options\n"
            "  the newer one no longer lists (1.13.0 omits KeepAlive, ...)\n")
        return 2
    defaults = {}
    for reference in argv[1:]:
        with open(reference, encoding="utf-8") as stream:
            for name, value in extract_defaults(stream.read()).items():
                defaults.setdefault(name, value)
    with open(DEFAULTS_FILE, "w", encoding="utf-8") as stream:
        json.dump(defaults, stream, indent=2)
        stream.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
