"""The pending record of the storage area (orthancd.storage.pending): marks
appended to one journal, read back after a crash, compacted as it grows;
no inode created or freed per file."""
import os

from orthancd.storage.pending import PendingJournal, parse_journal

UUIDS = ["%08d-0000-0000-0000-000000000000" % i for i in range(6)]


def journal(tmp_path, **kwargs):
    record = PendingJournal(str(tmp_path / "pending"), **kwargs)
    record.open()
    return record


def on_disk(tmp_path):
    with open(tmp_path / "pending" / "journal", "rb") as f:
        return parse_journal(f.read())


def test_marks_survive_a_crash_and_settled_ones_do_not(tmp_path):
    record = journal(tmp_path)
    record.mark(UUIDS[0], "instances/a/1")
    record.mark(UUIDS[1], None)
    record.mark(UUIDS[2], "patients/b/1025")
    record.unmark(UUIDS[2])
    assert on_disk(tmp_path) == {UUIDS[0]: "instances/a/1", UUIDS[1]: None}
    # The crash: no close.  The next run reads what was left.
    again = journal(tmp_path)
    assert sorted(again.entries()) == [(UUIDS[0], "instances/a/1"), (UUIDS[1], None)]
    again.forget([UUIDS[0], UUIDS[1]])
    assert again.entries() == [] and on_disk(tmp_path) == {}


def test_one_mark_per_file_however_often_it_is_stored(tmp_path):
    record = journal(tmp_path)
    record.mark(UUIDS[0], "instances/a/1")
    record.mark(UUIDS[0], "instances/a/1")
    record.unmark(UUIDS[0])
    record.unmark(UUIDS[0])  # a removal after the settlement writes nothing
    size = os.path.getsize(tmp_path / "pending" / "journal")
    record.unmark(UUIDS[3])
    assert os.path.getsize(tmp_path / "pending" / "journal") == size
    assert on_disk(tmp_path) == {}


def test_a_torn_last_line_is_ignored(tmp_path):
    record = journal(tmp_path)
    record.mark(UUIDS[0], "instances/a/1")
    with open(tmp_path / "pending" / "journal", "ab") as f:
        f.write(b"+" + UUIDS[1][:10].encode())  # the crash in the middle of an append
    assert [uuid for uuid, _ in journal(tmp_path).entries()] == [UUIDS[0]]


def test_the_journal_is_compacted_to_its_live_marks(tmp_path):
    record = journal(tmp_path)
    record.COMPACT_AT = 1000
    record.mark(UUIDS[5], "instances/kept/1")
    # Counted rather than told by the file's inode: a second rewrite may
    # get the inode number the first one freed.
    rewrites = []
    rewrite = record._rewrite
    record._rewrite = lambda: (rewrites.append(True), rewrite())
    for round_ in range(40):
        record.mark(UUIDS[round_ % 5], "instances/x/1")
        record.unmark(UUIDS[round_ % 5])
    path = tmp_path / "pending" / "journal"
    assert os.path.getsize(path) < 1000
    assert rewrites  # rewritten, then appended to again
    record.mark(UUIDS[0], "instances/after/1")
    assert on_disk(tmp_path) == {UUIDS[5]: "instances/kept/1", UUIDS[0]: "instances/after/1"}
    assert not os.path.exists(str(path) + ".new")


def test_a_clean_close_empties_the_journal(tmp_path):
    record = journal(tmp_path)
    record.mark(UUIDS[0], "instances/a/1")
    record.unmark(UUIDS[0])
    record.close()
    assert os.path.getsize(tmp_path / "pending" / "journal") == 0


def test_marks_of_an_earlier_version_are_read_and_removed(tmp_path):
    folder = tmp_path / "pending"
    folder.mkdir()
    os.symlink("instances/old/1", folder / UUIDS[0])
    os.symlink("?", folder / UUIDS[1])
    (folder / ".complete").touch()
    record = PendingJournal(str(folder))
    assert record.open() is True
    assert sorted(record.entries()) == [(UUIDS[0], "instances/old/1"), (UUIDS[1], None)]
    record.forget([UUIDS[0], UUIDS[1]])
    assert sorted(os.listdir(folder)) == [".complete", "journal"]


def test_without_its_completeness_mark_the_record_says_so(tmp_path):
    record = PendingJournal(str(tmp_path / "pending"))
    assert record.open() is False
    record.record_complete()
    assert PendingJournal(str(tmp_path / "pending")).open() is True


def test_marks_after_the_close_are_ignored(tmp_path):
    """A file pool thread may still store a file while the server stops."""
    record = journal(tmp_path)
    record.close()
    record.mark(UUIDS[0], "instances/late/1")
    record.unmark(UUIDS[0])
    assert on_disk(tmp_path) == {}


def test_a_group_of_files_is_settled_with_one_append(tmp_path):
    record = PendingJournal(str(tmp_path))
    record.open()
    for uuid in UUIDS[:4]:
        record.mark(uuid, "owner")
    size = os.path.getsize(record.path)
    record.unmark(UUIDS[0], UUIDS[1], UUIDS[0], "not-marked", UUIDS[3])
    with open(record.path, "rb") as f:
        appended = f.read()[size:]
    assert appended == ("-%s\n-%s\n-%s\n" % (UUIDS[0], UUIDS[1], UUIDS[3])).encode()
    assert record.entries() == [(UUIDS[2], "owner")]
    record.unmark()  # nothing: nothing written
    assert os.path.getsize(record.path) == size + len(appended)
    record.close()
