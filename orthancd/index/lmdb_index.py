"""ResourceIndex on LMDB.

One environment, named sub-databases.  A resource key is a level byte plus the
20-byte SHA-1 behind its public ID, so there is no internal-ID indirection and
lookups by public ID are a single get.

  resources   key -> JSON {p: parent public ID, t: main tags, pt: patient tags
              (studies), s: insertion sequence, x: protected, r: recycling seq}
  order       level byte + 8-byte seq -> key          (listing in insertion order)
  children    parent key -> 8-byte seq + child key    (dupsort, insertion order)
  metadata    key + 2-byte type -> UTF-8 value
  attachments key + 2-byte content type -> JSON StoredFile record
  identifiers level byte + 4-byte tag + normalized value -> key   (dupsort, for find)
  recycling   8-byte seq -> patient key              (oldest activity first)
  changes     8-byte seq -> JSON
  exports     8-byte seq -> JSON
  meta        name -> value (schema version, counters, statistics)
"""
import json
import os
import struct
import time

import lmdb

from orthancd.ids import ResourceLevel, format_public_id, parse_public_id
from orthancd.index.base import (
    Change, ChangeType, ContentType, DeleteOutcome, MetadataType, Resource,
    ResourceIndex, StorageFull, StoreOutcome, UnknownResource)
from orthancd.index.writer import IndexWriter
from orthancd.storage.area import StoredFile

SCHEMA_VERSION = b"1"
_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")
_MAX_IDENTIFIER_VALUE = 400  # LMDB keys are limited to 511 bytes; the index only narrows

_DATABASES = ("resources", "order", "children", "metadata", "attachments",
              "identifiers", "recycling", "changes", "exports", "meta")
_DUPSORT = ("children", "identifiers")

_STATS_KEYS = ("patients", "studies", "series", "instances", "disk", "uncompressed")
_LEVEL_COUNTERS = ("patients", "studies", "series", "instances")


def now_iso():
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime())


def resource_key(level, public_id):
    try:
        return bytes((int(level),)) + parse_public_id(public_id)
    except ValueError:
        raise UnknownResource(public_id)


