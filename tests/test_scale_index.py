"""The index as it grows: the LMDB map grows by itself, while readers
keep reading."""
import threading

from orthancd.ids import ResourceLevel
from orthancd.index.lmdb_index import LmdbResourceIndex
from tests.test_index_lmdb import ImmediateReactor, Summary, stored, wait
from orthancd.index.base import MetadataType


def test_a_small_map_grows_instead_of_failing(tmp_path):
    index = LmdbResourceIndex(str(tmp_path / "index"), ImmediateReactor(),
                              identifier_tags={ResourceLevel.PATIENT: [(0x00100020, "PatientID")]},
                              map_size=256 * 1024)
    index.open()
    index.writer.startService()
    stop = threading.Event()
    reads = []

    def read_meanwhile():
        # Readers run while the map grows under them.
        while not stop.wait(0.002):
            reads.append(len(index.list_resources(ResourceLevel.PATIENT)))

    readers = [threading.Thread(target=read_meanwhile) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        pending = []
        for n in range(3000):
            summary = Summary("P%d" % (n // 30), "S%d" % (n // 10), "SE%d" % (n // 10),
                              "I%d" % n)
            pending.append(index.store_instance(
                summary, stored("f%06d" % n),
                {ResourceLevel.INSTANCE: {MetadataType.Origin: "Test"}}, False, None))
        outcomes = [wait(d, timeout=60) for d in pending]
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert {outcome.status for outcome in outcomes} == {"Success"}
    assert len(index.list_resources(ResourceLevel.INSTANCE)) == 3000
    assert len(index.list_resources(ResourceLevel.PATIENT)) == 100
    assert index.env.info()["map_size"] > 256 * 1024
    assert reads and max(reads) <= 100
    wait(index.writer.stopService())
    index.close()
    # Reopened with the small size it was configured with, it still holds everything
    # (LMDB takes the size of the file when it is larger).
    again = LmdbResourceIndex(str(tmp_path / "index"), ImmediateReactor(), map_size=256 * 1024)
    again.open()
    try:
        assert len(again.list_resources(ResourceLevel.INSTANCE)) == 3000
    finally:
        again.close()
