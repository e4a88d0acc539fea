"""
Tests for the life of handed-out sandboxes in L{sandboxd.manager}: records,
ttl and idle timeouts, failures reported by the engine, and adoption after a
restart, as the lifecycle's observers (record, events, reaper, the API's
session registry) see them.  A fake runtime, fake agent connections, a real
SQLite file and a L{Clock}.
"""

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from sandboxd.api.registry import SessionRegistry
from sandboxd.config import parse_config
from sandboxd.manager import SandboxManager
from sandboxd.runtimes.interface import IRuntime, Started
from sandboxd.sandbox import State
from sandboxd.store import Store
from tests.fakeruntime import FakeConnection, FakeRuntime


class FakeSession:
    def __init__(self):
        self.unavailable = []

    def sandboxUnavailable(self, reason, normal=False):
        self.unavailable.append((reason, normal))


class ManagerTestCase(TestCase):
    config = "[pool]\nmin_base = 0\ntotal_warm = 0\n[limits]\nidle_timeout = \"60s\"\n"

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.dir = self.mktemp()
        self.connections = []
        self.unreachable = set()

    def makeManager(self, runtime=None):
        self.runtime = runtime or FakeRuntime()
        verifyObject(IRuntime, self.runtime)
        self.store = Store(self.dir)
        self.addCleanup(self.store.close)

        def connect(reactor, endpoint, secret, label="", deadline=None):
            if label in self.unreachable:
                return fail(ConnectionRefusedError(endpoint))
            connection = FakeConnection()
            self.connections.append(connection)
            return succeed(connection)

        config = parse_config(self.config, "<test>", {})
        manager = SandboxManager(
            self.clock, self.runtime, config, self.store, owner="/data", connect=connect
        )
        # The API's session registry, as the daemon wires it.
        self.sessions = SessionRegistry(manager)
        manager.lifecycle.observe(self.sessions)
        self.successResultOf(Deferred.fromCoroutine(manager.start()))
        self.manager = manager
        return manager

    def create(self, **options):
        return self.successResultOf(Deferred.fromCoroutine(self.manager.create(**options)))

    def events(self, sandbox):
        return [e.type for e in self.store.events(sandbox_id=sandbox.id)]


