"""A bounded cache of rendered answers about stored files.

Files are content-addressed, so what is rendered from one (its tags as JSON,
in one mode and encoding) never changes: the FileUuid is part of the key and
entries never go stale, they only get evicted.  This plays the part of
Orthanc's cache of parsed DICOM files for the routes clients poll most.
"""
import collections


class RenderCache:

    def __init__(self, max_entries=4096):
        self._entries = collections.OrderedDict()
        self._max = max_entries

    def get(self, key):
        body = self._entries.get(key)
        if body is not None:
            self._entries.move_to_end(key)
        return body

    def put(self, key, body):
        self._entries[key] = body
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
