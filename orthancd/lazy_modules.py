"""Modules imported at their first use, for the modules an idle daemon
loads.

orthancd's DICOM work (parsing, networking, pixels, modification) rests on
pydicom, numpy, Pillow and pynetdicom, about 30 MiB resident and a third of
a second to import.  The daemon starts without them: the modules that
import them at their top (orthancd.dicom.reading, orthancd.net.scu,
orthancd.pixels.extraction...) are imported by the REST routes, the jobs
and the server only when a request, a job or an association needs them.

Two forms, by how often a module's names are used:

  - a name used in one or two functions is imported in those functions;
  - a module whose names many functions use is bound once, at the top, to a
    ``LazyModule``: ``scu = LazyModule("orthancd.net.scu")``, then
    ``scu.query(...)`` as before.  The first attribute read imports it (an
    ordinary import: Python's import locks make it safe from any thread).

Neither is for code run per element of a data set: such code lives in the
modules that import pydicom at their top.
tests/test_idle_footprint.py checks that a started daemon holds none of
them.
"""
import importlib


class LazyModule:
    """Stands for the module ``name``, imported at the first attribute read."""

    __slots__ = ("_name", "_module")

    def __init__(self, name):
        self._name = name
        self._module = None

    def __getattr__(self, attribute):
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attribute)

    def __repr__(self):
        state = "imported" if self._module is not None else "not imported yet"
        return "<LazyModule %s, %s>" % (self._name, state)
