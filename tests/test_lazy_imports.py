"""The two ways orthancd imports its DICOM libraries at their first use
(orthancd.lazy_modules, orthancd.pydicom_import).  What a started daemon
holds is checked in tests/test_idle_footprint.py."""
import json
import os
import subprocess
import sys
import threading

from orthancd.lazy_modules import LazyModule
from tests.support.daemon import ROOT

PROBE = """
import json
import time
RUNS.append(1)
time.sleep(0.05)  # long enough for the other threads to ask meanwhile
VALUE = 42
"""


def _probe_module(tmp_path, monkeypatch, name):
    (tmp_path / (name + ".py")).write_text("from %s_runs import RUNS\n%s" % (name, PROBE))
    (tmp_path / (name + "_runs.py")).write_text("RUNS = []\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_lazy_module_imports_at_the_first_attribute_read(tmp_path, monkeypatch):
    _probe_module(tmp_path, monkeypatch, "lazy_probe_first")
    module = LazyModule("lazy_probe_first")
    assert "lazy_probe_first" not in sys.modules
    assert "not imported yet" in repr(module)
    assert module.VALUE == 42
    assert sys.modules["lazy_probe_first"].VALUE == 42
    assert module.json is sys.modules["json"]
    assert "imported" in repr(module) and "not" not in repr(module)


def test_lazy_module_runs_the_module_once_for_threads_side_by_side(tmp_path, monkeypatch):
    _probe_module(tmp_path, monkeypatch, "lazy_probe_threads")
    module = LazyModule("lazy_probe_threads")
    values = []
    threads = [threading.Thread(target=lambda: values.append(module.VALUE)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert values == [42] * 8
    assert sys.modules["lazy_probe_threads_runs"].RUNS == [1]


def test_lazy_module_reports_a_missing_attribute(tmp_path, monkeypatch):
    _probe_module(tmp_path, monkeypatch, "lazy_probe_missing")
    module = LazyModule("lazy_probe_missing")
    try:
        module.NOT_THERE
    except AttributeError as e:
        assert "NOT_THERE" in str(e)
    else:
        raise AssertionError("no AttributeError")


FIRST_PYDICOM_IMPORT = r"""
import importlib.machinery, json, logging, sys
import orthancd
from orthancd.pydicom_import import PydicomFirstImport
import importlib.util
importlib.util.find_spec("pydicom")   # a mere look leaves the guard in place
before = {"pydicom": "pydicom" in sys.modules,
          "finder": any(isinstance(f, PydicomFirstImport) for f in sys.meta_path)}
from pydicom.dataset import Dataset   # the first import, from anywhere
import pydicom
print(json.dumps({
    "before": before,
    "finder_after": any(isinstance(f, PydicomFirstImport) for f in sys.meta_path),
    "gdcm": "gdcm" in sys.modules and sys.modules["gdcm"] is not None,
    "gdcm_entry": "gdcm" in sys.modules,
    "requests": "requests" in sys.modules,
    "pixels": "pydicom.pixels" in sys.modules,
    "loader": type(pydicom.__loader__).__name__,
    "spec_loader": type(pydicom.__spec__.loader).__name__,
    "validation": pydicom.config.settings.reading_validation_mode == pydicom.config.IGNORE,
    "log_level": logging.getLogger("pydicom").level,
    "dataset": Dataset().__class__.__name__,
}))
"""


def test_the_first_import_of_pydicom_is_guarded_wherever_it_happens(tmp_path):
    result = subprocess.run([sys.executable, "-c", FIRST_PYDICOM_IMPORT], cwd=str(tmp_path),
                            env=dict(os.environ, PYTHONPATH=ROOT),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout.splitlines()[-1])
    assert facts["before"] == {"pydicom": False, "finder": True}
    assert facts["finder_after"] is False  # it leaves once used
    # The optional packages stayed out, and importable again afterwards
    # (no None entry left in sys.modules).
    assert (facts["gdcm"], facts["gdcm_entry"], facts["requests"]) == (False, False, False)
    assert facts["pixels"] is True
    # pydicom names its own loader, and carries orthancd's settings.
    assert facts["loader"] == facts["spec_loader"] == "SourceFileLoader"
    assert facts["validation"] is True
    assert facts["log_level"] == 40  # logging.ERROR
    assert facts["dataset"] == "Dataset"


def test_saved_modification_jobs_name_their_classes():
    from orthancd.modification import jobs
    from orthancd.modification.saved_jobs import SAVED_JOB_CLASSES
    assert {getattr(jobs, name).job_type: name for name in SAVED_JOB_CLASSES.values()} == \
        SAVED_JOB_CLASSES
