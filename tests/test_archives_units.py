"""Building blocks of the archives: names, the instance ordering, the ZIP
format (ZIP64 included), the look-ahead of the stream, the kept outputs.

The archives as a whole are compared with Orthanc 1.13.0's in
test_archives_parity.py; these tests reach what small studies do not
(ZIP64, files bigger than what is deflated at once, the memory bound).
"""
import io
import random
import subprocess
import zipfile

import pytest
from twisted.internet import defer

from orthancd.archives import naming, zipformat
from orthancd.archives.naming import ArchiveLevel, FolderNames
from orthancd.archives.outputs import MediaArchive
from orthancd.archives.plan import ArchivePlan, PlannedFile
from orthancd.archives import stream as stream_module
from orthancd.archives.stream import ArchiveStream
from orthancd.archives.stdsort import libstdcxx_sort
from orthancd.storage.area import StoredFile


# -- names --------------------------------------------------------------------

@pytest.mark.parametrize("text, utf8, slashes, expected", [
    ("Étude: crâne/cou?*", False, False, b"tude crne cou"),
    ("Étude: crâne/cou?*", True, False, "Étude crâne cou".encode()),
    ("  a\t\tb  ", True, False, b"a b"),
    ("  a\t\tb  ", False, False, b"ab"),     # control characters are not ASCII to Orthanc
    ("a//b\\\\c", False, True, b"a/b/c"),
    ("a/ b", False, True, b"a/ b"),
    ('x<>|"y', False, False, b"x y"),
    ("ctrl\x01\x02z", True, False, b"ctrl z"),
    ("????", False, False, b""),
])
def test_normalize_path(text, utf8, slashes, expected):
    assert naming.normalize_path(text, utf8, slashes) == expected


def test_folder_names():
    assert naming.folder_name(ArchiveLevel.PATIENT, {"PatientID": "", "PatientName": "X^Y"}) == \
        (b"- X^Y", None)
    assert naming.folder_name(ArchiveLevel.PATIENT, {"PatientName": "^^"})[0] == b"- ^^"
    assert naming.folder_name(ArchiveLevel.PATIENT, {"PatientID": "^^"})[0] == b"Unknown Patient"
    assert naming.folder_name(ArchiveLevel.PATIENT_FROM_STUDY, {})[0] == b"Unknown Patient"
    assert naming.folder_name(ArchiveLevel.STUDY, {"StudyDescription": "D"})[0] == b"D"
    assert naming.folder_name(ArchiveLevel.SERIES, {"Modality": "mr", "SeriesNumber": "4"}) == \
        (b"4 - mr", b"MR")
    assert naming.folder_name(ArchiveLevel.SERIES, None) == (b"Unknown Series", None)


def test_instance_file_names():
    assert naming.instance_file_name(b"MR", 12) == b"MR000012.dcm"
    assert naming.instance_file_name(b"X", 3) == b"X0000003.dcm"
    assert naming.instance_file_name(b"", 0) == b"00000000.dcm"
    # A 32-bit index printed as a signed number, as Orthanc's printf does.
    assert naming.instance_file_name(b"MR", naming.parse_index_in_series("123456789012")) == \
        b"MR-1097262572.dcm"
    assert naming.media_file_name(10) == b"IM10"


@pytest.mark.parametrize("text, expected", [
    (None, 0), ("7", 7), (" 7 ", 7), ("+7", 7), ("-7", 0), ("7.5", 0), ("", 0),
    ("4294967296", 0), ("4294967297", 1), ("18446744073709551616", 0),
])
def test_index_in_series(text, expected):
    assert naming.parse_index_in_series(text) == expected


def test_names_used_twice_in_a_folder():
    names = FolderNames(allow_utf8=False)
    names.open_directory("P")
    for _ in range(3):
        names.open_directory("same")
        names.close_directory()
    names.open_directory("same")
    assert names.file_path("f") == b"P/same-4/f"
    assert names.file_path("f") == b"P/same-4/f-2"
    names.close_directory()
    names.close_directory()
    with pytest.raises(ValueError):
        names.close_directory()


