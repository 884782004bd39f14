"""A delete takes every entry of what it deletes out of the LMDB index
(metadata and their metadata_values entries, identifiers, attachments,
children, changes), and nothing of what remains."""
import pytest

from orthancd.ids import ResourceLevel
from orthancd.index.base import MetadataType
from orthancd.index.lmdb_index import LmdbResourceIndex
from tests.test_index_lmdb import ImmediateReactor, Summary, stored, wait

# The tables a resource has entries in (released, meta and the logs aside).
TABLES = ("resources", "children", "metadata", "metadata_values", "attachments",
          "identifiers", "labels", "labelled", "revisions", "resource_changes", "changes")

TAGS = {
    ResourceLevel.PATIENT: [(0x00100020, "PatientID"), (0x00100010, "PatientName")],
    ResourceLevel.STUDY: [(0x0020000D, "StudyInstanceUID")],
    ResourceLevel.SERIES: [(0x0020000E, "SeriesInstanceUID")],
    ResourceLevel.INSTANCE: [(0x00080018, "SOPInstanceUID")],
}


@pytest.fixture
def index(tmp_path):
    idx = LmdbResourceIndex(str(tmp_path / "index"), ImmediateReactor(), identifier_tags=TAGS)
    idx.open()
    idx.writer.startService()
    yield idx
    wait(idx.writer.stopService())
    idx.close()


def entries(index):
    with index.env.begin() as txn:
        return {name: sorted((bytes(k), bytes(v))
                             for k, v in txn.cursor(db=index.db[name]).iternext())
                for name in TABLES}


def store(index, summary, uuid):
    metadata = {ResourceLevel.INSTANCE: {MetadataType.Origin: "Test",
                                         MetadataType.IndexInSeries: summary.sop_uid[-1],
                                         MetadataType.TransferSyntax: "1.2.840.10008.1.2.1"},
                ResourceLevel.SERIES: {MetadataType.RemoteAET: "AET"}}
    return wait(index.store_instance(summary, stored(uuid), metadata, False, None))


def test_delete_leaves_no_entry_behind(index):
    empty = entries(index)
    first = Summary("P1", "1.1", "1.1.1", "1.1.1.1")
    store(index, first, "a")
    only_first = entries(index)
    second = Summary("P1", "1.1", "1.1.1", "1.1.1.2")
    store(index, second, "b")
    wait(index.set_metadata(second.ids[3], ResourceLevel.INSTANCE, 1024, "user value"))
    wait(index.add_label(second.ids[3], ResourceLevel.INSTANCE, "seen"))

    outcome = wait(index.delete_resource(second.ids[3], ResourceLevel.INSTANCE))
    assert [f.uuid for f in outcome.obsolete_files] == ["b"]
    after = entries(index)
    # The changes the first instance made are all there; those of the
    # second went with it (its own changes log entries included).
    for name in TABLES:
        if name in ("changes", "resource_changes", "resources"):
            continue
        assert after[name] == only_first[name], name
    assert {k for k, _ in after["resources"]} == {k for k, _ in only_first["resources"]}

    wait(index.delete_resource(first.ids[3], ResourceLevel.INSTANCE))
    assert entries(index) == empty
    assert index.count_resources(ResourceLevel.PATIENT) == 0


def test_deleting_a_patient_empties_the_tables(index):
    empty = entries(index)
    for n, (study, series) in enumerate([("1.1", "1.1.1"), ("1.1", "1.1.2"), ("1.2", "1.2.1")]):
        store(index, Summary("P9", study, series, "%s.%d" % (series, n)), "file%d" % n)
    outcome = wait(index.delete_resource(Summary("P9", "", "", "").ids[0],
                                         ResourceLevel.PATIENT))
    assert sorted(f.uuid for f in outcome.obsolete_files) == ["file0", "file1", "file2"]
    assert outcome.remaining_ancestor is None
    assert entries(index) == empty
