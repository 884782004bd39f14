"""Compiled bytecode for the orthancd daemons a bench starts from a source
tree, as an installed orthancd has it.

``pip install`` compiles orthancd's modules.  A daemon started from the
source tree instead compiles each module it imports, at every start, when
Python may not write the bytecode beside the sources
(PYTHONDONTWRITEBYTECODE, set on some machines): some 0.08 s at the start
and more at the first upload (the modules reading DICOM), which an installed
server does not pay.  ``compiled_environment`` compiles the tree once per
bench run, in its __pycache__ folders (as scripts/test does; git ignores
them).  Not in a folder of its own (PYTHONPYCACHEPREFIX): Python would then
look there for every package's bytecode, and compile Twisted, pydicom and
numpy anew.
"""
import os
import subprocess
import sys

_compiled = set()  # the source trees compiled in this run


def compiled_environment(env, code_root):
    """A copy of ``env`` (PYTHONPATH already naming ``code_root``) for a
    daemon that runs orthancd from ``code_root``'s compiled bytecode."""
    env = dict(env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if code_root not in _compiled:
        subprocess.run([sys.executable, "-m", "compileall", "-q",
                        os.path.join(code_root, "orthancd"), os.path.join(code_root, "twisted")],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        _compiled.add(code_root)
    return env
