"""
Tests for L{sandboxd.protocols.agent.AgentConnection}: the daemon's side of
the agent protocol over a StringTransport, with the test playing the agent.
"""

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.internet.defer import CancelledError
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from agent import wire
from agent.wire import Code, FrameType
from sandboxd.protocols.agent import (
    AgentCallError,
    AgentConnection,
    AgentConnectionFactory,
    AgentLost,
    IAgentConnection,
    IStreamHandler,
)

SECRET = "5e" * 32
NONCE = "0123456789abcdef" * 2


@implementer(IStreamHandler)
class RecordingHandler:
    """
    A stream handler that records what it is given.
    """

    def __init__(self):
        self.frames = []
        self.lost = []

    def frameReceived(self, frame):
        self.frames.append(frame)

    def agentLost(self, stream, failure):
        self.lost.append((stream, failure))


class NoDelayTransport(StringTransport):
    noDelay = False

    def setTcpNoDelay(self, enabled):
        self.noDelay = enabled


class AgentConnectionTestCase(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.transport = StringTransport()
        self.connection = AgentConnection(SECRET, self.clock, label="sb-test")
        self.connection.makeConnection(self.transport)
        self.framer = wire.Framer()

    def sent(self):
        """
        The frames the connection wrote since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        return self.framer.feed(data)

    def receive(self, *frames):
        """
        The agent sends ``frames`` in one piece.
        """
        self.connection.dataReceived(b"".join(frames))

    def handshake(self, pid=77):
        """
        Complete HELLO / AUTH / READY; return the connection's whenReady.
        """
        ready = self.connection.whenReady()
        self.receive(wire.hello(NONCE))
        self.sent()
        self.receive(wire.ready(pid))
        return ready

    def lose(self, reason=ConnectionDone):
        self.connection.connectionLost(Failure(reason()))

    def assertAborted(self):
        self.assertTrue(self.transport.disconnecting)
        self.assertTrue(self.transport.disconnected, "not aborted")

    def assertLostWith(self, code):
        """
        Once the transport reports the loss, whenLost fires with AgentLost
        ``code``.
        """
        lost = self.connection.whenLost()
        self.lose(ConnectionLost)
        result = self.successResultOf(lost)
        self.assertIsInstance(result, AgentLost)
        self.assertEqual(result.code, code)


class InterfaceTests(AgentConnectionTestCase):
    """
    AgentConnection is an IAgentConnection.
    """

    def test_provides(self):
        """
        An AgentConnection provides every method and attribute of
        IAgentConnection.
        """
        self.assertTrue(verifyObject(IAgentConnection, self.connection))

    def test_connected(self):
        """
        C{connected} is False before the transport connects, True after,
        False again once it is lost.
        """
        fresh = AgentConnection(SECRET, self.clock)
        self.assertFalse(fresh.connected)
        self.assertTrue(self.connection.connected)
        self.lose()
        self.assertFalse(self.connection.connected)

    def test_noDelay(self):
        """
        On a TCP transport, Nagle is turned off (frames are small and
        latency-bound).
        """
        transport = NoDelayTransport()
        AgentConnection(SECRET, self.clock).makeConnection(transport)
        self.assertTrue(transport.noDelay)

    def test_factory(self):
        """
        The factory builds a connection with its secret and clock, which
        authenticates with that secret.
        """
        factory = AgentConnectionFactory(SECRET, self.clock, "sb-f")
        connection = factory.buildProtocol(None)
        self.assertIsInstance(connection, AgentConnection)
        self.assertIs(connection.factory, factory)
        self.assertEqual(connection.label, "sb-f")
        transport = StringTransport()
        connection.makeConnection(transport)
        connection.dataReceived(wire.hello(NONCE))
        (auth,) = wire.Framer().feed(transport.value())
        self.assertTrue(wire.check_mac(SECRET, NONCE, auth.json()["mac"]))


class HandshakeTests(AgentConnectionTestCase):
    """
    HELLO / AUTH / READY.
    """

    def test_authOnHello(self):
        """
        On HELLO the connection sends AUTH, version 1, whose MAC of the
        agent's nonce passes C{check_mac} with the sandbox secret (and only
        with it); the secret itself is not sent.
        """
        self.assertEqual(self.transport.value(), b"")
        self.receive(wire.hello(NONCE))
        (auth,) = self.sent()
        self.assertEqual((auth.type, auth.stream), (FrameType.AUTH, 0))
        body = auth.json()
        self.assertEqual(body["version"], wire.VERSION)
        self.assertTrue(wire.check_mac(SECRET, NONCE, body["mac"]))
        self.assertFalse(wire.check_mac("00" * 32, NONCE, body["mac"]))
        self.assertNotIn(SECRET.encode(), auth.payload)

    def test_readyFiresWhenReady(self):
        """
        READY fires C{whenReady()} with the connection and records the
        agent's pid; later calls fire at once.
        """
        ready = self.handshake(pid=4321)
        self.assertIs(self.successResultOf(ready), self.connection)
        self.assertEqual(self.connection.agent_pid, 4321)
        self.assertIs(self.successResultOf(self.connection.whenReady()), self.connection)
        self.assertFalse(self.transport.disconnecting)

    def test_notReadyBeforeReady(self):
        """
        HELLO alone does not make the connection ready.
        """
        ready = self.connection.whenReady()
        self.receive(wire.hello(NONCE))
        self.assertNoResult(ready)

    def test_handshakeByteByByte(self):
        """
        The handshake works however the agent's bytes are split.
        """
        ready = self.connection.whenReady()
        for byte in wire.hello(NONCE):
            self.connection.dataReceived(bytes([byte]))
        (auth,) = self.sent()
        self.assertEqual(auth.type, FrameType.AUTH)
        for byte in wire.ready(1):
            self.connection.dataReceived(bytes([byte]))
        self.assertIs(self.successResultOf(ready), self.connection)

    def test_wrongVersion(self):
        """
        A HELLO of another version gets no AUTH; the connection aborts and
        C{whenReady} fails with AgentLost VERSION_MISMATCH.
        """
        ready = self.connection.whenReady()
        self.receive(wire.encode_json(FrameType.HELLO, 0, {"version": 2, "nonce": NONCE}))
        self.assertEqual(self.sent(), [])
        self.assertAborted()
        self.lose(ConnectionLost)
        self.assertEqual(self.failureResultOf(ready, AgentLost).value.code, Code.VERSION_MISMATCH)

    def test_nothingAfterFailedHandshake(self):
        """
        A READY arriving in the same read as a HELLO of the wrong version
        does not make the aborted connection ready.
        """
        ready = self.connection.whenReady()
        self.receive(
            wire.encode_json(FrameType.HELLO, 0, {"version": 2, "nonce": NONCE}),
            wire.ready(1),
        )
        self.assertAborted()
        self.lose(ConnectionLost)
        self.assertEqual(self.failureResultOf(ready, AgentLost).value.code, Code.VERSION_MISMATCH)

    def test_errorDuringHandshake(self):
        """
        ERROR on stream 0 before READY (the agent refusing AUTH) aborts and
        fails C{whenReady} with AgentLost carrying the agent's code.
        """
        ready = self.connection.whenReady()
        self.receive(wire.hello(NONCE))
        self.receive(wire.error(0, Code.AUTH_FAILED, "bad mac"))
        self.assertAborted()
        self.lose(ConnectionLost)
        failure = self.failureResultOf(ready, AgentLost)
        self.assertEqual(
            (failure.value.code, failure.value.message), (Code.AUTH_FAILED, "bad mac")
        )

    def test_unexpectedFrameBeforeReady(self):
        """
        Any frame before READY other than HELLO, READY or ERROR (a PING, a
        RESULT, an AUTH) fails C{whenReady} with UNEXPECTED_FRAME.
        """
        for frame in (wire.ping(b"x"), wire.result(1, {}), wire.auth(SECRET, NONCE)):
            self.setUp()
            ready = self.connection.whenReady()
            self.receive(frame)
            self.assertAborted()
            self.lose(ConnectionLost)
            self.assertEqual(
                self.failureResultOf(ready, AgentLost).value.code, Code.UNEXPECTED_FRAME
            )

    def test_lostDuringHandshake(self):
        """
        The connection closing before READY fails C{whenReady} with
        SANDBOX_UNAVAILABLE.
        """
        ready = self.connection.whenReady()
        self.receive(wire.hello(NONCE))
        self.lose()
        self.assertEqual(
            self.failureResultOf(ready, AgentLost).value.code, Code.SANDBOX_UNAVAILABLE
        )


class StreamTests(AgentConnectionTestCase):
    """
    Streams multiplexed over the one connection.
    """

    def setUp(self):
        super().setUp()
        self.successResultOf(self.handshake())

    def test_distinctIds(self):
        """
        C{openStream} gives each handler a new nonzero id.
        """
        ids = [self.connection.openStream(RecordingHandler()) for _ in range(100)]
        self.assertEqual(len(set(ids)), 100)
        self.assertNotIn(0, ids)
        self.assertEqual(self.connection.openStreams, 100)

    def test_routing(self):
        """
        Each frame reaches the handler of its stream, in order; frames for
        a stream already closed (still in flight) are dropped.
        """
        one, two = RecordingHandler(), RecordingHandler()
        a = self.connection.openStream(one)
        b = self.connection.openStream(two)
        closed = self.connection.openStream(RecordingHandler())
        self.connection.closeStream(closed)
        self.receive(
            wire.data(a, b"out", wire.CHANNEL_STDOUT),
            wire.data(b, b"body"),
            wire.event(a, {"n": 1}),
            wire.result(b, {}),
            wire.data(closed, b"stray"),
        )
        self.assertEqual(
            [(f.type, f.stream, f.payload) for f in one.frames],
            [(FrameType.DATA, a, b"out"), (FrameType.EVENT, a, b'{"n":1}')],
        )
        self.assertEqual(one.frames[0].flags, wire.CHANNEL_STDOUT)
        self.assertEqual([(f.type, f.stream) for f in two.frames],
                         [(FrameType.DATA, b), (FrameType.RESULT, b)])
        self.assertFalse(self.transport.disconnecting)

    def test_closeStream(self):
        """
        After C{closeStream}, frames for that stream are dropped.
        """
        handler = RecordingHandler()
        stream = self.connection.openStream(handler)
        self.connection.closeStream(stream)
        self.connection.closeStream(stream)
        self.receive(wire.data(stream, b"late"))
        self.assertEqual(handler.frames, [])
        self.assertEqual(self.connection.openStreams, 0)

    def test_send(self):
        """
        C{send} writes the bytes to the agent as they are.
        """
        self.connection.send(wire.cancel(3))
        self.assertEqual(self.transport.value(), wire.cancel(3))

    def test_callResult(self):
        """
        C{call} sends a REQUEST on a new stream and fires with the JSON of
        its RESULT, closing the stream.
        """
        d = self.connection.call("fs.stat", {"path": "/"})
        (request,) = self.sent()
        self.assertEqual(request.type, FrameType.REQUEST)
        self.assertEqual(request.json(), {"method": "fs.stat", "params": {"path": "/"}})
        self.assertNoResult(d)
        self.receive(wire.result(request.stream, {"type": "dir"}))
        self.assertEqual(self.successResultOf(d), {"type": "dir"})
        self.assertEqual(self.connection.openStreams, 0)

    def test_callsConcurrent(self):
        """
        Two calls in flight are answered independently, in any order.
        """
        first = self.connection.call("ping")
        second = self.connection.call("ping")
        req1, req2 = self.sent()
        self.assertNotEqual(req1.stream, req2.stream)
        self.receive(wire.result(req2.stream, {"n": 2}))
        self.assertNoResult(first)
        self.receive(wire.result(req1.stream, {"n": 1}))
        self.assertEqual(
            (self.successResultOf(first), self.successResultOf(second)),
            ({"n": 1}, {"n": 2}),
        )

    def test_callError(self):
        """
        An ERROR answer fails the call with AgentCallError carrying the
        code, message and the remaining details.
        """
        d = self.connection.call("fs.read", {"path": "/nope"})
        (request,) = self.sent()
        self.receive(wire.error(request.stream, "ENOENT", "no such file", path="/nope"))
        error = self.failureResultOf(d, AgentCallError).value
        self.assertEqual(
            (error.code, error.message, error.details),
            ("ENOENT", "no such file", {"path": "/nope"}),
        )
        self.assertEqual(self.connection.openStreams, 0)

    def test_callIgnoresProgress(self):
        """
        EVENT and DATA before the RESULT do not answer a call.
        """
        d = self.connection.call("fs.list", {"path": "/"})
        (request,) = self.sent()
        self.receive(wire.event(request.stream, {"entries": []}))
        self.assertNoResult(d)
        self.receive(wire.result(request.stream, {"count": 0}))
        self.assertEqual(self.successResultOf(d), {"count": 0})

    def test_callBadResult(self):
        """
        A RESULT whose payload is not a JSON object is a protocol error: the
        connection aborts and the call fails (it does not hang).
        """
        d = self.connection.call("ping")
        (request,) = self.sent()
        self.receive(wire.encode(FrameType.RESULT, request.stream, b"not json"))
        self.assertAborted()
        self.lose(ConnectionLost)
        self.assertEqual(self.failureResultOf(d, AgentLost).value.code, Code.BAD_PAYLOAD)

    def test_callLost(self):
        """
        A call in flight when the connection is lost fails with AgentLost
        SANDBOX_UNAVAILABLE.
        """
        d = self.connection.call("process.exec", {"cmd": "sleep 100"})
        self.lose(ConnectionLost)
        self.assertEqual(
            self.failureResultOf(d, AgentLost).value.code, Code.SANDBOX_UNAVAILABLE
        )


class PingTests(AgentConnectionTestCase):
    """
    C{ping(timeout)}: connection-level liveness.
    """

    def setUp(self):
        super().setUp()
        self.successResultOf(self.handshake())

    def test_pong(self):
        """
        C{ping} sends a PING and fires True when the PONG echoing it comes
        back, cancelling its timer.
        """
        d = self.connection.ping(0.05)
        (ping,) = self.sent()
        self.assertEqual((ping.type, ping.stream), (FrameType.PING, 0))
        self.assertNoResult(d)
        self.receive(wire.pong(ping.payload))
        self.assertIs(self.successResultOf(d), True)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout(self):
        """
        Without a PONG, C{ping} fires False once the clock passes the
        timeout, not before; a late PONG changes nothing.
        """
        d = self.connection.ping(0.05)
        (ping,) = self.sent()
        self.clock.advance(0.04)
        self.assertNoResult(d)
        self.clock.advance(0.01)
        self.assertIs(self.successResultOf(d), False)
        self.receive(wire.pong(ping.payload))
        self.assertFalse(self.transport.disconnecting)

    def test_pongsMatchPings(self):
        """
        A PONG answers only the PING whose payload it echoes.
        """
        first = self.connection.ping(1)
        second = self.connection.ping(1)
        ping1, ping2 = self.sent()
        self.assertNotEqual(ping1.payload, ping2.payload)
        self.receive(wire.pong(ping2.payload))
        self.assertNoResult(first)
        self.assertIs(self.successResultOf(second), True)
        self.receive(wire.pong(b"unknown"))
        self.assertNoResult(first)

    def test_notConnected(self):
        """
        C{ping} on a connection that is not (or no longer) connected fires
        False at once without writing.
        """
        self.assertIs(
            self.successResultOf(AgentConnection(SECRET, self.clock).ping(1)), False
        )
        self.lose()
        self.transport.clear()
        self.assertIs(self.successResultOf(self.connection.ping(1)), False)
        self.assertEqual(self.transport.value(), b"")

    def test_lostWhilePinging(self):
        """
        A ping in flight when the connection is lost fires False and leaves
        no timer behind.
        """
        d = self.connection.ping(5)
        self.lose(ConnectionLost)
        self.assertIs(self.successResultOf(d), False)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_answersAgentPing(self):
        """
        A PING from the agent is answered with a PONG of the same payload.
        """
        self.receive(wire.ping(b"agent-ping"))
        (pong,) = self.sent()
        self.assertEqual((pong.type, pong.payload), (FrameType.PONG, b"agent-ping"))


class LossTests(AgentConnectionTestCase):
    """
    Losing the connection, closing it, and peers that break the protocol.
    """

    def setUp(self):
        super().setUp()
        self.successResultOf(self.handshake())

    def test_streamsToldOnLoss(self):
        """
        When the connection is lost every open stream's handler gets
        C{agentLost(stream, AgentLost SANDBOX_UNAVAILABLE)} and
        C{whenLost()} fires with that AgentLost.
        """
        handlers = [RecordingHandler() for _ in range(3)]
        streams = [self.connection.openStream(h) for h in handlers]
        self.connection.closeStream(streams[1])
        lost = self.connection.whenLost()
        self.assertNoResult(lost)
        self.lose(ConnectionLost)
        reason = self.successResultOf(lost)
        self.assertIsInstance(reason, AgentLost)
        self.assertEqual(reason.code, Code.SANDBOX_UNAVAILABLE)
        self.assertEqual(handlers[0].lost, [(streams[0], reason)])
        self.assertEqual(handlers[1].lost, [])
        self.assertEqual(handlers[2].lost, [(streams[2], reason)])
        self.assertEqual(self.connection.openStreams, 0)
        self.assertIs(self.successResultOf(self.connection.whenLost()), reason)

    def test_vmAgentRestarted(self):
        """
        A VM's agent started again by its PID 1 writes SANDBOXD-RESET on its
        port (a broken frame header): the connection is dropped and its
        streams told SANDBOX_UNAVAILABLE (the sandbox lives; the link
        reconnects), not the framing error.
        """
        handler = RecordingHandler()
        stream = self.connection.openStream(handler)
        lost = self.connection.whenLost()
        self.connection.dataReceived(b"\nSANDBOXD-RESET\n")
        self.assertTrue(self.transport.disconnected)
        self.lose(ConnectionLost)
        reason = self.successResultOf(lost)
        self.assertEqual((Code.SANDBOX_UNAVAILABLE, "the sandbox's agent restarted"),
                         (reason.code, reason.message))
        self.assertEqual([(stream, reason)], handler.lost)

    def test_cancelledWaiterIsForgotten(self):
        """
        Cancelling a C{whenLost()} Deferred (a closing session does) removes
        it, so waiters do not pile up on a long-lived connection; the others
        still fire on loss.
        """
        kept = self.connection.whenLost()
        for _ in range(100):
            waiter = self.connection.whenLost()
            waiter.cancel()
            self.failureResultOf(waiter, CancelledError)
        self.assertEqual(len(self.connection._lost_waiters), 1)
        self.lose(ConnectionLost)
        self.assertIsInstance(self.successResultOf(kept), AgentLost)

    def test_handlerFailureContained(self):
        """
        A handler raising in C{agentLost} is logged and the other handlers
        are still told.
        """

        @implementer(IStreamHandler)
        class Broken(RecordingHandler):
            def agentLost(self, stream, failure):
                raise RuntimeError("handler bug")

        self.connection.openStream(Broken())
        after = RecordingHandler()
        self.connection.openStream(after)
        self.lose()
        self.assertEqual(len(after.lost), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_disconnect(self):
        """
        C{disconnect} closes the transport (cleanly, not an abort); once it
        is gone, open streams and C{whenLost} get SANDBOX_UNAVAILABLE.
        """
        handler = RecordingHandler()
        stream = self.connection.openStream(handler)
        lost = self.connection.whenLost()
        self.connection.disconnect()
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.disconnected)
        self.lose()
        reason = self.successResultOf(lost)
        self.assertEqual(reason.code, Code.SANDBOX_UNAVAILABLE)
        self.assertEqual(handler.lost, [(stream, reason)])

    def test_disconnectWhenNotConnected(self):
        """
        C{disconnect} on a connection that never connected does nothing.
        """
        AgentConnection(SECRET, self.clock).disconnect()
        self.lose()
        self.connection.disconnect()

    def test_garbageAborts(self):
        """
        A malformed frame from the agent aborts the connection, with the
        framing error's code.
        """
        self.receive(b"\x00\x00\x00\x06\x99\x00\x00\x00\x00\x01")
        self.assertAborted()
        self.assertLostWith(Code.UNKNOWN_FRAME_TYPE)

    def test_oversizedFrameAborts(self):
        """
        A header announcing more than MAX_PAYLOAD aborts the connection at
        once.
        """
        self.receive(wire.HEADER.pack(6 + wire.MAX_PAYLOAD + 1, FrameType.DATA, 0, 1))
        self.assertAborted()
        self.assertLostWith(Code.FRAME_TOO_LARGE)

    def test_errorOnStreamZero(self):
        """
        An ERROR on stream 0 after READY ends the connection with the
        agent's code.
        """
        self.receive(wire.error(0, Code.INTERNAL, "agent crashed"))
        self.assertAborted()
        self.assertLostWith(Code.INTERNAL)

    def test_unexpectedAfterReady(self):
        """
        A handshake frame after READY is UNEXPECTED_FRAME.
        """
        self.receive(wire.hello(NONCE))
        self.assertAborted()
        self.assertLostWith(Code.UNEXPECTED_FRAME)

    def test_truncatedReadIsNotAnError(self):
        """
        Part of a frame waits for the rest; it is not an error.
        """
        handler = RecordingHandler()
        stream = self.connection.openStream(handler)
        frame = wire.data(stream, b"x" * 100)
        self.receive(frame[:50])
        self.assertFalse(self.transport.disconnecting)
        self.receive(frame[50:])
        self.assertEqual(len(handler.frames), 1)
