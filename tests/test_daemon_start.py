"""Starting the daemon: embedded default, configuration files, bad configurations."""
import os
import subprocess
import sys
import time
import urllib.request

from tests.support.daemon import ROOT, free_port

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]


def run_twistd(args, cwd, timeout=30):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(TWISTD + args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_malformed_configuration_stops_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "HttpPort" : 8042\n  "Name" : "x"\n}\n')
    result = run_twistd(["orthancd", "--config", str(bad)], tmp_path)
    assert result.returncode != 0
    assert "%s:3:3" % bad in result.stderr
    assert "Usage:" not in result.stderr


def test_wrong_option_type_is_refused(tmp_path):
    bad = tmp_path / "types.json"
    bad.write_text('{ "HttpPort" : "eighty" }')
    result = run_twistd(["orthancd", "--config", str(bad)], tmp_path)
    assert result.returncode != 0
    assert "HttpPort" in result.stderr


def test_embedded_default_stores_in_a_local_folder(tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT)
    # Only the ports are overridden (8042/4242 may be taken on a test machine).
    process = subprocess.Popen(TWISTD + ["orthancd", "--http-endpoint", "tcp:%d" % port,
                                         "--dicom-endpoint", "tcp:%d" % free_port()],
                               cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/system" % port, timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.time() < deadline and process.poll() is None
                time.sleep(0.1)
        assert (tmp_path / "OrthancStorage").is_dir()
    finally:
        process.terminate()
        process.wait(20)
