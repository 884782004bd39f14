"""kill -9 during a stream of uploads: everything acknowledged survives."""
import hashlib
import os
import threading
import time
from io import BytesIO

import pydicom
from pydicom.uid import generate_uid

from tests.support.daemon import Daemon, sample


def synthetic_instances(count):
    """Distinct DICOM files derived from a real sample (new UIDs each)."""
    template = pydicom.dcmread(sample("DummyCT.dcm"))
    study = generate_uid()
    series = [generate_uid() for _ in range(count // 20 + 1)]
    for i in range(count):
        ds = template.copy()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series[i // 20]
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        yield buffer.getvalue()


def test_kill_during_uploads_loses_nothing_acknowledged(tmp_path):
    daemon = Daemon(tmp_path).start()
    rest = daemon.client()
    files = list(synthetic_instances(300))
    acknowledged = {}
    lock = threading.Lock()
    stop = threading.Event()

    def uploader(chunk):
        for data in chunk:
            if stop.is_set():
                return
            try:
                answer = rest.post("/instances", data)
            except OSError:
                return  # the daemon died under us
            if answer.status == 200:
                with lock:
                    acknowledged[answer.json()["ID"]] = hashlib.sha256(data).hexdigest()

    threads = [threading.Thread(target=uploader, args=(files[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while time.time() < deadline and len(acknowledged) < 60:
        time.sleep(0.01)
    daemon.kill()
    stop.set()
    for t in threads:
        t.join()
    assert len(acknowledged) >= 60, daemon.log()

    daemon.start()
    rest = daemon.client()
    stored = set(rest.get_json("/instances"))
    assert set(acknowledged) <= stored
    for instance_id, digest in acknowledged.items():
        body = rest.get("/instances/%s/file" % instance_id).body
        assert hashlib.sha256(body).hexdigest() == digest
    # The index and the files agree: every indexed instance is readable and
    # no orphan file remains after the start-up sweep.
    for instance_id in stored:
        assert rest.get("/instances/%s/file" % instance_id).status == 200
    root = daemon.options["StorageDirectory"]
    on_disk = [f for a in os.listdir(root) if len(a) == 2
               for b in os.listdir(os.path.join(root, a))
               for f in os.listdir(os.path.join(root, a, b))]
    assert len(on_disk) == len(stored)
    stats = rest.get_json("/statistics")
    assert stats["CountInstances"] == len(stored)
    daemon.stop()


def test_kill_during_c_store_loses_nothing_acknowledged(tmp_path):
    """The same guarantee over DICOM: a C-STORE-RSP success means durable."""
    from pydicom import dcmread
    from pynetdicom import AE

    daemon = Daemon(tmp_path).start()
    datasets = [dcmread(BytesIO(data)) for data in synthetic_instances(200)]
    acknowledged = []

    def sender():
        ae = AE(ae_title="CRASHTEST")
        ae.add_requested_context(datasets[0].SOPClassUID, datasets[0].file_meta.TransferSyntaxUID)
        association = ae.associate("127.0.0.1", daemon.dicom_port, ae_title="ORTHANCD")
        if not association.is_established:
            return
        for ds in datasets:
            try:
                status = association.send_c_store(ds)
            except Exception:
                return
            if not status or getattr(status, "Status", None) != 0:
                return  # the association died with the daemon
            acknowledged.append(ds.SOPInstanceUID)
        association.release()

    thread = threading.Thread(target=sender)
    thread.start()
    deadline = time.time() + 30
    while time.time() < deadline and len(acknowledged) < 40:
        time.sleep(0.01)
    daemon.kill()
    thread.join(60)
    assert len(acknowledged) >= 40, daemon.log()

    daemon.start()
    rest = daemon.client()
    for uid in acknowledged:
        found = rest.post("/tools/lookup", uid).json()
        assert len(found) == 1 and found[0]["Type"] == "Instance", uid
        assert rest.get("/instances/%s/file" % found[0]["ID"]).status == 200
    daemon.stop()


def test_a_file_the_crash_kept_from_the_disk_takes_its_instance_out_of_the_index(tmp_path):
    """A crash in the middle of the last group commit's syncfs, simulated:
    the daemon killed, then the last upload's file taken away (its commit
    had reached the disk, its file had not).  The restarted daemon says so
    in its log and no longer knows that instance; the others are intact."""
    daemon = Daemon(tmp_path).start()
    rest = daemon.client()
    first, last = list(synthetic_instances(2))
    kept = rest.upload(first)["ID"]
    lost = rest.upload(last)["ID"]
    lost_uuid = rest.get_json("/instances/%s/attachments/dicom/info" % lost)["Uuid"]
    daemon.kill()
    root = daemon.options["StorageDirectory"]
    os.unlink(os.path.join(root, lost_uuid[:2], lost_uuid[2:4], lost_uuid))
    daemon.start()
    rest = daemon.client()
    assert rest.get_json("/instances") == [kept]
    assert rest.get("/instances/%s" % lost).status == 404
    assert rest.get("/instances/%s/file" % kept).body == first
    assert rest.get_json("/statistics")["CountInstances"] == 1
    assert "did not reach the disk" in daemon.log()
    daemon.stop()
