"""The installed package carries its data: what pip installs must run."""
import subprocess
import sys
import zipfile

from tests.support.daemon import ROOT


def test_wheel_ships_data_files_and_plugin(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), ROOT], check=True, capture_output=True)
    wheel = next(tmp_path.glob("orthancd-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/orthancd_plugin.py" in names
    assert "orthancd/default_configuration.json" in names
    assert any(n.startswith("orthancd/dicom/data/") and n.endswith(".dic.gz") for n in names)
    assert "orthancd/tap.py" in names and "orthancd/net/server.py" in names
    # Nothing of Twisted's own plugins package is shipped over it.
    assert "twisted/plugins/__init__.py" not in names
