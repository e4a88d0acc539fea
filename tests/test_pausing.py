"""
Tests for pausing and resuming sandboxes (L{sandboxd.pausing} through the
manager), the ``ttl_action = "pause"`` of the idle clock, engine pauses made
outside the daemon, adoption of a paused sandbox after a restart, and
``expires_at`` (L{sandboxd.lifetimes.Expiry}).  A fake runtime and agent
connections, a real SQLite file and a L{Clock}.
"""

from twisted.internet.defer import Deferred, fail

from sandboxd.pausing import NotPausable
from sandboxd.runtimes.interface import PauseNotSupported
from sandboxd.sandbox import State
from tests.fakeruntime import FakeRuntime
from tests.test_manager_lifetimes import FakeSession, ManagerTestCase


class CannotPause(FakeRuntime):
    """
    A runtime (as QEMU's today) that cannot pause.
    """

    def pause(self, container_id):
        return fail(PauseNotSupported("cannot pause"))


class PauseTests(ManagerTestCase):
    def pause(self, sandbox):
        return self.successResultOf(Deferred.fromCoroutine(self.manager.pauser.pause(sandbox)))

    def resume(self, sandbox):
        return self.successResultOf(Deferred.fromCoroutine(self.manager.pauser.resume(sandbox)))

    def test_pauseAndResume(self):
        """
        A paused sandbox's container is frozen, its state ``paused`` is
        recorded with a ``sandbox.paused`` event, and its sessions stay
        open; resumed with a session open it is ``running`` again
        (``sandbox.resumed``).  Pausing twice or resuming a running one
        changes nothing.
        """
        self.makeManager()
        sandbox = self.create(ttl=30)
        session = FakeSession()
        self.sessions.opened(sandbox, session)
        self.pause(sandbox)
        self.pause(sandbox)
        self.assertEqual(self.runtime.paused, {sandbox.container_id})
        self.assertIs(sandbox.state, State.PAUSED)
        self.assertEqual(self.store.sandboxes()[0].state, "paused")
        self.assertEqual(session.unavailable, [])
        self.resume(sandbox)
        self.resume(sandbox)
        self.assertEqual(self.runtime.paused, set())
        self.assertIs(sandbox.state, State.RUNNING)
        self.assertEqual(self.events(sandbox),
                         ["sandbox.created", "sandbox.paused", "sandbox.resumed"])

    def test_idleClockStopsWhilePaused(self):
        """
        A paused sandbox is not reaped however long it waits, and the
        heartbeat leaves it alone; resumed with no session it is
        ``disconnected`` and its ttl counts from the resume.
        """
        self.makeManager()
        sandbox = self.create(ttl=10)
        self.pause(sandbox)
        self.clock.advance(10_000)
        self.assertIs(self.manager.get(sandbox.id), sandbox)
        self.resume(sandbox)
        self.assertIs(sandbox.state, State.DISCONNECTED)
        self.clock.advance(9)
        self.assertIs(self.manager.get(sandbox.id), sandbox)
        self.clock.advance(1)
        self.assertIsNone(self.manager.get(sandbox.id))

    def test_lastSessionClosesWhilePaused(self):
        """
        A session closing on a paused sandbox (even with ttl 0) does not
        destroy it; it is idle from then, and ``disconnected`` on resume.
        """
        self.makeManager()
        sandbox = self.create(ttl=0)
        session = FakeSession()
        self.sessions.opened(sandbox, session)
        self.pause(sandbox)
        self.sessions.closed(sandbox, session)
        self.assertIs(sandbox.state, State.PAUSED)
        self.assertEqual(self.store.sandboxes()[0].idle_since, self.clock.seconds())
        self.resume(sandbox)
        self.assertIs(sandbox.state, State.DISCONNECTED)

    def test_notPausable(self):
        """
        A failed sandbox can be neither paused nor resumed: L{NotPausable}.
        """
        self.makeManager()
        sandbox = self.create(ttl=30)
        self.runtime.watcher(sandbox.container_id, "die")
        for change in (self.manager.pauser.pause, self.manager.pauser.resume):
            self.failureResultOf(Deferred.fromCoroutine(change(sandbox)), NotPausable)

    def test_ttlActionPause(self):
        """
        With ``ttl_action="pause"`` a sandbox whose ttl runs out is paused
        (the event says why), not destroyed; ``ttl_action`` is recorded.
        """
        self.makeManager()
        sandbox = self.create(ttl=10, ttl_action="pause")
        self.assertEqual(self.store.sandboxes()[0].ttl_action, "pause")
        self.clock.advance(10)
        self.assertIs(sandbox.state, State.PAUSED)
        self.assertEqual(self.runtime.destroyed, [])
        paused = self.store.events(sandbox_id=sandbox.id)[-1]
        self.assertEqual((paused.type, paused.data), (
            "sandbox.paused", {"reason": "no session for 10 s (ttl)"}))

    def test_ttlActionPauseUnsupported(self):
        """
        Where the runtime cannot pause, a ``ttl_action="pause"`` sandbox's
        ttl destroys it, saying so.
        """
        self.makeManager(CannotPause())
        sandbox = self.create(ttl=10, ttl_action="pause")
        self.clock.advance(10)
        self.assertIsNone(self.manager.get(sandbox.id))
        destroyed = self.store.events(sandbox_id=sandbox.id)[-1]
        self.assertIn("could not be paused", destroyed.data["reason"])

    def test_profileTtlAction(self):
        """
        A profile's ``ttl_action`` is its sandboxes' default.
        """
        self.config += '[pool.base.default]\nttl_action = "pause"\n'
        self.makeManager()
        self.assertEqual(self.create(ttl=5).ttl_action, "pause")
        self.assertEqual(self.create(ttl=5, ttl_action="destroy").ttl_action, "destroy")


