"""ResourceIndex on LMDB.

One environment, named sub-databases.  A resource key is a level byte plus the
20-byte SHA-1 behind its public ID, so there is no internal-ID indirection,
lookups by public ID are a single get, and keys sort as Orthanc 1.13.0 lists
resources (by public ID: the hex groups of the ID print the SHA-1 in order).

  resources        key -> JSON {s: creation seq, p: parent public ID, t: main tags (strings),
                   q: main sequences (full JSON), pt: patient tags (studies),
                   x: protected, r: recycling seq}
  children         parent key -> child key                   (dupsort: by ID)
  metadata         key -> the resource's metadata, one record: per type in
                   ascending order, 2-byte type + 4-byte length + UTF-8 value
                   (one entry per resource, not per metadata: an instance
                   brings ten, written and deleted together)
  metadata_values  level byte + 2-byte type + value -> key   (dupsort, ordering;
                   patients, studies and series only: METADATA_VALUE_LEVELS)
  attachments      key + 2-byte content type -> StoredFile: 50 bytes or so
                   (pack_attachment), or a JSON record (written by earlier
                   versions, or with UUIDs or MD5s of an unusual form)
  identifiers      level byte + 4-byte tag + normalized value -> key
                   (dupsort, for find; studies also under their patient tags)
  labels           key -> label                              (dupsort)
  labelled         label -> key                              (dupsort)
  recycling        8-byte seq -> patient key                 (oldest first)
  changes          8-byte seq -> JSON
  resource_changes key -> 8-byte seq                         (dupsort: the changes
                   of a resource, dropped with it as SQLite's ON DELETE CASCADE
                   drops them in Orthanc)
  exports          8-byte seq -> JSON
  meta             name -> value (schema version, counters, statistics; and per
                   level and tag, "count:inexact:<level>:<tag>" -> how many
                   indexed values differ from their upper-cased selves: while
                   none does, the identifiers database answers a count alone)
  released         file UUID -> empty: files no longer referenced, not yet
                   removed (written in the transaction that drops the last
                   reference, so a crash before the removal leaves them listed
                   for the start-up check)
  revisions        key + b"m" or b"a" + 2-byte type -> 8-byte revision of a
                   metadata or an attachment (Orthanc's revisions, for ETags
                   and If-Match); absent means revision 0, which most have
"""
import contextlib
import hashlib
import json
import os
import struct
import threading

import lmdb
from twisted.internet import defer

from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel, format_public_id, parse_public_id
from orthancd.changes import LABEL_ADDED, LABEL_REMOVED
from orthancd.index.base import (
    USER_CONTENT_START, USER_METADATA_START, Change, ChangeType, ContentType, DeleteOutcome,
    DescendantsSummary, METADATA_VALUE_LEVELS, MetadataType, Resource, ResourceIndex,
    StorageFull, StoreOutcome, UnknownResource, now_iso, series_completeness)
from orthancd.index.map_gate import MapGate
from orthancd.index.writer import IndexStopped, IndexWriter
from orthancd.logs import logger
from orthancd.storage.area import StoredFile

log = logger(__name__)

SCHEMA_VERSION = b"2"
_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")
_MAX_INDEXED_VALUE = 400  # LMDB keys are limited to 511 bytes; the index only narrows
# How long removed files may wait for the next delete to be forgotten with it.
_FORGET_DELAY = 0.1
_SCHEDULING = object()  # the delayed forget, about to be scheduled on the reactor
_KEY_SIZE = 21

_DATABASES = ("resources", "children", "metadata", "metadata_values", "attachments",
              "identifiers", "labels", "labelled", "recycling", "changes", "resource_changes",
              "exports", "meta", "released", "key_values", "revisions")
_DUPSORT = ("children", "metadata_values", "identifiers", "labels", "labelled",
            "resource_changes")

_STATS_KEYS = ("patients", "studies", "series", "instances", "disk", "uncompressed")
_LEVEL_COUNTERS = ("patients", "studies", "series", "instances")


class IncompatibleIndex(RuntimeError):
    """The index folder holds an index of another schema."""


def resource_key(level, public_id):
    try:
        return bytes((int(level),)) + parse_public_id(public_id)
    except ValueError:
        raise UnknownResource(public_id)


def _public_id(key):
    return format_public_id(key[1:])


