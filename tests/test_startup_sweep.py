"""The start-up check: what a crash left unreferenced is removed, and only
the files that may be unreferenced are looked at, never the whole storage.

Crashes are simulated in-process by stopping at each dangerous point (after
the file write, after the commit, after a release, a commit on the disk
without its files); one test kills a real daemon during deletes."""
import json
import os
import threading
import time

import pytest
from twisted.internet import defer

from orthancd.config import load_configuration
from orthancd.ids import ResourceLevel
from orthancd.index.base import ContentType
from orthancd.ingest import Origin, attachment_slot
from orthancd.server import OrthancServer
from orthancd.storage.pending import parse_journal
from tests.support.daemon import Daemon, read_sample

SAMPLES = ("DummyCT.dcm", "ColorTestMalaterre.dcm", "SignedCT.dcm")


class ThreadReactor:
    """Deferreds of the writer fire on its thread; the test waits for them."""

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)

    def callLater(self, delay, f, *args, **kwargs):
        timer = threading.Timer(delay, f, args, kwargs)
        timer.start()
        return _TimerCall(timer)


class _TimerCall:
    """The IDelayedCall of a threading.Timer."""

    def __init__(self, timer):
        self.timer = timer

    def active(self):
        return self.timer.is_alive()

    def cancel(self):
        self.timer.cancel()


class InlinePool:
    """The file I/O pool, run inline: the test stays deterministic."""

    def run(self, function, *args, **kwargs):
        return defer.maybeDeferred(function, *args, **kwargs)


def wait(d, timeout=10):
    results = []
    d.addBoth(results.append)
    deadline = time.time() + timeout
    while not results and time.time() < deadline:
        time.sleep(0.001)
    assert results, "Deferred never fired"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


class Workplace:
    """An OrthancServer on a folder, started and stopped - or 'crashed' (left
    as it is, without the shutdown's closing steps) - as a test wants."""

    def __init__(self, folder, **options):
        self.folder = folder
        path = os.path.join(folder, "orthanc.json")
        with open(path, "w") as f:
            json.dump(dict(options, StorageDirectory=os.path.join(folder, "storage")), f)
        self.configuration = load_configuration(path)
        self.server = None

    def start(self):
        self.server = OrthancServer(self.configuration, ThreadReactor(), InlinePool())
        self.server.open()
        self.server.index.writer.startService()
        return self.server

    def stop(self):
        wait(self.server.index.writer.stopService())
        self.server.close()

    def crash(self):
        """The process dies: whatever the writer did not do is lost the same
        way, and the closing steps of a clean stop do not happen (the index
        still names the files of its last commit to check)."""
        wait(self.server.index.writer.stopService())
        self.server.index.env.close()
        self.server.index.env = None
        self.server.storage.close()

    @property
    def storage(self):
        return self.server.storage

    def files(self):
        root = self.storage.root
        return {f for a in os.listdir(root) if len(a) == 2
                for b in os.listdir(os.path.join(root, a))
                for f in os.listdir(os.path.join(root, a, b))}

    def pending(self):
        """The UUIDs of the live marks of the pending record, read from disk."""
        return pending_on_disk(self.storage.root)

    def add_mark(self, uuid, owner):
        """A mark as a crash leaves it: in the journal, never settled."""
        with open(os.path.join(self.folder, "storage", "pending", "journal"), "ab") as f:
            f.write(("+%s\t%s\n" % (uuid, owner)).encode())

    def upload(self, name):
        return wait(self.server.ingest.store(read_sample(name), Origin.rest("127.0.0.1")))


def pending_on_disk(root):
    """Sorted UUIDs of the live marks of a storage's pending record (its
    journal, and the symbolic links of an earlier version), which must be
    complete (a full sweep was done once)."""
    folder = os.path.join(root, "pending")
    assert os.path.exists(os.path.join(folder, ".complete"))
    with open(os.path.join(folder, "journal"), "rb") as f:
        marks = set(parse_journal(f.read()))
    marks.update(name for name in os.listdir(folder)
                 if os.path.islink(os.path.join(folder, name)))
    return sorted(marks)


