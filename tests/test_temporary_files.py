"""The storage's temporary files made ahead of need (orthancd.storage.temporary_files)."""
import os

from orthancd.storage.temporary_files import SPARE_PREFIX, SpareFiles, new_temporary_path
from tests.support.pools import HeldPool


def spares(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith(SPARE_PREFIX))


def test_files_come_from_the_spares_which_the_background_refills(tmp_path):
    pool = HeldPool()
    files = SpareFiles(str(tmp_path), pool.callInThread, count=3)
    files.open()
    assert len(spares(tmp_path)) == 3 and len(files) == 3 and pool.held == []
    made = [new_temporary_path(str(tmp_path), suffix=".dcm") for _ in range(4)]
    descriptors = [files.create(path) for path in made]
    # Three were spares (renamed), the fourth was created on demand; one
    # refill was asked for.
    assert spares(tmp_path) == [] and len(pool.held) == 1
    for path, fd in zip(made, descriptors):
        assert os.path.getsize(path) == 0
        os.write(fd, b"written")
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 10) == b"written"  # open for reading and writing
        os.close(fd)
        with open(path, "rb") as f:
            assert f.read() == b"written"
    pool.run_all()
    assert len(spares(tmp_path)) == 3 and len(files) == 3
    files.close()
    assert spares(tmp_path) == [] and len(files) == 0
    # Closed: files are still made, on demand, and no refill is asked for.
    os.close(files.create(os.path.join(str(tmp_path), "after")))
    assert os.path.exists(os.path.join(str(tmp_path), "after")) and pool.held == []


def test_without_a_background_pool_files_are_made_on_demand(tmp_path):
    files = SpareFiles(str(tmp_path))
    files.open()
    assert spares(tmp_path) == []
    path = new_temporary_path(str(tmp_path))
    os.close(files.create(path))
    assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_a_spare_gone_or_a_folder_gone_is_no_failure(tmp_path):
    pool = HeldPool()
    folder = tmp_path / "tmp"
    folder.mkdir()
    files = SpareFiles(str(folder), pool.callInThread, count=2)
    files.open()
    for name in spares(folder):
        os.unlink(folder / name)  # removed behind its back
    path = new_temporary_path(str(folder))
    os.close(files.create(path))
    assert os.path.exists(path) and len(files) == 1
    for name in os.listdir(folder):
        os.unlink(folder / name)
    folder.rmdir()
    pool.run_all()  # the refill fails: logged, and files are made on demand
    folder.mkdir()
    path = new_temporary_path(str(folder))
    os.close(files.create(path))
    assert os.path.exists(path)
    files.close()


def test_take_hands_a_spare_out_as_it_is(tmp_path):
    pool = HeldPool()
    files = SpareFiles(str(tmp_path), pool.callInThread, count=1)
    files.open()
    (spare,) = spares(tmp_path)
    fd, path = files.take()
    assert os.path.basename(path) == spare and os.path.getsize(path) == 0
    os.close(fd)
    # None left: a new file, created at once; the refill was asked for once.
    fd, other = files.take()
    os.close(fd)
    assert other != path and os.path.exists(other) and len(pool.held) == 1
    pool.run_all()
    assert len(files) == 1
    files.close()


def test_spares_carry_the_flags_asked_for(tmp_path):
    """The storage area's spares for direct writes are opened with O_DIRECT
    (orthancd.storage.direct_io), made ahead or on demand."""
    pool = HeldPool()
    files = SpareFiles(str(tmp_path), pool.callInThread, count=1, flags=os.O_DIRECT)
    files.open()

    def flags(fd):
        with open("/proc/self/fdinfo/%d" % fd) as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("flags:"))
    taken = [files.take(), files.take()]  # a spare, then one made on demand
    assert all(flags(fd) & os.O_DIRECT for fd, _ in taken)
    for fd, _ in taken:
        os.close(fd)
    files.close()


def test_spares_are_refilled_once_half_are_taken(tmp_path):
    pool = HeldPool()
    files = SpareFiles(str(tmp_path), pool.callInThread, count=8)
    files.open()
    taken = [files.take() for _ in range(3)]
    assert pool.held == [] and len(files) == 5  # more than half left: no refill yet
    taken.append(files.take())
    assert len(pool.held) == 1  # half taken: one refill, for all of them
    taken += [files.take() for _ in range(3)]
    assert len(pool.held) == 1
    pool.run_all()
    assert len(files) == 8
    for fd, _ in taken:
        os.close(fd)
    files.close()