# -- the instance ordering ----------------------------------------------------

def test_libstdcxx_sort_sorts():
    rng = random.Random(1)
    for size in range(0, 200, 7):
        items = [rng.randint(0, 4) for _ in range(size)]
        ordered = list(items)
        libstdcxx_sort(ordered, key=lambda x: x)
        assert ordered == sorted(items)


def test_libstdcxx_sort_keeps_small_ties_in_order():
    # Up to 16 elements, std::sort is an insertion sort: stable.
    items = [(5, "a"), (2, "b"), (5, "c"), (5, "d")]
    libstdcxx_sort(items, key=lambda item: item[0])
    assert items == [(2, "b"), (5, "a"), (5, "c"), (5, "d")]


def test_libstdcxx_sort_moves_large_ties():
    # Above 16, the median-of-three partition reorders equal keys (the
    # parity tests check the resulting order against Orthanc's).
    items = list(range(20))
    libstdcxx_sort(items, key=lambda item: 0)
    assert sorted(items) == list(range(20)) and items != list(range(20))


# -- the ZIP format -------------------------------------------------------------

def _build(entries, zip64):
    """A whole archive: small files deflated at once, big ones streamed."""
    directory = zipformat.ZipDirectory(zip64)
    out = []
    for name, data, streamed in entries:
        entry = zipformat.new_entry(name)
        if not streamed:
            parts = zipformat.deflate_whole(entry, data, zip64)
            directory.record(entry, sum(map(len, parts)))
            out += parts
            continue
        streamer = zipformat.StreamedFile(entry, zip64)
        header = streamer.header()
        directory.record(entry, len(header))
        out.append(header)
        for start in range(0, len(data) + 1, 1000):
            chunk = streamer.deflate(data[start:start + 1000], start + 1000 > len(data))
            directory.skip(len(chunk))
            out.append(chunk)
        descriptor = streamer.descriptor()
        directory.skip(len(descriptor))
        out.append(descriptor)
    out.append(directory.end())
    return b"".join(out)


@pytest.mark.parametrize("zip64", [False, True])
def test_zip_is_read_back(zip64, tmp_path):
    rng = random.Random(zip64)
    entries = [(b"a/one.dcm", rng.randbytes(5000), False),
               ("b/é.dcm".encode(), b"x" * 7000, False),
               (b"c/big.dcm", rng.randbytes(3000) + b"y" * 4000, True),
               (b"empty", b"", False), (b"empty-streamed", b"", True)]
    data = _build(entries, zip64)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert archive.comment == b"Created by Orthanc"
    assert [info.filename for info in archive.infolist()] == \
        [name.decode() for name, _, _ in entries]
    for name, content, streamed in entries:
        info = archive.getinfo(name.decode())
        assert archive.read(info) == content
        assert bool(info.flag_bits & 0x800) == (not name.isascii())
        assert bool(info.flag_bits & 0x08) == streamed
    path = tmp_path / "a.zip"
    path.write_bytes(data)
    subprocess.run(["unzip", "-tq", str(path)], check=True, capture_output=True)


# -- the stream -----------------------------------------------------------------

class MemoryStorage:
    def __init__(self, files):
        self.files = files

    def read(self, uuid):
        if uuid not in self.files:
            raise FileNotFoundError(uuid)
        return self.files[uuid]

    def open(self, uuid):
        return io.BytesIO(self.read(uuid))


class InlinePool:
    def run(self, function, *args):
        return defer.maybeDeferred(function, *args)


class HeldPool:
    """Tasks wait until released: what is in flight can be counted."""

    def __init__(self):
        self.waiting = []

    def run(self, function, *args):
        d = defer.Deferred()
        self.waiting.append((d, function, args))
        return d

    def release_all(self):
        waiting, self.waiting = self.waiting, []
        for d, function, args in waiting:
            d.callback(function(*args))


