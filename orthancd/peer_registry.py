"""The Orthanc peers this server knows (``OrthancPeers``): their
parameters, read and written as Orthanc 1.13.0's WebServiceParameters, and
the registry that PUT/DELETE /peers/{id} change.

A peer is a dict: Url (ending with "/"), Username and Password (None when
no user is set), HttpHeaders (dict), CertificateFile, CertificateKeyFile,
CertificateKeyPassword (None when unset), Pkcs11, Timeout (seconds, 0 for
HttpTimeout) and UserProperties (the other keys of the long form, as
strings).

As in Orthanc, changes live in memory unless ``OrthancPeersInDatabase`` is
true; then the set is a global property of the index, saved in Orthanc's
format (short form when possible, passwords included), and the peers of the
configuration file are ignored.
"""
import os
import weakref

from orthancd.errors import ErrorCode, OrthancError
from orthancd.logs import logger
from orthancd.registries import GlobalPropertyStore, NamedRegistry

log = logger(__name__)

PROPERTY_NAME = "Peers"

_RESERVED_KEYS = frozenset((
    "CertificateFile", "CertificateKeyFile", "CertificateKeyPassword", "HttpHeaders",
    "Password", "Pkcs11", "Url", "URL", "Username", "Timeout"))
_INT_MIN, _INT_MAX = -2 ** 31, 2 ** 31 - 1
_LARGEST_INT = 2 ** 63 - 1


class BadPeer(OrthancError):
    """A peer description Orthanc refuses.  ``reason`` says why in words for
    the configuration file, where Orthanc's own error often says nothing."""

    def __init__(self, code, details, reason):
        super().__init__(code, details)
        self.reason = reason


def _bad(reason, details=None, code=ErrorCode.BadFileFormat):
    return BadPeer(code, details, reason)


def _empty_peer():
    return {"Url": None, "Username": None, "Password": None, "HttpHeaders": {},
            "CertificateFile": None, "CertificateKeyFile": None,
            "CertificateKeyPassword": None, "Pkcs11": False, "Timeout": 0,
            "UserProperties": {}}


def parse_peer(description):
    """A peer from either form of an OrthancPeers entry (or of the body of
    PUT /peers/{id}); raises BadPeer with Orthanc's error."""
    peer = _empty_peer()
    if isinstance(description, list):
        _from_short_form(peer, description)
    elif isinstance(description, dict):
        _from_long_form(peer, description)
    else:
        raise _bad('expected a list ["url", ...] or an object {"Url": ...}')
    return peer


def _as_string(value):
    # What jsoncpp's asString() makes of an item of the short form.
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise _bad('the items of ["url", "username", "password"] must be strings')


def _from_short_form(peer, description):
    if len(description) not in (1, 3):
        raise _bad('expected ["url"] or ["url", "username", "password"]')
    _set_url(peer, _as_string(description[0]))
    if len(description) == 3:
        _set_credentials(peer, _as_string(description[1]), _as_string(description[2]))


def _string_member(description, key, default=""):
    if key not in description:
        return default
    value = description[key]
    if not isinstance(value, str):
        raise _bad('"%s" must be a string' % key)
    return value