@pytest.fixture
def place(tmp_path):
    workplace = Workplace(str(tmp_path))
    workplace.start()
    yield workplace
    workplace.stop()


def restart(place):
    place.crash()
    place.start()


def dicom_uuid(place, instance_id):
    return place.server.dicom_attachment(instance_id).uuid


def test_a_file_written_but_never_indexed_is_removed(place):
    kept = place.upload(SAMPLES[0]).ids[3]
    # The crash: the file is written, its index commit never happens.
    data = read_sample(SAMPLES[1])
    orphan = place.storage.store(data, owner=attachment_slot(
        ResourceLevel.INSTANCE, "0" * 8 + "-00000000-00000000-00000000-00000000",
        ContentType.Dicom))
    assert orphan.uuid in place.files() and orphan.uuid in place.pending()
    restart(place)
    assert place.files() == {dicom_uuid(place, kept)}
    assert place.pending() == []


def wait_settled(place, uuid):
    """Until the writer unmarked ``uuid`` (it settles an upload's files just
    after answering the upload)."""
    deadline = time.monotonic() + 10
    while uuid in place.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert uuid not in place.pending()


def test_a_file_indexed_before_the_crash_is_kept(place):
    instance = place.upload(SAMPLES[0]).ids[3]
    uuid = dicom_uuid(place, instance)
    other = place.upload(SAMPLES[1]).ids[3]
    other_uuid = dicom_uuid(place, other)
    unknown = place.upload(SAMPLES[2]).ids[3]
    unknown_uuid = dicom_uuid(place, unknown)
    for settled in (uuid, other_uuid, unknown_uuid):
        wait_settled(place, settled)
    place.crash()
    # The crash between the commit and settling its pending mark,
    place.add_mark(uuid, attachment_slot(ResourceLevel.INSTANCE, instance, ContentType.Dicom))
    # a mark that named no owner,
    place.add_mark(other_uuid, "?")
    # and a mark left by an earlier orthancd, as a symbolic link.
    os.symlink("?", os.path.join(place.folder, "storage", "pending", unknown_uuid))
    assert place.pending() == sorted([uuid, other_uuid, unknown_uuid])
    place.start()
    assert place.files() == {uuid, other_uuid, unknown_uuid}
    assert place.pending() == []
    assert place.server.storage.read(uuid) == read_sample(SAMPLES[0])


def test_a_file_of_unknown_owner_is_removed_when_nothing_references_it(place):
    orphan = place.storage.store(b"an attachment the index never heard of")
    restart(place)
    assert orphan.uuid not in place.files()
    assert place.pending() == []


def test_files_released_before_the_crash_are_removed(place):
    """Deleted instances whose files the crash left behind, an overwritten
    attachment, a deleted attachment."""
    ids = [place.upload(name).ids for name in SAMPLES]
    uuids = [dicom_uuid(place, i[3]) for i in ids]
    server = place.server
    # Only the index operations: the removals that follow them "never run".
    wait(server.index.delete_resource(ids[0][3], ResourceLevel.INSTANCE))
    patient = ids[1][0]
    first = server.storage.store(b"first", b"salt-1", owner=attachment_slot(
        ResourceLevel.PATIENT, patient, 1025))
    wait(server.index.set_attachment(patient, ResourceLevel.PATIENT, 1025, first))
    second = server.storage.store(b"second", b"salt-2", owner=attachment_slot(
        ResourceLevel.PATIENT, patient, 1025))
    wait(server.index.set_attachment(patient, ResourceLevel.PATIENT, 1025, second))
    third = server.storage.store(b"third", b"salt-3", owner=attachment_slot(
        ResourceLevel.PATIENT, patient, 1026))
    wait(server.index.set_attachment(patient, ResourceLevel.PATIENT, 1026, third))
    wait(server.index.delete_attachment(patient, ResourceLevel.PATIENT, 1026))
    assert sorted(server.index.released_files()) == sorted([uuids[0], first.uuid, third.uuid])
    assert place.pending() == []  # every commit settled its files
    restart(place)
    assert place.files() == {uuids[1], uuids[2], second.uuid}
    assert place.server.index.released_files() == []


