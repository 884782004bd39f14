"""Compiled bytecode for the orthancd daemons a bench starts from a source
tree, as an installed orthancd has it.

``pip install`` compiles orthancd's modules.  A daemon started from the
source tree instead compiles each module it imports, at every start, when
Python may not write the bytecode beside the sources
(PYTHONDONTWRITEBYTECODE, set on some machines): some 0.08 s at the start
and more at the first upload (the modules reading DICOM), which an installed
server does not pay.  ``compile_tree`` compiles the tree once per bench run,
in its __pycache__ folders (as scripts/test does; git ignores them), where
Python reads bytecode even when it may not write it.  Not in a folder of
its own (PYTHONPYCACHEPREFIX): Python would then look there for every
package's bytecode, and compile Twisted, pydicom and numpy anew.
"""
import compileall
import os

_compiled = set()  # the source trees compiled in this run


def compile_tree(code_root):
    """Compile orthancd's modules (and its twistd plugin) in ``code_root``."""
    if code_root in _compiled:
        return
    for folder in ("orthancd", "twisted"):
        compileall.compile_dir(os.path.join(code_root, folder), quiet=1)
    _compiled.add(code_root)
