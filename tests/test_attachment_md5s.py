"""The MD5s of attachments are derived from their content the first time
they are asked for (orthancd.checksums), checked against the file's name on
the way, and recorded in the index: every answer shows the MD5s Orthanc
would have computed at ingest, from the real daemon over HTTP."""
import hashlib
import os

import pytest

from tests.support.daemon import Daemon, read_sample

SAMPLES = ["2020-08-12-Christopher.dcm", "ColorTestImageJ.dcm", "Issue143.dcm"]


def _stored_path(daemon, uuid):
    return os.path.join(daemon.options["StorageDirectory"], uuid[0:2], uuid[2:4], uuid)


def _damage(path):
    """The same size, other bytes: what a failing disk might leave."""
    with open(path, "r+b") as f:
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def daemon(tmp_path):
    server = Daemon(tmp_path, UserContentType={"notes": 1030}).start()
    yield server
    server.stop()


def test_every_answer_shows_the_md5_of_the_stored_bytes(daemon):
    client = daemon.client()
    for name in SAMPLES:
        data = read_sample(name)
        md5 = hashlib.md5(data).hexdigest()
        instance = client.upload(data)["ID"]
        base = "/instances/%s/attachments/dicom" % instance
        # The ETag of any attachment route names it, the first asked too.
        answer = client.get(base + "/size")
        assert (answer.status, answer.body) == (200, str(len(data)).encode())
        assert answer.headers["ETag"] == '"0-%s"' % md5
        assert client.get(base + "/md5").body.decode() == md5
        assert client.get(base + "/compressed-md5").body.decode() == md5
        info = client.get_json(base + "/info")
        assert (info["CompressedMD5"], info["UncompressedMD5"]) == (md5, md5)
        assert "verify-md5" in client.get_json(base)
        assert client.post(base + "/verify-md5").status == 200
        # A client holding the ETag gets a 304.
        assert client.get(base + "/data", headers={"If-None-Match": '"0-%s"' % md5}).status == 304


def test_find_answers_show_the_md5s_never_asked_before(daemon):
    client = daemon.client()
    expected = {}
    for name in SAMPLES:
        data = read_sample(name)
        expected[client.upload(data)["ID"]] = hashlib.md5(data).hexdigest()
    found = client.post("/tools/find", {"Level": "Instance", "Query": {},
                                         "ResponseContent": ["Attachments"]}).json()
    assert {entry["ID"]: [(a["ContentType"], a["CompressedMD5"], a["UncompressedMD5"])
                          for a in entry["Attachments"]] for entry in found} == \
        {i: [(1, md5, md5)] for i, md5 in expected.items()}


def test_md5s_are_recorded_once_derived_and_a_changed_file_is_found_out(daemon):
    client = daemon.client()
    asked_data, unasked_data = read_sample(SAMPLES[0]), read_sample(SAMPLES[1])
    asked = client.upload(asked_data)["ID"]
    unasked = client.upload(unasked_data)["ID"]
    md5 = hashlib.md5(asked_data).hexdigest()
    assert client.get("/instances/%s/attachments/dicom/md5" % asked).body.decode() == md5
    uuids = {i: client.get_json("/instances/%s/attachments/dicom/info" % i)["Uuid"]
             for i in (asked, unasked)}
    # /info derived the second one's MD5s too: a fresh file for it.
    client.delete("/instances/%s" % unasked)
    unasked = client.upload(unasked_data)["ID"]
    daemon.stop()
    for uuid in uuids.values():
        _damage(_stored_path(daemon, uuid))
    daemon.start()
    # Recorded before the damage: still shown, and the check finds it out
    # (Orthanc answers a bad MD5 with an empty 400).
    assert client.get("/instances/%s/attachments/dicom/md5" % asked).body.decode() == md5
    assert client.post("/instances/%s/attachments/dicom/verify-md5" % asked).status == 400
    # Never derived: no MD5 of what the file holds now.
    answer = client.get("/instances/%s/attachments/dicom/md5" % unasked)
    assert answer.status == 500
    assert answer.json()["OrthancError"] == "Corrupted file (e.g. inconsistent MD5 hash)"
    assert client.post("/instances/%s/attachments/dicom/verify-md5" % unasked).status == 400
    # The index and the other answers are unharmed.
    assert client.get_json("/instances/%s" % unasked)["ID"] == unasked


def test_an_if_match_names_the_md5_of_an_attachment_never_asked(daemon):
    """A client that computed the MD5 of what it stored writes with an
    If-Match at once: the MD5 is derived before the index checks it."""
    client = daemon.client()
    instance = client.upload(read_sample(SAMPLES[0]))["ID"]
    notes = "/instances/%s/attachments/notes" % instance
    first = b"first version"
    answer = client.put(notes, first)
    assert answer.status == 200
    tag = '"0-%s"' % hashlib.md5(first).hexdigest()
    assert answer.headers["ETag"] == tag
    refused = client.put(notes, b"second", headers={"If-Match": '"0-%s"' % ("0" * 32)})
    assert refused.status == 409
    answer = client.put(notes, b"second", headers={"If-Match": tag})
    assert answer.status == 200, answer.body
    assert answer.headers["ETag"] == '"1-%s"' % hashlib.md5(b"second").hexdigest()
    deleted = client.delete(notes, headers={"If-Match": answer.headers["ETag"]})
    assert deleted.status == 200
