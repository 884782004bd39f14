"""The hand-packed encodings and the receive-and-rename ingest path give the
same results as the slower general ones they short-cut."""
import hashlib
import os

import pytest
from twisted.internet.task import Clock

from orthancd.dicom.reading import DicomFormatError, read_dataset
from orthancd.net import dimse, part10
from orthancd.storage.digests import digests_of
from orthancd.storage.filesystem import FilesystemStorageArea, content_uuid
from orthancd.storage.streaming import ReceivedFile, StreamingFileWriter
from orthancd.storage.temporary_files import new_temporary_path
from tests.support.daemon import read_sample

COMMANDS = [
    {"AffectedSOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "CommandField": dimse.C_STORE_RQ,
     "Priority": 0, "AffectedSOPInstanceUID": "1.2.3.4.5.6.7.8.9.10.11.12", "MessageID": 5,
     "CommandDataSetType": dimse.HAS_DATASET, "MoveOriginatorApplicationEntityTitle": "BENCH",
     "MoveOriginatorMessageID": 3},
    {"AffectedSOPClassUID": "1.2.840.10008.1.1", "CommandField": dimse.C_ECHO_RSP,
     "MessageIDBeingRespondedTo": 1, "CommandDataSetType": dimse.NO_DATASET, "Status": 0},
    {"AffectedSOPClassUID": "1.2", "CommandField": dimse.C_MOVE_RSP,
     "MessageIDBeingRespondedTo": 65535, "CommandDataSetType": dimse.NO_DATASET,
     "Status": dimse.PENDING, "NumberOfRemainingSuboperations": 3,
     "NumberOfCompletedSuboperations": 0, "NumberOfFailedSuboperations": 1,
     "NumberOfWarningSuboperations": 0, "ErrorComment": "odd", "MoveDestination": "DEST"},
    {"CommandField": dimse.C_STORE_RSP, "MessageIDBeingRespondedTo": 1, "Status": 0xC000,
     "AffectedSOPInstanceUID": None, "ErrorComment": "even"},
]


@pytest.mark.parametrize("fields", COMMANDS)
def test_packed_command_sets_are_pydicoms(fields):
    assert dimse._pack_command(fields) == dimse._encode_with_pydicom(fields)
    decoded = dimse.decode_command(dimse.encode_command(fields))
    assert decoded.CommandField == fields["CommandField"]


PADDED_TEXTS = [
    {"CommandField": dimse.C_MOVE_RQ, "MessageID": 2, "Priority": 0,
     "CommandDataSetType": dimse.HAS_DATASET, "MoveDestination": " DEST  ",
     "AffectedSOPClassUID": "1.2.840.10008.5.1.4.1.2.2.2"},
    {"CommandField": dimse.C_STORE_RQ, "MessageID": 9, "Priority": 2,
     "AffectedSOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "AffectedSOPInstanceUID": "1.2.3",
     "MoveOriginatorApplicationEntityTitle": "  SCU ", "MoveOriginatorMessageID": 3,
     "CommandDataSetType": dimse.HAS_DATASET},
    {"CommandField": dimse.C_FIND_RSP, "MessageIDBeingRespondedTo": 4, "Status": 0xA700,
     "ErrorComment": " out of  resources ", "CommandDataSetType": dimse.NO_DATASET},
]


@pytest.mark.parametrize("fields", COMMANDS + PADDED_TEXTS)
def test_command_sets_are_decoded_as_pydicom_decodes_them(fields):
    """The direct decoding (a CommandSet) gives every element the value
    pydicom gives it, padding removed as pydicom removes it."""
    from io import BytesIO
    from pydicom.filereader import read_dataset
    encoded = dimse._encode_with_pydicom(fields)
    decoded = dimse.decode_command(encoded)
    assert isinstance(decoded, dimse.CommandSet)
    reference = read_dataset(BytesIO(encoded), True, True)
    for element in reference:
        assert decoded.get(element.keyword) == element.value, element.keyword
        assert getattr(decoded, element.keyword) == element.value
        assert element.keyword in decoded
    assert decoded.get("NumberOfCompletedSuboperations", "none") == \
        reference.get("NumberOfCompletedSuboperations", "none")
    with pytest.raises(AttributeError):
        decoded.NoSuchKeyword


def test_unusual_command_sets_are_decoded_by_pydicom():
    """Multiple values, attribute tags, empty values: the Dataset pydicom
    reads, which is read the same way."""
    for fields in ({"CommandField": dimse.C_CANCEL_RQ, "MessageIDBeingRespondedTo": 1,
                    "CommandDataSetType": dimse.NO_DATASET, "OffendingElement": [0x00100010]},
                   {"CommandField": dimse.C_FIND_RSP, "MessageIDBeingRespondedTo": 1,
                    "Status": 0xC000, "ErrorComment": "two\\values"},
                   {"CommandField": dimse.C_ECHO_RQ, "MessageID": 1,
                    "AffectedSOPClassUID": ""}):
        decoded = dimse.decode_command(dimse._encode_with_pydicom(fields))
        assert not isinstance(decoded, dimse.CommandSet)
        assert decoded.CommandField == fields["CommandField"]


