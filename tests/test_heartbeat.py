"""
Tests for L{sandboxd.heartbeat}: handed-out sandboxes whose agents stop
answering are failed after a ping and its retries; busy ones that answer a
retry are not; pool and ended sandboxes are not pinged.  A Clock and fake
connections; tests/test_e2e_lifecycle.py stops a real agent.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from sandboxd import heartbeat
from sandboxd.heartbeat import Heartbeat
from sandboxd.sandbox import Sandbox, State


class SlowConnection:
    """
    Answers a ping after ``delay`` seconds of the clock (None: never); a
    ping whose timeout comes first is unanswered, as AgentConnection does.
    """

    connected = True

    def __init__(self, clock, delay):
        self.clock = clock
        self.delay = delay
        self.timeouts = []

    def ping(self, timeout):
        self.timeouts.append(timeout)
        answered = Deferred()
        if self.delay is not None and self.delay <= timeout:
            self.clock.callLater(self.delay, answered.callback, True)
        else:
            self.clock.callLater(timeout, answered.callback, False)
        return answered


def sandbox_with(connection, state=State.RUNNING, sid="sbx-1"):
    return Sandbox(
        id=sid, profile="default", image="img", runtime="docker", memory=1,
        cpu=1.0, storage=1, secret="s", state=state, connection=connection,
        claimed=True,
    )


class HeartbeatTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.failed = []
        self.sandboxes = []
        self.heartbeat = Heartbeat(
            self.clock, lambda: self.sandboxes, self.fail, interval=10, timeout=0.05
        )
        self.heartbeat.start()
        self.addCleanup(self.heartbeat.stop)

    def fail(self, sandbox, reason):
        """
        What the manager does: record, and the sandbox is failed.
        """
        self.failed.append((sandbox, reason))
        sandbox.moveTo(State.FAILED)

    def run_for(self, seconds, step=0.01):
        for _ in range(int(seconds / step)):
            self.clock.advance(step)

    def test_silentAgentFailed(self):
        """
        An agent that never answers is failed once the first ping and all
        retries ran out, each retry allowed four times longer; the reason
        says so.
        """
        connection = SlowConnection(self.clock, None)
        sandbox = sandbox_with(connection)
        self.sandboxes.append(sandbox)
        self.run_for(10.5)
        self.assertEqual(self.failed, [])
        self.run_for(20)
        self.assertEqual(len(connection.timeouts), 1 + heartbeat.RETRIES)
        self.assertEqual(connection.timeouts[:3], [0.05, 0.2, 0.8])
        ((failed, reason),) = self.failed
        self.assertIs(failed, sandbox)
        self.assertIn("stopped answering", reason)

    def test_busyAgentKept(self):
        """
        An agent that answers a retry (slow, not dead) is not failed.
        """
        connection = SlowConnection(self.clock, 0.5)
        self.sandboxes.append(sandbox_with(connection))
        self.run_for(40)
        self.assertEqual(self.failed, [])
        self.assertEqual(connection.timeouts[:3], [0.05, 0.2, 0.8])

    def test_slowRuntimeGivenLonger(self):
        """
        A sandbox whose runtime runs slow (its C{liveness_scale}, e.g. a VM
        under software emulation) is allowed that many times longer: an
        agent answering after 20 s is kept at scale 10 and failed at 1.
        """
        slow, usual = SlowConnection(self.clock, 20), SlowConnection(self.clock, 20)
        emulated = sandbox_with(slow, sid="sbx-vm")
        emulated.liveness_scale = 10.0
        self.sandboxes += [emulated, sandbox_with(usual)]
        self.run_for(60, step=0.1)
        self.assertEqual([s.id for s, _ in self.failed], ["sbx-1"])
        self.assertEqual(slow.timeouts[:4], [0.5, 2.0, 8.0, 32.0])

    def test_onlyHandedOut(self):
        """
        Warm, failed and destroying sandboxes, and lost connections, are not
        pinged.
        """
        connections = []
        for i, state in enumerate((State.READY, State.FAILED, State.DESTROYING)):
            connection = SlowConnection(self.clock, None)
            connections.append(connection)
            self.sandboxes.append(sandbox_with(connection, state, f"sbx-{i}"))
        lost = SlowConnection(self.clock, None)
        lost.connected = False
        self.sandboxes.append(sandbox_with(lost, State.RUNNING, "sbx-lost"))
        self.run_for(40)
        self.assertEqual([c.timeouts for c in connections + [lost]], [[], [], [], []])

    def test_endedWhileChecking(self):
        """
        A sandbox that ends while its agent is being asked again is not
        failed by the heartbeat.
        """
        connection = SlowConnection(self.clock, None)
        sandbox = sandbox_with(connection)
        self.sandboxes.append(sandbox)
        self.run_for(10.1)
        sandbox.moveTo(State.DESTROYING)
        self.run_for(20)
        self.assertEqual(self.failed, [])

    def test_oneCheckAtATime(self):
        """
        A check still running when the next beat comes is not doubled.
        """
        heartbeat_ = Heartbeat(self.clock, lambda: self.sandboxes, lambda s, r: None, 0.1, 5)
        connection = SlowConnection(self.clock, None)
        self.sandboxes.append(sandbox_with(connection))
        heartbeat_.start()
        self.addCleanup(heartbeat_.stop)
        self.run_for(1.0, step=0.1)
        # This heartbeat's first ping (5 s) is still out; the other one's
        # beat (10 s) has not come.
        self.assertEqual(connection.timeouts, [5])

    def test_reload(self):
        """
        A reload's interval and timeout apply: pings come on the new
        interval with the new first timeout.
        """
        connection = SlowConnection(self.clock, 0.0)
        self.sandboxes.append(sandbox_with(connection))
        self.heartbeat.reload(interval=2, timeout=0.1)
        self.run_for(4.05)
        self.assertEqual(connection.timeouts, [0.1, 0.1])
