"""C-STORE from several modalities at once, against the real daemon.

The SCP keeps an instance of up to 4 MiB in memory and stores it as REST
uploads are stored; a larger one is streamed to a file as it arrives
(orthancd.net.scp_store): the samples include a real one padded past that.  Both paths, one association or four at once,
must store the same files: the sample files sent by one storescu to one
daemon and by four storescu at once to another give the same instances,
byte for byte, with the same MD5s and main tags.
"""
import hashlib
import os
import subprocess
import threading
import warnings

import pydicom
import pytest

from orthancd.ingest import IN_MEMORY_LIMIT
from orthancd.net.scp_store import STORAGE_SOP_CLASSES
from tests.support.daemon import Daemon, padded_past, sample_files, temporary_leftovers

UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
ENV = dict(os.environ, TCP_NODELAY="1")


def uncompressed_samples():
    """Sample files storescu sends as they are (uncompressed, of a storage
    class), small and large."""
    chosen = []
    for path in sample_files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                meta = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            syntax = str(meta.file_meta.TransferSyntaxUID)
            sop_class = str(meta.SOPClassUID)
        except Exception:
            continue
        if syntax in UNCOMPRESSED and sop_class in STORAGE_SOP_CLASSES:
            chosen.append(path)
    return chosen


def storescu(port, paths):
    """Send ``paths`` on one association, going on after a refusal (a few
    samples lack an identifier, and both daemons refuse them alike)."""
    # DCMTK by absolute path: pynetdicom puts its own storescu first on PATH.
    return subprocess.run(["/usr/bin/storescu", "-R", "--no-halt", "-aet", "MODALITY", "-aec", "ORTHANCD",
                           "127.0.0.1", str(port)] + paths,
                          env=ENV, capture_output=True, text=True, timeout=300)


def stored_instances(daemon):
    """{SOPInstanceUID: (file bytes, attachment MD5, main tags)}."""
    client = daemon.client()
    found = {}
    for public_id in client.get_json("/instances"):
        data = client.get("/instances/%s/file" % public_id).body
        md5 = client.get("/instances/%s/attachments/dicom/md5" % public_id).text
        info = client.get_json("/instances/%s" % public_id)
        found[info["MainDicomTags"]["SOPInstanceUID"]] = (data, md5, info["MainDicomTags"])
    return found


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    paths = uncompressed_samples()
    assert len(paths) > 60 and any(os.path.getsize(p) > (1 << 20) for p in paths)
    # The largest Explicit VR Little Endian one, padded past what is kept
    # in memory, in its place: one instance takes the streamed path.
    for large in sorted(paths, key=os.path.getsize, reverse=True):
        with open(large, "rb") as f:
            try:
                padded = padded_past(f.read(), IN_MEMORY_LIMIT)
            except AssertionError:
                continue
        copy = tmp_path_factory.mktemp("padded") / os.path.basename(large)
        copy.write_bytes(padded)
        return [str(copy) if p == large else p for p in paths]
    raise AssertionError("no Explicit VR Little Endian sample to pad")


def test_several_modalities_at_once_store_what_one_stores(tmp_path, samples):
    (tmp_path / "alone").mkdir()
    (tmp_path / "together").mkdir()
    alone = Daemon(tmp_path / "alone").start()
    together = Daemon(tmp_path / "together").start()
    try:
        storescu(alone.dicom_port, samples)
        results = [None] * 4

        def send(i):
            results[i] = storescu(together.dicom_port, samples[i::4])
        senders = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        for result in results:
            assert "Association Request Failed" not in result.stderr, result.stderr[-2000:]

        expected = stored_instances(alone)
        got = stored_instances(together)
        assert len(expected) > 60 and got.keys() == expected.keys()
        for uid, (data, md5, tags) in expected.items():
            assert got[uid][0] == data, uid
            assert got[uid][1] == md5 == hashlib.md5(data).hexdigest(), uid
            assert got[uid][2] == tags, uid
        # Nothing left behind in the temporary folder.
        assert temporary_leftovers(together.options["StorageDirectory"]) == []
    finally:
        alone.stop()
        together.stop()
