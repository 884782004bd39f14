"""pydicom, imported without the two optional packages orthancd never uses
through it.

pydicom 3 registers all its pixel-data plugins when it is itself imported,
and each plugin imports its codec package when installed.  Two of those
orthancd never asks pydicom for, yet they would weigh on every process
(some 23 MiB resident and 0.3 s of CPU at each start):

  gdcm      pydicom's GDCM plugins.  orthancd decodes through pydicom with
            Pillow, pylibjpeg and pydicom's RLE only, naming them
            (orthancd/pixels/codecs.py: GDCM is no fallback through pydicom),
            and calls GDCM itself for 12-bit JPEG, importing it there.
  requests  pydicom.data's downloads of pydicom's own test files (pydicom
            falls back to urllib).

While pydicom is imported they are not importable (a None entry in
sys.modules is Python's documented way to say so; pydicom catches the
ImportError and records its GDCM plugins as unavailable), and importable
again afterwards.  Nothing is patched in pydicom.  If pydicom was imported
before orthancd (a test process, a script), this changes nothing.
pydicom's dictionaries are made with the collector paused (orthancd.collector).
"""
import sys

from orthancd import collector

DEFERRED = ("gdcm", "requests")


def _import_pydicom():
    hidden = [name for name in DEFERRED if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None
    try:
        with collector.paused():
            import pydicom  # noqa: F401
            import pydicom.pixels  # noqa: F401  (where the plugins register)
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


if "pydicom" not in sys.modules:
    _import_pydicom()