def test_unusual_command_fields_go_through_pydicom():
    fields = {"CommandField": dimse.C_CANCEL_RQ, "MessageIDBeingRespondedTo": 1,
              "CommandDataSetType": dimse.NO_DATASET, "OffendingElement": [0x00100010]}
    assert dimse._pack_command(fields) is None
    assert dimse.encode_command(fields) == dimse._encode_with_pydicom(fields)


@pytest.mark.parametrize("uids", [
    ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5", "1.2.840.10008.1.2.1"),
    ("1.2", "1.23", "1.2.840.10008.1.2"),
])
def test_packed_file_header_is_pydicoms(uids):
    assert part10.file_header(*uids) == part10._file_header_with_pydicom(*uids)


def test_file_header_refuses_empty_uids_as_pydicom_does():
    with pytest.raises(AttributeError):
        part10.file_header("", "", "1.2.840.10008.1.2")


def test_streamed_file_digests_and_adoption(tmp_path):
    storage = FilesystemStorageArea(str(tmp_path / "storage"))
    storage.prepare()
    data = os.urandom(300000)
    path = os.path.join(storage.temporary_directory(), "incoming")
    writer = StreamingFileWriter(path, Clock())
    for i in range(0, len(data), 16378):
        writer.write(memoryview(data)[i:i + 16378])
    results = []
    writer.close().addCallback(results.append)
    (received,) = results
    assert isinstance(received, ReceivedFile) and received == path
    assert received.digests == digests_of(data)
    assert received.digests.uuid == content_uuid(data)
    stored = storage.adopt(received, received.digests)
    assert not os.path.exists(path) and storage.read(stored.uuid) == data
    assert (stored.size, stored.md5) == (len(data), None)  # derived when asked
    # The same content again: the copy already in place is kept.
    with open(path, "wb") as f:
        f.write(data)
    assert storage.adopt(path) == stored and not os.path.exists(path)


def test_discarded_stream_leaves_nothing(tmp_path):
    path = str(tmp_path / "incoming")
    writer = StreamingFileWriter(path, Clock())
    writer.write(b"partial")
    writer.discard()
    assert os.listdir(tmp_path) == []


def test_work_after_close_gets_the_complete_file(tmp_path):
    path = str(tmp_path / "incoming")
    writer = StreamingFileWriter(path, Clock())
    writer.write(b"first ")
    writer.write(b"second")
    closed = []
    writer.close().addCallback(closed.append)

    def work(received):
        with open(received, "rb") as f:
            return f.read(), received.digests.uuid

    results = []
    writer.after_close(work).addCallback(results.append)
    assert closed == [path]
    assert results == [(b"first second", content_uuid(b"first second"))]
    # The work's own error is its Deferred's.
    errors = []
    writer.after_close(lambda received: 1 / 0).addErrback(errors.append)
    assert errors[0].check(ZeroDivisionError)


def test_work_after_a_failed_or_discarded_file_fails(tmp_path):
    # Cannot be created: its folder is missing.
    writer = StreamingFileWriter(str(tmp_path / "missing" / "incoming"), Clock())
    writer.write(b"data")
    writer.close().addErrback(lambda failure: None)
    errors = []
    writer.after_close(lambda received: "never").addErrback(errors.append)
    assert errors[0].check(FileNotFoundError)
    writer = StreamingFileWriter(str(tmp_path / "incoming"), Clock())
    writer.write(b"data")
    writer.discard()
    errors = []
    writer.after_close(lambda received: "never").addErrback(errors.append)
    assert len(errors) == 1 and os.listdir(tmp_path) == []


def test_temporary_names_never_repeat_nor_cross_a_fork(tmp_path):
    names = {new_temporary_path(str(tmp_path), "cstore-", ".dcm") for _ in range(1000)}
    assert len(names) == 1000
    assert all(os.path.basename(name).startswith("cstore-") and name.endswith(".dcm")
               for name in names)
    # A forked child (an ingest worker) draws a random part of its own: the
    # counter it inherits would otherwise give the parent's next names.
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(writer, new_temporary_path(str(tmp_path)).encode())
        os._exit(0)
    os.waitpid(child, 0)
    os.close(writer)
    in_child = os.read(reader, 4096).decode()
    os.close(reader)
    assert in_child != new_temporary_path(str(tmp_path))
    assert in_child.rsplit("-", 1)[0] != new_temporary_path(str(tmp_path)).rsplit("-", 1)[0]


