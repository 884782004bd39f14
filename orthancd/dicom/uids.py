"""New DICOM identifiers, shaped as the ones Orthanc 1.13.0 makes.

Orthanc asks DCMTK (dcmGenerateUniqueIdentifier) for UIDs under its site
root, one branch per level (".2" studies, ".3" series, ".4" instances),
followed by the host, the process, the time and a counter:
1.2.276.0.7230010.3.1.2.8323328.1608.1796241763.963880.
"""
import itertools
import os
import random
import socket
import threading
import time
import zlib

from orthancd.ids import ResourceLevel

SITE_ROOT = "1.2.276.0.7230010.3.1"
_LEVEL_BRANCH = {ResourceLevel.STUDY: "2", ResourceLevel.SERIES: "3",
                 ResourceLevel.INSTANCE: "4"}
_HOST_ID = zlib.crc32(socket.gethostname().encode("utf-8", "replace")) & 0x7FFFFFFF
_counter = itertools.count(random.SystemRandom().randrange(1, 1000000))
_lock = threading.Lock()


def generate_uid(level):
    """A new StudyInstanceUID, SeriesInstanceUID or SOPInstanceUID."""
    with _lock:
        number = next(_counter)
    return "%s.%s.%d.%d.%d.%d" % (SITE_ROOT, _LEVEL_BRANCH[level], _HOST_ID, os.getpid(),
                                  int(time.time()), number)
