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