def test_a_released_file_stored_again_is_kept(place):
    instance = place.upload(SAMPLES[0]).ids[3]
    uuid = dicom_uuid(place, instance)
    wait(place.server.index.delete_resource(instance, ResourceLevel.INSTANCE))
    assert place.server.index.released_files() == [uuid]
    # The same bytes come back before the removal ran: referenced again.
    assert place.upload(SAMPLES[0]).ids[3] == instance
    assert place.server.index.released_files() == []
    restart(place)
    assert place.files() == {uuid}


def test_removal_after_a_delete_lets_the_index_forget(place):
    instance = place.upload(SAMPLES[0]).ids[3]
    uuid = dicom_uuid(place, instance)
    outcome = wait(defer.ensureDeferred(
        place.server.delete_resource(instance, ResourceLevel.INSTANCE)))
    assert outcome.obsolete_files[0].uuid == uuid
    deadline = time.time() + 10
    while place.server.index.released_files() and time.time() < deadline:
        time.sleep(0.01)
    assert place.server.index.released_files() == []
    assert uuid not in place.files()


def test_start_up_does_not_list_the_storage(place):
    for name in SAMPLES:
        place.upload(name)
    place.crash()

    def listing_refused():
        raise AssertionError("the start-up check listed the storage")
    place.server = OrthancServer(place.configuration, ThreadReactor(), InlinePool())
    place.server.storage.list_uuids = listing_refused
    place.server.index.referenced_uuids = listing_refused
    place.server.open()
    place.server.index.writer.startService()
    assert len(place.files()) == len(SAMPLES)


def test_a_storage_without_pending_record_is_swept_once(place):
    """A storage written by an older orthancd: one full sweep, then the
    pending folder is trusted."""
    kept = place.upload(SAMPLES[0]).ids[3]
    place.crash()
    old_orphan = "ab/cd/abcd0000-0000-0000-0000-000000000000"
    os.makedirs(os.path.join(place.folder, "storage", "ab", "cd"))
    with open(os.path.join(place.folder, "storage", old_orphan), "wb") as f:
        f.write(b"left by a crash of an older orthancd")
    os.unlink(os.path.join(place.folder, "storage", "pending", ".complete"))
    place.start()
    assert place.files() == {dicom_uuid(place, kept)}
    assert place.pending() == []


def test_kill_during_deletes_leaves_no_orphan(tmp_path):
    """A real daemon killed while it deletes: the released files it had no
    time to remove go at the next start."""
    from tests.test_crash_recovery import synthetic_instances

    daemon = Daemon(tmp_path).start()
    rest = daemon.client()
    ids = [rest.upload(data)["ID"] for data in synthetic_instances(120)]
    deleted = []
    stop = threading.Event()

    def deleter(chunk):
        for instance_id in chunk:
            if stop.is_set():
                return
            try:
                answer = rest.delete("/instances/" + instance_id)
            except OSError:
                return
            if answer.status == 200:
                deleted.append(instance_id)

    workers = [threading.Thread(target=deleter, args=(ids[i::4],)) for i in range(4)]
    for worker in workers:
        worker.start()
    deadline = time.time() + 30
    while time.time() < deadline and len(deleted) < 30:
        time.sleep(0.005)
    daemon.kill()
    stop.set()
    for worker in workers:
        worker.join()
    assert len(deleted) >= 30, daemon.log()

    daemon.start()
    rest = daemon.client()
    remaining = set(rest.get_json("/instances"))
    assert remaining.isdisjoint(deleted)
    root = daemon.options["StorageDirectory"]
    on_disk = [f for a in os.listdir(root) if len(a) == 2
               for b in os.listdir(os.path.join(root, a))
               for f in os.listdir(os.path.join(root, a, b))]
    assert len(on_disk) == len(remaining) == rest.get_json("/statistics")["CountInstances"]
    for instance_id in remaining:
        assert rest.get("/instances/%s/file" % instance_id).status == 200
    assert pending_on_disk(root) == []
    daemon.stop()


