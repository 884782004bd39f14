"""pydicom, imported at its first use, without the two optional packages
orthancd never uses through it.

At first use, not at start: pydicom brings numpy, Pillow and pylibjpeg
(some 22 MiB resident and a third of a second of CPU).  An idle daemon
needs none of them to answer its REST API; the first instance received,
the first association or the first image rendered imports them.  orthancd's
modules import pydicom inside the functions that need it, or are
themselves imported there (tests/test_idle_footprint.py checks what a
started daemon holds).

Without the two optional packages: pydicom 3 registers all its pixel-data
plugins when it is itself imported, and each plugin imports its codec
package when installed.  Two of those orthancd never asks pydicom for, yet
they would weigh on every process (some 23 MiB resident and 0.3 s of CPU):

  gdcm      pydicom's GDCM plugins.  orthancd decodes through pydicom with
            Pillow, pylibjpeg and pydicom's RLE only, naming them
            (orthancd/pixels/codecs.py: GDCM is no fallback through pydicom),
            and calls GDCM itself for 12-bit JPEG, importing it there.
  requests  pydicom.data's downloads of pydicom's own test files (pydicom
            falls back to urllib).

While pydicom is imported they are not importable (a None entry in
sys.modules is Python's documented way to say so; pydicom catches the
ImportError and records its GDCM plugins as unavailable), and importable
again afterwards.  Nothing is patched in pydicom: ``PydicomFirstImport``,
on ``sys.meta_path`` until pydicom is imported, runs pydicom's own loader
inside that guard, wherever the first ``import pydicom`` happens.  If
pydicom was imported before orthancd (a test process, a script), this
changes nothing but orthancd's two settings of pydicom (``configure``).
pydicom's dictionaries are made with the collector paused
(orthancd.collector; not frozen, as the daemon is running then).
"""
import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import threading

from orthancd import collector

DEFERRED = ("gdcm", "requests")


def _hidden_while(action):
    hidden = [name for name in DEFERRED if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None
    try:
        with collector.paused(freeze=False):
            return action()
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def configure(pydicom):
    """orthancd's settings of pydicom, made once it is imported."""
    # pydicom reports every oddity of real-world files through warnings and
    # its logger; the server would print them for each upload.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


class _GuardedLoader(importlib.abc.Loader):
    """pydicom's own loader, its execution wrapped in the guard; once done,
    the module names its own loader again, and ``done()`` is called."""

    def __init__(self, loader, done):
        self.loader = loader
        self._done = done

    def __getattr__(self, name):
        # What else importlib asks of a loader (resource readers...).
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        def execute():
            self.loader.exec_module(module)
            # Where the pixel-data plugins register.
            importlib.import_module("pydicom.pixels")
            configure(module)
        try:
            _hidden_while(execute)
        finally:
            module.__loader__ = self.loader
            module.__spec__.loader = self.loader
        self._done()


class PydicomFirstImport(importlib.abc.MetaPathFinder):
    """Finds pydicom as the finders after it would, with a guarded loader;
    leaves ``sys.meta_path`` once pydicom is imported (a failed import, or
    a mere ``importlib.util.find_spec``, leaves it in place for the next)."""

    def __init__(self):
        self._lock = threading.Lock()

    def find_spec(self, name, path=None, target=None):
        if name != "pydicom":
            return None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _GuardedLoader(spec.loader, self._leave)
        return spec

    def _leave(self):
        with self._lock:
            if self in sys.meta_path:
                sys.meta_path.remove(self)


def install():
    if "pydicom" in sys.modules:
        configure(sys.modules["pydicom"])
        return
    if not any(isinstance(finder, PydicomFirstImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, PydicomFirstImport())


install()
