"""Answers rendered from the index alone, kept until the next commit.

Browsing clients ask for the same resources and lists again and again, and
while nothing is committed in between, the answer is the same bytes.  The
cache belongs to one index snapshot (the ID of the last committed write
transaction), read *before* an answer is rendered: a commit while it
renders makes the entry stale at once, and the first request after a commit
empties the cache.  What an answer depends on besides the index (a
resource's stability, kept in memory) must be part of its key.
"""
import collections


class SnapshotCache:

    def __init__(self, snapshot, max_entries=512, max_body=16 * 1024):
        """``snapshot()``: the index's current snapshot ID.  Bodies larger
        than ``max_body`` bytes are rendered each time (a listing of a
        large archive would hold megabytes)."""
        self._snapshot = snapshot
        self._snapshot_id = None
        self._entries = collections.OrderedDict()
        self._max_entries = max_entries
        self._max_body = max_body

    def answer(self, key, render):
        """The body ``render()`` gives for ``key`` at the current snapshot:
        rendered once per snapshot.  What ``render`` raises goes through
        and nothing is kept."""
        snapshot_id = self._snapshot()
        if snapshot_id != self._snapshot_id:
            self._entries.clear()
            self._snapshot_id = snapshot_id
        body = self._entries.get(key)
        if body is not None:
            self._entries.move_to_end(key)
            return body
        body = render()
        if len(body) <= self._max_body:
            self._entries[key] = body
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return body
