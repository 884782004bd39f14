"""What an idle orthancd keeps out of its process: the codecs and clients it
imports at first use, not at start (issue #10; the figures are in
bench/startup_bench.py, never asserted here).

Two views of the same daemon:
  - the modules twistd's path to the service tree imports (a subprocess
    doing what ``twistd orthancd`` does up to makeService);
  - the shared libraries mapped into a started, idle daemon
    (/proc/<pid>/maps), and what the first use then loads.
"""
import json
import os
import subprocess
import sys

import pytest

from tests.support.daemon import ROOT, Daemon, read_sample

# Imported at first use: pydicom and what it brings (numpy, Pillow,
# pylibjpeg), pynetdicom, orthancd's modules that import them at their top
# (orthancd.lazy_modules), GDCM (12-bit JPEG; pydicom never uses it), the
# peers' HTTP client, the Lua engine (off here), and what pydicom's test-file
# downloader would bring (requests and its character-set detection).
DEFERRED_MODULES = ("pydicom", "numpy", "PIL", "pylibjpeg", "pynetdicom",
                    "orthancd.dicom.reading", "orthancd.dicom.header_scan",
                    "orthancd.dicom.json_tags", "orthancd.net.acceptor", "orthancd.net.scu",
                    "orthancd.pixels.extraction", "orthancd.modification.jobs",
                    "orthancd.transcoding.transcoder", "orthancd.creation.create_dicom",
                    "gdcm", "requests", "charset_normalizer", "urllib3", "treq",
                    "twisted.web.client", "orthancd.peers", "orthancd.lua_service",
                    "orthancd.lua")

# The same, as shared objects (pure-Python modules map nothing).
DEFERRED_LIBRARIES = ("/numpy/", "/PIL/", "/_gdcm/", "libgdcm", "/charset_normalizer/",
                      "/lupa/")

SERVICE_TREE_MODULES = r"""
import json, sys
from twisted.scripts.twistd import ServerOptions
options = ServerOptions()
options.parseOptions(["orthancd", "--config", sys.argv[1]])
plugin = options.loadedPlugins[options.subCommand]
plugin.makeService(options.subOptions)
print(json.dumps(sorted(sys.modules)))
"""


def _configuration(folder, **options):
    path = os.path.join(folder, "orthanc.json")
    with open(path, "w") as f:
        json.dump(dict({"StorageDirectory": os.path.join(folder, "storage"),
                        "HttpPort": 0, "DicomPort": 0}, **options), f)
    return path


def _loaded_libraries(pid):
    with open("/proc/%d/maps" % pid) as f:
        return {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}


def _mapped(libraries, marker):
    return sorted(path for path in libraries if marker in path)


def test_service_tree_imports_no_deferred_module(tmp_path):
    result = subprocess.run([sys.executable, "-c", SERVICE_TREE_MODULES,
                             _configuration(str(tmp_path))],
                            cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=ROOT),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    modules = set(json.loads(result.stdout.splitlines()[-1]))
    assert {"orthancd.rest.app", "orthancd.net.server", "orthancd.ingest"} <= modules
    assert [name for name in DEFERRED_MODULES if name in modules] == []


def test_service_tree_leaves_the_dicom_dictionary_unread(tmp_path):
    """DCMTK's dictionary (2.4 MB once parsed) is read at the first lookup
    of a tag by name or number, not at start."""
    script = SERVICE_TREE_MODULES.replace(
        "print(json.dumps(sorted(sys.modules)))",
        "from orthancd.dicom import dictionary\n"
        "print(json.dumps(dictionary._tables is None))\n"
        "print(json.dumps(dictionary.tag_name(0x00100010)))\n")
    result = subprocess.run([sys.executable, "-c", script, _configuration(str(tmp_path))],
                            cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=ROOT),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()[-2:]] == [True,
                                                                             "PatientName"]


def test_service_tree_with_lua_imports_the_lua_engine(tmp_path):
    result = subprocess.run([sys.executable, "-c", SERVICE_TREE_MODULES,
                             _configuration(str(tmp_path), ExecuteLuaEnabled=True)],
                            cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=ROOT),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    modules = set(json.loads(result.stdout.splitlines()[-1]))
    assert {"orthancd.lua_service", "orthancd.lua"} <= modules


@pytest.fixture(scope="module")
def idle_daemon(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp("idle"), ExecuteLuaEnabled=False).start()
    yield daemon
    daemon.stop()


def test_idle_daemon_maps_no_deferred_library(idle_daemon):
    libraries = _loaded_libraries(idle_daemon.process.pid)
    assert _mapped(libraries, "/lmdb/")  # the view works: the index's library is there
    assert [path for marker in DEFERRED_LIBRARIES for path in _mapped(libraries, marker)] == []
    # /system names the versions of what it has not imported yet.
    import pydicom
    import pynetdicom
    versions = idle_daemon.client().get_json("/system")["ThirdPartyVersions"]
    assert (versions["pydicom"], versions["pynetdicom"]) == (pydicom.__version__,
                                                             pynetdicom.__version__)


def test_first_association_loads_the_dicom_side(idle_daemon):
    """The DICOM listener answers its first association although pynetdicom
    and pydicom come with it (orthancd.net.server imports them then)."""
    assert not _mapped(_loaded_libraries(idle_daemon.process.pid), "/numpy/")
    echo = subprocess.run(["/usr/bin/echoscu", "-aec", "ORTHANCD", "127.0.0.1",
                           str(idle_daemon.dicom_port)], capture_output=True, text=True,
                          timeout=60)
    assert echo.returncode == 0, echo.stderr
    assert _mapped(_loaded_libraries(idle_daemon.process.pid), "/numpy/")


def test_first_12_bit_jpeg_loads_gdcm_and_decodes(idle_daemon):
    """The 12-bit JPEG sample is one Pillow and pylibjpeg refuse: GDCM,
    imported at this first use, decodes it (its pixels are compared with
    Orthanc 1.13.0's in tests/test_pixels_parity.py)."""
    rest = idle_daemon.client()
    assert not _mapped(_loaded_libraries(idle_daemon.process.pid), "libgdcm")
    stored = rest.upload(read_sample("TransferSyntaxes", "1.2.840.10008.1.2.4.51.dcm"))
    answer = rest.get("/instances/%s/frames/0/image-uint16" % stored["ID"],
                      headers={"Accept": "image/png"})
    assert answer.status == 200
    assert answer.body.startswith(b"\x89PNG")
    assert _mapped(_loaded_libraries(idle_daemon.process.pid), "libgdcm")
