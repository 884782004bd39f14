"""The LMDB ResourceIndex on its own: hierarchy, counters, cascade, group commits."""
import dataclasses
import threading
import time

import pytest

from orthancd.ids import ResourceLevel, resource_ids
from orthancd.index.base import DescendantsSummary, MetadataType, StorageFull, UnknownResource
from orthancd.index.lmdb_index import LmdbResourceIndex
from orthancd.storage.area import StoredFile


class ImmediateReactor:
    """Deferreds fire on the writer thread; tests wait for them."""

    def callFromThread(self, f, *args):
        f(*args)


@dataclasses.dataclass
class Summary:
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    expected_instances: int | None = None
    modality: str | None = None

    @property
    def ids(self):
        return resource_ids(self.patient_id, self.study_uid, self.series_uid, self.sop_uid)

    @property
    def main_tags(self):
        return {
            ResourceLevel.PATIENT: {"PatientID": self.patient_id, "PatientName": "DOE^JOHN"},
            ResourceLevel.STUDY: {"StudyInstanceUID": self.study_uid},
            ResourceLevel.SERIES: dict({"SeriesInstanceUID": self.series_uid},
                                       **({"Modality": self.modality} if self.modality else {})),
            ResourceLevel.INSTANCE: {"SOPInstanceUID": self.sop_uid},
        }


def wait(d, timeout=10):
    results = []
    d.addBoth(results.append)
    deadline = time.time() + timeout
    while not results and time.time() < deadline:
        time.sleep(0.001)
    assert results, "Deferred never fired"
    result = results[0]
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result


def stored(uuid, size=100):
    return StoredFile(uuid, size, "md5", size, "md5")


@pytest.fixture
def index(tmp_path):
    idx = LmdbResourceIndex(str(tmp_path / "index"), ImmediateReactor(),
                            identifier_tags={ResourceLevel.PATIENT: [(0x00100020, "PatientID")]})
    idx.open()
    idx.writer.startService()
    yield idx
    wait(idx.writer.stopService())
    idx.close()


def store(index, summary, uuid, limits=None, overwrite=False):
    return wait(index.store_instance(
        summary, stored(uuid), {ResourceLevel.INSTANCE: {MetadataType.Origin: "Test"},
                                ResourceLevel.SERIES: {MetadataType.RemoteAET: "AET"}},
        overwrite, limits))


def test_store_creates_hierarchy_and_logs_changes(index):
    s = Summary("P1", "1.1", "1.1.1", "1.1.1.1", expected_instances=2)
    outcome = store(index, s, "a")
    assert outcome.status == "Success"
    assert outcome.new_levels == (ResourceLevel.INSTANCE, ResourceLevel.SERIES,
                                  ResourceLevel.STUDY, ResourceLevel.PATIENT)
    patient, study, series, instance = s.ids
    assert index.list_resources(ResourceLevel.PATIENT) == [patient]
    assert index.get_children(study, ResourceLevel.STUDY) == [series]
    assert index.get_resource(study).patient_tags["PatientName"] == "DOE^JOHN"
    metadata = index.get_metadata(instance, ResourceLevel.INSTANCE)
    assert metadata[MetadataType.Origin] == "Test"
    series_metadata = index.get_metadata(series, ResourceLevel.SERIES)
    assert series_metadata[MetadataType.ExpectedNumberOfInstances] == "2"
    assert series_metadata[MetadataType.RemoteAET] == "AET"
    changes, done = index.get_changes()
    assert [c.change_type for c in changes] == ["NewInstance", "NewSeries", "NewStudy", "NewPatient"]
    assert done and index.last_change_seq() == 4
    assert [c.seq for c in index.read_changes(1, 3)] == [2, 3]
    assert [c.seq for c in index.read_changes(0, None, 2, newest_first=True)] == [3, 4]
    assert [c.seq for c in index.read_changes(types={"NewSeries", "NewPatient"})] == [2, 4]
    assert store(index, s, "a").status == "AlreadyStored"
    assert index.lookup_identifier(ResourceLevel.PATIENT, 0x00100020, "P1") == [patient]


