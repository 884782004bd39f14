"""The cyclic garbage collector, paused while the process makes what it
keeps for its whole life.

Importing orthancd and its libraries, then building the routes and the
services, makes some 10^5 objects (modules, functions, dictionaries) that
live as long as the process: none of them is garbage, yet the collector
walks them again and again while they are made, several full passes in
all, a tenth of the start's CPU time.  While paused, objects are made as
usual; when the collector resumes, what exists then is frozen out of its
sight (gc.freeze: moved to the permanent generation), so that its next
passes do not walk it either.
"""
import contextlib
import gc


@contextlib.contextmanager
def paused(freeze=True):
    """``freeze``: False for what is made while the daemon runs, when live
    objects of requests would be frozen too (their cycles never collected)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if collecting:
            gc.enable()