def _lose(place, uuid, how="missing"):
    """What a crash in the middle of a group commit's syncfs may leave: the
    index committed (its meta page reached the disk), the file not (or
    only in part: short, or at its size but with blocks never written)."""
    path = place.storage.path(uuid)
    if how == "truncated":
        with open(path, "r+b") as f:
            f.truncate(100)
    elif how == "zeroed":
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(bytes(size - size // 2))
    else:
        os.unlink(path)


@pytest.mark.parametrize("how", ["missing", "truncated", "zeroed"])
def test_an_instance_whose_file_a_crash_lost_leaves_the_index(place, how):
    """The index and the storage share a file system here: a commit that
    references files is made durable together with them, and records them.
    After a crash, an instance of that last commit whose file is not whole
    leaves the index, with the ancestors it leaves empty; the instances of
    earlier commits, and the other instances of its series, stay."""
    assert place.server.index.writer.record_files is not None
    kept = place.upload(SAMPLES[0])
    kept_uuid = dicom_uuid(place, kept.ids[3])
    lost = place.upload(SAMPLES[1])
    lost_uuid = dicom_uuid(place, lost.ids[3])
    wait_settled(place, lost_uuid)
    assert [entry[3].uuid for entry in place.server.index.unsettled_files()] == [lost_uuid]
    place.crash()
    _lose(place, lost_uuid, how)
    place.start()
    index = place.server.index
    assert index.exists(kept.ids[3], ResourceLevel.INSTANCE)
    for level in ResourceLevel:
        if lost.ids[level] != kept.ids[level]:
            assert not index.exists(lost.ids[level], level)
    assert place.files() == {kept_uuid}
    assert index.unsettled_files() == []
    assert place.server.storage.read(kept_uuid) == read_sample(SAMPLES[0])
    # The counters lost the instance too.
    statistics = index.get_statistics()
    assert statistics["instances"] == 1
    assert statistics["disk"] == len(read_sample(SAMPLES[0]))
    # The same upload again is a new instance.
    assert place.upload(SAMPLES[1]).status == "Success"
    assert index.exists(lost.ids[3], ResourceLevel.INSTANCE)


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "compressed"])
def test_the_files_of_the_last_commit_that_reached_the_disk_stay(tmp_path, compression):
    """Each kind of file is checked against the name it was stored under:
    a DICOM file, its header (StorageCompression), an attachment."""
    place = Workplace(str(tmp_path), StorageCompression=compression)
    place.start()
    try:
        instance = place.upload(SAMPLES[1]).ids[3]
        wait(defer.ensureDeferred(place.server.store_attachment(
            instance, ResourceLevel.INSTANCE, 1025, b"an attachment")))
        files = place.server.index.get_attachments(instance, ResourceLevel.INSTANCE)
        assert len(files) == (3 if compression else 2)
        wait_settled(place, files[1025].uuid)
        for content_type, info in files.items():
            # Each file in turn recorded as the last batch's (the writer is
            # idle: LMDB takes one write transaction at a time anyway).
            place.server.index.writer.run_sync(
                place.server.index._record_unsettled,
                [(info, (ResourceLevel.INSTANCE, instance, content_type))])
            restart(place)
            assert place.server.index.get_attachments(instance, ResourceLevel.INSTANCE) == files
            assert place.server.index.unsettled_files() == []
    finally:
        place.stop()


