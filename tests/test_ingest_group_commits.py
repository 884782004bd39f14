"""The Ingestor tells the index how many instances are on their way to it
(being parsed and written, each followed by its index write), so that a
group commit can wait for them (orthancd.index.writer)."""
from twisted.internet import defer

from orthancd.config import load_configuration
from orthancd.ingest import Ingestor, Origin


class RecordingIndex:
    on_the_way = None

    def expect_writes_from(self, on_the_way):
        self.on_the_way = on_the_way


class HeldPool:
    """A file I/O pool whose work waits for the test."""

    def __init__(self):
        self.held = []

    def run(self, function, *args, **kwargs):
        d = defer.Deferred()
        self.held.append((d, function, args))
        return d


def test_instances_being_prepared_are_on_their_way_to_the_index():
    index, pool = RecordingIndex(), HeldPool()
    ingest = Ingestor(index, None, load_configuration(), pool)
    assert index.on_the_way() == 0
    origin = Origin.rest("127.0.0.1")
    first = ingest._prepared(lambda source, dataset_needed: ("prepared", source), b"1", origin)
    second = ingest._prepared(lambda source, dataset_needed: ("prepared", source), b"2", origin)
    assert index.on_the_way() == 2
    d, function, args = pool.held[0]
    d.callback(function(*args))
    assert index.on_the_way() == 1
    assert first.result == ("prepared", b"1")
    # One refused (not DICOM, say) is no longer on its way either.
    failures = []
    second.addErrback(failures.append)
    pool.held[1][0].errback(RuntimeError("refused"))
    assert index.on_the_way() == 0 and failures


def test_small_uploads_are_prepared_in_their_own_pool():
    """Below SMALL_UPLOAD, preparations (mostly Python) go one at a time to
    the small-files pool; larger ones, and files received piece by piece,
    to the file I/O pool."""
    from orthancd.ingest import SMALL_UPLOAD
    from orthancd.storage.streaming import ReceivedFile
    file_io, small_files = HeldPool(), HeldPool()
    ingest = Ingestor(RecordingIndex(), None, load_configuration(), file_io, small_files)
    origin = Origin.rest("127.0.0.1")

    def prepare(source, dataset_needed):
        return source
    ingest._prepared(prepare, bytes(SMALL_UPLOAD - 1), origin)
    ingest._prepared(prepare, bytes(SMALL_UPLOAD), origin)
    ingest._prepared(prepare, ReceivedFile("/nowhere/received", None), origin)
    assert [len(args[0]) for _, _, args in small_files.held] == [SMALL_UPLOAD - 1]
    assert [args[0] if isinstance(args[0], str) else len(args[0])
            for _, _, args in file_io.held] == [SMALL_UPLOAD, "/nowhere/received"]
    # Without a pool of its own, everything goes to the file I/O pool.
    alone = HeldPool()
    Ingestor(RecordingIndex(), None, load_configuration(), alone)._prepared(prepare, b"1",
                                                                            origin)
    assert len(alone.held) == 1
