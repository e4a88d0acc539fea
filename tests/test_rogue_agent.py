"""
A hostile agent against the daemon's side of the protocol
(L{sandboxd.protocols.agent}, L{sandboxd.protocols.inbound}): DATA beyond the
granted window, frames for streams never opened, PING and EVENT floods and a
stalled handshake each end the connection with a named code and bounded
memory; an honest connection beside it is served throughout.  First over a
StringTransport and a Clock, then over real TCP on loopback with a real
AgentConnection and the real connect path.
"""

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from agent import wire
from agent.wire import Code
from sandboxd.protocols import agent as agent_module
from sandboxd.protocols.agent import AgentConnection, AgentLost
from sandboxd.protocols.connect import connect_agent
from sandboxd.protocols.inbound import EVENT_RATE, PING_RATE, Budget, InboundLimits
from tests.test_agent_connection import NONCE, SECRET, RecordingHandler


def ready_connection(clock):
    """
    An AgentConnection on a StringTransport, past its handshake.
    """
    transport = StringTransport()
    connection = AgentConnection(SECRET, clock, label="rogue")
    connection.makeConnection(transport)
    connection.dataReceived(wire.hello(NONCE) + wire.ready(1))
    transport.clear()
    return connection, transport


class RogueFrameTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.connection, self.transport = ready_connection(self.clock)
        self.handler = RecordingHandler()
        self.stream = self.connection.openStream(self.handler)

    def lost(self):
        """
        The AgentLost that ended the connection (asserting it ended).
        """
        self.assertTrue(self.transport.disconnecting)
        self.connection.connectionLost()
        return self.successResultOf(self.connection.whenLost())

    def test_dataBeyondWindow(self):
        """
        DATA past the initial window, with no WINDOW sent, is
        WINDOW_EXCEEDED: the connection ends and the handler got no more
        than the window.
        """
        chunk = b"x" * wire.CHUNK_SIZE
        frames = [wire.data(self.stream, chunk)] * (wire.INITIAL_WINDOW // len(chunk) + 1)
        self.connection.dataReceived(b"".join(frames))
        received = sum(len(f.payload) for f in self.handler.frames)
        self.assertEqual(received, wire.INITIAL_WINDOW)
        self.assertEqual(self.lost().code, Code.WINDOW_EXCEEDED)

    def test_windowSentExtendsCredit(self):
        """
        Credit the daemon grants with WINDOW (through C{send}) lets the agent
        send that much more, and no more.
        """
        chunk = b"x" * wire.CHUNK_SIZE
        per_window = wire.INITIAL_WINDOW // len(chunk)
        self.connection.dataReceived(b"".join([wire.data(self.stream, chunk)] * per_window))
        self.connection.send(wire.window(self.stream, len(chunk)))
        self.connection.dataReceived(wire.data(self.stream, chunk))
        self.assertFalse(self.transport.disconnecting)
        self.connection.dataReceived(wire.data(self.stream, b"y"))
        self.assertEqual(self.lost().code, Code.WINDOW_EXCEEDED)

    def test_windowCountedInConcatenatedFrames(self):
        """
        WINDOW frames written in one piece with other frames are counted.
        """
        other = self.connection.openStream(RecordingHandler())
        self.connection.send(wire.cancel(other) + wire.window(self.stream, 10))
        big = b"x" * wire.CHUNK_SIZE
        count = wire.INITIAL_WINDOW // len(big)
        self.connection.dataReceived(b"".join([wire.data(self.stream, big)] * count))
        self.connection.dataReceived(wire.data(self.stream, b"z" * 10))
        self.assertFalse(self.transport.disconnecting)

    def test_neverOpenedStream(self):
        """
        A frame for a stream the daemon never opened is BAD_STREAM.
        """
        self.connection.dataReceived(wire.data(self.stream + 5, b"x"))
        lost = self.lost()
        self.assertEqual(lost.code, Code.BAD_STREAM)
        self.assertIn("never opened", lost.message)

    def test_pingFlood(self):
        """
        PINGs beyond the rate are RATE_EXCEEDED; the burst is answered.
        """
        burst = int(PING_RATE[1])
        self.connection.dataReceived(wire.ping(b"p") * burst)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.transport.value().count(wire.pong(b"p")), burst)
        self.connection.dataReceived(wire.ping(b"p"))
        self.assertEqual(self.lost().code, Code.RATE_EXCEEDED)

    def test_pingsSpreadOutAnswered(self):
        """
        PINGs within the rate go on being answered.
        """
        for _ in range(500):
            self.clock.advance(1 / PING_RATE[0])
            self.connection.dataReceived(wire.ping(b"p"))
        self.assertFalse(self.transport.disconnecting)

    def test_eventFlood(self):
        """
        EVENT bytes beyond the rate are RATE_EXCEEDED.
        """
        event = wire.event(self.stream, {"pad": "x" * 200_000})
        frames = int(EVENT_RATE[1] // 200_000) + 2
        self.connection.dataReceived(event * frames)
        self.assertEqual(self.lost().code, Code.RATE_EXCEEDED)
        self.assertLess(len(self.handler.frames), frames)

    def test_stalledHandshake(self):
        """
        An agent that never says READY is cut off after HANDSHAKE_TIMEOUT
        with TIMEOUT; whenReady fails.
        """
        transport = StringTransport()
        connection = AgentConnection(SECRET, self.clock)
        connection.makeConnection(transport)
        ready = connection.whenReady()
        connection.dataReceived(wire.hello(NONCE))
        self.clock.advance(agent_module.HANDSHAKE_TIMEOUT - 0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        connection.connectionLost()
        self.assertEqual(self.failureResultOf(ready, AgentLost).value.code, Code.TIMEOUT)

    def test_readyStopsTimer(self):
        """
        A handshake that finishes leaves no timer behind.
        """
        self.assertEqual(self.clock.getDelayedCalls(), [])


class BudgetTests(SynchronousTestCase):
    def test_refills(self):
        """
        A budget spends up to its burst, then refills at its rate.
        """
        clock = Clock()
        budget = Budget(10.0, 20.0, clock)
        self.assertTrue(budget.spend(20))
        self.assertFalse(budget.spend(1))
        clock.advance(0.5)
        self.assertTrue(budget.spend(5))
        self.assertFalse(budget.spend(1))
        clock.advance(100)
        self.assertFalse(budget.spend(21))
        self.assertTrue(budget.spend(20))

    def test_limitsForget(self):
        """
        Closed streams' credit is forgotten (bounded by the open streams).
        """
        limits = InboundLimits(Clock())
        for stream in range(1, 1001):
            limits.opened(stream)
            limits.closed(stream)
        self.assertEqual(limits._credit, {})


class RogueAgent(Protocol):
    """
    An agent over real TCP: says HELLO, takes AUTH and says READY, then does
    what ``behaviour`` says with the connection (or stalls if None).
    """

    def connectionMade(self):
        self.transport.write(wire.hello(NONCE))
        self.framer = wire.Framer()

    def dataReceived(self, data):
        for frame in self.framer.feed(data):
            if frame.type is wire.FrameType.AUTH and self.factory.behaviour is not None:
                self.transport.write(wire.ready(4242))
            elif frame.type is wire.FrameType.REQUEST:
                self.factory.behaviour(self, frame)
            elif frame.type is wire.FrameType.PING:
                self.transport.write(wire.pong(frame.payload))


def flood_beyond_window(agent, frame):
    chunk = b"x" * wire.CHUNK_SIZE
    for _ in range(wire.INITIAL_WINDOW // len(chunk) + 4):
        agent.transport.write(wire.data(frame.stream, chunk))


def honest(agent, frame):
    agent.transport.write(wire.result(frame.stream, {"ok": True}))


class RealTCPTests(TestCase):
    """
    A real listener on loopback plays the agent; the daemon's real
    connect path reaches it.
    """

    timeout = 30

    def listen(self, behaviour):
        factory = Factory.forProtocol(RogueAgent)
        factory.behaviour = behaviour
        port = global_reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    async def connect(self, port):
        connection = await connect_agent(global_reactor, f"tcp:127.0.0.1:{port}", SECRET,
                                         deadline=5)
        self.addCleanup(connection.disconnect)
        return connection

    async def test_floodCutOffHonestServed(self):
        """
        A rogue agent flooding DATA past its window is cut off with
        WINDOW_EXCEEDED, while an honest agent's connection beside it goes
        on answering.
        """
        rogue = await self.connect(self.listen(flood_beyond_window))
        fine = await self.connect(self.listen(honest))
        handler = RecordingHandler()
        stream = rogue.openStream(handler)
        rogue.send(wire.request(stream, "fs.read", {"path": "/x"}))
        lost = await rogue.whenLost()
        self.assertEqual(lost.code, Code.WINDOW_EXCEEDED)
        self.assertLessEqual(sum(len(f.payload) for f in handler.frames), wire.INITIAL_WINDOW)
        self.assertEqual(await fine.call("ping"), {"ok": True})

    async def test_stalledHandshakeTimesOut(self):
        """
        An agent that accepts the connection and never says READY fails
        the connect with TIMEOUT after the handshake timeout.
        """
        self.patch(agent_module, "HANDSHAKE_TIMEOUT", 0.3)
        port = self.listen(None)
        failed = Deferred.fromCoroutine(self.connect(port))
        lost = await self.assertFailure(failed, AgentLost)
        self.assertEqual(lost.code, Code.TIMEOUT)
