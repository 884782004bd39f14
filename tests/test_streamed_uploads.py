"""Large DICOM uploads (POST /instances) are written and hashed while they
arrive (orthancd.uploads.spool.StreamedBody): the stored file, its content
address and its MD5 (derived when asked, orthancd.checksums) are those of
the bytes sent, whatever shape the body came in, and nothing is left behind
when an upload fails or stops."""
import hashlib
import io
import os
import socket
import threading
import time
import zipfile

import pytest
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool

from orthancd.rest.app import OrthancSite
from orthancd.storage.digests import ContentHasher, digests_of
from orthancd.storage.filesystem import content_uuid
from orthancd.storage.streaming import StreamingFileWriter
from orthancd.storage.temporary_files import new_temporary_path
from orthancd.uploads.spool import StreamedBody
from tests.support.daemon import Daemon, padded_past, read_sample, sample, temporary_leftovers
from tests.support.pools import HeldPool

# Real samples, padded past the bodies kept in memory
# (OrthancSite.IN_MEMORY_BODY_LIMIT): these are streamed.
LARGE_SAMPLES = ["Issue143.dcm",
                 "ColorTestImageJ.dcm",
                 "PilatesArgenturGEUltrasoundOsiriX.dcm"]


def large_sample(name):
    return padded_past(read_sample(name), OrthancSite.IN_MEMORY_BODY_LIMIT)


@pytest.fixture(scope="module")
def pool():
    threads = ThreadPool(minthreads=0, maxthreads=2, name="test-writes")
    threads.start()
    yield threads
    threads.stop()


@pytest.mark.parametrize("piece", [1, 4096, 65536, 1 << 20])
def test_pieces_hashed_give_the_digests_of_the_bytes(piece):
    data = os.urandom(300001)
    hasher = ContentHasher()
    for i in range(0, len(data), piece):
        hasher.update(memoryview(data)[i:i + piece])
    assert hasher.digests() == digests_of(data)
    assert hasher.digests().uuid == content_uuid(data)
    empty = ContentHasher().digests()
    assert (empty.uuid, empty.size) == (content_uuid(b""), 0)


def test_streamed_body_lifecycle(tmp_path, pool):
    data = os.urandom(700000)
    body = StreamedBody(str(tmp_path), pool, reactor=_Immediate())
    for i in range(0, len(data), 100000):
        body.write(data[i:i + 100000])
    assert (body.size, body.head, body.tell()) == (len(data), data[:4], len(data))
    assert body.seek(0, 0) == 0  # what Twisted does once the body is in
    done = threading.Event()
    results = []

    def fire(received):
        results.append(received)
        done.set()
    # Fired from the pool's thread (a real reactor would run it on its own).
    body.complete().addCallback(fire)
    assert done.wait(10)
    (received,) = results
    assert received == body.path and body.received is received
    assert received.digests == digests_of(data)
    # Read back like a file, off the reactor (a zip archive is).
    assert body.read(10) == data[:10] and body.seek(0, 2) == len(data)
    body.close()
    assert os.listdir(tmp_path) == []


def test_streamed_body_closed_before_completion_leaves_nothing(tmp_path):
    body = StreamedBody(str(tmp_path), Clock(), reactor=Clock())  # no threads: inline
    body.write(b"DICM" * 1000)
    body.close()
    assert os.listdir(tmp_path) == []
    body = StreamedBody(str(tmp_path), Clock(), reactor=Clock())
    body.write(b"x" * 1000)
    completed = body.complete()
    body.close()
    assert completed.called and os.listdir(tmp_path) == []


class _Immediate:
    def callFromThread(self, function, *args):
        function(*args)


def test_writer_gives_the_digests_of_what_it_wrote(tmp_path, pool):
    data = os.urandom(200000)
    path = str(tmp_path / "incoming")
    writer = StreamingFileWriter(path, _Immediate(), pool)
    for i in range(0, len(data), 30000):
        writer.write(data[i:i + 30000])
    done = threading.Event()
    results = []
    writer.close().addCallback(lambda received: (results.append(received), done.set()))
    assert done.wait(10)
    (received,) = results
    with open(received, "rb") as f:
        assert f.read() == data
    assert received.digests == digests_of(data)


