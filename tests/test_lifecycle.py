"""
Tests for L{sandboxd.lifecycle} and its observers: the one way a sandbox
changes state, the record and events it leaves (L{sandboxd.recording}), the
idle reaper's clock (L{sandboxd.lifetimes}) and the API's sessions
(L{sandboxd.api.registry}).
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from sandboxd.api.registry import SessionRegistry
from sandboxd.lifecycle import ISandboxObserver, Lifecycle, Transition
from sandboxd.lifetimes import IdleReaper
from sandboxd.recording import LifecycleRecorder
from sandboxd.sandbox import IllegalTransition, Sandbox, State
from sandboxd.store import Store


def make_sandbox(state=State.CREATING, claimed=True, **fields):
    return Sandbox(
        id="sbx-00000001", profile="default", image="img", runtime="docker",
        memory=1, cpu=1.0, storage=1, secret="s", state=state, claimed=claimed,
        **fields,
    )


@implementer(ISandboxObserver)
class Recording:
    """
    Keeps every transition it hears of, in ``seen`` (shared, to check order).
    """

    def __init__(self, name, seen):
        self.name = name
        self.seen = seen

    def sandboxChanged(self, transition):
        self.seen.append((self.name, transition))


@implementer(ISandboxObserver)
class Broken:
    def sandboxChanged(self, transition):
        raise RuntimeError("observer bug")


class LifecycleTests(SynchronousTestCase):
    def test_movesThenTellsInOrder(self):
        """
        C{move} changes the state first, then tells each observer, in the
        order they were added, with the old and new state and the reason.
        """
        lifecycle, seen = Lifecycle(), []
        sandbox = make_sandbox()
        lifecycle.observe(Recording("a", seen))
        lifecycle.observe(Recording("b", seen))
        lifecycle.move(sandbox, State.RUNNING, "why")
        expected = Transition(sandbox, State.CREATING, State.RUNNING, "why")
        self.assertEqual(seen, [("a", expected), ("b", expected)])
        self.assertIs(sandbox.state, State.RUNNING)

    def test_illegalMoveTellsNobody(self):
        """
        A move the state table forbids raises and no observer hears of it.
        """
        lifecycle, seen = Lifecycle(), []
        lifecycle.observe(Recording("a", seen))
        sandbox = make_sandbox(State.DESTROYED)
        self.assertRaises(IllegalTransition, lifecycle.move, sandbox, State.RUNNING)
        self.assertEqual(seen, [])

    def test_brokenObserverLogged(self):
        """
        An observer that raises is logged; the ones after it still hear.
        """
        lifecycle, seen = Lifecycle(), []
        lifecycle.observe(Broken())
        lifecycle.observe(Recording("after", seen))
        lifecycle.move(make_sandbox(), State.FAILED)
        self.assertEqual(len(seen), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_announce(self):
        """
        C{announce} tells of a sandbox new to this process: C{old} is None.
        """
        lifecycle, seen = Lifecycle(), []
        lifecycle.observe(Recording("a", seen))
        sandbox = make_sandbox(State.DISCONNECTED)
        lifecycle.announce(sandbox, "daemon restarted")
        self.assertEqual(
            seen, [("a", Transition(sandbox, None, State.DISCONNECTED, "daemon restarted"))]
        )

    def test_transitionKinds(self):
        """
        C{handedOut} is a move to running from creating or ready (not a
        reconnect); C{ending} a move to failed or destroying.
        """
        s = make_sandbox()
        self.assertTrue(Transition(s, State.CREATING, State.RUNNING).handedOut)
        self.assertTrue(Transition(s, State.READY, State.RUNNING).handedOut)
        self.assertFalse(Transition(s, State.DISCONNECTED, State.RUNNING).handedOut)
        self.assertFalse(Transition(s, None, State.RUNNING).handedOut)
        self.assertTrue(Transition(s, State.RUNNING, State.FAILED).ending)
        self.assertTrue(Transition(s, State.READY, State.DESTROYING).ending)
        self.assertFalse(Transition(s, State.DESTROYING, State.DESTROYED).ending)

    def test_observersProvideTheInterface(self):
        """
        The daemon's observers provide L{ISandboxObserver}.
        """
        clock = Clock()
        store = Store(self.mktemp())
        self.addCleanup(store.close)
        verifyObject(ISandboxObserver, LifecycleRecorder(store, clock))
        verifyObject(ISandboxObserver, IdleReaper(clock, lambda s: None, 60))
        verifyObject(ISandboxObserver, SessionRegistry(object()))


class RecorderTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.store = Store(self.mktemp())
        self.addCleanup(self.store.close)
        self.lifecycle = Lifecycle()
        self.lifecycle.observe(LifecycleRecorder(self.store, self.clock))

    def events(self):
        return [(e.type, e.data) for e in self.store.events()]

    def test_wholeLife(self):
        """
        A claimed sandbox is recorded when handed out, updated on every
        move, deleted once destroyed, with one event per step.
        """
        sandbox = make_sandbox(method="warm")
        move = self.lifecycle.move
        move(sandbox, State.RUNNING)
        self.assertEqual(self.store.sandboxes()[0].state, "running")
        sandbox.idle_since = 5.0
        move(sandbox, State.DISCONNECTED)
        (record,) = self.store.sandboxes()
        self.assertEqual((record.state, record.idle_since), ("disconnected", 5.0))
        move(sandbox, State.RUNNING)
        move(sandbox, State.FAILED, "its container exited")
        move(sandbox, State.DESTROYING, "DELETE")
        self.assertEqual(self.store.sandboxes()[0].state, "destroying")
        move(sandbox, State.DESTROYED)
        self.assertEqual(self.store.sandboxes(), [])
        self.assertEqual(self.events(), [
            ("sandbox.created", {"profile": "default", "image": "img", "method": "warm"}),
            ("sandbox.disconnected", {}),
            ("sandbox.reconnected", {}),
            ("sandbox.failed", {"reason": "its container exited"}),
            ("sandbox.destroyed", {"reason": "DELETE"}),
        ])

    def test_poolSandboxesUnrecorded(self):
        """
        Warm sandboxes nobody claimed leave no record and no event, even
        when they fail or go.
        """
        sandbox = make_sandbox(claimed=False)
        self.lifecycle.move(sandbox, State.READY)
        self.lifecycle.move(sandbox, State.FAILED, "its container exited")
        self.lifecycle.move(sandbox, State.DESTROYING)
        self.assertEqual((self.store.sandboxes(), self.events()), ([], []))

    def test_failedColdBootNoEvent(self):
        """
        A cold boot that fails is no sandbox.failed event (the caller's
        create fails instead).
        """
        self.lifecycle.move(make_sandbox(), State.FAILED, "its boot failed")
        self.assertEqual(self.events(), [])

    def test_adoptedNotRewritten(self):
        """
        Announcing an adopted sandbox writes nothing: its record is there.
        """
        self.lifecycle.announce(make_sandbox(State.DISCONNECTED))
        self.assertEqual((self.store.sandboxes(), self.events()), ([], []))


class FakeSession:
    def __init__(self):
        self.unavailable = []

    def sandboxUnavailable(self, reason, normal=False):
        self.unavailable.append((reason, normal))


class FakeDetached:
    def __init__(self, token):
        self.token = token
        self.discarded = False

    def discard(self):
        self.discarded = True


class FakeManager:
    def __init__(self):
        self.calls = []

    def inUse(self, sandbox):
        self.calls.append(("inUse", sandbox.id))

    def idle(self, sandbox):
        self.calls.append(("idle", sandbox.id))


class RegistryTests(SynchronousTestCase):
    def setUp(self):
        self.manager = FakeManager()
        self.lifecycle = Lifecycle()
        self.registry = SessionRegistry(self.manager)
        self.lifecycle.observe(self.registry)
        self.sandbox = make_sandbox(State.RUNNING)

    def test_firstAndLast(self):
        """
        The manager hears of the first session opening and the last one
        closing only; closing an unknown session changes nothing.
        """
        one, two = FakeSession(), FakeSession()
        self.registry.opened(self.sandbox, one)
        self.registry.opened(self.sandbox, two)
        self.registry.closed(self.sandbox, one)
        self.registry.closed(self.sandbox, one)
        self.assertEqual(self.manager.calls, [("inUse", self.sandbox.id)])
        self.registry.closed(self.sandbox, two)
        self.assertEqual(self.manager.calls[-1], ("idle", self.sandbox.id))
        self.assertEqual(self.registry.sessionsOf(self.sandbox), set())

    def test_failedEndsSessions(self):
        """
        A failed sandbox's sessions hear why (abnormal close); its detached
        sessions are discarded.
        """
        session, detached = FakeSession(), FakeDetached("t")
        self.registry.opened(self.sandbox, session)
        self.registry.keep(self.sandbox, detached)
        self.lifecycle.move(self.sandbox, State.FAILED, "its container exited")
        self.assertEqual(
            session.unavailable, [("the sandbox failed: its container exited", False)]
        )
        self.assertTrue(detached.discarded)
        self.assertIsNone(self.registry.take(self.sandbox, "t"))

    def test_destroyedEndsSessions(self):
        """
        A destroyed sandbox's sessions close normally.
        """
        session = FakeSession()
        self.registry.opened(self.sandbox, session)
        self.lifecycle.move(self.sandbox, State.DESTROYING, "DELETE")
        self.assertEqual(session.unavailable, [("the sandbox was destroyed", True)])

    def test_stoppingDisconnects(self):
        """
        Moved to disconnected with sessions open (the daemon stopping): the
        sessions are closed with the reason.
        """
        session = FakeSession()
        self.registry.opened(self.sandbox, session)
        self.lifecycle.move(self.sandbox, State.DISCONNECTED, "the daemon is stopping")
        self.assertEqual(session.unavailable, [("the daemon is stopping", False)])

    def test_expireOnlyTheKeptOne(self):
        """
        C{expire} discards a detached session only while it is the one kept
        under its token.
        """
        old, new = FakeDetached("t"), FakeDetached("t")
        self.registry.keep(self.sandbox, old)
        self.registry.keep(self.sandbox, new)
        self.registry.expire(self.sandbox, old)
        self.assertFalse(old.discarded)
        self.assertEqual(self.registry.detachedOf(self.sandbox), {"t": new})
        self.registry.expire(self.sandbox, new)
        self.assertTrue(new.discarded)
        self.assertEqual(self.registry.detachedOf(self.sandbox), {})


class ReaperTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.expired = []
        self.lifecycle = Lifecycle()
        self.reaper = IdleReaper(self.clock, self.expired.append, idle_timeout=60)
        self.lifecycle.observe(self.reaper)

    def test_clockFollowsTransitions(self):
        """
        Handed out: the clock runs (idle_timeout for ttl 0); a reconnect
        stops it; a disconnect starts it from idle_since (the ttl); removal
        stops it.
        """
        sandbox = make_sandbox(idle_since=0.0)
        self.lifecycle.move(sandbox, State.RUNNING)
        self.assertEqual(self.reaper.deadline(sandbox), 60)
        sandbox.ttl = 10
        sandbox.idle_since = 5.0
        self.lifecycle.move(sandbox, State.DISCONNECTED)
        self.assertEqual(self.reaper.deadline(sandbox), 15)
        self.lifecycle.move(sandbox, State.RUNNING)
        self.assertIsNone(self.reaper.deadline(sandbox))
        self.lifecycle.move(sandbox, State.DESTROYING)
        self.clock.advance(100)
        self.assertEqual(self.expired, [])

    def test_poolSandboxIgnored(self):
        """
        An unclaimed (pool) sandbox that fails gets no clock.
        """
        sandbox = make_sandbox(State.READY, claimed=False, idle_since=0.0)
        self.lifecycle.move(sandbox, State.FAILED)
        self.assertIsNone(self.reaper.deadline(sandbox))

    def test_adoptedDisconnectedArmed(self):
        """
        An adopted disconnected sandbox keeps the time it already waited.
        """
        sandbox = make_sandbox(State.DISCONNECTED, ttl=100, idle_since=-70.0)
        self.lifecycle.announce(sandbox)
        self.clock.advance(30)
        self.assertEqual(self.expired, [sandbox])
