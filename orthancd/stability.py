"""Stable resources: a patient, study or series that received no new instance
for StableAge seconds becomes stable and a Stable* change is logged, as in
Orthanc.  Like Orthanc, the list of unstable resources lives in memory: after
a restart everything is stable.
"""
import collections
import time

from twisted.application import service
from twisted.internet import task
from orthancd.logs import logger

from orthancd.ids import ResourceLevel

_TRACKED = (ResourceLevel.SERIES, ResourceLevel.STUDY, ResourceLevel.PATIENT)


class StabilityMonitor(service.Service):
    log = logger(__name__)

    def __init__(self, index, stable_age, reactor, clock=time.monotonic):
        self.index = index
        self.stable_age = float(stable_age)
        self.reactor = reactor
        self._clock = clock
        # (level, public_id) -> deadline; insertion order == deadline order
        self._unstable = collections.OrderedDict()
        self._loop = None
        self.listeners = []  # callables (change_type, level, public_id) after logging

    def is_stable(self, level, public_id):
        return (level, public_id) not in self._unstable

    def instance_stored(self, outcome, summary=None, origin=None):
        deadline = self._clock() + self.stable_age
        patient, study, series = outcome.ids[0], outcome.ids[1], outcome.ids[2]
        # Series first so that, expiring together, they log Series, Study, Patient.
        for level, public_id in ((ResourceLevel.SERIES, series), (ResourceLevel.STUDY, study),
                                 (ResourceLevel.PATIENT, patient)):
            self._unstable.pop((level, public_id), None)
            self._unstable[(level, public_id)] = deadline

    def forget(self, level, public_id):
        self._unstable.pop((level, public_id), None)

    def startService(self):
        super().startService()
        self._loop = task.LoopingCall(self.check)
        self._loop.clock = self.reactor
        self._loop.start(min(1.0, max(self.stable_age / 4, 0.1)), now=False)

    def stopService(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return super().stopService()

    def check(self):
        now = self._clock()
        expired = []
        while self._unstable:
            key, deadline = next(iter(self._unstable.items()))
            if deadline > now:
                break
            del self._unstable[key]
            level, public_id = key
            if self.index.exists(public_id, level):
                expired.append(("Stable" + level.title, level, public_id))
        if expired:
            d = self.index.log_changes(expired)
            d.addCallback(self._notify)
            d.addErrback(lambda f: self.log.failure("Cannot log stable resources", f))

    def _notify(self, changes):
        for change in changes:
            for listener in self.listeners:
                listener(change)
