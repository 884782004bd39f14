"""The registry of remote DICOM modalities (``DicomModalities``).

Modalities come from the configuration and may be added, replaced or
removed through ``PUT/DELETE /modalities/{id}``.  As in Orthanc, those
changes live in memory unless ``DicomModalitiesInDatabase`` is true; then
the whole set is kept in a small JSON file next to the index, rewritten
atomically (temporary file, fsync, rename, fsync of the directory) so a
crash leaves either the old or the new set.  The write runs in the
reactor's thread pool (an fsync can take long), one at a time in the order
of the changes; ``put``/``delete`` fire once it is durable.

The registry is also a read-only ``Mapping`` name -> long-form modality
dict, which is what ``orthancd.net.access`` reads: the DICOM listener's AE
filter therefore sees modalities added at runtime.
"""
import json
import os
import weakref
from collections.abc import Mapping

from twisted.internet import defer, threads

from orthancd.config import ConfigurationError, parse_modality
from orthancd.errors import ErrorCode, OrthancError

STORE_FILE = "modalities.json"


class ModalityRegistry(Mapping):

    def __init__(self, configured, strict_aet_comparison=False, persistent_path=None,
                 reactor=None):
        """``configured``: name -> parsed modality dict (``dicom_modalities()``).
        ``persistent_path``: the JSON file holding the set, or None for memory only.
        ``reactor``: whose thread pool writes the file (the global one by default)."""
        self._strict = bool(strict_aet_comparison)
        self._path = persistent_path
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        # Writes run one at a time, in the order of the changes, so the
        # file ends with the last set even when requests overlap.
        self._writing = defer.DeferredLock()
        self._modalities = dict(configured)
        if persistent_path is not None and os.path.exists(persistent_path):
            with open(persistent_path, encoding="utf-8") as stream:
                stored = json.load(stream)
            # What was saved wins: it includes the PUT/DELETE done at runtime.
            self._modalities = {name: parse_modality(name, value) for name, value in stored.items()}

    @classmethod
    def for_configuration(cls, configuration, reactor=None):
        persistent = None
        if configuration.get("DicomModalitiesInDatabase", False):
            persistent = os.path.join(configuration.index_directory, STORE_FILE)
        return cls(configuration.dicom_modalities(),
                   configuration.get("StrictAetComparison", False), persistent, reactor)

    # -- Mapping (read by the AE filter) --

    def __getitem__(self, name):
        return self._modalities[name]

    def __iter__(self):
        return iter(sorted(self._modalities))

    def __len__(self):
        return len(self._modalities)

    # -- lookups --

    def names(self):
        return sorted(self._modalities)

    def get_modality(self, name):
        """The modality dict of a symbolic name, or Orthanc's 404."""
        try:
            return dict(self._modalities[name])
        except KeyError:
            raise OrthancError(ErrorCode.InexistentItem,
                               "No modality with symbolic name: %s" % name) from None

    def same_aet(self, a, b):
        if self._strict:
            return a == b
        return a.strip().upper() == b.strip().upper()

    def lookup_aet(self, aet):
        """(name, modality) of the first modality with this AET, or None."""
        for name in sorted(self._modalities):
            if self.same_aet(self._modalities[name]["AET"], aet):
                return name, dict(self._modalities[name])
        return None

    # -- changes --

    def put(self, name, description):
        """Add or replace a modality from a REST body; raises Orthanc's 400.
        The Deferred fires with the modality once the change is durable."""
        try:
            modality = parse_modality(name, description)
        except ConfigurationError as exc:
            raise OrthancError(ErrorCode.BadFileFormat, str(exc)) from None
        self._modalities[name] = modality
        return self._save().addCallback(lambda _: modality)

    def delete(self, name):
        """Remove a modality; the Deferred fires once the change is durable."""
        if name not in self._modalities:
            raise OrthancError(ErrorCode.InexistentItem,
                               "No modality with symbolic name: %s" % name)
        del self._modalities[name]
        return self._save()

    def _save(self):
        if self._path is None:
            return defer.succeed(None)
        # The set as of this change: later changes write their own snapshot.
        snapshot = json.dumps(self._modalities, indent=2, sort_keys=True)
        return self._writing.run(threads.deferToThreadPool, self._reactor,
                                 self._reactor.getThreadPool(), write_durably,
                                 self._path, snapshot)


def write_durably(path, text):
    """Blocking: replace ``path`` by ``text`` atomically and durably."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# One registry per server, shared by the REST API and the DICOM listener
# (OrthancServer does not know about modalities).
_REGISTRIES = weakref.WeakKeyDictionary()


def modality_registry(server):
    registry = _REGISTRIES.get(server)
    if registry is None:
        registry = ModalityRegistry.for_configuration(server.configuration, server.reactor)
        _REGISTRIES[server] = registry
    return registry
