"""Ordered walks over the LMDB index that LmdbResourceIndex does not offer.

They read two of its databases directly, relying on their documented layout
(orthancd/index/lmdb_index.py): ``resources`` is keyed by level byte + the
SHA-1 behind the public ID, so a cursor over one level yields resources in
public-ID order (the order Orthanc 1.10.1's SQLite lookups answer in), and
``identifiers`` is keyed by level + tag + normalized value, so a range of
values is a contiguous run of keys.
"""
import json
import struct

from orthancd.ids import format_public_id
from orthancd.index.lmdb_index import identifier_key


def iter_level(index, level):
    """(public ID, Resource) of every resource of ``level``, by public ID."""
    prefix = bytes((int(level),))
    with index.env.begin(buffers=False) as txn:
        cursor = txn.cursor(db=index.db["resources"])
        if not cursor.set_range(prefix):
            return
        for key, raw in cursor:
            if key[:1] != prefix:
                break
            public_id = format_public_id(key[1:])
            yield public_id, index._to_resource(level, public_id, json.loads(raw))


def scan_identifier_range(index, level, tag, lower, upper, cap=0):
    """Public IDs whose normalized ``tag`` value lies in [lower, upper]
    (either bound may be None), in value order.  Stops after ``cap`` IDs
    (returns None then) so the caller can give up on an unselective scan."""
    head = bytes((int(level),)) + struct.pack(">I", tag)
    start = identifier_key(level, tag, lower or "")
    stop = None if upper is None else identifier_key(level, tag, upper)
    out = []
    with index.env.begin(buffers=False) as txn:
        cursor = txn.cursor(db=index.db["identifiers"])
        if not cursor.set_range(start):
            return out
        for key, value in cursor:
            if key[:5] != head or (stop is not None and key > stop):
                break
            out.append(format_public_id(value[1:]))
            if cap and len(out) > cap:
                return None
    return out


def scan_identifier_prefix(index, level, tag, prefix, cap=0):
    """Like ``index.scan_identifier_prefix`` but IDs only, with a cap."""
    out = []
    for _, public_id in index.scan_identifier_prefix(level, tag, prefix):
        out.append(public_id)
        if cap and len(out) > cap:
            return None
    return out
