"""DicomAssociationCloseDelay against a real peer: a pynetdicom SCP that
counts the associations orthancd opens and releases."""
import io
import threading
import time

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification

from tests.support.daemon import Daemon, free_port

CLOSE_DELAY = 2


class CountingScp:
    """Accepts echo and CT storage; records what happens to associations."""

    def __init__(self):
        self.port = free_port()
        self.lock = threading.Lock()
        self.requested = 0
        self.released = 0
        self.aborted = 0
        self.stored = 0
        ae = AE(ae_title="COUNTER")
        ae.add_supported_context(Verification)
        ae.add_supported_context(CTImageStorage)
        handlers = [(evt.EVT_REQUESTED, self._count, ["requested"]),
                    (evt.EVT_RELEASED, self._count, ["released"]),
                    (evt.EVT_ABORTED, self._count, ["aborted"]),
                    (evt.EVT_C_STORE, self._store),
                    (evt.EVT_C_ECHO, lambda event: 0x0000)]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=handlers)

    def _count(self, event, name):
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)

    def _store(self, event):
        with self.lock:
            self.stored += 1
        return 0x0000

    def counts(self):
        with self.lock:
            return self.requested, self.released

    def wait_released(self, count, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline and self.counts()[1] < count:
            time.sleep(0.05)
        return self.counts()

    def stop(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    scp = CountingScp()
    daemon = Daemon(tmp_path_factory.mktemp("reuse"),
                    DicomAssociationCloseDelay=CLOSE_DELAY,
                    DicomModalities={"counter": ["COUNTER", "127.0.0.1", scp.port],
                                     "other-aet": {"AET": "COUNTER", "Host": "127.0.0.1",
                                                   "Port": scp.port, "LocalAet": "OTHERAET"}})
    daemon.start()
    yield daemon, scp
    daemon.stop()
    scp.stop()


def test_operations_within_the_delay_share_one_association(peer):
    daemon, scp = peer
    rest = daemon.client()
    before = scp.wait_released(scp.counts()[0])
    assert rest.post("/modalities/counter/echo").status == 200
    assert rest.post("/modalities/counter/echo").status == 200
    assert rest.post("/modalities/counter/echo").status == 200
    requested, released = scp.counts()
    assert requested == before[0] + 1 and released == before[1]
    # Released once the delay has passed without a new operation.
    time.sleep(CLOSE_DELAY + 0.5)
    assert scp.counts() == (before[0] + 1, before[1] + 1)
    assert rest.post("/modalities/counter/echo").status == 200
    assert scp.counts()[0] == before[0] + 2
    scp.wait_released(before[1] + 2)


def test_store_reuses_its_association_but_not_an_echo_one(peer):
    daemon, scp = peer
    rest = daemon.client()
    instance = rest.upload(_ct_sample())["ID"]
    before = scp.wait_released(scp.counts()[0])
    assert rest.post("/modalities/counter/echo").status == 200
    # The echo association did not negotiate CT storage: a new one is opened
    # (and the idle one released first: one association per peer).
    assert rest.post("/modalities/counter/store", [instance]).status == 200
    assert rest.post("/modalities/counter/store", [instance]).status == 200
    assert scp.counts()[0] == before[0] + 2
    assert scp.wait_released(before[1] + 1)[1] >= before[1] + 1
    assert scp.stored >= 2
    assert scp.wait_released(before[1] + 2, timeout=CLOSE_DELAY + 5) == (before[0] + 2,
                                                                         before[1] + 2)


def _ct_sample():
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = "REUSE"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def test_another_local_aet_is_another_association(peer):
    daemon, scp = peer
    rest = daemon.client()
    instance = rest.upload(_ct_sample())["ID"]
    before = scp.wait_released(scp.counts()[0])
    # (A C-ECHO always calls as DicomAet, as in Orthanc: stores tell apart.)
    assert rest.post("/modalities/counter/store", [instance]).status == 200
    # The idle association to the same peer is released before the new one
    # is opened (storescp-like peers serve one association at a time).
    assert rest.post("/modalities/other-aet/store", [instance]).status == 200
    assert scp.wait_released(before[1] + 1, timeout=1) == (before[0] + 2, before[1] + 1)
    assert scp.wait_released(before[1] + 2, timeout=CLOSE_DELAY + 5) == (before[0] + 2,
                                                                         before[1] + 2)


def test_shutdown_releases_the_idle_association(tmp_path):
    scp = CountingScp()
    daemon = Daemon(tmp_path, DicomAssociationCloseDelay=60,
                    DicomModalities={"counter": ["COUNTER", "127.0.0.1", scp.port]})
    try:
        daemon.start()
        assert daemon.client().post("/modalities/counter/echo").status == 200
        assert scp.counts() == (1, 0)
        started = time.time()
        daemon.stop()
        assert time.time() - started < 10
        assert scp.wait_released(1, timeout=2) == (1, 1) and scp.aborted == 0
    finally:
        daemon.stop()
        scp.stop()
