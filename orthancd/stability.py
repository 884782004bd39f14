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

from orthancd.index.base import ChangeType

class StabilityMonitor(service.Service):
    log = logger(__name__)

    def __init__(self, index, stable_age, reactor, changes, clock=time.monotonic):
        """Follows ``changes`` (the ChangeStream): a new child makes a
        resource unstable, a deletion forgets it."""
        self.index = index
        self.stable_age = float(stable_age)
        self.reactor = reactor
        self._clock = clock
        # (level, public_id) -> deadline; insertion order == deadline order
        self._unstable = collections.OrderedDict()
        self._loop = None
        changes.subscribe(self._child_added, (ChangeType.NewChildInstance.name,))
        changes.subscribe(self._deleted, (ChangeType.Deleted.name,))

    def is_stable(self, level, public_id):
        return (level, public_id) not in self._unstable

    def _child_added(self, change):
        # The index signals the series, then the study, then the patient: in
        # that order they log their Stable* changes when expiring together.
        key = (change.level, change.public_id)
        self._unstable.pop(key, None)
        self._unstable[key] = self._clock() + self.stable_age

    def _deleted(self, change):
        self._unstable.pop((change.level, change.public_id), None)

    def set_stable_status(self, public_id, stable):
        """Lua's SetStableStatus: make a patient, study or series stable at
        once (logging its Stable* change) or unstable again; whether its
        status changed, None for an unknown resource."""
        from orthancd.ids import ResourceLevel
        for level in (ResourceLevel.PATIENT, ResourceLevel.STUDY, ResourceLevel.SERIES):
            if self.index.exists(public_id, level):
                break
        else:
            return None
        key = (level, public_id)
        if stable:
            if key not in self._unstable:
                return False
            del self._unstable[key]
            d = self.index.log_changes([("Stable" + level.title, level, public_id)])
            d.addErrback(lambda f: self.log.failure("Cannot log a stable resource", f))
            return True
        if key in self._unstable:
            return False
        self._unstable[key] = self._clock() + self.stable_age
        return True

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
            d.addErrback(lambda f: self.log.failure("Cannot log stable resources", f))