def test_the_file_is_created_in_the_pool_not_by_the_caller(tmp_path):
    """The reactor only hands pieces over: the file is created (O_EXCL),
    written and closed where the pool runs."""
    pool = HeldPool()
    path = new_temporary_path(str(tmp_path), "cstore-", ".dcm")
    assert os.path.dirname(path) == str(tmp_path) and path.endswith(".dcm")
    writer = StreamingFileWriter(path, _Immediate(), pool)
    writer.write(b"abc")
    results = []
    writer.close().addCallback(results.append)
    assert not os.path.exists(path) and not results
    pool.run_all()
    assert results == [path] and open(path, "rb").read() == b"abc"
    # A path taken meanwhile is not overwritten: the writer fails.
    taken = StreamingFileWriter(path, _Immediate(), pool)
    taken.write(b"other")
    failures = []
    taken.close().addErrback(failures.append)
    pool.run_all()
    assert failures and failures[0].check(FileExistsError)
    assert open(path, "rb").read() == b"abc"


def test_a_discarded_writer_leaves_no_file_whenever_the_pool_runs(tmp_path):
    pool = HeldPool()
    path = new_temporary_path(str(tmp_path))
    writer = StreamingFileWriter(path, _Immediate(), pool)
    writer.write(b"partial")
    writer.discard()
    writer.write(b"late")  # what the reactor still had: dropped
    pool.run_all()
    assert os.listdir(tmp_path) == []


class _Producer:
    def __init__(self):
        self.paused = False
        self.pauses = 0

    def pauseProducing(self):
        self.paused = True
        self.pauses += 1

    def resumeProducing(self):
        self.paused = False


def test_the_sender_is_paused_while_writes_and_hashes_lag(tmp_path):
    """Flow control: past BACKLOG_HIGH bytes handed over and not yet
    written (and hashed), the producer (the connection) is paused; it is
    resumed once the backlog is down to BACKLOG_LOW."""
    from orthancd.storage import streaming
    writes = HeldPool()
    producer = _Producer()
    path = new_temporary_path(str(tmp_path))
    writer = StreamingFileWriter(path, _Immediate(), writes, producer)
    piece = os.urandom(1 << 20)
    sent = 0
    while not producer.paused:
        writer.write(piece)
        sent += 1
        assert sent * len(piece) <= streaming.BACKLOG_HIGH + len(piece)
    assert producer.paused
    writes.run_all()
    assert not producer.paused and producer.pauses == 1
    results = []
    writer.close().addCallback(results.append)
    writes.run_all()
    (received,) = results
    assert received.digests == digests_of(piece * sent)
    assert os.path.getsize(path) == sent * len(piece)


def test_a_discarded_upload_resumes_its_sender(tmp_path):
    writes = HeldPool()
    producer = _Producer()
    writer = StreamingFileWriter(new_temporary_path(str(tmp_path)), _Immediate(), writes,
                                 producer)
    while not producer.paused:
        writer.write(os.urandom(1 << 20))
    writer.discard()
    assert not producer.paused
    writes.run_all()
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    server = Daemon(tmp_path_factory.mktemp("streamed")).start()
    yield server
    server.stop()


def _temporary_files(daemon):
    return temporary_leftovers(daemon.options["StorageDirectory"])


