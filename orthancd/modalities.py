"""The registry of remote DICOM modalities (``DicomModalities``).

Modalities come from the configuration and may be added, replaced or
removed through ``PUT/DELETE /modalities/{id}`` (orthancd.registries).  As
in Orthanc, those changes live in memory unless ``DicomModalitiesInDatabase``
is true; then the whole set is kept in a small JSON file next to the index
(orthancd.registries.JsonFileStore); ``put``/``delete`` fire once it is
durable.

The registry is also a read-only ``Mapping`` name -> long-form modality
dict, which is what ``orthancd.net.access`` reads: the DICOM listener's AE
filter therefore sees modalities added at runtime.
"""
import os
import weakref

from orthancd.config import (
    MODALITY_MANUFACTURERS, MODALITY_PERMISSIONS, OBSOLETE_MANUFACTURERS, RETRIEVE_METHODS,
    ConfigurationError, parse_modality)
from orthancd.errors import ErrorCode, OrthancError
from orthancd.registries import JsonFileStore, NamedRegistry
from orthancd.serialization import read_field

STORE_FILE = "modalities.json"


class ModalityRegistry(NamedRegistry):

    def __init__(self, configured, strict_aet_comparison=False, persistent_path=None,
                 reactor=None):
        """``configured``: name -> parsed modality dict (``dicom_modalities()``).
        ``persistent_path``: the JSON file holding the set, or None for memory only.
        ``reactor``: whose thread pool writes the file (the global one by default)."""
        if reactor is None:
            from twisted.internet import reactor
        store = None if persistent_path is None else JsonFileStore(persistent_path, reactor)
        super().__init__(configured, store)
        self._strict = bool(strict_aet_comparison)
        self.restore()

    def entry_from_saved(self, name, saved):
        return parse_modality(name, saved)

    @classmethod
    def for_configuration(cls, configuration, reactor=None):
        persistent = None
        if configuration.get("DicomModalitiesInDatabase", False):
            persistent = os.path.join(configuration.index_directory, STORE_FILE)
        return cls(configuration.dicom_modalities(),
                   configuration.get("StrictAetComparison", False), persistent, reactor)

    # -- lookups --

    def get_modality(self, name):
        """The modality dict of a symbolic name, or Orthanc's 404."""
        try:
            return dict(self._entries[name])
        except KeyError:
            raise OrthancError(ErrorCode.InexistentItem,
                               "No modality with symbolic name: %s" % name) from None

    def same_aet(self, a, b):
        if self._strict:
            return a == b
        return a.strip().upper() == b.strip().upper()

    def lookup_aet(self, aet):
        """(name, modality) of the first modality with this AET, or None."""
        for name in self.names():
            if self.same_aet(self._entries[name]["AET"], aet):
                return name, dict(self._entries[name])
        return None

    # -- changes --

    def put(self, name, description):
        """Add or replace a modality from a REST body; raises Orthanc's 400.
        The Deferred fires with the modality once the change is durable."""
        check_description(description)
        try:
            modality = parse_modality(name, normalized_description(description))
        except ConfigurationError:
            raise OrthancError(ErrorCode.BadFileFormat) from None
        return self.replace(name, modality).addCallback(lambda _: modality)

    def delete(self, name):
        """Remove a modality; the Deferred fires once the change is durable."""
        if name not in self._entries:
            raise OrthancError(ErrorCode.InexistentItem,
                               "No modality with symbolic name: %s" % name)
        return self.remove(name)


def _bad_port(port):
    return OrthancError(ErrorCode.ParameterOutOfRange,
                        "A TCP port number must be in range [1..65534], but found: %d" % port)


def _check_port(value):
    """Orthanc takes an integer or a string holding one."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise OrthancError(ErrorCode.BadFileFormat) from None
    elif isinstance(value, bool) or not isinstance(value, int):
        raise OrthancError(ErrorCode.BadFileFormat)
    if not 1 <= value <= 65534:
        raise _bad_port(value)
    return value


def _check_manufacturer(value):
    if value not in MODALITY_MANUFACTURERS and value not in OBSOLETE_MANUFACTURERS:
        raise OrthancError(ErrorCode.ParameterOutOfRange,
                           'Unknown modality manufacturer: "%s"' % value)


def check_description(description):
    """Orthanc's errors for a modality sent to PUT /modalities/{id}, checked
    in the order of its RemoteModalityParameters::Unserialize."""
    if isinstance(description, list):
        if len(description) not in (3, 4) or not all(
                isinstance(item, str) for item in description[:2]):
            raise OrthancError(ErrorCode.BadFileFormat)
        _check_port(description[2])
        if len(description) == 4:
            if not isinstance(description[3], str):
                raise OrthancError(ErrorCode.BadFileFormat)
            _check_manufacturer(description[3])
        return
    if not isinstance(description, dict):
        raise OrthancError(ErrorCode.BadFileFormat)
    for key in ("AET", "Host"):
        if key not in description or not isinstance(description[key], str):
            raise OrthancError(ErrorCode.BadFileFormat, "String value expected in field: " + key)
    if "Port" not in description:
        raise OrthancError(ErrorCode.BadFileFormat)
    _check_port(description["Port"])
    if "Manufacturer" in description:
        _check_manufacturer(read_field(description, "Manufacturer", str))
    for key in MODALITY_PERMISSIONS + ("AllowStorageCommitment", "UseDicomTls"):
        if key in description:
            read_field(description, key, bool)
    if "LocalAet" in description:
        read_field(description, "LocalAet", str)
    if "Timeout" in description and read_field(description, "Timeout", int) < 0:
        raise OrthancError(ErrorCode.BadParameterType,
                           "Negative value found while expecting an unsigned int "
                           "in field 'Timeout'")
    if "RetrieveMethod" in description and \
            read_field(description, "RetrieveMethod", str) not in RETRIEVE_METHODS:
        raise OrthancError(ErrorCode.ParameterOutOfRange,
                           'RetrieveMethod can be "C-MOVE", "C-GET" or "SystemDefault": %s'
                           % description["RetrieveMethod"])


def normalized_description(description):
    """A checked description with its port as an integer."""
    if isinstance(description, list):
        return description[:2] + [int(description[2])] + description[3:]
    return dict(description, Port=int(description["Port"]))


# One registry per server, shared by the REST API and the DICOM listener
# (OrthancServer does not know about modalities).
_REGISTRIES = weakref.WeakKeyDictionary()


def modality_registry(server):
    registry = _REGISTRIES.get(server)
    if registry is None:
        registry = ModalityRegistry.for_configuration(server.configuration, server.reactor)
        _REGISTRIES[server] = registry
    return registry
