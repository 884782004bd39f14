"""The real Orthanc 1.13.0 (the reference), started on free ports for parity tests.

``scripts/test`` installs it with ../shared/tools/install-orthanc into
/opt/orthanc-ref; ORTHANC_REFERENCE names another binary.  Debian 12's own
package (1.10.1, /usr/sbin/Orthanc) stays available as ``LEGACY_BINARY`` for
the few tests that need something 1.13.0 cannot give; each says why.
"""
import atexit
import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

from tests.support.daemon import RestClient, free_port

ORTHANC_BINARY = os.environ.get("ORTHANC_REFERENCE", "/opt/orthanc-ref/bin/Orthanc")
LEGACY_BINARY = "/usr/sbin/Orthanc"


# workdir -> an Orthanc process told to stop and not waited for yet.
_STOPPING = {}


def _wait_stopped(process, timeout=20):
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@atexit.register
def _wait_all_stopped():
    while _STOPPING:
        _wait_stopped(_STOPPING.popitem()[1])


def available():
    return os.path.exists(ORTHANC_BINARY)


class RealOrthanc:
    def __init__(self, workdir, **options):
        self.workdir = str(workdir)
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.options = {
            "Name": "oracle",
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "ORACLE",
            "StorageDirectory": os.path.join(self.workdir, "db"),
            "IndexDirectory": os.path.join(self.workdir, "db"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "StableAge": 1,
            "Plugins": [],
        }
        self.options.update(options)
        self.process = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.http_port

    def client(self):
        return RestClient(self.url)

    def start(self, timeout=30):
        if not available():
            # No skipping: scripts/test installs it, and parity is the point.
            raise RuntimeError("The real Orthanc (%s, Debian package 'orthanc') is needed as "
                               "the oracle: run scripts/test, which installs it" % ORTHANC_BINARY)
        # An Orthanc of the same folder still stopping must be gone before
        # another opens its database.
        stopping = _STOPPING.pop(self.workdir, None)
        if stopping is not None:
            _wait_stopped(stopping)
        path = os.path.join(self.workdir, "oracle.json")
        with open(path, "w") as f:
            json.dump(self.options, f)
        self._log = open(os.path.join(self.workdir, "oracle.log"), "ab")
        self.process = subprocess.Popen([ORTHANC_BINARY, path], cwd=self.workdir,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("Orthanc exited with %s" % self.process.returncode)
            try:
                with urllib.request.urlopen(self.url + "/system", timeout=1):
                    return self
            except urllib.error.HTTPError:
                return self  # answering, e.g. 401 when authentication is on
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("Orthanc did not start")

    def kill(self):
        """SIGKILL: faster than a clean stop (~4 s), for tests that need
        nothing more from this Orthanc (what it committed stays)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stop()

    def stop(self, wait=False):
        """A clean stop (SIGTERM).  It takes Orthanc seconds, so it is only
        waited for with ``wait``, by a later start in the same folder, or at
        the end of the session."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            if wait:
                _wait_stopped(self.process)
            else:
                previous = _STOPPING.pop(self.workdir, None)
                if previous is not None:
                    _wait_stopped(previous)
                _STOPPING[self.workdir] = self.process
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None


@contextlib.contextmanager
def running(servers):
    """Start test servers in order; at the end, stop those that started
    (quickly, as ``stop_quickly``)."""
    started = []
    try:
        for server in servers:
            server.start()
            started.append(server)
        yield servers
    finally:
        stop_quickly(started)


def stop_quickly(servers):
    """Stop test servers at the end of a test: the real Orthancs killed
    (their clean stop takes seconds), the others stopped."""
    for server in servers:
        (server.kill if isinstance(server, RealOrthanc) else server.stop)()