def _from_long_form(peer, description):
    url = _string_member(description, "Url")
    _set_url(peer, url or _string_member(description, "URL"))
    _set_credentials(peer, _string_member(description, "Username"),
                     _string_member(description, "Password"))
    certificate = _string_member(description, "CertificateFile")
    if certificate:
        peer["CertificateFile"] = certificate
        key_file = _string_member(description, "CertificateKeyFile")
        password = _string_member(description, "CertificateKeyPassword")
        if not password:
            log.warn("No password specified for certificate key file: {file}", file=key_file)
        peer["CertificateKeyFile"] = key_file or None
        peer["CertificateKeyPassword"] = password or None
    if "Pkcs11" in description:
        if not isinstance(description["Pkcs11"], bool):
            raise _bad('"Pkcs11" must be a Boolean')
        peer["Pkcs11"] = description["Pkcs11"]
    if "HttpHeaders" in description:
        headers = description["HttpHeaders"]
        if not isinstance(headers, dict):
            raise _bad('"HttpHeaders" must be an object')
        for header, value in headers.items():
            if not isinstance(value, str):
                raise _bad('the HTTP header "%s" must be a string' % header)
        peer["HttpHeaders"] = dict(headers)
    for key, value in description.items():
        if key not in _RESERVED_KEYS:
            peer["UserProperties"][key] = _user_property(key, value)
    if "Timeout" in description:
        peer["Timeout"] = _unsigned(description["Timeout"], "Timeout")


def _user_property(key, value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, int) and value <= _LARGEST_INT:
        if not _INT_MIN <= value <= _INT_MAX:
            # Orthanc fails to read it as an int, and says nothing more.
            raise _bad("the user-defined property %s does not fit in an integer" % key)
        return str(value)
    message = "User-defined properties associated with a Web service must be strings: " + key
    raise _bad(message, message)


def _unsigned(value, field):
    """SerializationToolbox::ReadUnsignedInteger."""
    if isinstance(value, bool) or not isinstance(value, int):
        message = "Integer value expected in field: " + field
        raise _bad(message, message)
    if value < 0:
        message = "Negative value found while expecting an unsigned int in field '%s'" % field
        raise _bad(message, message, ErrorCode.BadParameterType)
    return value % 2 ** 32


def _set_url(peer, url):
    if "://" in url and not url.startswith(("http://", "https://")):
        raise _bad("Bad URL: " + url, "Bad URL: " + url)
    if not url:
        raise _bad("the URL is empty", "Empty URL")
    peer["Url"] = url if url.endswith("/") else url + "/"


def _set_credentials(peer, username, password):
    if not username and password:
        raise _bad("a password is given without a username")
    if username:
        peer["Username"], peer["Password"] = username, password


def check_name(name):
    """Orthanc's rule for the symbolic names of modalities and peers."""
    for character in name:
        if not (character.isascii() and character.isalnum()) and character not in "-_":
            raise _bad("Only alphanumeric, dash characters and underscores are allowed "
                       "in the names of modalities/peers, but found: " + name,
                       "Only alphanumeric, dash characters and underscores are allowed "
                       "in the names of modalities/peers, but found: " + name)


def check_client_certificate(peer):
    """Blocking (file system): the client certificate and key files exist."""
    certificate = peer.get("CertificateFile")
    if not certificate:
        return
    if not os.path.isfile(certificate):
        raise OrthancError(ErrorCode.InexistentFile, "Cannot open certificate file: " + certificate)
    key = peer.get("CertificateKeyFile")
    if key and not os.path.isfile(key):
        raise OrthancError(ErrorCode.InexistentFile, "Cannot open key file: " + key)


def _needs_long_form(peer):
    return bool(peer.get("CertificateFile") or peer.get("CertificateKeyFile")
                or peer.get("CertificateKeyPassword") or peer.get("Pkcs11")
                or peer.get("HttpHeaders") or peer.get("UserProperties") or peer.get("Timeout"))


def serialize_peer(peer, include_passwords):
    """WebServiceParameters::Serialize: the short form when nothing else is
    set, else the long form; passwords left out unless asked for (they are
    then an empty string in the short form)."""
    username = peer.get("Username") or ""
    password = peer.get("Password") or ""
    if not _needs_long_form(peer):
        if not username and not password:
            return [peer["Url"]]
        return [peer["Url"], username, password if include_passwords else ""]
    out = {"Url": peer["Url"]}
    if username or password:
        out["Username"] = username
        if include_passwords:
            out["Password"] = password
    if peer.get("CertificateFile"):
        out["CertificateFile"] = peer["CertificateFile"]
    if peer.get("CertificateKeyFile"):
        out["CertificateKeyFile"] = peer["CertificateKeyFile"]
    if peer.get("CertificateKeyPassword") and include_passwords:
        out["CertificateKeyPassword"] = peer["CertificateKeyPassword"]
    out["Pkcs11"] = bool(peer.get("Pkcs11"))
    out["Timeout"] = peer.get("Timeout") or 0
    out["HttpHeaders"] = dict(peer.get("HttpHeaders") or {})
    out.update(peer.get("UserProperties") or {})
    return out