class IdleTests(ManagerTestCase):
    def test_recordedBeforeAnswer(self):
        """
        A created sandbox is in the store, state running, with its
        container, address and secret, and a sandbox.created event.
        """
        self.makeManager()
        sandbox = self.create(ttl=30, labels={"a": "b"})
        (record,) = self.store.sandboxes()
        self.assertEqual(
            (record.id, record.state, record.container_id, record.secret, record.labels),
            (sandbox.id, "running", f"c-{sandbox.id}", sandbox.secret, {"a": "b"}),
        )
        self.assertEqual(self.events(sandbox), ["sandbox.created"])

    def test_neverConnectedReaped(self):
        """
        ttl 0 and no session: destroyed after idle_timeout, not before.
        """
        self.makeManager()
        sandbox = self.create()
        self.clock.advance(59)
        self.assertIs(self.manager.get(sandbox.id), sandbox)
        self.clock.advance(1)
        self.assertIsNone(self.manager.get(sandbox.id))
        self.assertIn(f"c-{sandbox.id}", self.runtime.destroyed)
        self.assertEqual(self.store.sandboxes(), [])
        self.assertEqual(self.events(sandbox), ["sandbox.created", "sandbox.destroyed"])

    def test_ttlCountsWithoutSession(self):
        """
        ttl > 0: a session stops the clock; after it closes the sandbox is
        disconnected (recorded) and goes ttl seconds later; a session in
        between brings it back to running.
        """
        self.makeManager()
        sandbox = self.create(ttl=10)
        session = FakeSession()
        self.sessions.opened(sandbox, session)
        self.clock.advance(500)
        self.assertIs(sandbox.state, State.RUNNING)
        self.sessions.closed(sandbox, session)
        self.assertIs(sandbox.state, State.DISCONNECTED)
        self.assertEqual(self.store.sandboxes()[0].state, "disconnected")
        self.clock.advance(9)
        self.sessions.opened(sandbox, session)
        self.assertIs(sandbox.state, State.RUNNING)
        self.sessions.closed(sandbox, session)
        self.clock.advance(9.5)
        self.assertIsNotNone(self.manager.get(sandbox.id))
        self.clock.advance(0.5)
        self.assertIsNone(self.manager.get(sandbox.id))
        self.assertEqual(
            self.events(sandbox),
            ["sandbox.created", "sandbox.disconnected", "sandbox.reconnected",
             "sandbox.disconnected", "sandbox.destroyed"],
        )

    def test_updateRestartsTheClock(self):
        """
        A new ttl on an idle sandbox counts from when it became idle: a
        longer one keeps it, a shorter one already past ends it at once;
        ttl and labels are recorded, with a sandbox.updated event.  A busy
        sandbox gets no clock until its last session closes.
        """
        self.makeManager()
        sandbox = self.create(ttl=10, labels={"a": "1"})
        session = FakeSession()
        self.sessions.opened(sandbox, session)
        self.sessions.closed(sandbox, session)
        self.clock.advance(8)
        self.manager.update(sandbox, ttl=100, labels={"b": "2"})
        self.clock.advance(50)
        self.assertIs(self.manager.get(sandbox.id), sandbox)
        (record,) = self.store.sandboxes()
        self.assertEqual((record.ttl, record.labels), (100, {"b": "2"}))
        self.manager.update(sandbox, ttl=30)
        self.clock.advance(0)
        self.assertIsNone(self.manager.get(sandbox.id))
        self.assertEqual(
            self.events(sandbox),
            ["sandbox.created", "sandbox.disconnected", "sandbox.updated",
             "sandbox.updated", "sandbox.destroyed"],
        )
        busy = self.create(ttl=10)
        self.sessions.opened(busy, session)
        self.manager.update(busy, ttl=1)
        self.clock.advance(500)
        self.assertIs(self.manager.get(busy.id), busy)
        self.sessions.closed(busy, session)
        self.clock.advance(1)
        self.assertIsNone(self.manager.get(busy.id))

    def test_ttl0LastSessionCloses(self):
        """
        ttl 0: destroyed when its last session closes, not while another is
        open.
        """
        self.makeManager()
        sandbox = self.create()
        one, two = FakeSession(), FakeSession()
        self.sessions.opened(sandbox, one)
        self.sessions.opened(sandbox, two)
        self.sessions.closed(sandbox, one)
        self.assertIs(sandbox.state, State.RUNNING)
        self.sessions.closed(sandbox, two)
        self.assertIsNone(self.manager.get(sandbox.id))
        self.assertEqual(two.unavailable, [])