def _dumps(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _loads(raw):
    return json.loads(bytes(raw))


def identifier_key(level, tag, normalized_value):
    value = normalized_value.encode("utf-8")[:_MAX_IDENTIFIER_VALUE]
    return bytes((int(level),)) + struct.pack(">I", tag) + value


class LmdbResourceIndex(ResourceIndex):

    def __init__(self, directory, reactor, identifier_tags=None, map_size=1 << 40,
                 make_durable=None):
        """``identifier_tags``: {ResourceLevel: [(tag int, keyword)]} whose
        normalized values go into the identifiers database for find."""
        os.makedirs(directory, exist_ok=True)
        self.env = lmdb.open(directory, map_size=map_size, max_dbs=len(_DATABASES) + 2,
                             max_readers=512, subdir=True, sync=True, metasync=True)
        self.db = {}
        for name in _DATABASES:
            self.db[name] = self.env.open_db(name.encode(), dupsort=name in _DUPSORT)
        self.identifier_tags = identifier_tags or {}
        self._normalize = lambda value: value
        with self.env.begin(write=True) as txn:
            version = txn.get(b"schema", db=self.db["meta"])
            if version is None:
                txn.put(b"schema", SCHEMA_VERSION, db=self.db["meta"])
            elif version != SCHEMA_VERSION:
                raise RuntimeError("Incompatible index schema %r in %s" % (version, directory))
        self.listeners = []
        # The index commits only once the files it references are durable.
        self.writer = IndexWriter(self.env, reactor, on_commit=self._committed,
                                  make_durable=make_durable)

    def set_normalizer(self, normalize):
        """The function turning a tag value into its searchable form."""
        self._normalize = normalize

    def close(self):
        self.writer.stop()
        self.env.close()

    # ------------------------------------------------------------------ reads

    def _read(self):
        return self.env.begin(buffers=False)

    def _get_record(self, txn, key):
        raw = txn.get(key, db=self.db["resources"])
        return None if raw is None else _loads(raw)

    def _to_resource(self, level, public_id, record):
        return Resource(level, public_id, record.get("p"), record.get("t", {}),
                        record.get("pt"), record["s"], bool(record.get("x")))

    def get_resource(self, public_id, level=None):
        levels = list(ResourceLevel) if level is None else [level]
        with self._read() as txn:
            for lv in levels:
                record = self._get_record(txn, resource_key(lv, public_id))
                if record is not None:
                    return self._to_resource(lv, public_id, record)
        raise UnknownResource(public_id)

    def exists(self, public_id, level):
        with self._read() as txn:
            return txn.get(resource_key(level, public_id), db=self.db["resources"]) is not None

    def list_resources(self, level, since=0, limit=0):
        prefix = bytes((int(level),))
        out = []
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["order"])
            if not cursor.set_range(prefix):
                return out
            skipped = 0
            for key, value in cursor:
                if key[:1] != prefix:
                    break
                if skipped < since:
                    skipped += 1
                    continue
                out.append(format_public_id(value[1:]))
                if limit and len(out) >= limit:
                    break
        return out

    def _children_keys(self, txn, key):
        cursor = txn.cursor(db=self.db["children"])
        if not cursor.set_key(key):
            return []
        return [bytes(v[8:]) for v in cursor.iternext_dup()]

    def get_children(self, public_id, level):
        with self._read() as txn:
            key = resource_key(level, public_id)
            if txn.get(key, db=self.db["resources"]) is None:
                raise UnknownResource(public_id)
            return [format_public_id(k[1:]) for k in self._children_keys(txn, key)]

    def count_children(self, public_id, level):
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["children"])
            if not cursor.set_key(resource_key(level, public_id)):
                return 0
            return cursor.count()

    def get_descendant_instances(self, public_id, level):
        """Public IDs of every instance below (or at) a resource, in order."""
        with self._read() as txn:
            key = resource_key(level, public_id)
            if txn.get(key, db=self.db["resources"]) is None:
                raise UnknownResource(public_id)
            keys = [key]
            for _ in range(int(ResourceLevel.INSTANCE) - int(level)):
                keys = [c for k in keys for c in self._children_keys(txn, k)]
            return [format_public_id(k[1:]) for k in keys]

    def _metadata(self, txn, key):
        cursor = txn.cursor(db=self.db["metadata"])
        out = {}
        if cursor.set_range(key):
            for k, v in cursor:
                if k[:21] != key:
                    break
                out[_U16.unpack(k[21:23])[0]] = v.decode("utf-8")
        return out

    def get_metadata(self, public_id, level):
        with self._read() as txn:
            key = resource_key(level, public_id)
            if txn.get(key, db=self.db["resources"]) is None:
                raise UnknownResource(public_id)
            return self._metadata(txn, key)

    def _attachments(self, txn, key):
        cursor = txn.cursor(db=self.db["attachments"])
        out = {}
        if cursor.set_range(key):
            for k, v in cursor:
                if k[:21] != key:
                    break
                out[_U16.unpack(k[21:23])[0]] = StoredFile.from_record(_loads(v))
        return out

    def get_attachments(self, public_id, level):
        with self._read() as txn:
            key = resource_key(level, public_id)
            if txn.get(key, db=self.db["resources"]) is None:
                raise UnknownResource(public_id)
            return self._attachments(txn, key)

    def _log_page(self, dbname, since, limit):
        entries = []
        with self._read() as txn:
            cursor = txn.cursor(db=self.db[dbname])
            found = cursor.set_range(_U64.pack(since + 1))
            while found and len(entries) <= limit:
                entries.append((_U64.unpack(cursor.key())[0], _loads(cursor.value())))
                found = cursor.next()
        done = len(entries) <= limit
        return entries[:limit], done

    def get_changes(self, since=0, limit=100):
        entries, done = self._log_page("changes", since, limit)
        changes = [self._change(seq, value) for seq, value in entries]
        last = changes[-1].seq if changes else since
        return changes, done, last

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
            return [format_public_id(v[1:]) for v in cursor.iternext_dup()]

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

    def _scan_identifiers(self, start, within, cap):
        out = []
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["identifiers"])
            if not cursor.set_range(start):
                return out
            for key, value in cursor:
                if not within(key):
                    break
                out.append(format_public_id(value[1:]))
                if cap and len(out) > cap:
                    return None
        return out

    def iter_level(self, level):
        """(public ID, Resource) of every resource of ``level``, by public ID
        (the order Orthanc's SQLite lookups answer in)."""
        prefix = bytes((int(level),))
        with self._read() as txn:
            cursor = txn.cursor(db=self.db["resources"])
            if not cursor.set_range(prefix):
                return
            for key, raw in cursor:
                if key[:1] != prefix:
                    break
                public_id = format_public_id(key[1:])
                yield public_id, self._to_resource(level, public_id, _loads(raw))

    # ----------------------------------------------------------------- writes

    def _committed(self, results):
        for listener in self.listeners:
            listener(results)

    def store_instance(self, summary, stored, metadata, overwrite, limits):
        return self.writer.submit(self._store_instance, summary, stored, metadata,
                                  overwrite, limits, now_iso(), files=[stored])

    def delete_resource(self, public_id, level):
        return self.writer.submit(self._delete_resource_op, public_id, level)

    def set_metadata(self, public_id, level, metadata_type, value):
        return self.writer.submit(self._set_metadata_op, public_id, level, metadata_type, value)

    def delete_metadata(self, public_id, level, metadata_type):
        return self.writer.submit(self._delete_metadata_op, public_id, level, metadata_type)

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

    def set_attachment(self, public_id, level, content_type, stored):
        """Record (or replace) an attachment; fires with the obsolete StoredFile or None."""
        return self.writer.submit(self._set_attachment_op, public_id, level, content_type, stored,
                                  files=[stored])

    def delete_attachment(self, public_id, level, content_type):
        return self.writer.submit(self._delete_attachment_op, public_id, level, content_type)

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

    def _log_change(self, txn, change_type, level, public_id, date):
        value = {"c": change_type, "l": int(level), "i": public_id, "d": date}
        seq = self._append_log(txn, "changes", value)
        return Change(seq, change_type, level, public_id, date)

    def _put_metadata(self, txn, key, metadata_type, value):
        txn.put(key + _U16.pack(int(metadata_type)), str(value).encode("utf-8"),
                db=self.db["metadata"])

    def _index_identifiers(self, txn, level, key, tags, add=True):
        for tag, keyword in self.identifier_tags.get(level, ()):
            value = tags.get(keyword)
            if value is None:
                continue
            ikey = identifier_key(level, tag, self._normalize(value))
            if add:
                txn.put(ikey, key, db=self.db["identifiers"], dupdata=True)
            else:
                txn.delete(ikey, key, db=self.db["identifiers"])

    def _create_resource(self, txn, level, public_id, parent_key, tags, patient_tags):
        key = resource_key(level, public_id)
        seq = self._next(txn, "resources")
        record = {"s": seq, "t": tags}
        if parent_key is not None:
            record["p"] = format_public_id(parent_key[1:])
            txn.put(parent_key, _U64.pack(seq) + key, db=self.db["children"], dupdata=True)
        if patient_tags is not None:
            record["pt"] = patient_tags
        txn.put(key, _dumps(record), db=self.db["resources"])
        txn.put(bytes((int(level),)) + _U64.pack(seq), key, db=self.db["order"])
        self._index_identifiers(txn, level, key, tags)
        self._add_counter(txn, _LEVEL_COUNTERS[level], 1)
        return key, record

    def _touch_patient_recycling(self, txn, patient_key, record):
        if record.get("r") is not None:
            txn.delete(_U64.pack(record["r"]), db=self.db["recycling"])
        if record.get("x"):
            record.pop("r", None)
        else:
            record["r"] = self._next(txn, "recycling")
            txn.put(_U64.pack(record["r"]), patient_key, db=self.db["recycling"], append=True)
        txn.put(patient_key, _dumps(record), db=self.db["resources"])

    def _store_instance(self, txn, summary, stored, metadata, overwrite, limits, now):
        ids = summary.ids
        levels = list(ResourceLevel)
        keys = [resource_key(lv, i) for lv, i in zip(levels, ids)]
        obsolete = []
        existing = txn.get(keys[3], db=self.db["resources"])
        if existing is not None:
            if not overwrite:
                # The bytes just written are useless unless identical to the stored ones.
                raw = txn.get(keys[3] + _U16.pack(ContentType.Dicom), db=self.db["attachments"])
                current = None if raw is None else _loads(raw)["uuid"]
                return StoreOutcome("AlreadyStored", ids,
                                    obsolete_files=[] if current == stored.uuid else [stored])
            # Overwrite replaces the instance (and its files) but keeps its ancestors.
            old = self._delete_subtree(txn, ResourceLevel.INSTANCE, keys[3])
            obsolete.extend(f for f in old if f.uuid != stored.uuid)
            self._detach_child(txn, keys[2], keys[3], _loads(existing)["s"])
        recycled = self._make_room(txn, keys[0], stored.size, limits, obsolete)
        new_levels = []
        tags = summary.main_tags
        parent = None
        records = []
        for lv, key, public_id in zip(levels, keys, ids):
            raw = txn.get(key, db=self.db["resources"])
            if raw is None:
                patient_tags = tags[ResourceLevel.PATIENT] if lv is ResourceLevel.STUDY else None
                key, record = self._create_resource(txn, lv, public_id, parent, tags[lv], patient_tags)
                new_levels.append(lv)
            else:
                record = _loads(raw)
            records.append(record)
            parent = key
        instance_key = keys[3]
        txn.put(instance_key + _U16.pack(ContentType.Dicom), _dumps(stored.to_record()),
                db=self.db["attachments"])
        self._add_counter(txn, "disk", stored.size)
        self._add_counter(txn, "uncompressed", stored.uncompressed_size)
        for metadata_type, value in metadata.items():
            self._put_metadata(txn, instance_key, metadata_type, value)
        if ResourceLevel.SERIES in new_levels and summary.expected_instances is not None:
            self._put_metadata(txn, keys[2], MetadataType.ExpectedNumberOfInstances,
                               summary.expected_instances)
        for key in keys[:3]:
            self._put_metadata(txn, key, MetadataType.LastUpdate, now)
        self._touch_patient_recycling(txn, keys[0], records[0])
        # Orthanc logs the instance first, then whatever ancestors it created
        # (an overwritten instance is no new one: 1.13.0 logs nothing for it).
        for lv in reversed(levels):
            if lv in new_levels and not (lv is ResourceLevel.INSTANCE and existing is not None):
                self._log_change(txn, "New" + lv.title, lv, ids[lv], now)
        status = "Success"
        return StoreOutcome(status, ids, tuple(reversed(new_levels)), obsolete, recycled)

    def _make_room(self, txn, patient_key, incoming_size, limits, obsolete):
        """Recycle the least recently updated unprotected patients while the
        configured limits would be exceeded.  Returns the recycled patient IDs."""
        max_size, max_patients = limits or (0, 0)
        recycled = []
        while True:
            too_big = max_size and self._counter(txn, "disk") + incoming_size > max_size
            new_patient = txn.get(patient_key, db=self.db["resources"]) is None
            too_many = (max_patients and new_patient
                        and self._counter(txn, "patients") + 1 > max_patients)
            if not (too_big or too_many):
                return recycled
            victim = self._oldest_recyclable(txn, patient_key)
            if victim is None:
                raise StorageFull("The storage is full and no patient can be recycled")
            obsolete.extend(self._delete_subtree(txn, ResourceLevel.PATIENT, victim))
            recycled.append(format_public_id(victim[1:]))

    def _oldest_recyclable(self, txn, keep_key):
        cursor = txn.cursor(db=self.db["recycling"])
        for _, patient_key in cursor:
            if bytes(patient_key) != keep_key:
                return bytes(patient_key)
        return None

    def _detach_child(self, txn, parent_key, child_key, child_seq):
        txn.delete(parent_key, _U64.pack(child_seq) + child_key, db=self.db["children"])

    def _delete_subtree(self, txn, level, key):
        """Remove a resource and everything below it; return the obsolete files.
        (Orthanc does not write deletions to the changes log, nor do we.)"""
        files = []
        for child in self._children_keys(txn, key):
            files.extend(self._delete_subtree(txn, ResourceLevel(child[0]), child))
        raw = txn.get(key, db=self.db["resources"])
        if raw is None:
            return files
        record = _loads(raw)
        txn.delete(key, db=self.db["children"])
        for content_type, info in self._attachments(txn, key).items():
            txn.delete(key + _U16.pack(content_type), db=self.db["attachments"])
            self._add_counter(txn, "disk", -info.size)
            self._add_counter(txn, "uncompressed", -info.uncompressed_size)
            files.append(info)
        for metadata_type in self._metadata(txn, key):
            txn.delete(key + _U16.pack(metadata_type), db=self.db["metadata"])
        self._index_identifiers(txn, level, key, record.get("t", {}), add=False)
        txn.delete(bytes((int(level),)) + _U64.pack(record["s"]), db=self.db["order"])
        if record.get("r") is not None:
            txn.delete(_U64.pack(record["r"]), db=self.db["recycling"])
        txn.delete(key, db=self.db["resources"])
        self._add_counter(txn, _LEVEL_COUNTERS[level], -1)
        return files

    def _delete_resource_op(self, txn, public_id, level):
        key = resource_key(level, public_id)
        raw = txn.get(key, db=self.db["resources"])
        if raw is None:
            raise UnknownResource(public_id)
        record = _loads(raw)
        deleted = []
        files = self._delete_subtree(txn, level, key)
        deleted.append((level, public_id))
        # Walk up: an ancestor left without children goes too.
        parent_id, child_key, child_seq = record.get("p"), key, record["s"]
        lv = level
        remaining = None
        while parent_id is not None:
            lv = lv.parent
            parent_key = resource_key(lv, parent_id)
            self._detach_child(txn, parent_key, child_key, child_seq)
            parent_record = _loads(txn.get(parent_key, db=self.db["resources"]))
            if self._children_keys(txn, parent_key):
                remaining = self._to_resource(lv, parent_id, parent_record)
                break
            files.extend(self._delete_subtree(txn, lv, parent_key))
            deleted.append((lv, parent_id))
            parent_id, child_key, child_seq = parent_record.get("p"), parent_key, parent_record["s"]
        return DeleteOutcome(remaining, deleted, files)

    def _require(self, txn, public_id, level):
        key = resource_key(level, public_id)
        raw = txn.get(key, db=self.db["resources"])
        if raw is None:
            raise UnknownResource(public_id)
        return key, _loads(raw)

    def _set_metadata_op(self, txn, public_id, level, metadata_type, value):
        key, _ = self._require(txn, public_id, level)
        self._put_metadata(txn, key, metadata_type, value)
        self._log_change(txn, ChangeType.UpdatedMetadata.name, level, public_id, now_iso())

    def _delete_metadata_op(self, txn, public_id, level, metadata_type):
        key, _ = self._require(txn, public_id, level)
        if not txn.delete(key + _U16.pack(int(metadata_type)), db=self.db["metadata"]):
            raise KeyError(metadata_type)
        self._log_change(txn, ChangeType.UpdatedMetadata.name, level, public_id, now_iso())

    def _set_attachment_op(self, txn, public_id, level, content_type, stored):
        key, _ = self._require(txn, public_id, level)
        akey = key + _U16.pack(int(content_type))
        old = txn.get(akey, db=self.db["attachments"])
        previous = None
        if old is not None:
            previous = StoredFile.from_record(_loads(old))
            self._add_counter(txn, "disk", -previous.size)
            self._add_counter(txn, "uncompressed", -previous.uncompressed_size)
        txn.put(akey, _dumps(stored.to_record()), db=self.db["attachments"])
        self._add_counter(txn, "disk", stored.size)
        self._add_counter(txn, "uncompressed", stored.uncompressed_size)
        self._log_change(txn, ChangeType.UpdatedAttachment.name, level, public_id, now_iso())
        return previous

    def _delete_attachment_op(self, txn, public_id, level, content_type):
        key, _ = self._require(txn, public_id, level)
        akey = key + _U16.pack(int(content_type))
        old = txn.get(akey, db=self.db["attachments"])
        if old is None:
            raise KeyError(content_type)
        previous = StoredFile.from_record(_loads(old))
        txn.delete(akey, db=self.db["attachments"])
        self._add_counter(txn, "disk", -previous.size)
        self._add_counter(txn, "uncompressed", -previous.uncompressed_size)
        self._log_change(txn, ChangeType.UpdatedAttachment.name, level, public_id, now_iso())
        return previous

    def _log_changes_op(self, txn, changes, now):
        return [self._log_change(txn, c, lv, i, now) for c, lv, i in changes]

    def _clear_op(self, txn, dbname):
        txn.drop(self.db[dbname], delete=False)

    def _log_export_op(self, txn, entry):
        return self._append_log(txn, "exports", entry)

    def _set_protected_op(self, txn, patient_id, protected):
        key, record = self._require(txn, patient_id, ResourceLevel.PATIENT)
        record["x"] = bool(protected)
        self._touch_patient_recycling(txn, key, record)

    # ------------------------------------------------------- consistency check

    def referenced_uuids(self):
        """Every attachment UUID the index points at (start-up orphan sweep)."""
        with self._read() as txn:
            return {_loads(v)["uuid"] for v in txn.cursor(db=self.db["attachments"]).iternext(keys=False)}