def test_an_attachment_whose_file_a_crash_lost_is_removed_alone(place):
    instance = place.upload(SAMPLES[0]).ids[3]
    stored = wait(defer.ensureDeferred(place.server.store_attachment(
        instance, ResourceLevel.INSTANCE, 1025, b"an attachment")))
    wait_settled(place, stored.uuid)
    place.crash()
    _lose(place, stored.uuid)
    place.start()
    attachments = place.server.index.get_attachments(instance, ResourceLevel.INSTANCE)
    assert 1025 not in attachments and ContentType.Dicom in attachments


def test_files_are_made_durable_with_the_index_only_where_one_sync_covers_both(tmp_path):
    from orthancd.storage.filesystem import FilesystemStorageArea
    synced = FilesystemStorageArea(str(tmp_path / "storage"))
    synced.prepare()
    assert synced.durable_with(str(tmp_path))
    # Another file system (/proc is one everywhere): its own syncs.
    assert not synced.durable_with("/proc")
    synced.close()
    unsynced = FilesystemStorageArea(str(tmp_path / "unsynced"), fsync=False)
    unsynced.prepare()
    assert not unsynced.durable_with(str(tmp_path))
    unsynced.close()


def test_a_compressed_instance_whose_header_file_a_crash_lost_leaves_the_index(tmp_path):
    """With StorageCompression, an instance has two files (compressed): the
    DICOM file and its header up to the pixel data.  One of them lost is
    enough for the instance to leave the index; the other file goes too."""
    place = Workplace(str(tmp_path), StorageCompression=True)
    place.start()
    try:
        instance = place.upload(SAMPLES[1]).ids[3]  # a header shorter than the file
        attachments = place.server.index.get_attachments(instance, ResourceLevel.INSTANCE)
        header = attachments[ContentType.DicomUntilPixelData]
        assert header.compressed and attachments[ContentType.Dicom].compressed
        wait_settled(place, header.uuid)
        place.crash()
        os.unlink(place.storage.path(header.uuid) + ".zlib")
        place.start()
        assert not place.server.index.exists(instance, ResourceLevel.INSTANCE)
        assert place.files() == set()
    finally:
        place.stop()


def test_after_a_clean_stop_the_files_of_the_last_commit_are_not_checked(place):
    """Damage found after a clean stop is not a crash's: the instance stays
    (its file reads as corrupted, as in Orthanc)."""
    instance = place.upload(SAMPLES[0]).ids[3]
    uuid = dicom_uuid(place, instance)
    wait_settled(place, uuid)
    place.stop()
    _lose(place, uuid, "zeroed")
    place.start()
    assert place.server.index.exists(instance, ResourceLevel.INSTANCE)
    assert place.server.index.unsettled_files() == []


def test_an_overwrite_is_made_durable_before_its_commit(tmp_path):
    """An overwrite removes an instance stored (and acknowledged) before:
    its batch makes the new file durable before committing, and records
    nothing for the start-up check (it could only remove the new
    instance, not bring the old one back)."""
    import pydicom
    from io import BytesIO
    place = Workplace(str(tmp_path), OverwriteInstances=True)
    place.start()
    try:
        first = place.upload(SAMPLES[0])
        dataset = pydicom.dcmread(BytesIO(read_sample(SAMPLES[0])))
        dataset.InstitutionName = "Overwritten"
        changed = BytesIO()
        dataset.save_as(changed, enforce_file_format=True)
        second = wait(place.server.ingest.store(changed.getvalue(), Origin.rest("127.0.0.1")))
        assert second.ids == first.ids and second.status == "Success"
        new_uuid = dicom_uuid(place, second.ids[3])
        assert new_uuid not in [entry[3].uuid for entry in place.server.index.unsettled_files()]
        place.crash()
        place.start()
        assert place.server.storage.read(new_uuid) == changed.getvalue()
    finally:
        place.stop()
