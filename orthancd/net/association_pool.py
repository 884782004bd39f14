"""Associations kept open between SCU operations (``DicomAssociationCloseDelay``).

As Orthanc does, after an operation towards a modality orthancd keeps the
association open for ``DicomAssociationCloseDelay`` seconds and reuses it
for the next operation to the same modality (same remote AET, host, port
and local AET) when it can serve it; otherwise the idle association is
released and a new one opened.  Only the last association to a modality is
kept, and opening a new one first releases the idle ones to the same peer:
many SCPs (DCMTK's storescp) serve one association at a time and would
leave the new one waiting until the idle one expires.

An idle association that the peer releases, aborts or drops leaves the pool
at once; the reactor's shutdown releases all of them (aborting those whose
peer does not answer within ``SHUTDOWN_GRACE`` seconds).  Time comes from
an ``IReactorTime`` so that tests can drive it with ``task.Clock``.
"""
import logging
import weakref
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.interfaces import IReactorCore

log = logging.getLogger(__name__)

# How long the shutdown waits for the peers' A-RELEASE-RP before aborting.
SHUTDOWN_GRACE = 2.0


@dataclass(frozen=True)
class PoolKey:
    """Which associations are interchangeable: same peer, same identities."""
    remote_aet: str
    host: str
    port: int
    local_aet: str

    @classmethod
    def for_modality(cls, modality, local_aet):
        return cls(str(modality["AET"]), str(modality["Host"]), int(modality["Port"]),
                   str(local_aet))

    @property
    def peer(self):
        return self.host, self.port


def can_serve(association, contexts, scp_roles=()):
    """Whether an open association negotiated everything an operation
    would propose: then a new negotiation with the same peer could not
    accept more (and a compressed instance is not transcoded only because
    the association at hand was opened for uncompressed ones)."""
    wanted = {(abstract, tuple(syntaxes)) for abstract, syntaxes in contexts}
    return (wanted <= association.proposed_contexts
            and set(scp_roles) <= association.scp_roles)


@dataclass
class _Idle:
    association: object
    expiry: object  # IDelayedCall releasing it


class AssociationPool:

    def __init__(self, clock, shutdown_grace=SHUTDOWN_GRACE):
        self._clock = clock
        self._shutdown_grace = shutdown_grace
        self._idle = {}        # PoolKey -> _Idle
        self._releasing = {}   # association -> Deferred of its release
        self._closed = False

    def idle_count(self):
        return len(self._idle)

    async def acquire(self, key, usable, open_new):
        """An association for ``key``: the idle one when ``usable(it)``,
        else a new one from ``open_new()`` (a Deferred or coroutine)."""
        idle = self._take(key)
        if idle is not None:
            if idle.is_established and usable(idle):
                return idle
            await self._release(idle)
        for other in [k for k in self._idle if k.peer == key.peer]:
            association = self._take(other)
            if association is not None:
                await self._release(association)
        association = await open_new()
        # Registered once per association: the pool forgets it when it ends.
        association.ended.addCallback(lambda _: self._forget(association))
        return association

    def give_back(self, key, association, delay):
        """Keep ``association`` idle for ``delay`` seconds, or release it now
        (delay 0, or the pool is shut down).  The Deferred fires when the
        association is kept or released."""
        if not association.is_established:
            return defer.succeed(None)
        if self._closed or not delay or delay <= 0:
            return self._release(association)
        previous = self._take(key)
        if previous is not None and previous is not association:
            self._release(previous)  # a concurrent operation's: keep the last one
        expiry = self._clock.callLater(delay, self._expire, key, association)
        self._idle[key] = _Idle(association, expiry)
        return defer.succeed(None)

    def close_all(self):
        """Release every idle association; later ones are released as soon
        as their operation ends.  Fires when all releases are over."""
        self._closed = True
        for key in list(self._idle):
            self._release(self._take(key))
        if not self._releasing:
            return defer.succeed(None)
        releasing = dict(self._releasing)
        stragglers = self._clock.callLater(self._shutdown_grace, self._abort, releasing)
        done = defer.DeferredList(list(releasing.values()))

        def finished(result):
            if stragglers.active():
                stragglers.cancel()
            return None

        return done.addBoth(finished)

    # -- internals ---------------------------------------------------------

    def _take(self, key):
        idle = self._idle.pop(key, None)
        if idle is None:
            return None
        if idle.expiry.active():
            idle.expiry.cancel()
        return idle.association

    def _forget(self, association):
        for key, idle in list(self._idle.items()):
            if idle.association is association:
                self._take(key)

    def _expire(self, key, association):
        idle = self._idle.get(key)
        if idle is not None and idle.association is association:
            del self._idle[key]
            self._release(association)

    def _release(self, association):
        if association in self._releasing:
            return self._releasing[association]
        if not association.is_established:
            return defer.succeed(None)
        d = defer.maybeDeferred(association.release)
        d.addErrback(lambda failure: log.debug("release failed: %s", failure.getErrorMessage()))
        if not d.called:
            self._releasing[association] = d
            d.addBoth(self._released, association)
        return d

    def _released(self, result, association):
        self._releasing.pop(association, None)
        return result

    @staticmethod
    def _abort(releasing):
        for association, d in releasing.items():
            if not d.called:
                log.warning("no A-RELEASE-RP from %s at shutdown, aborting",
                            association.remote_aet)
                association.abort()


_POOLS = weakref.WeakKeyDictionary()


def association_pool(reactor):
    """The pool of the SCU associations made through ``reactor``, released
    before the reactor shuts down."""
    pool = _POOLS.get(reactor)
    if pool is None:
        pool = _POOLS[reactor] = AssociationPool(reactor)
        if IReactorCore.providedBy(reactor):
            reactor.addSystemEventTrigger("before", "shutdown", pool.close_all)
    return pool
