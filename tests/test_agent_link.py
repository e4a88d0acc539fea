"""
Tests for L{sandboxd.protocols.link.AgentLink}: a sandbox's agent link goes
on with a new connection when the agent's server is killed and restarted,
and counts as lost only when none comes back or the daemon closes it.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from agent.wire import Code
from sandboxd.protocols.agent import AgentLost, IAgentConnection
from sandboxd.protocols.link import RECONNECT_DEADLINE, RETRY_DELAY, AgentLink


class Connection:
    """
    A connection the test drops with C{drop}; records calls.
    """

    agent_pid = 1
    openStreams = 0

    def __init__(self, name):
        self.name = name
        self.connected = True
        self.lost = Deferred()
        self.calls = []
        self.sent = []
        self.closed = None

    def whenLost(self):
        return self.lost

    def drop(self, message="the sandbox's agent connection closed"):
        self.connected = False
        self.lost.callback(AgentLost(Code.SANDBOX_UNAVAILABLE, message))

    def call(self, method, params=None):
        self.calls.append(method)
        return succeed(self.name)

    def send(self, data):
        self.sent.append(data)

    def ping(self, timeout):
        return succeed(True)

    def openStream(self, handler):
        return 1

    def closeStream(self, stream):
        pass

    def reassign(self, stream, handler):
        pass

    def disconnect(self, reason="the sandbox was destroyed"):
        self.closed = reason
        if self.connected:
            self.drop(reason)

    def abort(self, reason):
        self.disconnect(reason)


class AgentLinkTests(SynchronousTestCase):
    def setUp(self):
        self.first = Connection("first")
        self.attempts = []
        self.clock = Clock()
        self.link = AgentLink(self.first, self.reconnect, self.clock, "sbx-1")
        self.lost = self.link.whenLost()

    def reconnect(self, deadline):
        attempt = Deferred()
        self.attempts.append((deadline, attempt))
        return attempt

    def test_interface(self):
        """
        The link is an L{IAgentConnection}.
        """
        verifyObject(IAgentConnection, self.link)

    def test_agentComesBack(self):
        """
        A dropped connection is replaced: calls go to the new one, the link
        was never lost, the restart is counted.
        """
        self.first.drop()
        self.assertFalse(self.link.connected)
        self.failureResultOf(self.link.call("ping"), AgentLost)
        self.assertEqual(self.successResultOf(self.link.ping(1)), False)
        ((deadline, attempt),) = self.attempts
        self.assertEqual(deadline, RECONNECT_DEADLINE)
        second = Connection("second")
        attempt.callback(second)
        self.assertTrue(self.link.connected)
        self.assertEqual(self.successResultOf(self.link.call("ping")), "second")
        self.assertNoResult(self.lost)
        self.assertEqual(self.link.reconnects, 1)
        second.drop()
        self.assertEqual(len(self.attempts), 2)

    def test_agentNeverComesBack(self):
        """
        Failed tries are tried again until the deadline; then the link is
        lost, and the reason says both what happened and that it did not
        come back.
        """
        self.first.drop()
        while self.clock.seconds() < RECONNECT_DEADLINE:
            self.assertNoResult(self.lost)
            self.attempts[-1][1].errback(AgentLost(Code.SANDBOX_UNAVAILABLE, "no answer"))
            self.clock.advance(RETRY_DELAY)
        self.assertGreater(len(self.attempts), 100)
        lost = self.successResultOf(self.lost)
        self.assertIn("connection closed", lost.message)
        self.assertIn("did not come back", lost.message)
        self.assertFalse(self.link.connected)

    def test_cutOffNotRetried(self):
        """
        A connection the daemon cut off for breaking the protocol (here
        WINDOW_EXCEEDED) ends the link at once, with that code: a hostile
        agent is not given a second connection.
        """
        self.first.connected = False
        self.first.lost.callback(AgentLost(Code.WINDOW_EXCEEDED, "too much DATA"))
        self.assertEqual(self.successResultOf(self.lost).code, Code.WINDOW_EXCEEDED)
        self.assertEqual(self.attempts, [])

    def test_closedByDaemon(self):
        """
        C{disconnect}: the link is lost when the connection closes, and no
        reconnect is tried.
        """
        self.link.disconnect("destroyed")
        self.assertEqual(self.first.closed, "destroyed")
        self.assertEqual(self.successResultOf(self.lost).message, "destroyed")
        self.assertEqual(self.attempts, [])

    def test_abortWhileReconnecting(self):
        """
        C{abort} while the agent is being reached again ends the link at
        once; a connection made after that is hung up.
        """
        self.first.drop()
        self.link.abort("the sandbox failed: its container exited")
        self.assertEqual(
            self.successResultOf(self.lost).message, "the sandbox failed: its container exited"
        )
        late = Connection("late")
        self.attempts[0][1].callback(late)
        self.assertIsNotNone(late.closed)
        self.assertFalse(self.link.connected)

    def test_sendWhileDown(self):
        """
        Frames written while no connection is up are dropped, not raised.
        """
        self.first.drop()
        self.link.send(b"frame")
        self.assertEqual(self.first.sent, [])

    def test_lostAfterEnd(self):
        """
        C{whenLost} after the end fires at once with the same reason.
        """
        self.first.drop()
        self.link.abort("gone")
        self.attempts[0][1].errback(ValueError("x"))
        self.assertIs(self.successResultOf(self.link.whenLost()), self.successResultOf(self.lost))
