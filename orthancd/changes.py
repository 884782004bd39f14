"""The one stream of committed changes.

Every change the index commits becomes one event, published on the reactor
once the commit is durable, in commit order: the changes Orthanc writes to
its changes log (NewInstance, StableStudy, UpdatedMetadata...) and those it
only signals (Deleted, NewChildInstance, labels), plus the job events of the
job engine.  Whatever reacts to changes subscribes here (the stability
monitor, Lua callbacks, metrics, caches) instead of keeping a listener list
of its own.
"""
from orthancd.logs import logger

log = logger(__name__)

# Events that are not index changes.
JOB_SUBMITTED = "JobSubmitted"
JOB_SUCCESS = "JobSuccess"
JOB_FAILURE = "JobFailure"
LABEL_ADDED = "LabelAdded"
LABEL_REMOVED = "LabelRemoved"


class ChangeStream:
    """Subscribers are called with each event (an orthancd.index.base.Change),
    on the reactor thread, in commit order; one failing subscriber does not
    keep the event from the others."""

    def __init__(self):
        self._subscribers = []

    def subscribe(self, callback, change_types=None):
        """Call ``callback(event)`` for every event (or only those whose
        change_type is in ``change_types``); returns a function that
        unsubscribes."""
        entry = (callback, frozenset(change_types) if change_types else None)
        self._subscribers.append(entry)

        def unsubscribe():
            if entry in self._subscribers:
                self._subscribers.remove(entry)
        return unsubscribe

    def publish(self, events):
        for event in events:
            for callback, wanted in list(self._subscribers):
                if wanted is not None and event.change_type not in wanted:
                    continue
                try:
                    callback(event)
                except Exception:
                    log.failure("A subscriber failed on {change} {id}",
                                change=event.change_type, id=event.public_id)