def _plan(files):
    planned = [PlannedFile(b"f%d" % i, "i%d" % i, StoredFile(uuid, len(data), "", len(data), ""),
                           i + 1) for i, (uuid, data) in enumerate(files)]
    return ArchivePlan(planned, len(planned), sum(len(data) for _, data in files))


def _drain(stream):
    parts = []
    while True:
        d = defer.ensureDeferred(stream.next_parts())
        got = []
        d.addCallback(got.append)
        if not got:
            return parts, d
        if got[0] is None:
            return parts, None
        parts += got[0]


def test_stream_skips_removed_files_and_streams_big_ones(monkeypatch):
    monkeypatch.setattr(stream_module, "WHOLE_FILE_LIMIT", 10000)
    monkeypatch.setattr(stream_module, "CHUNK_SIZE", 4096)
    rng = random.Random(3)
    files = [("u0", rng.randbytes(3000)), ("gone", b"z" * 100), ("u2", rng.randbytes(25000)),
             ("u3", b"small")]
    storage = MemoryStorage({uuid: data for uuid, data in files if uuid != "gone"})
    stream = ArchiveStream(_plan(files), storage, InlinePool())
    parts, pending = _drain(stream)
    assert pending is None
    archive = zipfile.ZipFile(io.BytesIO(b"".join(parts)))
    assert archive.namelist() == ["f0", "f2", "f3"]
    assert archive.read("f2") == files[2][1]
    assert archive.getinfo("f2").flag_bits & 0x08
    assert stream.size == len(b"".join(parts))
    assert stream.steps_done == 5


def test_stream_deflates_a_bounded_window_ahead(monkeypatch):
    monkeypatch.setattr(stream_module, "LOOKAHEAD_FILES", 3)
    files = [("u%d" % i, bytes([i]) * 1000) for i in range(20)]
    pool = HeldPool()
    stream = ArchiveStream(_plan(files), MemoryStorage(dict(files)), pool)
    collected, finished = [], []

    def next_parts():
        defer.ensureDeferred(stream.next_parts()).addCallback(got)

    def got(parts):
        if parts is None:
            finished.append(True)
        else:
            collected.extend(parts)
            next_parts()

    next_parts()
    while not finished:
        # One task (a read, then a deflate) per file ahead, never more files.
        assert 0 < len(pool.waiting) <= 3
        pool.release_all()
    assert zipfile.ZipFile(io.BytesIO(b"".join(collected))).namelist() == \
        ["f%d" % i for i in range(20)]


# -- the kept outputs -----------------------------------------------------------

def test_media_archive_drops_the_least_recently_used():
    dropped = []
    media = MediaArchive(2)
    first = media.add(lambda: dropped.append("first"))
    second = media.add(lambda: dropped.append("second"))
    media.touch(first)
    media.add(lambda: dropped.append("third"))
    assert dropped == ["second"]
    media.discard(first)
    media.add(lambda: dropped.append("fourth"))
    assert dropped == ["second"] and len(media) == 2
    assert second not in media._entries


# -- the job ----------------------------------------------------------------------

class FakeArchives:
    """What an ArchiveJob needs of orthancd.archives.service.Archives."""

    def __init__(self, storage, pool, tmp_path, clock):
        self.storage = storage
        self.pool = pool
        self.file_io = InlinePool()
        self.index = None
        self.reactor = self      # callFromThread: here, everything runs inline
        self.media_archive = MediaArchive(1)
        self.temporary_directory = str(tmp_path)

    def callFromThread(self, function, *args):
        function(*args)

    def default_encoding(self):
        return "Latin1"


class FixedContent:
    def __init__(self, plan):
        self._plan = plan

    def plan(self, is_media, allow_utf8):
        return self._plan


