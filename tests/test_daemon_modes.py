"""twistd orthancd in both of its modes: in the foreground (-n) and as a real
daemon (twistd forks, writes a pid file, detaches).  In each, the server
answers uploads over REST and DICOM, runs Lua, stops on SIGTERM, and has its
data after a restart."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from orthancd.tap import Options, makeService
from tests.support.daemon import ROOT, Daemon, RestClient, free_port, read_sample, sample

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
CT, COLOR = "DummyCT.dcm", "ColorTestMalaterre.dcm"


def storescu(port, *paths):
    # DCMTK by absolute path: pynetdicom puts its own storescu first on PATH.
    return subprocess.run(["/usr/bin/storescu", "-aet", "MODES", "-aec", "ORTHANCD",
                           "127.0.0.1", str(port), *paths], capture_output=True, text=True,
                          timeout=60)


def lua(rest, script):
    answer = rest.post("/tools/execute-script", script)
    assert answer.status == 200, answer.body
    return answer.text


def wait_until(condition, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def answering(url):
    try:
        with urllib.request.urlopen(url + "/system", timeout=1):
            return True
    except OSError:
        return False


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not yet reaped by its parent) is gone for our purpose.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def use_the_server(rest, dicom_port):
    """Upload over REST and DICOM, run Lua, delete: every pool and the
    writer thread take part.  Returns the IDs that must survive a restart."""
    ct = rest.upload(read_sample(CT))["ID"]
    result = storescu(dicom_port, sample(COLOR))
    assert result.returncode == 0, result.stdout + result.stderr
    instances = set(rest.get_json("/instances"))
    assert ct in instances and len(instances) == 2
    assert set(json.loads(lua(rest, 'print(RestApiGet("/instances"))'))) == instances
    color = (instances - {ct}).pop()
    # One more instance, deleted: its file goes, the index forgets it.
    extra = rest.upload(read_sample("SignedCT.dcm"))["ID"]
    assert rest.delete("/instances/" + extra).status == 200
    # What C-STORE stored carries orthancd's own file meta header.
    return {ct: read_sample(CT), color: rest.get("/instances/%s/file" % color).body}


def check_data(rest, kept):
    assert set(rest.get_json("/instances")) == set(kept)
    for instance_id, data in kept.items():
        assert rest.get("/instances/%s/file" % instance_id).body == data
    assert rest.get_json("/statistics")["CountInstances"] == len(kept)


def files_in(storage):
    return sorted(f for a in os.listdir(storage) if len(a) == 2
                  for b in os.listdir(os.path.join(storage, a))
                  for f in os.listdir(os.path.join(storage, a, b)))


def test_make_service_starts_no_thread_and_opens_nothing(tmp_path):
    """twistd forks after makeService when it daemonizes: threads and open
    LMDB environments must wait for startService."""
    (tmp_path / "startup.lua").write_text('print("loaded")')
    config = tmp_path / "orthanc.json"
    config.write_text(json.dumps({
        "StorageDirectory": str(tmp_path / "storage"), "IndexDirectory": str(tmp_path / "index"),
        "ExecuteLuaEnabled": True, "LuaScripts": ["startup.lua"],
        "HttpPort": free_port(), "DicomPort": free_port()}))
    options = Options()
    options.parseOptions(["--config", str(config)])
    threads_before = threading.enumerate()
    top = makeService(options)
    assert threading.enumerate() == threads_before
    assert sorted(os.listdir(tmp_path)) == ["orthanc.json", "startup.lua"]
    names = [child.name for child in top]
    # Start order: what is used starts before its users, and stops after them.
    assert names[:10] == ["index", "index-writer", "storage-writes", "file-io", "small-files",
                          "ingest-workers", "pixels", "lua-pool", "lua-filter-pool", "lua"]


def test_foreground_mode_stops_cleanly_and_keeps_its_data(tmp_path):
    daemon = Daemon(tmp_path).start()
    kept = use_the_server(daemon.client(), daemon.dicom_port)
    daemon.process.send_signal(signal.SIGTERM)
    # twistd ends by re-raising the signal that stopped it, as it should.
    assert daemon.process.wait(30) == -signal.SIGTERM, daemon.log()
    daemon.stop()
    log = daemon.log()
    assert "Server Shut Down." in log and "Traceback" not in log, log
    storage = daemon.options["StorageDirectory"]
    # A clean stop leaves nothing pending and only the referenced files.
    assert sorted(os.listdir(os.path.join(storage, "pending"))) == [".complete", "journal"]
    assert os.path.getsize(os.path.join(storage, "pending", "journal")) == 0
    assert len(files_in(storage)) == len(kept)

    daemon.start()
    check_data(daemon.client(), kept)
    daemon.stop()


class ForkingDaemon:
    """``twistd orthancd`` without -n: twistd forks, the parent exits once the
    daemon is detached, and the pid file is the only handle on it."""

    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.pidfile = os.path.join(self.workdir, "orthancd.pid")
        self.logfile = os.path.join(self.workdir, "orthancd.log")
        self.http_port, self.dicom_port = free_port(), free_port()
        self.config = os.path.join(self.workdir, "orthanc.json")
        with open(self.config, "w") as f:
            json.dump({"Name": "daemon-mode", "HttpPort": self.http_port,
                       "DicomPort": self.dicom_port, "DicomAet": "ORTHANCD",
                       "StorageDirectory": os.path.join(self.workdir, "storage"),
                       "RemoteAccessAllowed": False, "ExecuteLuaEnabled": True}, f)
        self.url = "http://127.0.0.1:%d" % self.http_port

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def launch(self):
        """Run twistd; it returns once the daemon has started (or failed to)."""
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        return subprocess.run(
            TWISTD + ["--pidfile", self.pidfile, "--logfile", self.logfile,
                      "orthancd", "--config", self.config],
            cwd=self.workdir, env=env, capture_output=True, text=True, timeout=60)

    def start(self):
        launcher = self.launch()
        assert launcher.returncode == 0, launcher.stdout + launcher.stderr + self.log()
        wait_until(lambda: os.path.exists(self.pidfile), what="the pid file")
        with open(self.pidfile) as f:
            self.pid = int(f.read())
        assert self.pid != os.getpid()
        wait_until(lambda: answering(self.url) or not alive(self.pid), what="/system")
        assert alive(self.pid), self.log()
        return self

    def stop(self):
        """SIGTERM to the pid the pid file names, as an init script does."""
        with open(self.pidfile) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not alive(pid), what="the daemon to exit")
        wait_until(lambda: not os.path.exists(self.pidfile), what="the pid file to go")

    def kill(self):
        if getattr(self, "pid", None) and alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)


def test_daemon_mode_answers_stops_by_pidfile_and_restarts(tmp_path):
    daemon = ForkingDaemon(tmp_path)
    try:
        daemon.start()
        # The daemon is detached: its parent is not this test.
        with open("/proc/%d/stat" % daemon.pid) as f:
            assert int(f.read().split(") ")[-1].split()[1]) != os.getpid()
        rest = RestClient(daemon.url)
        kept = use_the_server(rest, daemon.dicom_port)
        daemon.stop()
        log = daemon.log()
        assert "Server Shut Down." in log and "Traceback" not in log, log

        daemon.start()
        check_data(RestClient(daemon.url), kept)
        daemon.stop()
    finally:
        daemon.kill()


def test_daemon_that_cannot_open_its_index_says_so_to_its_launcher(tmp_path):
    """The index opens after the fork: twistd still reports the failure to
    the terminal that launched it, and exits non-zero."""
    daemon = ForkingDaemon(tmp_path)
    os.makedirs(os.path.join(daemon.workdir, "storage"))
    with open(os.path.join(daemon.workdir, "storage", "index.lmdb"), "w") as f:
        f.write("a file where the index folder should be")
    launcher = daemon.launch()
    assert launcher.returncode != 0
    # twistd passes the launcher the first 100 characters; the log has all.
    assert "FileExistsError" in launcher.stderr, launcher.stderr
    wait_until(lambda: "index.lmdb" in daemon.log(), what="the traceback in the log")
    assert not os.path.exists(daemon.pidfile)