class FailureTests(ManagerTestCase):
    def test_containerDies(self):
        """
        The engine's die event fails the sandbox at once: its sessions are
        told, its agent connection aborted, the state is failed (recorded,
        with an event), the container removed; DELETE then forgets it.
        """
        self.makeManager()
        sandbox = self.create(ttl=30)
        session = FakeSession()
        self.sessions.opened(sandbox, session)
        self.runtime.watcher(sandbox.container_id, "die")
        self.assertIs(sandbox.state, State.FAILED)
        self.assertIn("container exited", session.unavailable[0][0])
        self.assertIn("container exited", self.connections[-1].aborted)
        self.assertEqual(self.store.sandboxes()[0].state, "failed")
        self.assertEqual(self.events(sandbox)[-1], "sandbox.failed")
        self.assertIn(sandbox.container_id, self.runtime.destroyed)
        self.assertTrue(self.manager.destroy(sandbox.id))
        self.assertEqual(self.store.sandboxes(), [])

    def test_oomInside(self):
        """
        An OOM kill inside is recorded (sandbox.oom) without failing the
        sandbox; if the container then dies, the failure says why.
        """
        self.makeManager()
        sandbox = self.create(ttl=30)
        self.runtime.watcher(sandbox.container_id, "oom")
        self.assertIs(sandbox.state, State.RUNNING)
        self.assertEqual(self.events(sandbox), ["sandbox.created", "sandbox.oom"])
        self.runtime.watcher(sandbox.container_id, "die")
        (failed,) = self.store.events(sandbox_id=sandbox.id)[-1:]
        self.assertIn("out of memory", failed.data["reason"])

    def test_unknownContainerIgnored(self):
        """
        Events about containers the daemon does not know change nothing.
        """
        self.makeManager()
        sandbox = self.create(ttl=30)
        self.runtime.watcher("c-somebody-else", "die")
        self.assertIs(sandbox.state, State.RUNNING)

    def test_deleteDuringColdBoot(self):
        """
        DELETE while a cold boot waits for its container: the create fails
        with SandboxDestroyed and the container is removed once it exists.
        """
        from sandboxd.manager import SandboxDestroyed

        self.makeManager()
        pending = {}
        self.runtime.start = lambda spec: pending.setdefault(spec.sandbox_id, Deferred())
        runtime = self.runtime
        creating = Deferred.fromCoroutine(self.manager.create())
        (sandbox,) = self.manager.list()
        self.assertIs(sandbox.state, State.CREATING)
        self.assertTrue(self.manager.destroy(sandbox.id))
        pending[sandbox.id].callback(Started(sandbox.id, "c-late", "tcp:192.0.2.1:7070", "192.0.2.1"))
        self.failureResultOf(creating, SandboxDestroyed)
        self.assertIn("c-late", runtime.destroyed)
        self.assertEqual(self.store.sandboxes(), [])

    def test_coldBootFailure(self):
        """
        A cold boot whose agent never answers fails the create; the sandbox
        is not kept, no reaper clock is left for it, and no observer of
        the creating -> failed transition breaks (the reaper once tripped
        over a missing idle_since there).
        """
        self.makeManager()
        self.runtime.start = lambda spec: (
            self.unreachable.add(spec.sandbox_id),
            succeed(Started(spec.sandbox_id, "c-dead", "tcp:192.0.2.1:7070", "192.0.2.1")),
        )[1]
        self.failureResultOf(
            Deferred.fromCoroutine(self.manager.create()), ConnectionRefusedError
        )
        self.assertEqual(self.manager.list(), [])
        self.assertEqual(len(self.manager.reaper._timers), 0)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertIn("c-dead", self.runtime.destroyed)


class AdoptionTests(ManagerTestCase):
    def restart(self, owned):
        """
        A new manager on the same store, the engine listing ``owned``.
        """
        self.manager.reaper.stop()
        self.manager.pools.stop()
        return self.makeManager(FakeRuntime(owned))

    def test_adoptsLiveRemovesOrphans(self):
        """
        After a restart: recorded sandboxes whose containers exist and whose
        agents answer are listed again, disconnected, with their ttl clock;
        an unreachable one and containers nobody recorded are removed;
        another daemon's containers are not touched; records without a
        container are forgotten.
        """
        self.makeManager()
        kept = self.create(ttl=100, labels={"k": "v"})
        dead = self.create(ttl=100)
        gone = self.create(ttl=100)
        self.unreachable.add(dead.id)
        mine = {"sandboxd.owner": "/data"}
        owned = [
            (kept.container_id, mine),
            (dead.container_id, mine),
            ("c-warm-of-old-run", mine),
            ("c-other-daemon", {"sandboxd.owner": "/elsewhere"}),
        ]
        manager = self.restart(owned)
        (adopted,) = manager.list()
        self.assertEqual((adopted.id, adopted.labels, adopted.state),
                         (kept.id, {"k": "v"}, State.DISCONNECTED))
        self.assertEqual(
            sorted(self.runtime.destroyed), sorted([dead.container_id, "c-warm-of-old-run"])
        )
        self.assertEqual([r.id for r in self.store.sandboxes()], [kept.id])
        self.assertNotIn(gone.id, [s.id for s in manager.list()])
        self.clock.advance(100)
        self.assertEqual(manager.list(), [])

    def test_disconnectedKeepsItsClock(self):
        """
        A sandbox disconnected before the restart keeps the time it already
        waited.
        """
        self.makeManager()
        sandbox = self.create(ttl=100)
        session = FakeSession()
        self.sessions.opened(sandbox, session)
        self.sessions.closed(sandbox, session)
        self.clock.advance(70)
        manager = self.restart([(sandbox.container_id, {"sandboxd.owner": "/data"})])
        self.assertEqual(len(manager.list()), 1)
        self.clock.advance(30)
        self.assertEqual(manager.list(), [])
