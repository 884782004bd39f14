"""A developer's editable install (pip install -e .) must let twistd find
the orthancd plugin: Twisted discovers plugins by looking for twisted/plugins
folders on sys.path, which setuptools' default editable import hook does not
extend."""
import json
import os
import shutil
import subprocess
import sys

from tests.support.daemon import ROOT

PROBE = '''from twisted.application.service import ServiceMaker

probe = ServiceMaker("orthancd-editable-probe", "orthancd.tap", "only in this copy",
                     "orthancd-editable-probe")
'''

LIST_PLUGINS = '''import json, orthancd
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
print(json.dumps({"plugins": sorted(p.tapname for p in getPlugins(IServiceMaker)),
                  "orthancd": orthancd.__file__}))
'''


def test_editable_install_lets_twistd_find_the_plugin(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), project / name)
    for name in ("orthancd", "twisted"):
        shutil.copytree(os.path.join(ROOT, name), project / name,
                        ignore=shutil.ignore_patterns("__pycache__", "dropin.cache"))
    # A plugin that only this copy has: twistd lists it only if it looks in
    # the copy's own twisted/plugins folder (whatever else is installed).
    (project / "twisted" / "plugins" / "orthancd_editable_probe.py").write_text(PROBE)

    venv = tmp_path / "venv"
    # The machine's packages (Twisted, pip, setuptools) serve the venv.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps",
                              "--no-build-isolation", "--disable-pip-version-check",
                              "-e", str(project)], env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr

    # Run from elsewhere: the current folder must not be what finds the code.
    found = subprocess.run([python, "-c", LIST_PLUGINS], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True)
    answer = json.loads(found.stdout.splitlines()[-1])
    assert {"orthancd", "orthancd-editable-probe"} <= set(answer["plugins"])
    assert answer["orthancd"] == str(project / "orthancd" / "__init__.py")

    help_text = subprocess.run(
        [python, "-c", "from twisted.scripts.twistd import run; run()", "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True).stdout
    assert "orthancd-editable-probe" in help_text