class OutsideTests(ManagerTestCase):
    def test_enginePauseIsAPause(self):
        """
        The engine reporting a handed-out sandbox's container paused
        outside the daemon makes it ``paused``, not failed; its unpause
        brings it back.
        """
        self.makeManager()
        sandbox = self.create(ttl=30)
        self.runtime.watcher(sandbox.container_id, "pause")
        self.assertIs(sandbox.state, State.PAUSED)
        self.runtime.watcher(sandbox.container_id, "unpause")
        self.assertIs(sandbox.state, State.DISCONNECTED)
        self.assertEqual(self.runtime.destroyed, [])

    def test_ownPauseEventsIgnored(self):
        """
        The engine's events for the daemon's own pause, arriving while it is
        under way, change nothing: one ``sandbox.paused`` event.
        """
        runtime = FakeRuntime()
        held = Deferred()
        runtime.pause = lambda container_id: held
        self.makeManager(runtime)
        sandbox = self.create(ttl=30)
        pausing = Deferred.fromCoroutine(self.manager.pauser.pause(sandbox))
        self.runtime.watcher(sandbox.container_id, "pause")
        self.assertIs(sandbox.state, State.RUNNING)
        held.callback(None)
        self.successResultOf(pausing)
        self.runtime.watcher(sandbox.container_id, "pause")
        self.assertEqual(self.events(sandbox), ["sandbox.created", "sandbox.paused"])


class RestartTestCase(ManagerTestCase):
    def restart(self, owned):
        """
        A new manager on the same store, the engine listing ``owned``.
        """
        self.manager.reaper.stop()
        self.manager.expiry.stop()
        self.manager.pools.stop()
        return self.makeManager(FakeRuntime(owned))


class AdoptPausedTests(RestartTestCase):
    def test_adoptedPausedResumes(self):
        """
        After a restart a paused sandbox is adopted without reaching its
        (frozen) agent; on resume the daemon thaws it, connects, and it is
        ``disconnected`` (its sessions did not survive).
        """
        self.makeManager()
        sandbox = self.create(ttl=30)
        self.sessions.opened(sandbox, FakeSession())
        self.successResultOf(Deferred.fromCoroutine(self.manager.pauser.pause(sandbox)))
        connections = len(self.connections)
        manager = self.restart([(sandbox.container_id, {"sandboxd.owner": "/data"})])
        (adopted,) = manager.list()
        self.assertEqual((adopted.id, adopted.state, adopted.connection),
                         (sandbox.id, State.PAUSED, None))
        self.assertEqual(len(self.connections), connections)
        self.clock.advance(10_000)
        self.successResultOf(Deferred.fromCoroutine(manager.pauser.resume(adopted)))
        self.assertEqual(len(self.connections), connections + 1)
        self.assertIs(adopted.state, State.DISCONNECTED)
        self.assertIsNotNone(adopted.connection)

    def test_unreachableOnResumeFails(self):
        """
        An adopted paused sandbox whose agent does not answer on resume
        fails (and the resume with it).
        """
        self.makeManager()
        sandbox = self.create(ttl=30)
        self.successResultOf(Deferred.fromCoroutine(self.manager.pauser.pause(sandbox)))
        manager = self.restart([(sandbox.container_id, {"sandboxd.owner": "/data"})])
        (adopted,) = manager.list()
        self.unreachable.add(adopted.id)
        self.failureResultOf(Deferred.fromCoroutine(manager.pauser.resume(adopted)))
        self.assertIs(adopted.state, State.FAILED)


class ExpiryTests(RestartTestCase):
    def test_expiresAtWhateverItDoes(self):
        """
        A sandbox with ``expires_at`` is destroyed at that time though a
        session is open, with the reason in its event.
        """
        self.makeManager()
        sandbox = self.create(ttl=30, expires_at=self.clock.seconds() + 100)
        self.sessions.opened(sandbox, FakeSession())
        self.clock.advance(99)
        self.assertIs(self.manager.get(sandbox.id), sandbox)
        self.clock.advance(1)
        self.assertIsNone(self.manager.get(sandbox.id))
        destroyed = self.store.events(sandbox_id=sandbox.id)[-1]
        self.assertEqual(destroyed.data, {"reason": "its expires_at time came"})

    def test_updateAndRestart(self):
        """
        ``update(expires_at=...)`` moves the deadline (recorded); a
        restarted daemon keeps it for the sandboxes it adopts, paused too.
        """
        self.makeManager()
        sandbox = self.create(ttl=3000, expires_at=self.clock.seconds() + 100)
        self.manager.update(sandbox, expires_at=self.clock.seconds() + 500)
        self.successResultOf(Deferred.fromCoroutine(self.manager.pauser.pause(sandbox)))
        self.assertEqual(self.store.sandboxes()[0].expires_at, self.clock.seconds() + 500)
        manager = self.restart([(sandbox.container_id, {"sandboxd.owner": "/data"})])
        self.clock.advance(499)
        self.assertEqual(len(manager.list()), 1)
        self.clock.advance(1)
        self.assertEqual(manager.list(), [])