def public_view(peer):
    """WebServiceParameters::FormatPublic: what GET /peers?expand and
    /peers/{id}/configuration show (secrets are null)."""
    view = {"Url": peer["Url"]}
    if peer.get("Username"):
        view["Username"] = peer["Username"]
        view["Password"] = None
    if peer.get("CertificateFile"):
        view["CertificateFile"] = peer["CertificateFile"]
        view["CertificateKeyFile"] = None
        view["CertificateKeyPassword"] = None
    view["Pkcs11"] = bool(peer.get("Pkcs11"))
    view["Timeout"] = peer.get("Timeout") or 0
    view["HttpHeaders"] = sorted(peer.get("HttpHeaders") or {})
    view.update(peer.get("UserProperties") or {})
    return dict(sorted(view.items()))


class PeerRegistry(NamedRegistry):
    """The peers by symbolic name.  With a store, the saved set is read at
    the first lookup (the index is open by then)."""

    def __init__(self, configured, store=None):
        super().__init__(configured, store)
        self._restored = store is None

    @classmethod
    def for_server(cls, server):
        configuration = server.configuration
        store = None
        if configuration.get("OrthancPeersInDatabase", False):
            store = GlobalPropertyStore(server.index, PROPERTY_NAME, OrthancError(
                ErrorCode.InternalError,
                "Cannot unserialize the list of peers from the Orthanc database"))
        return cls(configuration.orthanc_peers(), store)

    def entry_from_saved(self, name, saved):
        return parse_peer(saved)

    def entry_to_saved(self, entry):
        return serialize_peer(entry, include_passwords=True)

    def _ensure_restored(self):
        if not self._restored:
            self.restore()
            self._restored = True

    def __getitem__(self, name):
        self._ensure_restored()
        return super().__getitem__(name)

    def __iter__(self):
        self._ensure_restored()
        return super().__iter__()

    def __len__(self):
        self._ensure_restored()
        return super().__len__()

    def names(self):
        self._ensure_restored()
        return super().names()

    def get_peer(self, name):
        """A copy of the peer, or Orthanc's UnknownResource."""
        self._ensure_restored()
        if name not in self._entries:
            raise OrthancError(ErrorCode.UnknownResource, "No peer with symbolic name: " + name)
        return dict(self._entries[name])

    def put(self, name, description, check_files):
        """Add or replace a peer from the body of PUT /peers/{id}, checked as
        Orthanc does.  ``check_files(peer)``: a Deferred checking its client
        certificate off the reactor.  Fires once the change is durable."""
        self._ensure_restored()
        peer = parse_peer(description)
        check_name(name)

        def checked(_):
            return self.replace(name, peer)
        return check_files(peer).addCallback(checked)

    def delete(self, name):
        """Remove a peer; fires once the change is durable."""
        self._ensure_restored()
        if name not in self._entries:
            raise OrthancError(ErrorCode.InexistentItem, "Unknown Orthanc peer: " + name)
        return self.remove(name)


# One registry per server, shared by the REST API, the jobs and Lua
# (OrthancServer does not know about peers).
_REGISTRIES = weakref.WeakKeyDictionary()


def peer_registry(server):
    registry = _REGISTRIES.get(server)
    if registry is None:
        registry = PeerRegistry.for_server(server)
        _REGISTRIES[server] = registry
    return registry
