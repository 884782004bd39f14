"""The SCU association pool (DicomAssociationCloseDelay), on a task.Clock."""
from twisted.internet import defer, task

from orthancd.net.association_pool import AssociationPool, PoolKey, can_serve

VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
PACS = PoolKey("PACS", "10.0.0.1", 104, "ORTHANC")


class FakeAssociation:
    """What the pool sees of a client Association."""

    def __init__(self, contexts=((VERIFICATION, SYNTAXES),), answer_release=True):
        self.remote_aet = "PACS"
        self.proposed_contexts = frozenset(contexts)
        self.scp_roles = frozenset()
        self.ended = defer.Deferred()
        self.is_established = True
        self.releases = 0
        self.aborts = 0
        self._answer_release = answer_release
        self._released = None

    def release(self):
        self.releases += 1
        self._released = defer.Deferred()
        if self._answer_release:
            self.end()
        return self._released

    def abort(self):
        self.aborts += 1
        self.end(error=True)

    def end(self, error=False):
        """The association is over (the peer answered, aborted, or closed)."""
        self.is_established = False
        if self._released is not None and not self._released.called:
            if error:
                self._released.errback(RuntimeError("aborted"))
            else:
                self._released.callback(None)
        if not self.ended.called:
            self.ended.callback(None)


class Peer:
    """Opens FakeAssociations and remembers them."""

    def __init__(self, **options):
        self.opened = []
        self.options = options

    def open(self):
        association = FakeAssociation(**self.options)
        self.opened.append(association)
        return defer.succeed(association)


def acquire(pool, peer, key=PACS, usable=lambda a: True):
    d = defer.ensureDeferred(pool.acquire(key, usable, peer.open))
    return d.result


def test_reused_within_the_delay_then_released():
    clock, peer = task.Clock(), Peer()
    pool = AssociationPool(clock)
    first = acquire(pool, peer)
    pool.give_back(PACS, first, 5)
    clock.advance(4.9)
    assert acquire(pool, peer) is first and first.releases == 0
    pool.give_back(PACS, first, 5)
    clock.advance(4.9)  # the delay restarts after each operation
    assert first.releases == 0 and pool.idle_count() == 1
    clock.advance(0.2)
    assert first.releases == 1 and pool.idle_count() == 0
    second = acquire(pool, peer)
    assert second is not first and len(peer.opened) == 2


def test_zero_delay_releases_at_once():
    clock, peer = task.Clock(), Peer()
    pool = AssociationPool(clock)
    association = acquire(pool, peer)
    pool.give_back(PACS, association, 0)
    assert association.releases == 1 and pool.idle_count() == 0
    assert not clock.getDelayedCalls()


def test_an_association_that_cannot_serve_is_replaced():
    clock, peer = task.Clock(), Peer()
    pool = AssociationPool(clock)
    first = acquire(pool, peer)
    pool.give_back(PACS, first, 5)
    second = acquire(pool, peer, usable=lambda a: False)
    assert second is not first and first.releases == 1
    assert not clock.getDelayedCalls()  # the expiry of the first is cancelled


def test_an_association_ended_while_idle_leaves_the_pool():
    clock, peer = task.Clock(), Peer()
    pool = AssociationPool(clock)
    first = acquire(pool, peer)
    pool.give_back(PACS, first, 5)
    first.end()  # the peer released or aborted it, or the connection dropped
    assert pool.idle_count() == 0 and not clock.getDelayedCalls()
    second = acquire(pool, peer)
    assert second is not first and first.releases == 0


def test_a_new_association_to_the_same_peer_releases_the_idle_one():
    clock, peer = task.Clock(), Peer()
    pool = AssociationPool(clock)
    first = acquire(pool, peer)
    pool.give_back(PACS, first, 5)
    other_identity = PoolKey("PACS", "10.0.0.1", 104, "OTHERAET")
    second = acquire(pool, peer, key=other_identity)
    assert second is not first and first.releases == 1
    elsewhere = PoolKey("PACS", "10.0.0.2", 104, "ORTHANC")
    pool.give_back(other_identity, second, 5)
    third = acquire(pool, peer, key=elsewhere)
    assert third is not second and second.releases == 0


def test_concurrent_operations_keep_the_last_association():
    clock, peer = task.Clock(), Peer()
    pool = AssociationPool(clock)
    first, second = acquire(pool, peer), acquire(pool, peer)
    assert first is not second
    pool.give_back(PACS, first, 5)
    pool.give_back(PACS, second, 5)
    assert first.releases == 1 and second.releases == 0
    assert acquire(pool, peer) is second


def test_shutdown_releases_idle_ones_and_aborts_silent_peers():
    clock = task.Clock()
    pool = AssociationPool(clock, shutdown_grace=2)
    polite, silent = Peer(), Peer(answer_release=False)
    answering = acquire(pool, polite)
    mute = acquire(pool, silent, key=PoolKey("MUTE", "10.0.0.9", 104, "ORTHANC"))
    busy = acquire(pool, polite, key=PoolKey("BUSY", "10.0.0.8", 104, "ORTHANC"))
    pool.give_back(PACS, answering, 5)
    pool.give_back(PoolKey("MUTE", "10.0.0.9", 104, "ORTHANC"), mute, 5)
    closing = pool.close_all()
    assert answering.releases == 1 and mute.releases == 1
    assert not closing.called
    clock.advance(2)
    assert mute.aborts == 1 and closing.called
    # An operation still running at shutdown is released when it ends.
    pool.give_back(PoolKey("BUSY", "10.0.0.8", 104, "ORTHANC"), busy, 5)
    assert busy.releases == 1 and pool.idle_count() == 0


def test_can_serve_needs_everything_already_negotiated():
    association = FakeAssociation(contexts=[(VERIFICATION, SYNTAXES), (CT, SYNTAXES)])
    assert can_serve(association, [(VERIFICATION, list(SYNTAXES))])
    assert can_serve(association, [(CT, SYNTAXES), (VERIFICATION, SYNTAXES)])
    # A compressed CT must not be transcoded because the association at
    # hand was opened for uncompressed ones: a new one proposes its syntax.
    assert not can_serve(association, [(CT, ("1.2.840.10008.1.2.4.70",)), (CT, SYNTAXES)])
    assert not can_serve(association, [(VERIFICATION, SYNTAXES)], scp_roles=[CT])