def test_reading_a_file_matches_reading_its_bytes(tmp_path):
    data = read_sample("DummyCT.dcm")
    path = tmp_path / "file.dcm"
    path.write_bytes(data)
    from_file = read_dataset(str(path), stop_before_pixels=True)
    from_bytes = read_dataset(data, stop_before_pixels=True)
    assert from_file == from_bytes
    assert from_file.pixel_data_offset == from_bytes.pixel_data_offset
    assert from_file.pixel_data_follows == from_bytes.pixel_data_follows
    (tmp_path / "cut.dcm").write_bytes(data[:len(data) - 10])
    with pytest.raises(DicomFormatError):
        read_dataset(str(tmp_path / "cut.dcm"), stop_before_pixels=True)
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(DicomFormatError):
        read_dataset(str(tmp_path / "empty.dcm"), stop_before_pixels=True)


@pytest.mark.parametrize("name", ["DummyCT.dcm", "ColorTestMalaterre.dcm"])
def test_dataset_offset_is_pynetdicoms(tmp_path, name):
    from pathlib import Path

    from pynetdicom.dsutils import split_dataset

    from orthancd.dicom.reading import dataset_offset
    data = read_sample(name)
    path = tmp_path / name
    path.write_bytes(data)
    assert dataset_offset(data) == split_dataset(Path(path))[1]
    assert dataset_offset(data[:140]) is None
    assert dataset_offset(b"no header") is None


def test_p_data_series_is_the_pdus_one_by_one():
    from orthancd.net import pdu
    data = os.urandom(40000)
    expected = []
    for offset in range(0, len(data), 16378):
        last = offset + 16378 >= len(data)
        expected.append(pdu.p_data_tf(3, 0x02 if last else 0x00, data[offset:offset + 16378]))
    assert pdu.p_data_tf_series(3, 0x00, data, 16378) == b"".join(expected)
    assert pdu.p_data_tf_series(1, 0x01, b"", 16378) == pdu.p_data_tf(1, 0x03, b"")


def test_framer_hands_out_whole_pdus_whatever_the_chunks():
    from orthancd.net import pdu
    pdus = [pdu.p_data_tf(1, 0, os.urandom(n)) for n in (10, 16000, 3, 7000)] + [pdu.release_rq()]
    stream = b"".join(pdus)
    for chunk in (1, 7, 100, 5000, len(stream)):
        framer = pdu.PduFramer()
        out = []
        for i in range(0, len(stream), chunk):
            out += [pdu.frame(t, bytes(body)) for t, body in framer.feed(stream[i:i + chunk])]
        assert out == pdus and framer.pending_bytes == 0


def test_a_file_being_indexed_survives_removal_of_identical_bytes(tmp_path):
    """Content addressing: deleting an instance must not remove the file an
    upload of the same bytes is about to index."""
    from orthancd.storage.filesystem import FilesystemStorageArea
    storage = FilesystemStorageArea(str(tmp_path / "storage"))
    storage.prepare()
    first = storage.store(b"same bytes")
    storage.release(first.uuid)
    second = storage.store(b"same bytes")  # pinned until released
    assert second.uuid == first.uuid
    assert storage.remove(first.uuid) is False
    assert storage.exists(first.uuid)
    storage.release(second.uuid)
    assert storage.remove(first.uuid) is True
    assert not storage.exists(first.uuid)


def test_identical_bytes_are_placed_once_new_folder_or_not(tmp_path, monkeypatch):
    """A file whose storage folder was just made cannot be there yet: it is
    not looked for.  Identical bytes again, or after a restart (the folder
    exists, unknown to the new process), are found and not written again."""
    from orthancd.storage.filesystem import FilesystemStorageArea
    storage = FilesystemStorageArea(str(tmp_path / "storage"))
    storage.prepare()
    looked = []
    real = FilesystemStorageArea._already_stored
    monkeypatch.setattr(FilesystemStorageArea, "_already_stored",
                        staticmethod(lambda target, size: looked.append(target)
                                     or real(target, size)))
    placed = []
    info = storage.store(b"same bytes", owner="x")
    storage.release(info.uuid)
    assert looked == []
    restarted = FilesystemStorageArea(str(tmp_path / "storage"))
    restarted.prepare()
    for area in (storage, restarted):
        assert area._place(info, "y", len(b"same bytes"), placed.append) is False
        area.release(info.uuid)
    assert len(looked) == 2 and placed == []
    assert storage.read(info.uuid) == b"same bytes"