def _dumps(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _loads(raw):
    # From text, json skips guessing the encoding of bytes: records are UTF-8.
    return _decode_json(str(raw, "utf-8"))


_decode_json = json.JSONDecoder().decode


_ATTACHMENT = struct.Struct(">BBQQ16s16s")
_BINARY_ATTACHMENT = 1  # a JSON record begins with "{"
_COMPRESSED, _NO_MD5, _OWN_UNCOMPRESSED_MD5 = 1, 2, 4
# MD5s not known yet, to be derived from the content (StoredFile): that of
# the bytes stored, that of the content when the record has no MD5 of its own
# for it.
_MD5_PENDING, _UNCOMPRESSED_MD5_PENDING = 8, 16


def _uuid_bytes(text):
    """The 16 bytes of a canonical (lower-case) UUID, else None."""
    if len(text) != 36 or text[8] != "-" or text[13] != "-" or text[18] != "-" \
            or text[23] != "-":
        return None
    return _hex_bytes(text.replace("-", ""), 16)


def _hex_bytes(text, size):
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if len(raw) == size and raw.hex() == text else None


def _uuid_text(raw):
    text = raw.hex()
    return "%s-%s-%s-%s-%s" % (text[:8], text[8:12], text[12:16], text[16:20], text[20:])


def pack_attachment(stored):
    """The attachments database's record of a StoredFile."""
    uuid, md5, uncompressed_md5 = _uuid_bytes(stored.uuid), stored.md5, stored.uncompressed_md5
    flags = _COMPRESSED if stored.compressed else 0
    extra = b""
    if md5 == "" and uncompressed_md5 == "":
        flags |= _NO_MD5
        md5_bytes = bytes(16)
    else:
        if md5 is None:
            flags |= _MD5_PENDING
            md5_bytes = bytes(16)
        else:
            md5_bytes = _hex_bytes(md5, 16)
        if uncompressed_md5 is None:
            if md5 is not None:
                flags |= _UNCOMPRESSED_MD5_PENDING
        elif uncompressed_md5 != md5:
            flags |= _OWN_UNCOMPRESSED_MD5
            extra = _hex_bytes(uncompressed_md5, 16)
    if uuid is None or md5_bytes is None or extra is None:
        return _dumps(stored.to_record())
    return _ATTACHMENT.pack(_BINARY_ATTACHMENT, flags, stored.size, stored.uncompressed_size,
                            uuid, md5_bytes) + extra


def unpack_attachment(raw):
    """The StoredFile of a record of pack_attachment (or of a JSON one)."""
    if raw[0] != _BINARY_ATTACHMENT:
        return StoredFile.from_record(_loads(raw))
    _, flags, size, uncompressed_size, uuid, md5 = _ATTACHMENT.unpack_from(raw)
    md5 = "" if flags & _NO_MD5 else None if flags & _MD5_PENDING else md5.hex()
    if flags & _OWN_UNCOMPRESSED_MD5:
        uncompressed_md5 = bytes(raw[_ATTACHMENT.size:]).hex()
    elif flags & _UNCOMPRESSED_MD5_PENDING:
        uncompressed_md5 = None
    else:
        uncompressed_md5 = md5
    return StoredFile(_uuid_text(uuid), size, md5, uncompressed_size, uncompressed_md5,
                      bool(flags & _COMPRESSED))


def _obsolete_files(outcome):
    return outcome.obsolete_files


def _deleted_file(previous):
    return [previous]


def _tracking_files(operation, referenced, released_by, db, writer=None):
    """``operation`` that also keeps the released table right, in its own
    transaction: a file it references is no longer released, a file it
    stops referencing (``released_by(result)``) is.  An operation that
    references new files and releases others asks ``writer`` to make its
    files durable before the commit (IndexWriter.files_first)."""
    def tracked(txn, *args):
        result = operation(txn, *args)
        released = released_by(result)
        if released and referenced and writer is not None:
            writer.files_first()
        kept = {info.uuid for info in referenced} - {info.uuid for info in released}
        for uuid in kept:
            txn.delete(uuid.encode(), db=db["released"])
        for info in released:
            txn.put(info.uuid.encode(), b"", db=db["released"])
        return result
    return tracked


def identifier_key(level, tag, normalized_value):
    value = normalized_value.encode("utf-8")[:_MAX_INDEXED_VALUE]
    return bytes((int(level),)) + struct.pack(">I", tag) + value


_INEXACT_COUNTED = b"inexact-counted"
# The files referenced by the last commit made durable together with them
# (LmdbResourceIndex._record_unsettled).
_UNSETTLED = b"unsettled-files"
_NEXT_RECYCLING = b"next:recycling"  # the next place in the recycling order (_next)
# Set once an index written when instances' metadata were indexed by value
# too no longer holds those entries.
_INSTANCE_VALUES_DROPPED = b"instance-metadata-values-dropped"
_METADATA_PACKED = b"metadata-packed"
# Resources whose metadata one transaction of that migration packs: a write
# transaction holds a bounded number of dirty pages (MDB_TXN_FULL).
_PACKED_PER_TRANSACTION = 20000
_DELETED_PER_TRANSACTION = 200000
_VALUE_LEVEL_BYTES = frozenset(int(level) for level in METADATA_VALUE_LEVELS)


def _inexact_counter(level, tag):
    # A name for _add_counter / _counter (b"count:" + name).
    return "inexact:%d:%08x" % (int(level), tag)


def _indexed_exactly(value, normalized):
    """Is the indexed form of ``value`` exactly its upper-cased self?"""
    return normalized == value.upper() and len(normalized) <= _MAX_INDEXED_VALUE


_METADATA_REVISION = b"m"
_ATTACHMENT_REVISION = b"a"
_LAST_USER_TYPE = 65535


def _revision_key(key, kind, number):
    return key + kind + _U16.pack(int(number))


def _same_content(a, b):
    """Whether two StoredFiles hold the same content: the same name (a
    content address), or the same MD5 of their content where both are
    known (one compressed, the other not)."""
    if a.uuid == b.uuid:
        return True
    return bool(a.uncompressed_md5) and a.uncompressed_md5 == b.uncompressed_md5


def _check_revision(expected, revision, md5):
    """Orthanc's test of an If-Match: ``expected`` is None (no test) or the
    (revision, MD5) the client last saw."""
    if expected is not None and (revision, md5) != (expected[0], expected[1]):
        raise OrthancError(ErrorCode.Revision)


def _md5_text(value):
    return hashlib.md5(value.encode("utf-8")).hexdigest()


def _check_value_level(level):
    level = ResourceLevel(level)
    if level not in METADATA_VALUE_LEVELS:
        raise ValueError("metadata of the %s level are not indexed by value" % level.name)


_METADATA_ENTRY = struct.Struct(">HI")


def pack_metadata(values):
    """{metadata type: str} -> the record of a resource's metadata."""
    parts = []
    for metadata_type in sorted(values):
        raw = values[metadata_type].encode("utf-8")
        parts.append(_METADATA_ENTRY.pack(metadata_type, len(raw)))
        parts.append(raw)
    return b"".join(parts)


def unpack_metadata(record):
    """A record of ``pack_metadata`` -> {metadata type: str}, by type."""
    values = {}
    offset, end, size = 0, len(record), _METADATA_ENTRY.size
    while offset < end:
        metadata_type, length = _METADATA_ENTRY.unpack_from(record, offset)
        offset += size
        values[metadata_type] = record[offset:offset + length].decode("utf-8")
        offset += length
    return values


def metadata_entry(record, metadata_type):
    """One value of a record of ``pack_metadata``, None when absent."""
    offset, end, size = 0, len(record), _METADATA_ENTRY.size
    while offset < end:
        found, length = _METADATA_ENTRY.unpack_from(record, offset)
        offset += size
        if found == metadata_type:
            return record[offset:offset + length].decode("utf-8")
        if found > metadata_type:
            return None
        offset += length
    return None


def metadata_value_key(level, metadata_type, value):
    return (bytes((int(level),)) + _U16.pack(int(metadata_type))
            + value.encode("utf-8")[:_MAX_INDEXED_VALUE])


class _SharedReading:
    """The read transaction of reading_together, as ``_read`` gives it:
    leaving it does not end it."""
    __slots__ = ("_txn",)

    def __init__(self, txn):
        self._txn = txn

    def __enter__(self):
        return self._txn

    def __exit__(self, *exc_info):
        return False


class LmdbResourceIndex(ResourceIndex):
    # Identifier values are indexed up to this many bytes (UTF-8).
    indexed_value_limit = _MAX_INDEXED_VALUE

    def __init__(self, directory, reactor, identifier_tags=None, map_size=1 << 40,
                 make_durable=None, settle_files=None, changes=None, durable_with_files=None):
        """``identifier_tags``: {ResourceLevel: [(tag int, keyword)]} whose
        normalized values go into the identifiers database for find;
        ``changes``: the ChangeStream the committed changes go to;
        ``durable_with_files(directory)``: whether ``make_durable`` also
        makes what is written in that directory durable (then a commit that
        references files is made durable with them, see IndexWriter).
        Nothing is opened here: ``open`` does it, at start-up."""
        self._durable_with_files = durable_with_files
        self.directory = directory
        self._map_size = map_size
        self.env = None
        self.db = {}
        self.identifier_tags = identifier_tags or {}
        self._normalize = lambda value: value
        # A commit is acknowledged only once the files it references are
        # durable (made so before it, or together with it: IndexWriter);
        # the writer is a service of its own, started after ``open``.
        # Readers and the map's growth take turns (orthancd.index.map_gate).
        self._gate = MapGate()
        self._shared = threading.local()  # reading_together's, per thread
        self._reactor = reactor
        # Released files removed meanwhile, forgotten with the next delete.
        self._removed = set()
        self._removed_lock = threading.Lock()
        self._forget_call = None
        self.writer = IndexWriter(self._begin_write, reactor,
                                  on_commit=changes.publish if changes is not None else None,
                                  make_durable=make_durable, settle=settle_files,
                                  grow_map=self._grow_map, sync_index=self._sync)

    def open(self):
        os.makedirs(self.directory, exist_ok=True)
        self.env = lmdb.open(self.directory, map_size=self._map_size,
                             max_dbs=len(_DATABASES) + 2, max_readers=512, subdir=True,
                             sync=True, metasync=False)  # see IndexWriter
        for name in _DATABASES:
            self.db[name] = self.env.open_db(name.encode(), dupsort=name in _DUPSORT)
        with self.env.begin(write=True) as txn:
            version = txn.get(b"schema", db=self.db["meta"])
            if version is None:
                txn.put(b"schema", SCHEMA_VERSION, db=self.db["meta"])
            elif version != SCHEMA_VERSION:
                raise IncompatibleIndex(
                    "The index in %s has schema %s, this orthancd needs schema %s: "
                    "start from an empty IndexDirectory/StorageDirectory"
                    % (self.directory, version.decode("ascii", "replace"),
                       SCHEMA_VERSION.decode("ascii")))
            if txn.get(b"resource_changes", db=self.db["meta"]) is None:
                self._index_changes_by_resource(txn)
            if txn.get(_INEXACT_COUNTED, db=self.db["meta"]) is None:
                self._count_inexact_values(txn)
            if version is None:
                txn.put(_METADATA_PACKED, b"1", db=self.db["meta"])
                txn.put(_INSTANCE_VALUES_DROPPED, b"1", db=self.db["meta"])
            dropped = txn.get(_INSTANCE_VALUES_DROPPED, db=self.db["meta"]) is not None
            packed = txn.get(_METADATA_PACKED, db=self.db["meta"]) is not None
        if not dropped:
            self._drop_instance_metadata_values()
        if not packed:
            self._pack_metadata_records()
        self._sync()
        if self._durable_with_files is not None and self._durable_with_files(self.directory):
            self.writer.record_files = self._record_unsettled

    def _sync(self):
        """Make the last commit durable: commits sync their data pages but
        leave their meta page to the next sync (MDB_NOMETASYNC)."""
        self.env.sync(True)

    def _index_changes_by_resource(self, txn):
        """Indexes written before resource_changes existed."""
        cursor = txn.cursor(db=self.db["changes"])
        for raw_seq, raw in cursor.iternext():
            value = _loads(raw)
            try:
                key = resource_key(ResourceLevel(value["l"]), value["i"])
            except (UnknownResource, ValueError, KeyError):
                continue
            txn.put(key, raw_seq, db=self.db["resource_changes"], dupdata=True)
        txn.put(b"resource_changes", b"1", db=self.db["meta"])

    def _count_inexact_values(self, txn):
        """The inexact counters of an index written before they existed
        (once: every record is read)."""
        log.info("Counting the values the index holds inexactly (once)")
        cursor = txn.cursor(db=self.db["resources"])
        for key, raw in cursor.iternext():
            self._count_inexact(txn, ResourceLevel(key[0]), _loads(raw), 1)
        txn.put(_INEXACT_COUNTED, b"1", db=self.db["meta"])

    def _in_bounded_transactions(self, step, flag):
        """A one-time migration: ``step(txn)`` in write transactions until it
        says it is done, then ``flag`` set in the meta database.  A write
        transaction holds a bounded number of dirty pages (MDB_TXN_FULL),
        hence steps of a bounded size; a crash between two leaves a
        consistent index, which the next start-up goes on migrating."""
        done = False
        while not done:
            with self.env.begin(write=True) as txn:
                done = step(txn)
                if done:
                    txn.put(flag, b"1", db=self.db["meta"])

    def _drop_instance_metadata_values(self):
        """The entries of instances in metadata_values, in an index written
        when they were kept (see METADATA_VALUE_LEVELS); once."""
        log.info("Dropping the index of instances' metadata by value (once)")
        level = bytes((int(ResourceLevel.INSTANCE),))

        def step(txn):
            cursor = txn.cursor(db=self.db["metadata_values"])
            cursor.set_range(level)
            # A cursor.delete() of the last entry leaves the cursor on no key (b"").
            for _ in range(_DELETED_PER_TRANSACTION):
                if cursor.key()[:1] != level:
                    break
                cursor.delete()
            return cursor.key()[:1] != level
        self._in_bounded_transactions(step, _INSTANCE_VALUES_DROPPED)

    def _pack_metadata_records(self):
        """Rewrites the metadata of an index written when each had an entry
        of its own (key + 2-byte type -> value) as one record per resource;
        once, each resource in one transaction."""
        log.info("Packing the metadata of each resource into one record (once)")
        old_key_size = _KEY_SIZE + 2
        db = self.db["metadata"]
        resume = [None]

        def after(key):
            return key[:_KEY_SIZE] + b"\xff" * 3  # past every entry of that resource

        def step(txn):
            cursor = txn.cursor(db=db)
            found = cursor.first() if resume[0] is None else cursor.set_range(resume[0])
            for _ in range(_PACKED_PER_TRANSACTION):
                # Past the resources packed already (a crash interrupted an
                # earlier start-up).
                while found and len(cursor.key()) != old_key_size:
                    found = cursor.set_range(after(cursor.key()))
                if not found:
                    return True
                key, values = cursor.key()[:_KEY_SIZE], {}
                while found and cursor.key()[:_KEY_SIZE] == key:
                    values[_U16.unpack(cursor.key()[_KEY_SIZE:])[0]] = \
                        cursor.value().decode("utf-8")
                    # After deleting its last entry a cursor is on no key.
                    found = cursor.delete() and cursor.key() != b""
                txn.put(key, pack_metadata(values), db=db)
                resume[0] = after(key)
                found = cursor.set_range(resume[0])
            return not found
        self._in_bounded_transactions(step, _METADATA_PACKED)

    def _begin_write(self, parent=None):
        return self.env.begin(write=True, parent=parent)

    def set_normalizer(self, normalize):
        """The function turning a tag value into its searchable form."""
        self._normalize = normalize

    def close(self):
        """Once the writer has stopped (removed files not forgotten yet stay
        released: the next start-up forgets them).  The files of the last
        commit are known to be on the disk then, unless their sync failed:
        the next start-up has no reason to check them."""
        with self._removed_lock:
            if self._forget_call not in (None, _SCHEDULING) and self._forget_call.active():
                self._forget_call.cancel()
            self._forget_call = None
        if self.env is not None and not self.writer.files_in_doubt and self.unsettled_files():
            self.settle_unsettled_now([])
        if self.env is not None:
            self.env.close()
            self.env = None

    # ------------------------------------------------------------------ reads

    def _read(self):
        shared = getattr(self._shared, "reading", None)
        if shared is not None:
            return shared
        return self._gate.reading(self.env)

    @contextlib.contextmanager
    def reading_together(self):
        # This thread's reads meanwhile take the one read transaction
        # opened here (through the map gate, held open until the end).
        if getattr(self._shared, "reading", None) is not None:
            yield  # already inside one
            return
        with self._gate.reading(self.env) as txn:
            self._shared.reading = _SharedReading(txn)
            try:
                yield
            finally:
                self._shared.reading = None

    def _grow_map(self):
        """Double the map (the writer thread, between transactions, after a
        MapFullError): LMDB may change it only while no transaction is open
        in the process, so readers wait meanwhile."""
        with self._gate.resizing():
            self._map_size = self.env.info()["map_size"] * 2
            self.env.set_mapsize(self._map_size)
        log.info("The index map grew to {size} MiB", size=self._map_size >> 20)

    def snapshot(self):
        # A read transaction sees the last committed write transaction,
        # whose ID LMDB increments with every commit.
        with self._read() as txn:
            return txn.id()

    def _get_record(self, txn, key):
        raw = txn.get(key, db=self.db["resources"])
        return None if raw is None else _loads(raw)

    def _to_resource(self, level, public_id, record):
        return Resource(level, public_id, record.get("p"), record.get("t", {}),
                        record.get("pt"), bool(record.get("x")), record.get("q") or {},
                        record.get("s", 0))

    def get_resource(self, public_id, level=None):
        levels = list(ResourceLevel) if level is None else [level]
        with self._read() as txn:
            for lv in levels:
                record = self._get_record(txn, resource_key(lv, public_id))
                if record is not None:
                    return self._to_resource(lv, public_id, record)
        raise UnknownResource(public_id)

    def get_resources(self, public_ids, level):
        found = {}
        with self._read() as txn:
            for public_id in public_ids:
                try:
                    key = resource_key(level, public_id)
                except UnknownResource:
                    continue
                record = self._get_record(txn, key)
                if record is not None:
                    found[public_id] = self._to_resource(level, public_id, record)
        return found

    def exists(self, public_id, level):
        try:
            key = resource_key(level, public_id)
        except UnknownResource:
            return False  # not even an Orthanc identifier
        with self._read() as txn:
            return txn.get(key, db=self.db["resources"]) is not None

    def list_resources(self, level, since=0, limit=0):
        prefix = bytes((int(level),))
        out = []
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["resources"])
            if not cursor.set_range(prefix):
                return out
            skipped = 0
            for key in cursor.iternext(values=False):
                if key[:1] != prefix:
                    break
                if skipped < since:
                    skipped += 1
                    continue
                out.append(_public_id(key))
                if limit and len(out) >= limit:
                    break
        return out

    def iter_ids(self, level):
        """The public IDs of ``level``, by ID, lazily."""
        prefix = bytes((int(level),))
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["resources"])
            if not cursor.set_range(prefix):
                return
            for key in cursor.iternext(values=False):
                if key[:1] != prefix:
                    return
                yield _public_id(key)

    def count_resources(self, level):
        with self._read() as txn:
            return self._counter(txn, _LEVEL_COUNTERS[level])

    def _children_keys(self, txn, key):
        cursor = txn.cursor(db=self.db["children"])
        if not cursor.set_key(key):
            return []
        return list(cursor.iternext_dup())

    def get_children(self, public_id, level):
        with self._read() as txn:
            key = resource_key(level, public_id)
            if txn.get(key, db=self.db["resources"]) is None:
                raise UnknownResource(public_id)
            return [_public_id(k) for k in self._children_keys(txn, key)]

    def count_children(self, public_id, level):
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["children"])
            if not cursor.set_key(resource_key(level, public_id)):
                return 0
            return cursor.count()

    def _descendant_keys(self, txn, public_id, level, target):
        """The keys of the resources of ``target`` level at or below a
        resource, in no particular order."""
        key = resource_key(level, public_id)
        if txn.get(key, db=self.db["resources"]) is None:
            raise UnknownResource(public_id)
        keys = [key]
        for _ in range(int(target) - int(level)):
            keys = [c for k in keys for c in self._children_keys(txn, k)]
        return keys

    def get_descendants(self, public_id, level, target):
        """Public IDs of the resources of ``target`` level at or below a
        resource, sorted by ID (the order of 1.13.0's child routes)."""
        with self._read() as txn:
            return sorted(_public_id(k) for k in self._descendant_keys(txn, public_id, level,
                                                                      target))

    def summarize_descendants(self, public_id, level, series_main_tag=None,
                              instance_metadata=None):
        summary = DescendantsSummary({})
        with self._read() as txn:
            key = resource_key(level, public_id)
            if txn.get(key, db=self.db["resources"]) is None:
                raise UnknownResource(public_id)
            children = txn.cursor(db=self.db["children"])
            keys, below = [key], level
            while below is not ResourceLevel.INSTANCE:
                below = below.child
                if below is ResourceLevel.INSTANCE and instance_metadata is None:
                    # Counted, not listed: LMDB counts a key's duplicates
                    # (its children) from their page.
                    summary.counts[below] = sum(children.count() for k in keys
                                                if children.set_key(k))
                    break
                keys = [child for k in keys if children.set_key(k)
                        for child in children.iternext_dup()]
                summary.counts[below] = len(keys)
                if below is ResourceLevel.SERIES and series_main_tag is not None:
                    for k in keys:
                        record = self._get_record(txn, k)
                        if record is not None:
                            summary.series_values.add(record.get("t", {}).get(series_main_tag))
                elif below is ResourceLevel.INSTANCE:
                    metadata_type, db = int(instance_metadata), self.db["metadata"]
                    for k in keys:
                        record = txn.get(k, db=db)
                        if record is not None:
                            summary.instance_values.add(metadata_entry(record, metadata_type))
        summary.series_values.discard(None)
        summary.instance_values.discard(None)
        return summary

    def get_descendant_instances(self, public_id, level):
        """Public IDs of every instance below (or at) a resource, by ID."""
        return self.get_descendants(public_id, level, ResourceLevel.INSTANCE)

    def _metadata(self, txn, key):
        record = txn.get(key, db=self.db["metadata"])
        return {} if record is None else unpack_metadata(record)

    def _metadata_value(self, txn, key, metadata_type):
        record = txn.get(key, db=self.db["metadata"])
        return None if record is None else metadata_entry(record, int(metadata_type))

    def get_metadata(self, public_id, level):
        with self._read() as txn:
            key = resource_key(level, public_id)
            if txn.get(key, db=self.db["resources"]) is None:
                raise UnknownResource(public_id)
            return self._metadata(txn, key)

    def get_metadata_value(self, public_id, level, metadata_type):
        """One metadata value, None when unset (no existence check)."""
        with self._read() as txn:
            return self._metadata_value(txn, resource_key(level, public_id), metadata_type)

    def _revision(self, txn, key, kind, number):
        raw = txn.get(_revision_key(key, kind, number), db=self.db["revisions"])
        return 0 if raw is None else _U64.unpack(raw)[0]

    def _set_revision(self, txn, key, kind, number, revision):
        rkey = _revision_key(key, kind, number)
        if revision:
            txn.put(rkey, _U64.pack(revision), db=self.db["revisions"])
        else:
            txn.delete(rkey, db=self.db["revisions"])

    def metadata_with_revision(self, public_id, level, metadata_type):
        """(value, revision) of one metadata, None when unset; raises
        UnknownResource."""
        with self._read() as txn:
            key = resource_key(level, public_id)
            if txn.get(key, db=self.db["resources"]) is None:
                raise UnknownResource(public_id)
            value = self._metadata_value(txn, key, metadata_type)
            if value is None:
                return None
            return value, self._revision(txn, key, _METADATA_REVISION, metadata_type)

    def attachment_with_revision(self, public_id, level, content_type):
        """(StoredFile, revision) of one attachment, None when absent;
        raises UnknownResource."""
        with self._read() as txn:
            key = resource_key(level, public_id)
            if txn.get(key, db=self.db["resources"]) is None:
                raise UnknownResource(public_id)
            raw = txn.get(key + _U16.pack(int(content_type)), db=self.db["attachments"])
            if raw is None:
                return None
            return (unpack_attachment(raw),
                    self._revision(txn, key, _ATTACHMENT_REVISION, content_type))

    def _attachments(self, txn, key):
        cursor = txn.cursor(db=self.db["attachments"])
        out = {}
        if cursor.set_range(key):
            for k, v in cursor:
                if k[:_KEY_SIZE] != key:
                    break
                out[_U16.unpack(k[_KEY_SIZE:_KEY_SIZE + 2])[0]] = unpack_attachment(v)
        return out

    def get_attachments(self, public_id, level):
        with self._read() as txn:
            key = resource_key(level, public_id)
            if txn.get(key, db=self.db["resources"]) is None:
                raise UnknownResource(public_id)
            return self._attachments(txn, key)

    # -- labels --

    def get_labels(self, public_id, level):
        """The labels of a resource, sorted."""
        with self._read() as txn:
            key = resource_key(level, public_id)
            if txn.get(key, db=self.db["resources"]) is None:
                raise UnknownResource(public_id)
            return self._labels(txn, key)

    def _labels(self, txn, key):
        cursor = txn.cursor(db=self.db["labels"])
        if not cursor.set_key(key):
            return []
        return [v.decode("utf-8") for v in cursor.iternext_dup()]

    def all_labels(self):
        """Every label attached to some resource, sorted."""
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["labelled"])
            return [k.decode("utf-8") for k in cursor.iternext_nodup(keys=True, values=False)]

    def resources_with_label(self, level, label):
        """Public IDs of the resources of ``level`` carrying ``label``, by ID."""
        out = []
        prefix = bytes((int(level),))
        name = label.encode("utf-8")
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["labelled"])
            if not cursor.set_range_dup(name, prefix):
                return out
            for key in cursor.iternext_dup():
                if key[:1] != prefix:
                    break
                out.append(_public_id(key))
        return out

    # -- metadata values, for ordering and MetadataQuery --

    def iter_metadata_values(self, level, metadata_type, reverse=False):
        """(value, public ID) of the resources of ``level`` having the
        metadata, in value order (then by ID); values longer than the index
        keeps are truncated: callers check them against get_metadata.
        ``level``: one of METADATA_VALUE_LEVELS."""
        _check_value_level(level)
        head = bytes((int(level),)) + _U16.pack(int(metadata_type))
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["metadata_values"])
            if reverse:
                # From the last entry of the prefix backwards: prev() walks
                # the duplicates too, so this is forward order reversed.
                following = (int.from_bytes(head, "big") + 1).to_bytes(3, "big")
                found = cursor.set_range(following)
                found = cursor.prev() if found else cursor.last()
                step = cursor.prev
            else:
                found = cursor.set_range(head)
                step = cursor.next
            while found:
                key = cursor.key()
                if key[:3] != head:
                    return
                yield key[3:].decode("utf-8", "replace"), _public_id(cursor.value())
                found = step()

    def lookup_metadata(self, level, metadata_type, value):
        """Public IDs whose metadata equals ``value`` (indexed form);
        ``level``: one of METADATA_VALUE_LEVELS."""
        _check_value_level(level)
        key = metadata_value_key(level, metadata_type, value)
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["metadata_values"])
            if not cursor.set_key(key):
                return []
            return [_public_id(v) for v in cursor.iternext_dup()]

    # -- logs --

    def _log_page(self, dbname, since, limit):
        entries = []
        with self._read() as txn:
            cursor = txn.cursor(db=self.db[dbname])
            found = cursor.set_range(_U64.pack(max(since, 0) + 1))
            while found and len(entries) <= limit:
                entries.append((_U64.unpack(cursor.key())[0], _loads(cursor.value())))
                found = cursor.next()
        done = len(entries) <= limit
        return entries[:limit], done

    def read_changes(self, since=0, to=None, count=None, types=None, newest_first=False):
        """Changes with ``since`` < seq <= ``to`` (either bound may be
        None), of the ``types`` given (all when None), at most ``count``
        (None: no limit), taken from the oldest or the newest end; always
        returned oldest first."""
        picked = []
        if count == 0 or (to is not None and to < 0):
            return picked
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["changes"])
            low = max(since or 0, 0)
            high = None if to is None else min(to, (1 << 64) - 2)
            if newest_first:
                if high is None:
                    found = cursor.last()
                else:
                    found = cursor.set_range(_U64.pack(high + 1))
                    found = cursor.prev() if found else cursor.last()
                step = cursor.prev
            else:
                found = cursor.set_range(_U64.pack(low + 1))
                step = cursor.next
            while found and (count is None or len(picked) < count):
                seq = _U64.unpack(cursor.key())[0]
                if seq <= low or (high is not None and seq > high):
                    break
                value = _loads(cursor.value())
                if types is None or value["c"] in types:
                    picked.append(self._change(seq, value))
                found = step()
        if newest_first:
            picked.reverse()
        return picked

    def get_changes(self, since=0, limit=100):
        """(changes, done): the page after ``since``."""
        changes = self.read_changes(since, None, limit + 1)
        return changes[:limit], len(changes) <= limit

    def last_change_seq(self):
        """The sequence number of the newest change ever logged (kept after
        the log is cleared, as SQLite's sequence), 0 if none."""
        with self._read() as txn:
            raw = txn.get(b"next:changes", db=self.db["meta"])
            return 0 if raw is None else _U64.unpack(raw)[0] - 1

    def _change(self, seq, value):
        return Change(seq, value["c"], ResourceLevel(value["l"]), value["i"], value["d"])

    def get_last_change(self):
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["changes"])
            if not cursor.last():
                return None
            return self._change(_U64.unpack(cursor.key())[0], _loads(cursor.value()))

    def get_exports(self, since=0, limit=100):
        entries, done = self._log_page("exports", since, limit)
        exports = [dict(value, Seq=seq) for seq, value in entries]
        last = exports[-1]["Seq"] if exports else since
        return exports, done, last

    def get_last_export(self):
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["exports"])
            if not cursor.last():
                return None
            return dict(_loads(cursor.value()), Seq=_U64.unpack(cursor.key())[0])

    def get_statistics(self):
        with self._read() as txn:
            return {k: self._counter(txn, k) for k in _STATS_KEYS}

    def _counter(self, txn, name):
        raw = txn.get(b"count:" + name.encode(), db=self.db["meta"])
        return 0 if raw is None else _U64.unpack(raw)[0]

    def resource_statistics(self, public_id, level):
        """Counts and sizes below one resource, as /{level}/{id}/statistics."""
        with self._read() as txn:
            key = resource_key(level, public_id)
            if txn.get(key, db=self.db["resources"]) is None:
                raise UnknownResource(public_id)
            counts = {lv: 0 for lv in ResourceLevel}
            disk = uncompressed = dicom_disk = dicom_uncompressed = 0
            keys = [key]
            while keys:
                lv = ResourceLevel(keys[0][0])
                counts[lv] += len(keys)
                for k in keys:
                    for content_type, info in self._attachments(txn, k).items():
                        disk += info.size
                        uncompressed += info.uncompressed_size
                        if content_type == ContentType.Dicom:
                            dicom_disk += info.size
                            dicom_uncompressed += info.uncompressed_size
                if lv is ResourceLevel.INSTANCE:
                    break
                keys = [c for k in keys for c in self._children_keys(txn, k)]
        return counts, disk, uncompressed, dicom_disk, dicom_uncompressed

    def lookup_identifier(self, level, tag, normalized_value):
        """Public IDs whose indexed ``tag`` equals ``normalized_value``."""
        key = identifier_key(level, tag, normalized_value)
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["identifiers"])
            if not cursor.set_key(key):
                return []
            return [_public_id(v) for v in cursor.iternext_dup()]

    def scan_identifier_prefix(self, level, tag, normalized_prefix, cap=0):
        """Public IDs whose normalized ``tag`` value starts with the prefix, in
        value order: the narrowing step for wildcard queries.  Returns None
        once more than ``cap`` IDs are found (an unselective scan)."""
        start = identifier_key(level, tag, normalized_prefix)
        return self._scan_identifiers(start, lambda key: key.startswith(start), cap)

    def scan_identifier_range(self, level, tag, lower, upper, cap=0):
        """Public IDs whose normalized ``tag`` value lies in [lower, upper]
        (either bound may be None), in value order; None past ``cap`` IDs."""
        head = bytes((int(level),)) + struct.pack(">I", tag)
        stop = None if upper is None else identifier_key(level, tag, upper)
        return self._scan_identifiers(
            identifier_key(level, tag, lower or ""),
            lambda key: key[:5] == head and (stop is None or key <= stop), cap)

    def identifier_entries(self, level, tag, lower="", upper=None, prefix=None):
        """(normalized value, public ID) of the identifiers entries of ``tag``
        at ``level``, in value order: those starting with ``prefix``, or else
        those from ``lower`` to ``upper`` included (None: to the end).  A
        value of ``indexed_value_limit`` bytes may have been cut there."""
        start, within = self._identifier_range(level, tag, lower, upper, prefix)
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["identifiers"])
            if not cursor.set_range(start):
                return
            for key, value in cursor:
                if not within(key):
                    return
                yield bytes(key[5:]).decode("utf-8", "replace"), _public_id(value)

    def count_identifier_entries(self, level, tag, lower="", upper=None, prefix=None,
                                 test=None):
        """(count, cut): how many of the entries ``identifier_entries`` would
        give have a value passing ``test`` (every one when None), and the
        public IDs of the entries whose value may have been cut, which are
        left for the caller to decide."""
        start, within = self._identifier_range(level, tag, lower, upper, prefix)
        limit = 5 + _MAX_INDEXED_VALUE
        count, cut = 0, []
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["identifiers"])
            if not cursor.set_range(start):
                return count, cut
            for key, value in cursor:
                if not within(key):
                    break
                if len(key) >= limit:
                    cut.append(_public_id(value))
                elif test is None or test(bytes(key[5:]).decode("utf-8", "replace")):
                    count += 1
        return count, cut

    @staticmethod
    def _identifier_range(level, tag, lower, upper, prefix):
        """(first key, test of the keys within) of a range of identifiers."""
        if prefix is not None:
            start = identifier_key(level, tag, prefix)
            return start, lambda key: key.startswith(start)
        head = bytes((int(level),)) + struct.pack(">I", tag)
        start = identifier_key(level, tag, lower)
        stop = None if upper is None else identifier_key(level, tag, upper)
        return start, lambda key: key[:5] == head and (stop is None or key <= stop)

    def _scan_identifiers(self, start, within, cap):
        out = []
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["identifiers"])
            if not cursor.set_range(start):
                return out
            for key, value in cursor:
                if not within(key):
                    break
                out.append(_public_id(value))
                if cap and len(out) > cap:
                    return None
        return out

    def iter_level(self, level):
        """(public ID, Resource) of every resource of ``level``, by public ID
        (the order Orthanc 1.13.0 lists and finds them in)."""
        prefix = bytes((int(level),))
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["resources"])
            if not cursor.set_range(prefix):
                return
            for key, raw in cursor:
                if key[:1] != prefix:
                    break
                public_id = _public_id(key)
                yield public_id, self._to_resource(level, public_id, _loads(raw))

    # ----------------------------------------------------------------- writes

    def expect_writes_from(self, on_the_way):
        self.writer.on_the_way = on_the_way

    def store_instance(self, summary, stored, metadata, overwrite, limits, attached=None,
                       extra=()):
        """``extra``: (content type, StoredFile) of the instance's other
        attachments (DicomUntilPixelData with StorageCompression)."""
        files = [stored] + [info for _, info in extra]
        instance_id = summary.ids[ResourceLevel.INSTANCE]
        slots = [(ResourceLevel.INSTANCE, instance_id, ContentType.Dicom)] + [
            (ResourceLevel.INSTANCE, instance_id, content_type) for content_type, _ in extra]
        return self.writer.submit(
            _tracking_files(self._store_instance, files, _obsolete_files, self.db, self.writer),
            summary, stored, metadata, overwrite, limits, now_iso(), attached, tuple(extra),
            files=files, slots=slots)

    def delete_resource(self, public_id, level):
        # The files removed after the previous deletes are forgotten by this
        # one (again later, should it fail).
        forgotten = self._take_removed()
        deleted = self.writer.submit(
            _tracking_files(self._delete_resource_op, [], _obsolete_files, self.db),
            public_id, level, forgotten)
        if forgotten:
            deleted.addErrback(self._not_forgotten, forgotten)
        return deleted

    def _not_forgotten(self, failure, uuids):
        self.forget_released(uuids)
        return failure

    def set_metadata(self, public_id, level, metadata_type, value, expected=None):
        """Fires with the new revision.  ``expected``: None, or the (revision,
        MD5 of the value) an If-Match names: a metadata already set with
        another revision or value fails with OrthancError(Revision)."""
        return self.writer.submit(self._set_metadata_op, public_id, level, metadata_type, value,
                                  expected)

    def delete_metadata(self, public_id, level, metadata_type, expected=None):
        """Fails with KeyError when unset; ``expected`` as for set_metadata."""
        return self.writer.submit(self._delete_metadata_op, public_id, level, metadata_type,
                                  expected)

    def add_label(self, public_id, level, label):
        return self.writer.submit(self._add_label_op, public_id, level, label)

    def remove_label(self, public_id, level, label):
        return self.writer.submit(self._remove_label_op, public_id, level, label)

    def log_changes(self, changes):
        return self.writer.submit(self._log_changes_op, changes, now_iso())

    def clear_changes(self):
        return self.writer.submit(self._clear_op, "changes")

    def log_export(self, entry):
        return self.writer.submit(self._log_export_op, entry)

    def clear_exports(self):
        return self.writer.submit(self._clear_op, "exports")

    def set_protected(self, patient_id, protected):
        return self.writer.submit(self._set_protected_op, patient_id, protected)

    def set_attachment(self, public_id, level, content_type, stored, expected=None):
        """Record (or replace) an attachment; fires with (the replaced
        StoredFile or None, the new revision).  ``expected``: None, or the
        (revision, uncompressed MD5) an If-Match names: an attachment
        already there with another revision or MD5 fails with
        OrthancError(Revision)."""
        def released(result):
            previous = result[0]
            return [previous] if previous is not None and previous.uuid != stored.uuid else []
        return self.writer.submit(
            _tracking_files(self._set_attachment_op, [stored], released, self.db, self.writer),
            public_id, level, content_type, stored, expected, files=[stored],
            slots=[(level, public_id, content_type)])

    def delete_attachment(self, public_id, level, content_type, expected=None):
        """Fires with the removed StoredFile; fails with KeyError when there
        is none; ``expected`` as for set_attachment."""
        return self.writer.submit(
            _tracking_files(self._delete_attachment_op, [], _deleted_file, self.db),
            public_id, level, content_type, expected)

    def record_attachment_md5s(self, public_id, level, content_type, derived):
        """Record the MD5s derived from an attachment's content
        (``derived``: its StoredFile with them), if the attachment is
        still that file; neither its revision nor the changes log move.
        Fires with whether it was recorded."""
        return self.writer.submit(self._record_attachment_md5s_op, public_id, level,
                                  content_type, derived)

    def _record_attachment_md5s_op(self, txn, public_id, level, content_type, derived):
        key = resource_key(level, public_id)
        akey = key + _U16.pack(int(content_type))
        raw = txn.get(akey, db=self.db["attachments"])
        if raw is None:
            return False
        current = unpack_attachment(raw)
        if current.uuid != derived.uuid or not current.md5_pending:
            return False
        txn.put(akey, pack_attachment(current.with_md5s(
            current.md5 if current.md5 is not None else derived.md5,
            current.uncompressed_md5 if current.uncompressed_md5 is not None
            else derived.uncompressed_md5)), db=self.db["attachments"])
        return True

    def save_jobs(self, serialized):
        """Keep the serialized jobs (SaveJobs); fires once committed."""
        return self.writer.submit(self._save_jobs_op, serialized)

    def _save_jobs_op(self, txn, serialized):
        txn.put(b"jobs", serialized.encode("utf-8"), db=self.db["meta"])

    def load_jobs(self):
        """The jobs saved last, or None."""
        with self._read() as txn:
            raw = txn.get(b"jobs", db=self.db["meta"])
            return None if raw is None else raw.decode("utf-8")

    def set_global_property(self, name, value):
        return self.writer.submit(self._set_global_property_op, name, value)

    def _set_global_property_op(self, txn, name, value):
        txn.put(b"property:" + name.encode("utf-8"), value.encode("utf-8"), db=self.db["meta"])

    def get_global_property(self, name):
        with self._read() as txn:
            raw = txn.get(b"property:" + name.encode("utf-8"), db=self.db["meta"])
            return None if raw is None else raw.decode("utf-8")

    def increment_global_sequence(self, name):
        """The next value of a named counter kept in the index (Orthanc's
        global sequences, e.g. the number in "AnonymizedN")."""
        return self.writer.submit(self._next, "sequence:" + name)

    # Key-value stores: one database, keyed by store and key (UTF-8 text
    # cannot hold a NUL, so it separates them); a pair too long for an LMDB
    # key is kept under its SHA-256.
    @staticmethod
    def _key_value_key(store_id, key):
        db_key = store_id.encode("utf-8", "surrogateescape") + b"\0" + \
            key.encode("utf-8", "surrogateescape")
        if len(db_key) > _MAX_INDEXED_VALUE:
            return b"\1" + hashlib.sha256(db_key).digest()
        return db_key

    def store_key_value(self, store_id, key, value):
        return self.writer.submit(self._store_key_value_op, self._key_value_key(store_id, key),
                                  bytes(value))

    def _store_key_value_op(self, txn, db_key, value):
        txn.put(db_key, value, db=self.db["key_values"])

    def get_key_value(self, store_id, key):
        with self._read() as txn:
            return txn.get(self._key_value_key(store_id, key), db=self.db["key_values"])

    def delete_key_value(self, store_id, key):
        return self.writer.submit(self._delete_key_value_op, self._key_value_key(store_id, key))

    def _delete_key_value_op(self, txn, db_key):
        txn.delete(db_key, db=self.db["key_values"])

    def forget_released(self, uuids):
        """The released files ``uuids`` are gone from the storage area: the
        next delete forgets them, or an operation of their own after
        _FORGET_DELAY.  A write of their own after each removal would add a
        commit to every delete of a run; until forgotten, they stay listed,
        which costs a vain removal at the next start-up, no more.
        Called from any thread (the removals run in a pool)."""
        with self._removed_lock:
            self._removed.update(uuids)
            if self._forget_call is not None:
                return defer.succeed(None)
            self._forget_call = _SCHEDULING
        self._reactor.callFromThread(self._schedule_forget)
        return defer.succeed(None)

    def _schedule_forget(self):
        with self._removed_lock:
            if self._forget_call is _SCHEDULING:  # not closed meanwhile
                self._forget_call = self._reactor.callLater(_FORGET_DELAY, self._forget_removed)

    def _take_removed(self):
        with self._removed_lock:
            uuids, self._removed = self._removed, set()
        return sorted(uuids)

    def _forget_removed(self):
        # The delayed call, left to run when a delete took the files first
        # (cancelling and scheduling it for each delete would cost more).
        with self._removed_lock:
            self._forget_call = None
        uuids = self._take_removed()
        if uuids:
            self.writer.submit(self._forget_released_op, uuids).addErrback(
                self._forget_failed)

    def _forget_failed(self, failure):
        if not failure.check(IndexStopped):  # stopping: the next start-up forgets them
            log.failure("Cannot forget removed files", failure)

    def reconstruct_instance(self, summary, metadata, only_level=None):
        """Index the main tags of an instance anew from its file's
        ``summary``, and those of its ancestors (or of ``only_level``
        alone), with the ``metadata`` {level: {type: value}} that goes
        with them (signatures, sequences, transfer syntax, SOP class)."""
        return self.writer.submit(self._reconstruct_op, summary, metadata, only_level)

    # -- operations, run on the writer thread inside a child transaction --

    def _next(self, txn, name):
        key = b"next:" + name.encode()
        raw = txn.get(key, db=self.db["meta"])
        value = 1 if raw is None else _U64.unpack(raw)[0]
        txn.put(key, _U64.pack(value + 1), db=self.db["meta"])
        return value

    def _add_counter(self, txn, name, delta):
        key = b"count:" + name.encode()
        raw = txn.get(key, db=self.db["meta"])
        value = (0 if raw is None else _U64.unpack(raw)[0]) + delta
        txn.put(key, _U64.pack(max(value, 0)), db=self.db["meta"])

    def _append_log(self, txn, dbname, value):
        seq = self._next(txn, dbname)
        txn.put(_U64.pack(seq), _dumps(value), db=self.db[dbname], append=True)
        return seq

    def _log_change(self, txn, change_type, level, public_id, date, **details):
        """Write a change to the changes log, and publish it once committed."""
        value = {"c": change_type, "l": int(level), "i": public_id, "d": date}
        seq = self._append_log(txn, "changes", value)
        try:
            txn.put(resource_key(level, public_id), _U64.pack(seq),
                    db=self.db["resource_changes"], dupdata=True)
        except UnknownResource:
            pass  # not an Orthanc identifier: nothing can delete it
        change = Change(seq, change_type, level, public_id, date, details)
        self.writer.emit(change)
        return change

    def _signal(self, change_type, level, public_id, **details):
        """Publish, once committed, a change Orthanc does not log."""
        self.writer.emit(Change(None, change_type, level, public_id, now_iso(), details))

    def _put_metadata(self, txn, key, metadata_type, value, revision=None):
        """``revision``: the metadata's new revision (None: leave it, for
        the metadata the store of an instance writes, always revision 0)."""
        self._put_metadata_values(txn, key, {int(metadata_type): value})
        if revision is not None:
            self._set_revision(txn, key, _METADATA_REVISION, metadata_type, revision)

    def _put_metadata_values(self, txn, key, changes, new=False):
        """Sets several metadata of a resource ({type: value}), its record
        read and written once, and not at all when no value changes (the
        LastUpdate of a study that each of its instances sets again, to
        the same second).  ``new``: the resource has no metadata yet."""
        values = {} if new else self._metadata(txn, key)
        changes = [(int(metadata_type), str(value)) for metadata_type, value in changes.items()]
        changes = [(metadata_type, value) for metadata_type, value in changes
                   if values.get(metadata_type) != value]
        if not changes:
            return
        by_value = key[0] in _VALUE_LEVEL_BYTES
        for metadata_type, value in changes:
            if by_value:
                old = values.get(metadata_type)
                if old is not None:
                    txn.delete(metadata_value_key(key[0], metadata_type, old), key,
                               db=self.db["metadata_values"])
                txn.put(metadata_value_key(key[0], metadata_type, value), key,
                        db=self.db["metadata_values"], dupdata=True)
            values[metadata_type] = value
        txn.put(key, pack_metadata(values), db=self.db["metadata"])

    def _replace_metadata(self, txn, key, metadata_type, value):
        """Set a metadata as Orthanc's reconstruction does: a new revision
        when it was set already."""
        revision = 0
        if self._metadata_value(txn, key, metadata_type) is not None:
            revision = self._revision(txn, key, _METADATA_REVISION, metadata_type) + 1
        self._put_metadata(txn, key, metadata_type, value, revision)

    def _remove_metadata(self, txn, key, metadata_type, forget_revision=True):
        values = self._metadata(txn, key)
        old = values.pop(int(metadata_type), None)
        if old is None:
            return False
        if key[0] in _VALUE_LEVEL_BYTES:
            txn.delete(metadata_value_key(key[0], metadata_type, old), key,
                       db=self.db["metadata_values"])
        if values:
            txn.put(key, pack_metadata(values), db=self.db["metadata"])
        else:
            txn.delete(key, db=self.db["metadata"])
        if forget_revision:
            self._set_revision(txn, key, _METADATA_REVISION, metadata_type, 0)
        return True

    def _forget_revisions(self, txn, key):
        """Every revision of a resource's metadata and attachments."""
        cursor = txn.cursor(db=self.db["revisions"])
        found = cursor.set_range(key)
        while found and cursor.key()[:_KEY_SIZE] == key:
            found = cursor.delete()

    def _indexed_values(self, level, record):
        """(tag, value) of the identifiers entries of a resource record: its
        main tags, and for a study the patient tags it holds a copy of
        (indexed at the study level, so that a study query on PatientName
        needs no lift)."""
        sources = [(self.identifier_tags.get(level, ()), record.get("t", {}))]
        if level is ResourceLevel.STUDY:
            sources.append((self.identifier_tags.get(ResourceLevel.PATIENT, ()),
                            record.get("pt") or {}))
        for tags_of_level, tags in sources:
            for tag, keyword in tags_of_level:
                value = tags.get(keyword)
                if value is not None and isinstance(value, str):
                    yield tag, value

    def _index_identifiers(self, txn, level, key, record, add=True):
        for tag, value in self._indexed_values(level, record):
            normalized = self._normalize(value)
            ikey = identifier_key(level, tag, normalized)
            if add:
                txn.put(ikey, key, db=self.db["identifiers"], dupdata=True)
            else:
                txn.delete(ikey, key, db=self.db["identifiers"])
            if not _indexed_exactly(value, normalized):
                self._add_counter(txn, _inexact_counter(level, tag), 1 if add else -1)

    def _count_inexact(self, txn, level, record, delta):
        for tag, value in self._indexed_values(level, record):
            if not _indexed_exactly(value, self._normalize(value)):
                self._add_counter(txn, _inexact_counter(level, tag), delta)

    def indexes_exactly(self, level, tag):
        """Is every value of ``tag`` indexed at ``level`` indexed as it is,
        upper-cased (printable ASCII, no '%' or '_', no outer spaces, short
        enough to be indexed whole)?  Then the identifiers entries decide
        case-insensitive constraints on it without reading records."""
        with self._read() as txn:
            return (txn.get(_INEXACT_COUNTED, db=self.db["meta"]) is not None
                    and self._counter(txn, _inexact_counter(level, tag)) == 0)

    def _create_resource(self, txn, level, public_id, parent_key, tags, sequences,
                         patient_tags):
        key = resource_key(level, public_id)
        record = {"s": self._next(txn, "resources"), "t": tags}
        if sequences:
            record["q"] = sequences
        if parent_key is not None:
            record["p"] = _public_id(parent_key)
            txn.put(parent_key, key, db=self.db["children"], dupdata=True)
        if patient_tags is not None:
            record["pt"] = patient_tags
        txn.put(key, _dumps(record), db=self.db["resources"])
        self._index_identifiers(txn, level, key, record)
        self._add_counter(txn, _LEVEL_COUNTERS[level], 1)
        return key, record

    def _touch_patient_recycling(self, txn, patient_key, record, stay_if_last=False):
        """Make the patient the last to be recycled (unless protected).
        ``stay_if_last``: a patient last already keeps its place, and its
        record is left as it is (the instances of one patient, stored one
        after the other, rewrite nothing)."""
        if stay_if_last and record.get("r") is not None and not record.get("x"):
            raw = txn.get(_NEXT_RECYCLING, db=self.db["meta"])
            if raw is not None and _U64.unpack(raw)[0] == record["r"] + 1:
                return
        if record.get("r") is not None:
            txn.delete(_U64.pack(record["r"]), db=self.db["recycling"])
        if record.get("x"):
            record.pop("r", None)
        else:
            record["r"] = self._next(txn, "recycling")
            txn.put(_U64.pack(record["r"]), patient_key, db=self.db["recycling"], append=True)
        txn.put(patient_key, _dumps(record), db=self.db["resources"])

    def _store_instance(self, txn, summary, stored, metadata, overwrite, limits, now,
                        attached=None, extra=()):
        ids = summary.ids
        levels = list(ResourceLevel)
        keys = [resource_key(lv, i) for lv, i in zip(levels, ids)]
        obsolete = []
        existing = txn.get(keys[3], db=self.db["resources"])
        if existing is not None:
            raw = txn.get(keys[3] + _U16.pack(ContentType.Dicom), db=self.db["attachments"])
            current = None if raw is None else unpack_attachment(raw)
            # OverwriteInstances: "Never", "Always", "IfChanged" (the content
            # differs); older configurations give a Boolean.
            mode = {True: "Always", False: "Never"}.get(overwrite, overwrite)
            unchanged = current is not None and _same_content(current, stored)
            if mode not in ("Always", "IfChanged") or (mode == "IfChanged" and unchanged):
                # The bytes just written are useless unless identical to the stored ones.
                kept = self._attachments(txn, keys[3])
                kept_uuids = {info.uuid for info in kept.values()}
                return StoreOutcome("AlreadyStored", ids, obsolete_files=[
                    info for info in [stored] + [i for _, i in extra]
                    if info.uuid not in kept_uuids])
            # As Orthanc, overwriting deletes the instance, with the ancestors it
            # leaves empty (their metadata, attachments and labels go too), then
            # stores the new one: they come back as new resources.
            old = self._delete_resource_op(txn, ids[3], ResourceLevel.INSTANCE).obsolete_files
            incoming = {stored.uuid} | {info.uuid for _, info in extra}
            obsolete.extend(f for f in old if f.uuid not in incoming)
        recycled = self._make_room(txn, keys[0], stored.size, limits, obsolete)
        new_levels = []
        tags = summary.main_tags
        sequences = getattr(summary, "main_sequences", None) or {}
        parent = None
        records = []
        for lv, key, public_id in zip(levels, keys, ids):
            # The instance is new here (an existing one returned above, or
            # was deleted to be overwritten): one read fewer.
            raw = None if lv is ResourceLevel.INSTANCE else txn.get(key, db=self.db["resources"])
            if raw is None:
                patient_tags = tags[ResourceLevel.PATIENT] if lv is ResourceLevel.STUDY else None
                key, record = self._create_resource(txn, lv, public_id, parent, tags[lv],
                                                    sequences.get(lv), patient_tags)
                new_levels.append(lv)
            else:
                record = _loads(raw)
            records.append(record)
            parent = key
        instance_key = keys[3]
        txn.put(instance_key + _U16.pack(ContentType.Dicom), pack_attachment(stored),
                db=self.db["attachments"])
        self._add_counter(txn, "disk", stored.size)
        self._add_counter(txn, "uncompressed", stored.uncompressed_size)
        for content_type, info in extra:
            txn.put(instance_key + _U16.pack(int(content_type)), pack_attachment(info),
                    db=self.db["attachments"])
            self._add_counter(txn, "disk", info.size)
            self._add_counter(txn, "uncompressed", info.uncompressed_size)
        # Each resource's metadata record is written once (later values win).
        changes = [{} for _ in keys]
        changes[ResourceLevel.INSTANCE].update(metadata.get(ResourceLevel.INSTANCE, {}))
        # Metadata of the other levels is written once, when they are created
        # (as Orthanc does), except LastUpdate, refreshed by every instance.
        for lv in new_levels:
            if lv is not ResourceLevel.INSTANCE:
                changes[lv].update(metadata.get(lv, {}))
        for lv, values in (attached or {}).items():
            changes[lv].update(values)
        if ResourceLevel.SERIES in new_levels and summary.expected_instances is not None:
            changes[ResourceLevel.SERIES][MetadataType.ExpectedNumberOfInstances] = \
                summary.expected_instances
        for lv in (ResourceLevel.PATIENT, ResourceLevel.STUDY, ResourceLevel.SERIES):
            changes[lv][MetadataType.LastUpdate] = now
        for level, key, values in zip(levels, keys, changes):
            if values:
                self._put_metadata_values(txn, key, values, new=level in new_levels)
        self._touch_patient_recycling(txn, keys[0], records[0], stay_if_last=True)
        # Orthanc logs the instance first, then whatever ancestors it created,
        # then whether the series is complete, then signals a new child to
        # every ancestor.
        ancestry = {"Patient": ids[0], "Study": ids[1], "Series": ids[2], "Instance": ids[3]}
        for lv in reversed(levels):
            if lv in new_levels:
                self._log_change(txn, "New" + lv.title, lv, ids[lv], now, **ancestry)
        if summary.expected_instances is not None and self._series_complete(txn, keys[2]):
            self._log_change(txn, ChangeType.CompletedSeries.name, ResourceLevel.SERIES, ids[2],
                             now)
        for lv in (ResourceLevel.SERIES, ResourceLevel.STUDY, ResourceLevel.PATIENT):
            self._signal(ChangeType.NewChildInstance.name, lv, ids[lv], **ancestry)
        return StoreOutcome("Success", ids, tuple(reversed(new_levels)), obsolete, recycled)

    def _series_complete(self, txn, series_key):
        expected = self._metadata_value(txn, series_key, MetadataType.ExpectedNumberOfInstances)
        if expected is None:
            return False
        children = self._children_keys(txn, series_key)
        if not expected.strip().isdigit() or len(children) < int(expected.strip()):
            return False  # cannot be complete: spare reading every instance
        values = []
        for child in children:
            value = self._metadata_value(txn, child, MetadataType.IndexInSeries)
            if value is not None:
                values.append(value)
        return series_completeness(expected, values)[0] == "Complete"

    def _make_room(self, txn, patient_key, incoming_size, limits, obsolete):
        """Recycle the least recently updated unprotected patients while the
        configured limits would be exceeded.  Returns the recycled patient IDs."""
        max_size, max_patients = limits or (0, 0)
        recycled = []
        while max_size or max_patients:
            too_big = max_size and self._counter(txn, "disk") + incoming_size > max_size
            too_many = (max_patients
                        and txn.get(patient_key, db=self.db["resources"]) is None
                        and self._counter(txn, "patients") + 1 > max_patients)
            if not (too_big or too_many):
                return recycled
            victim = self._oldest_recyclable(txn, patient_key)
            if victim is None:
                raise StorageFull("The storage is full and no patient can be recycled")
            obsolete.extend(self._delete_subtree(txn, ResourceLevel.PATIENT, victim))
            recycled.append(_public_id(victim))
        return recycled

    def _oldest_recyclable(self, txn, keep_key):
        cursor = txn.cursor(db=self.db["recycling"])
        for _, patient_key in cursor:
            if bytes(patient_key) != keep_key:
                return bytes(patient_key)
        return None

    def _detach_child(self, txn, parent_key, child_key):
        txn.delete(parent_key, child_key, db=self.db["children"])

    def _delete_subtree(self, txn, level, key, record=None):
        """Remove a resource and everything below it; return the obsolete files.
        Orthanc does not log deletions, and its changes log forgets the
        changes of what it deletes (ON DELETE CASCADE): so do we.
        ``record``: the resource's record, when the caller read it."""
        files = []
        if level is not ResourceLevel.INSTANCE:  # instances have no children
            for child in self._children_in_creation_order(txn, key):
                files.extend(self._delete_subtree(txn, ResourceLevel(child[0]), child))
            txn.delete(key, db=self.db["children"])
        if record is None:
            raw = txn.get(key, db=self.db["resources"])
            if raw is None:
                return files
            record = _loads(raw)
        disk = uncompressed = 0
        for content_type, info in self._attachments(txn, key).items():
            txn.delete(key + _U16.pack(content_type), db=self.db["attachments"])
            disk += info.size
            uncompressed += info.uncompressed_size
            files.append(info)
        if files:
            self._add_counter(txn, "disk", -disk)
            self._add_counter(txn, "uncompressed", -uncompressed)
        self._delete_all_metadata(txn, key)
        self._forget_revisions(txn, key)
        for label in self._labels(txn, key):
            txn.delete(label.encode("utf-8"), key, db=self.db["labelled"])
        txn.delete(key, db=self.db["labels"])
        self._forget_changes(txn, key)
        self._index_identifiers(txn, level, key, record, add=False)
        if record.get("r") is not None:
            txn.delete(_U64.pack(record["r"]), db=self.db["recycling"])
        txn.delete(key, db=self.db["resources"])
        self._add_counter(txn, _LEVEL_COUNTERS[level], -1)
        self._signal(ChangeType.Deleted.name, level, _public_id(key))
        return files

    def _delete_all_metadata(self, txn, key):
        """Every metadata of a resource (its record), and its entries in
        metadata_values."""
        record = txn.get(key, db=self.db["metadata"])
        if record is None:
            return
        if key[0] in _VALUE_LEVEL_BYTES:
            for metadata_type, value in unpack_metadata(record).items():
                txn.delete(metadata_value_key(key[0], metadata_type, value), key,
                           db=self.db["metadata_values"])
        txn.delete(key, db=self.db["metadata"])

    def _children_in_creation_order(self, txn, key):
        """Orthanc's database deletes children in the order of their
        internal IDs, and its OnDeleted* callbacks follow that order."""
        def created(child):
            raw = txn.get(child, db=self.db["resources"])
            return 0 if raw is None else _loads(raw).get("s", 0)
        return sorted(self._children_keys(txn, key), key=created)

    def _forget_changes(self, txn, key):
        cursor = txn.cursor(db=self.db["resource_changes"])
        if cursor.set_key(key):
            for raw_seq in cursor.iternext_dup():
                txn.delete(raw_seq, db=self.db["changes"])
        txn.delete(key, db=self.db["resource_changes"])

    def _delete_resource_op(self, txn, public_id, level, forgotten=()):
        """``forgotten``: released files removed since, to forget."""
        key = resource_key(level, public_id)
        raw = txn.get(key, db=self.db["resources"])
        if raw is None:
            raise UnknownResource(public_id)
        self._forget_released_op(txn, forgotten)
        record = _loads(raw)
        deleted = []
        files = self._delete_subtree(txn, level, key, record)
        deleted.append((level, public_id))
        # Walk up: an ancestor left without children goes too.
        parent_id, child_key = record.get("p"), key
        lv = level
        remaining = None
        while parent_id is not None:
            lv = lv.parent
            parent_key = resource_key(lv, parent_id)
            self._detach_child(txn, parent_key, child_key)
            parent_record = _loads(txn.get(parent_key, db=self.db["resources"]))
            if txn.cursor(db=self.db["children"]).set_key(parent_key):  # a child is left
                remaining = self._to_resource(lv, parent_id, parent_record)
                break
            files.extend(self._delete_subtree(txn, lv, parent_key, parent_record))
            deleted.append((lv, parent_id))
            parent_id, child_key = parent_record.get("p"), parent_key
        return DeleteOutcome(remaining, deleted, files)

    def _require(self, txn, public_id, level):
        key = resource_key(level, public_id)
        raw = txn.get(key, db=self.db["resources"])
        if raw is None:
            raise UnknownResource(public_id)
        return key, _loads(raw)

    def _set_metadata_op(self, txn, public_id, level, metadata_type, value, expected=None):
        key, _ = self._require(txn, public_id, level)
        old = self._metadata_value(txn, key, metadata_type)
        if old is None:
            revision = 0  # a new sequence of revisions: If-Match does not matter
        else:
            current = self._revision(txn, key, _METADATA_REVISION, metadata_type)
            _check_revision(expected, current, _md5_text(old))
            revision = current + 1
        self._put_metadata(txn, key, metadata_type, value, revision)
        if USER_METADATA_START <= metadata_type <= _LAST_USER_TYPE:
            self._log_change(txn, ChangeType.UpdatedMetadata.name, level, public_id, now_iso())
        return revision

    def _delete_metadata_op(self, txn, public_id, level, metadata_type, expected=None):
        key, _ = self._require(txn, public_id, level)
        old = self._metadata_value(txn, key, metadata_type)
        if old is None:
            raise KeyError(metadata_type)
        _check_revision(expected, self._revision(txn, key, _METADATA_REVISION, metadata_type),
                        _md5_text(old))
        self._remove_metadata(txn, key, metadata_type)
        if USER_METADATA_START <= metadata_type <= _LAST_USER_TYPE:
            self._log_change(txn, ChangeType.UpdatedMetadata.name, level, public_id, now_iso())

    def _add_label_op(self, txn, public_id, level, label):
        key, _ = self._require(txn, public_id, level)
        name = label.encode("utf-8")
        if txn.put(key, name, db=self.db["labels"], dupdata=False):
            txn.put(name, key, db=self.db["labelled"], dupdata=True)
            self._signal(LABEL_ADDED, level, public_id, Label=label)

    def _remove_label_op(self, txn, public_id, level, label):
        key, _ = self._require(txn, public_id, level)
        name = label.encode("utf-8")
        if txn.delete(key, name, db=self.db["labels"]):
            txn.delete(name, key, db=self.db["labelled"])
            self._signal(LABEL_REMOVED, level, public_id, Label=label)

    def _set_attachment_op(self, txn, public_id, level, content_type, stored, expected=None):
        key, _ = self._require(txn, public_id, level)
        akey = key + _U16.pack(int(content_type))
        old = txn.get(akey, db=self.db["attachments"])
        previous = None
        revision = 0  # a new sequence of revisions: If-Match does not matter
        if old is not None:
            previous = unpack_attachment(old)
            current = self._revision(txn, key, _ATTACHMENT_REVISION, content_type)
            _check_revision(expected, current, previous.uncompressed_md5)
            revision = current + 1
            self._add_counter(txn, "disk", -previous.size)
            self._add_counter(txn, "uncompressed", -previous.uncompressed_size)
        txn.put(akey, pack_attachment(stored), db=self.db["attachments"])
        self._set_revision(txn, key, _ATTACHMENT_REVISION, content_type, revision)
        self._add_counter(txn, "disk", stored.size)
        self._add_counter(txn, "uncompressed", stored.uncompressed_size)
        # As Orthanc, only the attachments of users are logged.
        if USER_CONTENT_START <= content_type <= _LAST_USER_TYPE:
            self._log_change(txn, ChangeType.UpdatedAttachment.name, level, public_id, now_iso())
        return previous, revision

    def _delete_attachment_op(self, txn, public_id, level, content_type, expected=None):
        key, _ = self._require(txn, public_id, level)
        akey = key + _U16.pack(int(content_type))
        old = txn.get(akey, db=self.db["attachments"])
        if old is None:
            raise KeyError(content_type)
        previous = unpack_attachment(old)
        _check_revision(expected, self._revision(txn, key, _ATTACHMENT_REVISION, content_type),
                        previous.uncompressed_md5)
        txn.delete(akey, db=self.db["attachments"])
        self._set_revision(txn, key, _ATTACHMENT_REVISION, content_type, 0)
        self._add_counter(txn, "disk", -previous.size)
        self._add_counter(txn, "uncompressed", -previous.uncompressed_size)
        if USER_CONTENT_START <= content_type <= _LAST_USER_TYPE:
            self._log_change(txn, ChangeType.UpdatedAttachment.name, level, public_id, now_iso())
        return previous

    def _reconstruct_op(self, txn, summary, metadata, only_level):
        for level in ResourceLevel:
            if only_level is not None and level is not only_level:
                continue
            key, record = self._require(txn, summary.ids[level], level)
            self._index_identifiers(txn, level, key, record, add=False)
            record["t"] = summary.main_tags[level]
            sequences = summary.main_sequences.get(level)
            if sequences:
                record["q"] = sequences
            else:
                record.pop("q", None)
            if level is ResourceLevel.STUDY:
                record["pt"] = summary.main_tags[ResourceLevel.PATIENT]
            txn.put(key, _dumps(record), db=self.db["resources"])
            self._index_identifiers(txn, level, key, record)
            for metadata_type, value in metadata.get(level, {}).items():
                if value is None:
                    self._remove_metadata(txn, key, metadata_type)
                else:
                    self._replace_metadata(txn, key, metadata_type, value)

    def _log_changes_op(self, txn, changes, now):
        return [self._log_change(txn, c, lv, i, now) for c, lv, i in changes]

    def _clear_op(self, txn, dbname):
        txn.drop(self.db[dbname], delete=False)
        if dbname == "changes":
            txn.drop(self.db["resource_changes"], delete=False)

    def _log_export_op(self, txn, entry):
        return self._append_log(txn, "exports", entry)

    def _set_protected_op(self, txn, patient_id, protected):
        key, record = self._require(txn, patient_id, ResourceLevel.PATIENT)
        record["x"] = bool(protected)
        self._touch_patient_recycling(txn, key, record)

    def _forget_released_op(self, txn, uuids):
        for uuid in uuids:
            txn.delete(uuid.encode(), db=self.db["released"])

    # ------------------------------------------------------- consistency check

    def _record_unsettled(self, txn, files):
        """The files a commit references, recorded in it when it is made
        durable together with them (IndexWriter): until the next such
        commit, these are the ones a crash may have kept from the disk.
        Only what tells whether a file is whole is kept (a short record
        fits in the page it shares with the other meta keys)."""
        txn.put(_UNSETTLED, _dumps([[int(slot[0]), slot[1], int(slot[2]), info.uuid, info.size,
                                     info.compressed]
                                    for info, slot in files if slot is not None]),
                db=self.db["meta"])

    def unsettled_files(self):
        with self._read() as txn:
            raw = txn.get(_UNSETTLED, db=self.db["meta"])
        if raw is None:
            return []
        # Their MD5s and uncompressed sizes are not recorded: None.
        return [(ResourceLevel(level), public_id, content_type,
                 StoredFile(uuid, size, None, None, None, compressed))
                for level, public_id, content_type, uuid, size, compressed in _loads(raw)]

    def settle_unsettled_now(self, missing):
        self.writer.run_sync(self._settle_unsettled_op, list(missing))

    def _settle_unsettled_op(self, txn, missing):
        for level, public_id, content_type, info in missing:
            key = resource_key(level, public_id)
            raw = txn.get(key + _U16.pack(int(content_type)), db=self.db["attachments"])
            if raw is None or unpack_attachment(raw).uuid != info.uuid:
                continue  # no longer that file there
            if level is ResourceLevel.INSTANCE and content_type in (
                    ContentType.Dicom, ContentType.DicomUntilPixelData):
                operation = _tracking_files(self._delete_resource_op, [], _obsolete_files,
                                            self.db)
                operation(txn, public_id, level)
            else:
                operation = _tracking_files(self._delete_attachment_op, [], _deleted_file,
                                            self.db)
                operation(txn, public_id, level, content_type)
        txn.delete(_UNSETTLED, db=self.db["meta"])

    def released_files(self):
        """UUIDs of the files that the index stopped referencing and whose
        removal was not confirmed (start-up check)."""
        with self._read() as txn:
            return [bytes(k).decode() for k in
                    txn.cursor(db=self.db["released"]).iternext(values=False)]

    def forget_released_now(self, uuids):
        """``forget_released`` at start-up, before the writer thread runs."""
        self.writer.run_sync(self._forget_released_op, list(uuids))

    def referenced_uuids(self):
        """Every attachment UUID the index points at (start-up orphan sweep)."""
        with self._read() as txn:
            return {unpack_attachment(v).uuid
                    for v in txn.cursor(db=self.db["attachments"]).iternext(keys=False)}
