"""Start the real ``twistd -n orthancd`` daemon for a test, on free ports."""
import base64
import glob
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = os.environ.get("ORTHANCD_SAMPLES",
                         os.path.join(os.path.dirname(ROOT), "shared", "dicom-samples"))


_GIVEN_PORTS = set()


def _ephemeral_ports():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(value) for value in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high


def free_port():
    """A port for a server of the tests: one nothing is bound to, given to
    no other server of this process, and below the ephemeral range.  The
    kernel takes the local ports of outgoing connections from that range: a
    port found free there (bind to 0) could be some connection's before the
    server binds it, and a server that cannot bind (the real Orthanc exits)
    leaves the port to whatever answers there."""
    low, _ = _ephemeral_ports()
    first = max(10000, low - 12000)
    for _ in range(1000):
        port = random.randrange(first, low)
        if port in _GIVEN_PORTS:
            continue
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
        _GIVEN_PORTS.add(port)
        return port
    raise RuntimeError("no free port below %d" % low)


def sample(*parts):
    return os.path.join(SAMPLES, *parts)


def padded_past(data, size):
    """``data``, a Part-10 file whose data set is Explicit VR Little Endian,
    made longer than ``size`` bytes by a Data Set Trailing Padding element
    (FFFC,FFFC) at its end: a real sample that takes the paths of files
    larger than those kept in memory (orthancd.ingest.IN_MEMORY_LIMIT)."""
    import struct
    import pydicom
    from io import BytesIO
    syntax = pydicom.dcmread(BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert syntax.is_little_endian and not syntax.is_implicit_VR and not syntax.is_deflated
    padding = max(0, size + 1 - len(data))
    padding += padding % 2
    return data + struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, padding) + bytes(padding)


def temporary_leftovers(storage_directory):
    """The files left in a storage's temporary folder, but its spare ones
    (orthancd.storage.temporary_files: made ahead, empty, meant to stay)."""
    from orthancd.storage.temporary_files import SPARE_PREFIX
    folder = os.path.join(storage_directory, "tmp")

    def spare(name):
        try:
            return name.startswith(SPARE_PREFIX) and \
                os.path.getsize(os.path.join(folder, name)) == 0
        except FileNotFoundError:
            return True  # taken meanwhile: not a leftover
    return sorted(name for name in os.listdir(folder) if not spare(name))


def sample_files():
    """Every file of the shared DICOM samples, sorted."""
    found = sorted(f for f in glob.glob(os.path.join(SAMPLES, "**", "*"), recursive=True)
                   if os.path.isfile(f))
    assert len(found) > 200, "the shared DICOM samples are missing"
    return found


def read_sample(*parts):
    with open(sample(*parts), "rb") as f:
        return f.read()


class HttpAnswer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8")


class RestClient:
    def __init__(self, base, auth=None):
        self.base = base
        self.auth = auth

    def request(self, method, path, body=None, headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        req = urllib.request.Request(self.base + path, data=body, method=method)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        if self.auth:
            token = base64.b64encode(("%s:%s" % self.auth).encode()).decode()
            req.add_header("Authorization", "Basic " + token)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return HttpAnswer(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as e:
            return HttpAnswer(e.code, dict(e.headers), e.read())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=b"", **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=b"", **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def get_json(self, path):
        answer = self.get(path)
        assert answer.status == 200, (path, answer.status, answer.body[:500])
        return answer.json()

    def upload(self, data):
        answer = self.post("/instances", data)
        assert answer.status == 200, (answer.status, answer.body[:500])
        return answer.json()


class Daemon:
    """One orthancd process with its own configuration and storage."""

    def __init__(self, workdir, **options):
        self.workdir = str(workdir)
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.options = {
            "Name": "orthancd-test",
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "ORTHANCD",
            "StorageDirectory": os.path.join(self.workdir, "storage"),
            "RemoteAccessAllowed": False,
            "StableAge": 1,
            "ExecuteLuaEnabled": True,
        }
        self.options.update(options)
        self.config_path = os.path.join(self.workdir, "orthanc.json")
        self.log_path = os.path.join(self.workdir, "orthancd.log")
        self.process = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.http_port

    def client(self, auth=None):
        return RestClient(self.url, auth)

    def start(self, timeout=30):
        with open(self.config_path, "w") as f:
            json.dump(self.options, f, indent=2)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "orthancd",
             "--config", self.config_path],
            cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("orthancd exited with %s:\n%s" % (self.process.returncode, self.log()))
            try:
                with urllib.request.urlopen(self.url + "/system", timeout=1):
                    return self
            except urllib.error.HTTPError:
                return self  # answering, e.g. 401 when authentication is on
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("orthancd did not start:\n" + self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self):
        """SIGKILL: the crash in crash tests."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None