@pytest.mark.parametrize("name", LARGE_SAMPLES)
def test_large_uploads_are_stored_as_sent(daemon, name):
    client = daemon.client()
    data = large_sample(name)
    assert len(data) > OrthancSite.IN_MEMORY_BODY_LIMIT
    stored = client.upload(data)
    instance = stored["ID"]
    assert client.get("/instances/%s/file" % instance).body == data
    md5 = client.get("/instances/%s/attachments/dicom/md5" % instance).body.decode()
    assert md5 == hashlib.md5(data).hexdigest()
    info = client.get_json("/instances/%s/attachments/dicom/info" % instance)
    assert info["Uuid"] == content_uuid(data) and info["CompressedSize"] == len(data)
    # The same bytes again, chunked this time: already stored, same file.
    again = _post_chunked(daemon, data, 50000)
    assert again[0] == 200 and b'"AlreadyStored"' in again[1]
    assert _temporary_files(daemon) == []


def test_large_zip_upload_is_read_back_from_the_streamed_file(daemon):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for name in LARGE_SAMPLES:
            z.write(sample(name), os.path.basename(name))
    answer = daemon.client().post("/instances", archive.getvalue())
    assert answer.status == 200
    assert [item["Status"] for item in answer.json()] in (["Success"] * 3,
                                                          ["AlreadyStored"] * 3)
    assert _temporary_files(daemon) == []


def test_large_bad_bodies_are_refused_and_leave_nothing(daemon):
    client = daemon.client()
    before = client.get_json("/statistics")["CountInstances"]
    data = large_sample(LARGE_SAMPLES[0])
    truncated = client.post("/instances", data[:-1000])
    assert truncated.status == 400
    assert truncated.json()["OrthancError"] == "Bad file format"
    garbage = client.post("/instances", os.urandom(400000))
    assert garbage.status == 400
    assert client.get_json("/statistics")["CountInstances"] == before
    assert _temporary_files(daemon) == []


def test_abandoned_upload_leaves_nothing(daemon):
    with socket.create_connection(("127.0.0.1", daemon.http_port)) as s:
        s.sendall(b"POST /instances HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        s.sendall(b"\0" * 1000000)
        time.sleep(0.3)
    deadline = time.time() + 10
    while _temporary_files(daemon) and time.time() < deadline:
        time.sleep(0.05)
    assert _temporary_files(daemon) == []
    assert daemon.client().get("/system").status == 200


def _post_chunked(daemon, data, chunk):
    with socket.create_connection(("127.0.0.1", daemon.http_port)) as s:
        s.sendall(b"POST /instances HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Connection: close\r\n\r\n")
        for i in range(0, len(data), chunk):
            piece = data[i:i + chunk]
            s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        s.sendall(b"0\r\n\r\n")
        answer = b""
        while True:
            received = s.recv(65536)
            if not received:
                break
            answer += received
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _read_answers(s, count):
    """``count`` HTTP answers (with Content-Length) read off socket ``s``."""
    buffer, answers = b"", []
    while len(answers) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end].decode("latin-1")
            length = int([line.split(":", 1)[1] for line in head.split("\r\n")
                          if line.lower().startswith("content-length:")][0])
            if len(buffer) >= head_end + 4 + length:
                answers.append((int(head.split()[1]), buffer[head_end + 4:head_end + 4 + length]))
                buffer = buffer[head_end + 4 + length:]
                continue
        received = s.recv(65536)
        assert received, "connection closed early"
        buffer += received
    return answers


def test_headers_body_and_next_request_in_one_read(daemon):
    """The head of a request is cut off a large read before the body: the
    body, and a request sent right behind it, arrive intact."""
    data = large_sample(LARGE_SAMPLES[1])
    upload = (b"POST /instances HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data)
              + data)
    with socket.create_connection(("127.0.0.1", daemon.http_port)) as s:
        s.sendall(upload + b"GET /system HTTP/1.1\r\nHost: x\r\n\r\n")
        (stored, system) = _read_answers(s, 2)
        assert stored[0] == 200 and system[0] == 200 and b'"ApiVersion"' in system[1]
        # The head byte by byte, then the body.
        for byte in upload[:upload.index(b"\r\n\r\n") + 4]:
            s.sendall(bytes([byte]))
        s.sendall(data)
        (again,) = _read_answers(s, 1)
        assert again[0] == 200 and b'"AlreadyStored"' in again[1]
