"""Named remotes changed at runtime: the DICOM modalities
(orthancd.modalities) and the Orthanc peers (orthancd.peer_registry).

Both come from the configuration, and PUT/DELETE add, replace or remove
them.  With a store (DicomModalitiesInDatabase, OrthancPeersInDatabase)
every change saves the whole set, one write at a time in the order of the
changes, so the store ends with the last set even when requests overlap;
``replace``/``remove`` fire once the change is durable.

A registry is a read-only ``Mapping`` name -> entry (a dict).
"""
import json
import os
from collections.abc import Mapping

from twisted.internet import defer, threads


class NamedRegistry(Mapping):
    """Subclasses say how a saved entry is read (``entry_from_saved``) and
    how an entry is saved (``entry_to_saved``)."""

    def __init__(self, configured, store=None):
        self._entries = dict(configured)
        self._store = store
        self._writing = defer.DeferredLock()

    def entry_from_saved(self, name, saved):
        return saved

    def entry_to_saved(self, entry):
        return entry

    def restore(self):
        """Take the set the store holds, when it holds one: it includes the
        changes done at runtime."""
        if self._store is None:
            return
        saved = self._store.load()
        if saved is not None:
            self._entries = {name: self.entry_from_saved(name, value)
                             for name, value in saved.items()}

    # -- Mapping --

    def __getitem__(self, name):
        return self._entries[name]

    def __iter__(self):
        return iter(sorted(self._entries))

    def __len__(self):
        return len(self._entries)

    def names(self):
        return sorted(self._entries)

    # -- changes --

    def replace(self, name, entry):
        """Add or replace ``name``; fires once the change is durable."""
        self._entries[name] = entry
        return self._save()

    def remove(self, name):
        """Forget ``name`` (which must exist); fires once the change is durable."""
        del self._entries[name]
        return self._save()

    def _save(self):
        if self._store is None:
            return defer.succeed(None)
        # The set as of this change: later changes save their own snapshot.
        snapshot = {name: self.entry_to_saved(self._entries[name]) for name in self.names()}
        return self._writing.run(self._store.save, snapshot)


class JsonFileStore:
    """The set as a JSON file, rewritten atomically (temporary file, fsync,
    rename, fsync of the directory) in the reactor's thread pool, so that a
    crash leaves either the old or the new set."""

    def __init__(self, path, reactor):
        self._path = path
        self._reactor = reactor

    def load(self):
        """Blocking: the saved set, or None when nothing was saved."""
        if not os.path.exists(self._path):
            return None
        with open(self._path, encoding="utf-8") as stream:
            return json.load(stream)

    def save(self, snapshot):
        text = json.dumps(snapshot, indent=2, sort_keys=True)
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                         write_durably, self._path, text)


class GlobalPropertyStore:
    """The set as a global property of the index (as Orthanc keeps it in its
    database): saved through the index writer, durable once committed."""

    def __init__(self, index, name, unreadable):
        """``unreadable``: the exception raised when the property does not
        hold a JSON object."""
        self._index = index
        self._name = name
        self._unreadable = unreadable

    def load(self):
        """The saved set; an empty one when nothing was saved (Orthanc's
        default), the configured entries being ignored."""
        text = self._index.get_global_property(self._name)
        if text is None:
            return {}
        try:
            saved = json.loads(text)
        except ValueError:
            raise self._unreadable from None
        if not isinstance(saved, dict):
            raise self._unreadable
        return saved

    def save(self, snapshot):
        return self._index.set_global_property(self._name, json.dumps(snapshot))


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
