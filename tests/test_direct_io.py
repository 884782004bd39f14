"""Files written with direct I/O (orthancd.storage.direct_io): identical
bytes at every size around the alignment and the buffer, direct I/O really
used, the page cache where the file system refuses it; and the storage area
uses it when it makes its files durable."""
import fcntl
import os

import pytest

from orthancd.storage import direct_io
from orthancd.storage.filesystem import FilesystemStorageArea
from orthancd.storage.temporary_files import SPARE_FILES
from tests.support.pools import HeldPool

SIZES = [0, 1, 4095, 4096, 4097, direct_io.BUFFER_SIZE - 1, direct_io.BUFFER_SIZE,
         direct_io.BUFFER_SIZE + 1, 3 * direct_io.BUFFER_SIZE + 12345]


def payload(size):
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def fd_flags(fd):
    with open("/proc/self/fdinfo/%d" % fd) as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)


def create(path):
    """A new file at ``path`` (as the storage area's mkstemp makes it),
    written directly, or None where direct I/O is refused."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    direct = direct_io.from_descriptor(fd, path)
    if direct is None:
        os.close(fd)
        os.unlink(path)
    return direct


def direct_supported(folder):
    probe = create(os.path.join(folder, "probe"))
    if probe is None:
        return False
    probe.close()
    os.unlink(os.path.join(folder, "probe"))
    return True


@pytest.fixture
def folder(tmp_path):
    if not direct_supported(str(tmp_path)):
        pytest.fail("the test folder's file system takes no direct I/O: run the tests on ext4/xfs")
    return str(tmp_path)


@pytest.mark.parametrize("size", SIZES)
def test_bytes_are_identical_at_every_size(folder, size):
    data = payload(size)
    path = os.path.join(folder, "f")
    f = create(path)
    assert fd_flags(f.fileno()) & os.O_DIRECT
    # In pieces that cross the alignment and the buffer's end.
    for start in range(0, size, 300001):
        f.write(data[start:start + 300001])
    f.close()
    with open(path, "rb") as r:
        assert r.read() == data
    assert os.path.getsize(path) == size


def test_no_write_after_flush_and_buffers_are_reused(folder):
    f = create(os.path.join(folder, "f"))
    f.write(b"abc")
    f.flush()
    with pytest.raises(ValueError):
        f.write(b"d")
    f.close()
    f.close()  # twice is harmless
    kept = len(direct_io._free_buffers)
    assert kept >= 1
    g = create(os.path.join(folder, "g"))
    assert len(direct_io._free_buffers) == kept - 1
    g.close()


def refuse_direct_io(monkeypatch, opening=True):
    """Simulate a file system refusing O_DIRECT (EINVAL), as this kernel's
    tmpfs does not: in fcntl, and in open when ``opening``."""
    real_fcntl, real_open = fcntl.fcntl, os.open

    def refusing_fcntl(fd, command, arg=0):
        if command == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(22, "Invalid argument")
        return real_fcntl(fd, command, arg)

    def refusing_open(path, flags, *args, **kwargs):
        if flags & os.O_DIRECT:
            raise OSError(22, "Invalid argument")
        return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(fcntl, "fcntl", refusing_fcntl)
    if opening:
        monkeypatch.setattr(os, "open", refusing_open)


def test_a_file_system_refusing_direct_io_gets_the_page_cache(folder, monkeypatch):
    refuse_direct_io(monkeypatch)
    area = FilesystemStorageArea(os.path.join(folder, "area"))
    area.prepare()
    try:
        assert create(os.path.join(folder, "f")) is None
        assert not direct_io.available(folder)
        # No spare is opened with O_DIRECT; the storage area writes
        # through the page cache.
        assert not direct_io.available(area.temporary_directory())
        data = os.urandom(direct_io.SMALLEST_FILE * 2)
        info = area.store(data)
        assert area.read(info.uuid) == data
        assert os.listdir(area.temporary_directory()) == []  # no probe left
        area.close()
    finally:
        direct_io._refused.discard(folder)
        direct_io._refused.discard(area.temporary_directory())


def test_direct_writes_use_spares_opened_with_o_direct(folder, monkeypatch):
    """The storage area opens spares with O_DIRECT ahead of need: a file
    written directly changes no flags on the way (fewer system calls while
    an upload is prepared); the others use spares without it."""
    pool = HeldPool()
    area = FilesystemStorageArea(os.path.join(folder, "area"), background=pool.callInThread)
    area.prepare()
    # Made in the background, not at start-up.
    assert len(area._direct_spares) == 0
    pool.run_all()
    set_flags = []
    real_fcntl = fcntl.fcntl

    def spy(fd, command, arg=0):
        if command == fcntl.F_SETFL:
            set_flags.append(arg)
        return real_fcntl(fd, command, arg)
    monkeypatch.setattr(fcntl, "fcntl", spy)
    spare_flags = [fd_flags(fd) & os.O_DIRECT for fd, _ in area._direct_spares._spares]
    assert spare_flags and all(spare_flags)
    data = os.urandom(direct_io.BUFFER_SIZE + 777)
    small = os.urandom(direct_io.SMALLEST_FILE - 1)
    stored = [area.store(data), area.store(small), area.store(data[::-1])]
    assert [area.read(info.uuid) for info in stored] == [data, small, data[::-1]]
    assert set_flags == []
    # Spares all taken: made on demand, with O_DIRECT still.
    for _ in range(SPARE_FILES):
        area.store(os.urandom(direct_io.SMALLEST_FILE))
    assert set_flags == [] and len(area._direct_spares) == 0
    pool.run_all()
    assert len(area._direct_spares) == SPARE_FILES
    area.close()
    assert os.listdir(area.temporary_directory()) == []


def test_direct_io_refused_after_the_spares_were_made(folder, monkeypatch):
    """The spares opened with O_DIRECT, then direct I/O refused (a write,
    or a file made on demand): the files go on through the page cache."""
    area = FilesystemStorageArea(os.path.join(folder, "area"))
    area.prepare()
    try:
        refuse_direct_io(monkeypatch)
        data = os.urandom(direct_io.SMALLEST_FILE * 3)
        info = area.store(data)  # no spare (no background pool): refused at open
        assert area.read(info.uuid) == data
        assert not direct_io.available(area.temporary_directory())
        again = area.store(data[::-1])
        assert area.read(again.uuid) == data[::-1]
        area.close()
    finally:
        direct_io._refused.discard(area.temporary_directory())


def test_a_spare_opened_with_o_direct_loses_it_once_direct_io_is_refused(folder):
    path = os.path.join(folder, "f")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
    direct_io.refuse(folder)
    try:
        assert direct_io.from_descriptor(fd, path, opened_direct=True) is None
        assert not fd_flags(fd) & os.O_DIRECT
        os.write(fd, b"odd length")
    finally:
        os.close(fd)
        direct_io._refused.discard(folder)


def test_a_refused_direct_write_goes_on_through_the_page_cache(folder, monkeypatch):
    """Aligned direct writes refused (EINVAL): the file is completed
    through the page cache, with its exact size."""
    real_write = os.write

    def refusing_write(fd, data):
        if fd_flags(fd) & os.O_DIRECT:
            raise OSError(22, "Invalid argument")
        return real_write(fd, data)
    monkeypatch.setattr(os, "write", refusing_write)
    data = payload(direct_io.BUFFER_SIZE + 4321)
    try:
        path = os.path.join(folder, "f")
        f = create(path)
        f.write(data)
        f.close()
        with open(path, "rb") as r:
            assert r.read() == data
        assert not direct_io.available(folder)
    finally:
        direct_io._refused.discard(folder)


def test_the_storage_area_writes_directly_when_it_makes_files_durable(folder, monkeypatch):
    used = []
    real = direct_io.from_descriptor

    def spy(fd, path, opened_direct=False):
        f = real(fd, path, opened_direct)
        used.append(f is not None and bool(fd_flags(fd) & os.O_DIRECT))
        return f
    monkeypatch.setattr(direct_io, "from_descriptor", spy)
    durable = FilesystemStorageArea(os.path.join(folder, "durable"))
    durable.prepare()
    data = os.urandom(direct_io.BUFFER_SIZE + 5000)  # compressed, as large
    info = durable.store(data)
    assert used == [True] and durable.read(info.uuid) == data
    compressed = durable.store(data, compress=True)
    assert used == [True, True] and durable.read(compressed.uuid) == data
    # Small files, and highly compressible ones, go through the page cache.
    small = durable.store(os.urandom(direct_io.SMALLEST_FILE - 1))
    squeezed = durable.store(payload(direct_io.BUFFER_SIZE), compress=True)
    assert used == [True, True] and durable.read(squeezed.uuid) == payload(direct_io.BUFFER_SIZE)
    assert len(durable.read(small.uuid)) == direct_io.SMALLEST_FILE - 1
    fast = FilesystemStorageArea(os.path.join(folder, "fast"), fsync=False)
    fast.prepare()
    fast.store(data)
    assert used == [True, True]  # SyncStorageArea false: the page cache


def test_small_files_are_left_to_the_group_commit(folder, monkeypatch):
    """A file written through the page cache starts on its way to the disk
    at once when it is large enough to be worth the system call."""
    from orthancd.storage import filesystem
    started = []
    real = filesystem._sync_file_range
    monkeypatch.setattr(filesystem, "_sync_file_range",
                        lambda fd, *args: started.append(fd) or (real(fd, *args) if real else 0))
    area = FilesystemStorageArea(os.path.join(folder, "area"))
    area.prepare()
    area.store(os.urandom(filesystem.SMALLEST_WRITEBACK - 1))
    assert started == []
    area.store(os.urandom(filesystem.SMALLEST_WRITEBACK))  # below direct I/O's size
    assert len(started) == 1
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        filesystem.start_writeback(fd)  # size unknown: started
    finally:
        os.close(fd)
    assert len(started) == 2
    area.close()


def test_a_storage_that_cannot_make_files_still_starts(folder, monkeypatch):
    """The probe for direct I/O failing otherwise (a full disk): no spare
    opened with O_DIRECT, and no failure at start-up."""
    real_open = os.open

    def full_disk(path, flags, *args, **kwargs):
        if flags & os.O_DIRECT:
            raise OSError(28, "No space left on device")
        return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, "open", full_disk)
    area = FilesystemStorageArea(os.path.join(folder, "area"))
    area.prepare()
    assert area._direct_spares is None
    assert direct_io.available(area.temporary_directory())  # not refused for good
    area.close()