def test_md5s_are_derived_from_the_content_and_checked_against_its_name(tmp_path):
    """Content written uncompressed is stored without its MD5s (None); they
    are derived from the file when asked, once it is checked against its
    name (the SHA-256 it was stored with, after the salt it was stored
    with).  A compressed file gets its MD5s as it is compressed."""
    from orthancd.storage.area import ContentCorrupted
    data = os.urandom(600000)
    md5 = hashlib.md5(data).hexdigest()
    storage = FilesystemStorageArea(str(tmp_path / "storage"))
    storage.prepare()
    stored = storage.store(data, owner="instances/x/1", digests=digests_of(data))
    assert (stored.uuid, stored.md5, stored.uncompressed_md5) == (content_uuid(data), None, None)
    assert stored.md5_pending
    assert storage.derive_md5s(stored) == (md5, md5)
    salted = storage.store(data, salt=b"slot")
    assert (salted.uuid, salted.md5) == (content_uuid(data, b"slot"), None)
    with pytest.raises(ContentCorrupted):
        storage.derive_md5s(salted)  # not a name of the content without its salt
    assert storage.derive_md5s(salted, (b"", b"slot")) == (md5, md5)
    compressed = storage.store(data, compress=True)
    on_disk = storage.read_stored(compressed.uuid)
    assert (compressed.md5, compressed.uncompressed_md5) == (hashlib.md5(on_disk).hexdigest(), md5)
    assert not compressed.md5_pending
    assert storage.derive_md5s(compressed) == (compressed.md5, md5)
    # A file changed on the disk gets no MD5 of what it holds now.
    with open(storage.path(stored.uuid), "r+b") as f:
        f.seek(1000)
        f.write(b"\xff" * 8)
    with pytest.raises(ContentCorrupted):
        storage.derive_md5s(stored)
    # Without StoreMD5ForAttachments, no MD5 at all.
    plain = FilesystemStorageArea(str(tmp_path / "plain"), store_md5=False)
    plain.prepare()
    kept = plain.store(data, digests=digests_of(data))
    assert (kept.md5, kept.uncompressed_md5, kept.md5_pending) == ("", "", False)


class _Threads:
    """A pool (``callInThread``) with a thread per job."""

    def callInThread(self, function, *args):
        import threading
        threading.Thread(target=function, args=args).start()


def test_bytes_written_beside_their_hashing_are_stored_as_in_one_go(tmp_path):
    """store(..., beside=True): the bytes are written in the write_beside
    pool while the caller computes their name; the stored file is the same
    as one stored in one go, and nothing is left in the temporary folder,
    whether the content was new, already there, or could not be written."""
    from tests.support.daemon import temporary_leftovers
    data = os.urandom(600000)
    storage = FilesystemStorageArea(str(tmp_path / "storage"), write_beside=_Threads().callInThread)
    storage.prepare()
    storage.full_sweep_done()  # a new storage: its pending record is complete
    alone = FilesystemStorageArea(str(tmp_path / "alone"))
    alone.prepare()
    stored = storage.store(data, owner="instances/x/1", beside=True)
    assert stored == alone.store(data, owner="instances/x/1")
    assert storage.read(stored.uuid) == data
    assert (stored.uuid, "instances/x/1") in list(storage.pending())  # marked before in place
    again = storage.store(data, owner="instances/x/1", beside=True)  # already there
    assert again == stored
    salted = storage.store(data, salt=b"slot", beside=True)
    assert salted.uuid == content_uuid(data, b"slot") and storage.read(salted.uuid) == data
    small = storage.store(b"small", beside=True)  # too small to be written directly: in one go
    assert storage.read(small.uuid) == b"small"
    assert temporary_leftovers(storage.root) == []

    def refuse(*args):
        raise OSError(28, "No space left on device")
    storage._write_temporary = refuse
    with pytest.raises(OSError):
        storage.store(os.urandom(600000), beside=True)
    assert temporary_leftovers(storage.root) == []


def test_pieces_are_handed_to_the_pool_in_batches(tmp_path):
    """With a batch size, the pool is woken once per batch and at the close,
    not for every piece; what is written is the same."""
    class CountingPool:
        def __init__(self):
            self.hand_overs = 0

        def callInThread(self, f, *args, **kwargs):
            self.hand_overs += 1
            f(*args, **kwargs)
    data = os.urandom(1000000)
    pool = CountingPool()
    path = str(tmp_path / "batched")
    writer = StreamingFileWriter(path, _InlineReactor(), pool, batch_size=256 * 1024)
    for i in range(0, len(data), 16384):
        writer.write(data[i:i + 16384])
    results = []
    writer.close().addCallback(results.append)
    assert pool.hand_overs == 4  # three full batches, then the rest with the close
    with open(results[0], "rb") as f:
        assert f.read() == data
    # A discarded writer drops what it had not handed over.
    dropped = StreamingFileWriter(str(tmp_path / "dropped"), _InlineReactor(), CountingPool(),
                                  batch_size=256 * 1024)
    dropped.write(b"x" * 1000)
    dropped.discard()
    assert not os.path.exists(str(tmp_path / "dropped"))


class _InlineReactor:
    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)