def test_children_are_listed_by_id_and_counted(index):
    # Orthanc 1.13.0 lists children, like every list, by public ID.
    sops = ["1.9", "1.2", "1.5", "1.1"]
    for n, sop in enumerate(sops):
        store(index, Summary("P", "S", "SE", sop), "f%d" % n)
    series = Summary("P", "S", "SE", "x").ids[2]
    children = index.get_children(series, ResourceLevel.SERIES)
    assert children == sorted(Summary("P", "S", "SE", sop).ids[3] for sop in sops)
    # Creation order is kept beside, for ties when ordering.
    seqs = [index.get_resource(Summary("P", "S", "SE", sop).ids[3]).seq for sop in sops]
    assert seqs == sorted(seqs)
    stats = index.get_statistics()
    assert stats["instances"] == 4 and stats["series"] == 1 and stats["disk"] == 400
    assert index.list_resources(ResourceLevel.INSTANCE, since=1, limit=2) == children[1:3]


def test_descendants_are_counted_and_their_values_gathered_in_one_reading(index):
    # Two studies of one patient; the first with two series (modalities CT
    # and MR; instances of two SOP classes, one without) and 3 instances.
    layout = [("S1", "SE1", "1", "CT", "1.2.840.10008.5.1.4.1.1.2"),
              ("S1", "SE1", "2", "CT", "1.2.840.10008.5.1.4.1.1.2"),
              ("S1", "SE2", "3", "MR", None),
              ("S2", "SE3", "4", None, "1.2.840.10008.5.1.4.1.1.4")]
    for n, (study, series, sop, modality, sop_class) in enumerate(layout):
        summary = Summary("P", study, series, sop, modality=modality)
        metadata = {ResourceLevel.INSTANCE: {MetadataType.Origin: "Test"}}
        if sop_class is not None:
            metadata[ResourceLevel.INSTANCE][MetadataType.SopClassUid] = sop_class
        assert wait(index.store_instance(summary, stored("f%d" % n), metadata, False,
                                         None)).status == "Success"
    patient, study, _, _ = Summary("P", "S1", "SE1", "1").ids
    other_study = Summary("P", "S2", "SE3", "4").ids[1]
    P, ST, SE, I = (ResourceLevel.PATIENT, ResourceLevel.STUDY, ResourceLevel.SERIES,
                    ResourceLevel.INSTANCE)
    sop_class = MetadataType.SopClassUid
    assert index.summarize_descendants(patient, P) == DescendantsSummary({ST: 2, SE: 3, I: 4})
    assert index.summarize_descendants(study, ST) == DescendantsSummary({SE: 2, I: 3})
    assert index.summarize_descendants(other_study, ST) == DescendantsSummary({SE: 1, I: 1})
    assert index.summarize_descendants(study, ST, "Modality", sop_class) == DescendantsSummary(
        {SE: 2, I: 3}, {"CT", "MR"}, {"1.2.840.10008.5.1.4.1.1.2"})
    assert index.summarize_descendants(other_study, ST, "Modality").series_values == set()
    assert index.summarize_descendants(patient, P, instance_metadata=sop_class) == \
        DescendantsSummary({ST: 2, SE: 3, I: 4}, set(),
                           {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"})
    series = Summary("P", "S1", "SE2", "3").ids[2]
    assert index.summarize_descendants(series, SE, "Modality", sop_class) == \
        DescendantsSummary({I: 1})
    # The same as listing them.
    assert index.summarize_descendants(patient, P).counts[I] == \
        len(index.get_descendants(patient, P, I))
    with pytest.raises(UnknownResource):
        index.summarize_descendants(Summary("Q", "S9", "SE9", "9").ids[1], ST)
    instance = Summary("P", "S1", "SE1", "1").ids[3]
    assert index.summarize_descendants(instance, I, "Modality", sop_class) == \
        DescendantsSummary({})


def test_resources_are_read_together(index):
    first, second = Summary("P", "S1", "SE1", "I1"), Summary("P", "S2", "SE2", "I2")
    store(index, first, "a")
    store(index, second, "b")
    studies = [first.ids[1], second.ids[1]]
    unknown = Summary("Q", "S9", "SE9", "I9").ids[1]
    found = index.get_resources(studies + [unknown, "not an ID", first.ids[2]],
                                ResourceLevel.STUDY)
    # Only the studies that exist, as get_resource reads them one by one.
    assert found == {study: index.get_resource(study, ResourceLevel.STUDY) for study in studies}


def test_reads_together_see_one_state_of_the_index(index):
    store(index, Summary("P", "S1", "SE1", "I1"), "a")
    elsewhere = []
    with index.reading_together():
        store(index, Summary("P", "S2", "SE2", "I2"), "b")  # committed meanwhile
        with index.reading_together():  # nested: the same reading
            assert index.count_resources(ResourceLevel.STUDY) == 1
        assert len(index.list_resources(ResourceLevel.INSTANCE)) == 1
        # Other threads read on their own.
        reader = threading.Thread(
            target=lambda: elsewhere.append(index.count_resources(ResourceLevel.STUDY)))
        reader.start()
        reader.join()
    assert elsewhere == [2]
    assert index.count_resources(ResourceLevel.STUDY) == 2


def test_a_queried_tag_is_read_as_the_merged_tags_have_it(index):
    from orthancd.find import tags as T
    from orthancd.find.lookup import ResourceCache
    summary = Summary("P", "S", "SE", "I", modality="CT")
    store(index, summary, "a")
    resources = ResourceCache(index)
    for level, public_id in zip(ResourceLevel, summary.ids):
        merged = resources.merged_main_tags(public_id, level)
        assert merged  # a series sees its study's and its patient's tags
        for tag in T.MAIN_TAG_NAMES:
            assert resources.main_tag(public_id, level, tag) == merged.get(tag), (level, tag)


def test_cascade_delete(index):
    a = Summary("P", "S", "SE", "1")
    b = Summary("P", "S", "SE2", "2")
    store(index, a, "fa")
    store(index, b, "fb")
    outcome = wait(index.delete_resource(a.ids[3], ResourceLevel.INSTANCE))
    assert [f.uuid for f in outcome.obsolete_files] == ["fa"]
    assert outcome.remaining_ancestor.public_id == a.ids[1]  # the study keeps SE2
    assert outcome.deleted == [(ResourceLevel.INSTANCE, a.ids[3]), (ResourceLevel.SERIES, a.ids[2])]
    outcome = wait(index.delete_resource(b.ids[2], ResourceLevel.SERIES))
    assert outcome.remaining_ancestor is None
    assert index.list_resources(ResourceLevel.PATIENT) == []
    assert index.get_statistics() == {k: 0 for k in ("patients", "studies", "series", "instances",
                                                     "disk", "uncompressed")}
    assert index.lookup_identifier(ResourceLevel.PATIENT, 0x00100020, "P") == []
    with pytest.raises(UnknownResource):
        index.get_resource(b.ids[0])
    with pytest.raises(UnknownResource):
        wait(index.delete_resource(b.ids[0], ResourceLevel.PATIENT))


def test_recycling_and_full_storage(index):
    store(index, Summary("P1", "S1", "SE1", "1"), "f1", limits=(0, 2))
    store(index, Summary("P2", "S2", "SE2", "2"), "f2", limits=(0, 2))
    outcome = store(index, Summary("P3", "S3", "SE3", "3"), "f3", limits=(0, 2))
    assert outcome.recycled == [Summary("P1", "", "", "").ids[0]]
    assert [f.uuid for f in outcome.obsolete_files] == ["f1"]
    wait(index.set_protected(Summary("P2", "", "", "").ids[0], True))
    wait(index.set_protected(Summary("P3", "", "", "").ids[0], True))
    with pytest.raises(StorageFull):
        store(index, Summary("P4", "S4", "SE4", "4"), "f4", limits=(0, 2))
    assert index.get_statistics()["patients"] == 2


def test_recycling_order_follows_the_last_instance_stored(index):
    """A patient that receives instances in a row keeps its place at the end
    of the recycling order (nothing rewritten); one that receives an
    instance after others moves there."""
    patient = {name: Summary(name, "", "", "").ids[0] for name in ("P1", "P2", "P3", "P4")}
    store(index, Summary("P1", "S1", "SE1", "1"), "f1", limits=(0, 3))
    store(index, Summary("P1", "S1", "SE1", "1b"), "f1b", limits=(0, 3))  # P1 stays last
    store(index, Summary("P2", "S2", "SE2", "2"), "f2", limits=(0, 3))
    store(index, Summary("P3", "S3", "SE3", "3"), "f3", limits=(0, 3))
    store(index, Summary("P1", "S1", "SE1", "1c"), "f1c", limits=(0, 3))  # P1 last again
    store(index, Summary("P1", "S1", "SE1", "1d"), "f1d", limits=(0, 3))
    outcome = store(index, Summary("P4", "S4", "SE4", "4"), "f4", limits=(0, 3))
    assert outcome.recycled == [patient["P2"]]
    outcome = store(index, Summary("P4", "S4", "SE4", "4b"), "f4b", limits=(0, 3))
    assert outcome.recycled == []
    outcome = store(index, Summary("P2", "S2", "SE2", "2b"), "f2b", limits=(0, 3))
    assert outcome.recycled == [patient["P3"]]
    assert sorted(index.iter_ids(ResourceLevel.PATIENT)) == sorted(
        [patient["P1"], patient["P2"], patient["P4"]])


def test_last_update_rewritten_only_when_it_changes(index):
    """Each instance sets its ancestors' LastUpdate; the study is found by
    its value whether it changed or not."""
    first = Summary("P1", "S1", "SE1", "1")
    store(index, first, "f1")
    study = first.ids[1]
    before = index.get_metadata_value(study, ResourceLevel.STUDY, MetadataType.LastUpdate)
    store(index, Summary("P1", "S1", "SE1", "2"), "f2")
    after = index.get_metadata_value(study, ResourceLevel.STUDY, MetadataType.LastUpdate)
    assert after >= before
    found = [key for key in index.lookup_metadata(ResourceLevel.STUDY, MetadataType.LastUpdate,
                                                   after)]
    assert len(found) == 1
    values = [value for value, _ in index.iter_metadata_values(ResourceLevel.STUDY,
                                                                 MetadataType.LastUpdate)]
    assert values == [after]


def test_group_commit_with_concurrent_writers(index):
    errors = []

    def worker(w):
        try:
            for i in range(50):
                store(index, Summary("P%d" % w, "S", "SE", "%d.%d" % (w, i)), "f%d.%d" % (w, i))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert index.get_statistics()["instances"] == 400
    assert len(index.get_changes(limit=10000)[0]) == 400 + 8 * 3


def test_failing_operation_does_not_sink_the_batch(index):
    bad = index.writer.submit(lambda txn: 1 / 0)
    good = index.store_instance(Summary("P", "S", "SE", "1"), stored("f"), {}, False, None)
    with pytest.raises(ZeroDivisionError):
        wait(bad)
    assert wait(good).status == "Success"


def test_public_id_format_round_trip():
    import os
    from orthancd.ids import format_public_id, parse_public_id
    digest = os.urandom(20)
    text = format_public_id(digest)
    assert text == "-".join(digest.hex()[i:i + 8] for i in range(0, 40, 8))
    assert parse_public_id(text) == digest
    for bad in ("x" * 44, text[:-1], text.replace("-", "+"), text[:40] + " " + text[41:]):
        with pytest.raises(ValueError):
            parse_public_id(bad)


def test_committed_changes_are_published_in_order(tmp_path):
    from orthancd.changes import ChangeStream
    stream = ChangeStream()
    seen = []
    stream.subscribe(seen.append)
    idx = LmdbResourceIndex(str(tmp_path / "index"), ImmediateReactor(), changes=stream,
                            identifier_tags={})
    idx.open()
    idx.writer.startService()
    try:
        s = Summary("P", "S", "SE", "1")
        store(idx, s, "a")
        assert [(c.change_type, c.seq is not None) for c in seen] == [
            ("NewInstance", True), ("NewSeries", True), ("NewStudy", True), ("NewPatient", True),
            ("NewChildInstance", False), ("NewChildInstance", False), ("NewChildInstance", False)]
        assert seen[-1].details["Instance"] == s.ids[3]
        del seen[:]
        wait(idx.add_label(s.ids[1], ResourceLevel.STUDY, "L"))
        wait(idx.add_label(s.ids[1], ResourceLevel.STUDY, "L"))  # already there: no event
        with pytest.raises(UnknownResource):
            wait(idx.add_label(s.ids[0], ResourceLevel.STUDY, "L"))  # failed: nothing
        wait(idx.delete_resource(s.ids[3], ResourceLevel.INSTANCE))
        assert [(c.change_type, c.level) for c in seen] == [
            ("LabelAdded", ResourceLevel.STUDY), ("Deleted", ResourceLevel.INSTANCE),
            ("Deleted", ResourceLevel.SERIES), ("Deleted", ResourceLevel.STUDY),
            ("Deleted", ResourceLevel.PATIENT)]
    finally:
        idx.writer.stopService()
        idx.close()


def metadata_value_entries(index):
    with index.env.begin() as txn:
        return [(bytes(key), bytes(value))
                for key, value in txn.cursor(db=index.db["metadata_values"]).iternext()]


def test_only_patients_studies_and_series_metadata_are_indexed_by_value(index):
    s = Summary("P1", "1.1", "1.1.1", "1.1.1.1")
    outcome = store(index, s, "a")
    series_id, instance_id = outcome.ids[ResourceLevel.SERIES], outcome.ids[ResourceLevel.INSTANCE]
    levels = {key[0] for key, _ in metadata_value_entries(index)}
    assert int(ResourceLevel.SERIES) in levels and int(ResourceLevel.INSTANCE) not in levels
    assert [i for _, i in index.iter_metadata_values(ResourceLevel.SERIES,
                                                     MetadataType.RemoteAET)] == [series_id]
    with pytest.raises(ValueError):
        list(index.iter_metadata_values(ResourceLevel.INSTANCE, MetadataType.Origin))
    # Still set, read and removed as any metadata.
    assert index.get_metadata_value(instance_id, ResourceLevel.INSTANCE,
                                    MetadataType.Origin) == "Test"
    wait(index.delete_resource(instance_id, ResourceLevel.INSTANCE))
    assert metadata_value_entries(index) == []


def test_instances_metadata_indexed_by_an_earlier_version_are_dropped_once(tmp_path,
                                                                         monkeypatch):
    from orthancd.index import lmdb_index
    monkeypatch.setattr(lmdb_index, "_DELETED_PER_TRANSACTION", 2)  # by several transactions
    index = LmdbResourceIndex(str(tmp_path / "index"), ImmediateReactor())
    index.open()
    index.writer.startService()
    try:
        outcome = store(index, Summary("P1", "1.1", "1.1.1", "1.1.1.1"), "a")
    finally:
        wait(index.writer.stopService())
    kept = metadata_value_entries(index)
    # As an earlier version left it: instances' entries, and no mark.
    instance_key = bytes((int(ResourceLevel.INSTANCE),)) + bytes(20)
    with index.env.begin(write=True) as txn:
        for n in range(5):
            txn.put(bytes((int(ResourceLevel.INSTANCE),)) + b"\0\1value%d" % n, instance_key,
                    db=index.db["metadata_values"], dupdata=True)
        txn.delete(b"instance-metadata-values-dropped", db=index.db["meta"])
    index.close()
    index.open()
    try:
        assert metadata_value_entries(index) == kept
        assert index.get_metadata_value(outcome.ids[ResourceLevel.INSTANCE],
                                        ResourceLevel.INSTANCE, MetadataType.Origin) == "Test"
    finally:
        index.close()


def metadata_entries(index):
    with index.env.begin() as txn:
        return [(bytes(key), bytes(value))
                for key, value in txn.cursor(db=index.db["metadata"]).iternext()]


def test_metadata_records_round_trip():
    from orthancd.index.lmdb_index import metadata_entry, pack_metadata, unpack_metadata
    values = {1024: "user", 3: "", 7: "Gr\u00fc\u00dfe \u6f22\u5b57", 1: "x" * 70000}
    record = pack_metadata(values)
    assert list(unpack_metadata(record).items()) == sorted(values.items())
    for metadata_type, value in values.items():
        assert metadata_entry(record, metadata_type) == value
    assert metadata_entry(record, 2) is None and metadata_entry(record, 5000) is None
    assert unpack_metadata(pack_metadata({})) == {} and metadata_entry(b"", 1) is None


def test_one_metadata_record_per_resource(index):
    """An instance's ten metadata are one entry, written once and deleted
    with it; setting or removing one metadata rewrites its resource's record."""
    outcome = store(index, Summary("P1", "1.1", "1.1.1", "1.1.1.1", expected_instances=3), "a")
    ids = outcome.ids
    assert len(metadata_entries(index)) == 4
    instance_id, series_id = ids[ResourceLevel.INSTANCE], ids[ResourceLevel.SERIES]
    assert index.get_metadata(series_id, ResourceLevel.SERIES)[
        MetadataType.ExpectedNumberOfInstances] == "3"
    assert index.get_metadata(series_id, ResourceLevel.SERIES)[MetadataType.RemoteAET] == "AET"
    assert wait(index.set_metadata(instance_id, ResourceLevel.INSTANCE, 1025, "b")) == 0
    assert wait(index.set_metadata(instance_id, ResourceLevel.INSTANCE, 1024, "a")) == 0
    assert wait(index.set_metadata(instance_id, ResourceLevel.INSTANCE, 1024, "c")) == 1
    metadata = index.get_metadata(instance_id, ResourceLevel.INSTANCE)
    assert list(metadata) == sorted(metadata) and metadata[1024] == "c"
    assert index.metadata_with_revision(instance_id, ResourceLevel.INSTANCE, 1024) == ("c", 1)
    wait(index.delete_metadata(instance_id, ResourceLevel.INSTANCE, 1024))
    assert 1024 not in index.get_metadata(instance_id, ResourceLevel.INSTANCE)
    assert len(metadata_entries(index)) == 4
    wait(index.delete_resource(instance_id, ResourceLevel.INSTANCE))
    assert metadata_entries(index) == [] and metadata_value_entries(index) == []


def test_metadata_of_an_earlier_version_are_packed_once(tmp_path, monkeypatch):
    """An index written with an entry per metadata (key + 2-byte type) gets a
    record per resource at start-up, by transactions of a few resources; a
    start-up interrupted after some of them goes on with the others."""
    from orthancd.index import lmdb_index
    monkeypatch.setattr(lmdb_index, "_PACKED_PER_TRANSACTION", 2)
    index = LmdbResourceIndex(str(tmp_path / "index"), ImmediateReactor())
    index.open()
    index.writer.startService()
    try:
        outcomes = [store(index, Summary("P%d" % n, "1.%d" % n, "1.%d.1" % n, "1.%d.1.1" % n),
                          "f%d" % n) for n in range(3)]
        wait(index.set_metadata(outcomes[0].ids[ResourceLevel.INSTANCE],
                                ResourceLevel.INSTANCE, 1024, "\u00e9t\u00e9"))
    finally:
        wait(index.writer.stopService())
    expected = {(level, outcome.ids[level]): index.get_metadata(outcome.ids[level], level)
                for outcome in outcomes for level in ResourceLevel}
    values = metadata_value_entries(index)

    def unpack_all(first_packed):
        # As an earlier version wrote them, but for the first resources.
        with index.env.begin(write=True) as txn:
            for n, (key, record) in enumerate(metadata_entries(index)):
                if n < first_packed:
                    continue
                txn.delete(key, db=index.db["metadata"])
                for metadata_type, value in lmdb_index.unpack_metadata(record).items():
                    txn.put(key + metadata_type.to_bytes(2, "big"), value.encode("utf-8"),
                            db=index.db["metadata"])
            txn.delete(b"metadata-packed", db=index.db["meta"])

    for first_packed in (0, 5):
        unpack_all(first_packed)
        assert len(metadata_entries(index)) > 12
        index.close()
        index.open()
        assert len(metadata_entries(index)) == 12
        assert {key: index.get_metadata(key[1], key[0]) for key in expected} == expected
        assert metadata_value_entries(index) == values
    index.close()


def test_attachment_records_round_trip():
    """Attachments are kept in 50-66 bytes; a UUID or MD5 of an unusual
    form, and the JSON records of earlier versions, still round-trip."""
    import json
    from orthancd.index.lmdb_index import pack_attachment, unpack_attachment
    uuid = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
    md5, other = "0123456789abcdef0123456789abcdef", "fedcba98765432100123456789abcdef"
    cases = [StoredFile(uuid, 513000, md5, 513000, md5),
             StoredFile(uuid, 100, md5, 4000, other, True),
             StoredFile(uuid, 10, "", 10, ""),
             StoredFile(uuid, 2 ** 40, md5, 2 ** 40, md5)]
    for stored in cases:
        record = pack_attachment(stored)
        assert len(record) <= 66 and record[:1] == b"\x01"
        assert unpack_attachment(record) == stored
    odd = [StoredFile("not-a-uuid", 1, md5, 1, md5), StoredFile(uuid.upper(), 1, md5, 1, md5),
           StoredFile(uuid, 1, md5.upper(), 1, md5.upper()), StoredFile(uuid, 1, md5, 1, "")]
    for stored in odd:
        record = pack_attachment(stored)
        assert record[:1] == b"{" and unpack_attachment(record) == stored
    earlier = json.dumps(cases[1].to_record()).encode()
    assert unpack_attachment(earlier) == cases[1]
