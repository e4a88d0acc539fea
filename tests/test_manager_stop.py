"""
Tests for L{sandboxd.manager.SandboxManager.stop} against boots still under
way, with a fake runtime, fake agent connections and a fake clock.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from sandboxd.config import parse_config
from sandboxd.manager import SandboxManager
from sandboxd.protocols.agent import IAgentConnection
from sandboxd.runtimes.interface import IRuntime
from sandboxd.store import Store
from tests.fakeruntime import FakeConnection, FakeRuntime


class StopDuringWarmUpTests(SynchronousTestCase):
    """
    A warm boot is not over when its container and agent are up: its first
    command (the warm-up) still runs.  stop() must wait for it.
    """

    def setUp(self):
        self.clock = Clock()
        self.runtime = FakeRuntime(hold_removals=True)
        verifyObject(IRuntime, self.runtime)
        self.connections = []

        def connect_agent(reactor, endpoint, secret, label=None, deadline=None):
            connection = FakeConnection(hold_calls=True)
            verifyObject(IAgentConnection, connection)
            self.connections.append(connection)
            return succeed(connection)

        config = parse_config("[pool]\nmin_base = 1\n", "<test>", {})
        store = Store(self.mktemp())
        self.addCleanup(store.close)
        self.manager = SandboxManager(
            self.clock, self.runtime, config, store, owner="/test", connect=connect_agent
        )
        started = Deferred.fromCoroutine(self.manager.start())
        self.assertIsNone(self.successResultOf(started))

    def test_stop_waits_for_warm_up_and_removes_its_container(self):
        """
        Stopping while a warm boot's first command is in flight does not
        finish before that boot has ended and its container is removed.
        """
        self.assertEqual(len(self.runtime.started), 1)
        (connection,) = self.connections
        (method, warm_up), = connection.calls
        self.assertEqual(method, "process.exec")

        stopping = Deferred.fromCoroutine(self.manager.stop())
        self.clock.advance(0.1)
        self.assertNoResult(stopping)

        # The reactor's shutdown closes the connection: the warm-up fails.
        warm_up.errback(ConnectionError("the sandbox's agent connection closed"))
        self.clock.advance(0.1)
        self.assertEqual(list(self.runtime.removals), self.runtime.started)
        self.assertNoResult(stopping)

        self.runtime.removals[self.runtime.started[0]].callback(None)
        self.clock.advance(0.1)
        self.assertIsNone(self.successResultOf(stopping))
        # The stopped pool does not boot again.
        self.clock.advance(60)
        self.assertEqual(len(self.runtime.started), 1)