def _pump(clock, rounds=200):
    for _ in range(rounds):
        clock.advance(0)


def test_asynchronous_job_output_and_cancel(tmp_path):
    from twisted.internet import task
    from orthancd.archives.job import ArchiveJob, ArchiveOptions
    from orthancd.jobs.engine import JobsEngine
    from orthancd.jobs.model import JobState

    clock = task.Clock()
    files = [("u%d" % i, bytes([i]) * 2000) for i in range(10)]
    pool = HeldPool()
    archives = FakeArchives(MemoryStorage(dict(files)), pool, tmp_path, clock)
    engine = JobsEngine(clock, concurrent_jobs=1)
    engine.startService()

    # A job that completes: its archive is its output, kept in the media archive.
    done = ArchiveJob(archives, FixedContent(_plan(files)), ArchiveOptions(filename="a.zip"))
    first = engine.submit(done)
    while engine.registry.get(first).state is not JobState.SUCCESS:
        pool.release_all()
        _pump(clock)
    output = done.outputs["archive"]
    with output.open() as f:
        assert zipfile.ZipFile(f).namelist() == ["f%d" % i for i in range(10)]
    assert output.filename == "a.zip" and output.size == done.archive_size
    assert done.public_content()["ArchiveSize"] == str(output.size)
    path = done.sink.path
    assert path is not None and len(archives.media_archive) == 1

    # A second one evicts it (MediaArchiveSize 1): the file goes.
    other = ArchiveJob(archives, FixedContent(_plan(files[:1])), ArchiveOptions())
    second = engine.submit(other)
    while engine.registry.get(second).state is not JobState.SUCCESS:
        pool.release_all()
        _pump(clock)
    assert "archive" not in done.outputs
    assert not (tmp_path / path.rsplit("/", 1)[1]).exists()

    # A canceled one leaves nothing behind.
    many = [("m%d" % i, bytes([i]) * 2000) for i in range(40)]
    archives.storage.files.update(many)
    canceled = ArchiveJob(archives, FixedContent(_plan(many)), ArchiveOptions())
    third = engine.submit(canceled)
    pool.release_all()
    _pump(clock)
    assert engine.registry.get(third).state is JobState.RUNNING
    assert canceled.sink.path is not None
    engine.cancel(third)
    while engine.registry.get(third).state is JobState.RUNNING:
        pool.release_all()
        _pump(clock)
    info = engine.registry.info(third)
    assert (info["State"], info["ErrorCode"]) == ("Failure", 37)
    remaining = [p.name for p in tmp_path.iterdir()]
    assert remaining == [other.sink.path.rsplit("/", 1)[1]]
    engine.stopService()


def test_stream_of_a_zip64_archive(monkeypatch, tmp_path):
    """An archive Orthanc would make ZIP64 (over 2 GB of files, or 65,535
    files) is ZIP64 from its first header; zipfile and unzip read it."""
    monkeypatch.setattr(stream_module, "WHOLE_FILE_LIMIT", 10000)
    monkeypatch.setattr(stream_module, "CHUNK_SIZE", 4096)
    rng = random.Random(5)
    files = [("u0", rng.randbytes(3000)), ("u1", rng.randbytes(30000))]
    plan = _plan(files)
    plan = ArchivePlan(plan.files, plan.steps, 3 * 1024 ** 3)   # as if 3 GB were planned
    assert plan.zip64
    parts, pending = _drain(ArchiveStream(plan, MemoryStorage(dict(files)), InlinePool()))
    data = b"".join(parts)
    assert data[4:6] == b"\x2d\x00"   # version needed 4.5: ZIP64
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert [archive.read(name) for name in ("f0", "f1")] == [files[0][1], files[1][1]]
    path = tmp_path / "zip64.zip"
    path.write_bytes(data)
    subprocess.run(["unzip", "-tq", str(path)], check=True, capture_output=True)
