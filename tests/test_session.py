"""
Tests for L{sandboxd.api.session}: the WebSocket session relaying a client's
frames to a sandbox's shared agent connection and back.

Most tests drive the relay logic of a L{SandboxSession} directly, with a fake
agent connection and the WebSocket output recorded at the close-frame level
(C{sendCloseFrame}, so the close codes autobahn would refuse to send are
caught).  L{EndToEndTests} run a real autobahn client against the session
over L{twisted.test.iosim}, with time on a L{Clock}.
"""

import itertools

from autobahn.websocket import protocol as autobahn_protocol
from autobahn.twisted.websocket import (
    ConnectionDeny,
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerProtocol,
)
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from agent import wire
from agent.wire import Code, FrameType
from sandboxd.api import detached
from sandboxd.api import sentlog
from sandboxd.api import session as session_module
from sandboxd.lifecycle import Lifecycle
from sandboxd.sandbox import State
from sandboxd.api.session import (
    CLOSE_AGENT_LOST,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REPLACED,
    SandboxSession,
    SessionFactory,
    sandbox_id_from_path,
)
from sandboxd.protocols.agent import AgentLost, IAgentConnection, IStreamHandler


@implementer(IAgentConnection)
class FakeAgentConnection:
    """
    An agent connection that records what the session does with it.
    """

    def __init__(self):
        self.connected = True
        self.sent = []
        self.streams = {}
        self.closed = []
        self.lostWaiters = []
        self._ids = itertools.count(101)

    def openStream(self, handler):
        stream = next(self._ids)
        self.streams[stream] = handler
        return stream

    def closeStream(self, stream):
        self.closed.append(stream)
        self.streams.pop(stream, None)

    def reassign(self, stream, handler):
        if stream in self.streams:
            self.streams[stream] = handler

    def send(self, data):
        self.sent.append(bytes(data))

    def call(self, method, params=None):
        return Deferred()

    def ping(self, timeout):
        return succeed(self.connected)

    def disconnect(self, reason="the sandbox was destroyed"):
        self.connected = False

    def abort(self, reason):
        self.connected = False

    def whenLost(self):
        waiter = Deferred()
        self.lostWaiters.append(waiter)
        return waiter

    def lose(self, lost):
        """
        The agent connection goes away: tell every open stream, then
        C{whenLost} waiters, as AgentConnection does.
        """
        self.connected = False
        streams, self.streams = self.streams, {}
        for stream, handler in streams.items():
            handler.agentLost(stream, lost)
        waiters, self.lostWaiters = self.lostWaiters, []
        for waiter in waiters:
            waiter.callback(lost)


class FakeSandbox:
    def __init__(self, connection, ttl=0):
        self.id = "sb-1"
        self.connection = connection
        self.ttl = ttl
        self.alive = True
        self.state = State.RUNNING

    def moveTo(self, state):
        self.state = state


class FakeManager:
    """
    The sandboxes by id, a real lifecycle, and the sandboxes the session
    registry said were taken into use or left idle.
    """

    def __init__(self, sandboxes):
        self.sandboxes = sandboxes
        self.lifecycle = Lifecycle()
        self.used = []
        self.idled = []
        self.destroyed = []

    def get(self, sandbox_id):
        return self.sandboxes.get(sandbox_id)

    def destroy(self, sandbox_id, reason="DELETE"):
        """
        Forget the sandbox and move it to destroying, as the manager does
        (its sessions close through the registry).
        """
        sandbox = self.sandboxes.pop(sandbox_id, None)
        if sandbox is None:
            return False
        self.destroyed.append((sandbox_id, reason))
        self.lifecycle.move(sandbox, State.DESTROYING, reason)
        return True

    def inUse(self, sandbox):
        self.used.append(sandbox)

    def idle(self, sandbox):
        self.idled.append(sandbox)

    @property
    def registry(self):
        """
        The session registry of the last SessionFactory made on this manager.
        """
        return self.lifecycle.observers[-1]


class FakeRequest:
    def __init__(self, path, params=None):
        self.path = path
        self.params = params or {}


class SessionTestCase(TestCase):
    def setUp(self):
        self.connection = FakeAgentConnection()
        self.sandbox = FakeSandbox(self.connection)
        self.session = SandboxSession()
        self.manager = FakeManager({"sb-1": self.sandbox})
        self.session.factory = SessionFactory(self.manager)
        self.session.sandbox = self.sandbox
        self.session._connection = self.connection
        self.session._to_agent = {}
        self.session._to_client = {}
        self.session._closing = False
        self.session._owed = {}
        self.session._resumed = None
        self.session._log = sentlog.SentLog()
        self.session.token = "t" * 32
        self.messages = []
        self.closes = []
        self.session.sendMessage = self.recordMessage
        self.session.sendCloseFrame = self.recordClose
        self.agentFramer = wire.Framer()

    def recordMessage(self, payload, isBinary=False, **kwargs):
        self.messages.append((bytes(payload), isBinary))

    def recordClose(self, code=None, reasonUtf8=None, isReply=False):
        self.closes.append(code)

    def fromClient(self, message, isBinary=True):
        self.session.onMessage(message, isBinary)

    def fromAgent(self, message):
        """
        The agent sends ``message``; the connection routes it to the session
        as AgentConnection would.
        """
        frame = wire.decode_one(message)
        handler = self.connection.streams.get(frame.stream)
        self.assertIs(handler, self.session)
        handler.frameReceived(frame)

    def toClient(self):
        """
        The frames sent to the client since the last call (each message
        binary and holding exactly one frame).
        """
        messages, self.messages = self.messages, []
        frames = []
        for payload, isBinary in messages:
            self.assertTrue(isBinary)
            frames.append(wire.decode_one(payload))
        return frames

    def toAgent(self):
        """
        The frames the session sent to the agent since the last call.
        """
        sent, self.connection.sent = self.connection.sent, []
        return [wire.decode_one(message) for message in sent]

    def openStream(self, client_stream, method="process.exec", params=None):
        """
        The client opens ``client_stream``; return the agent-side id.
        """
        self.fromClient(wire.request(client_stream, method, params or {"cmd": "true"}))
        (request,) = self.toAgent()
        self.assertEqual(request.type, FrameType.REQUEST)
        return request.stream

    def assertProtocolError(self, code):
        """
        The client got exactly one ERROR ``code`` on stream 0 and the
        WebSocket closes with 1002.
        """
        (error,) = self.toClient()
        self.assertEqual((error.type, error.stream), (FrameType.ERROR, 0))
        self.assertEqual(error.json()["code"], code)
        self.assertEqual(self.closes, [CLOSE_PROTOCOL_ERROR])


class InterfaceTests(SessionTestCase):
    """
    The fakes and the session provide the interfaces they stand for.
    """

    def test_fakeConnection(self):
        """
        The fake agent connection provides IAgentConnection.
        """
        self.assertTrue(verifyObject(IAgentConnection, self.connection))

    def test_sessionIsStreamHandler(self):
        """
        A session provides IStreamHandler, the agent connection's view of it.
        """
        self.assertTrue(verifyObject(IStreamHandler, self.session))


class ClientToAgentTests(SessionTestCase):
    """
    Frames from the client are relayed with the session's stream ids mapped
    to ids on the agent connection.
    """

    def test_requestOpensAgentStream(self):
        """
        A REQUEST on client stream 5 opens a stream on the agent connection
        (routed to the session) and is forwarded on it with the payload
        unchanged.
        """
        message = wire.request(5, "fs.read", {"path": "/etc/hostname"})
        self.fromClient(message)
        (stream,) = self.connection.streams
        self.assertIs(self.connection.streams[stream], self.session)
        self.assertEqual(self.connection.sent, [wire.restream(message, stream)])
        (request,) = self.toAgent()
        self.assertEqual((request.type, request.stream), (FrameType.REQUEST, stream))
        self.assertEqual(request.payload, message[wire.HEADER_SIZE :])
        self.assertEqual(self.toClient(), [])

    def test_distinctAgentIds(self):
        """
        Client streams, even equal ones from different sessions, map to
        distinct agent streams.
        """
        one = self.openStream(1)
        two = self.openStream(2)
        self.assertNotEqual(one, two)

    def test_streamFramesForwarded(self):
        """
        DATA (any channel), END, CANCEL and WINDOW on an open client stream
        are forwarded on its agent stream, flags and payload unchanged.
        """
        stream = self.openStream(5)
        messages = [
            wire.data(5, b"stdin bytes", wire.CHANNEL_BODY),
            wire.data(5, b"odd", wire.CHANNEL_STDERR),
            wire.window(5, 65536),
            wire.end(5),
            wire.cancel(5),
        ]
        for message in messages:
            self.fromClient(message)
        self.assertEqual(self.connection.sent, [wire.restream(m, stream) for m in messages])
        self.assertEqual(self.toClient(), [])
        self.assertEqual(self.closes, [])

    def test_unknownStreamDropped(self):
        """
        DATA, END, CANCEL and WINDOW for a client stream that is not open
        are dropped silently (they may cross a RESULT).
        """
        self.openStream(5)
        for message in (wire.data(6, b"x"), wire.end(6), wire.cancel(6), wire.window(6, 1)):
            self.fromClient(message)
        self.assertEqual(self.toAgent(), [])
        self.assertEqual(self.toClient(), [])
        self.assertEqual(self.closes, [])

    def test_streamInUse(self):
        """
        A REQUEST on a client stream already open is answered with ERROR
        STREAM_IN_USE on that stream; the open stream is untouched.
        """
        stream = self.openStream(5)
        self.fromClient(wire.request(5, "ping"))
        (error,) = self.toClient()
        self.assertEqual((error.type, error.stream), (FrameType.ERROR, 5))
        self.assertEqual(error.json()["code"], Code.STREAM_IN_USE)
        self.assertEqual(self.toAgent(), [])
        self.fromClient(wire.end(5))
        self.assertEqual([(f.type, f.stream) for f in self.toAgent()], [(FrameType.END, stream)])
        self.assertEqual(self.closes, [])

    def test_tooManyStreams(self):
        """
        A REQUEST beyond MAX_STREAMS open streams is refused with
        TOO_MANY_STREAMS on its stream.
        """
        for client_stream in range(1, wire.MAX_STREAMS + 1):
            self.fromClient(wire.request(client_stream, "ping"))
        self.assertEqual(len(self.toAgent()), wire.MAX_STREAMS)
        self.fromClient(wire.request(wire.MAX_STREAMS + 1, "ping"))
        (error,) = self.toClient()
        self.assertEqual((error.stream, error.json()["code"]),
                         (wire.MAX_STREAMS + 1, Code.TOO_MANY_STREAMS))
        self.assertEqual(self.toAgent(), [])

    def test_requestWhileAgentGone(self):
        """
        A REQUEST after the agent connection is gone gets ERROR
        SANDBOX_UNAVAILABLE on its stream and opens nothing.
        """
        self.connection.connected = False
        self.fromClient(wire.request(3, "ping"))
        (error,) = self.toClient()
        self.assertEqual((error.stream, error.json()["code"]), (3, Code.SANDBOX_UNAVAILABLE))
        self.assertEqual(self.connection.streams, {})

    def test_requestWhilePaused(self):
        """
        A REQUEST while the sandbox is paused gets ERROR SANDBOX_PAUSED on
        its stream and opens nothing; frames of streams already open still
        go to the agent (they wait there); resumed, requests are relayed.
        """
        stream = self.openStream(5)
        self.toAgent()
        self.sandbox.state = State.PAUSED
        self.fromClient(wire.request(3, "ping"))
        (error,) = self.toClient()
        self.assertEqual((error.stream, error.json()["code"]), (3, Code.SANDBOX_PAUSED))
        self.fromClient(wire.data(5, b"more"))
        (relayed,) = self.toAgent()
        self.assertEqual((relayed.type, relayed.stream), (FrameType.DATA, stream))
        self.sandbox.state = State.RUNNING
        self.fromClient(wire.request(3, "ping"))
        self.assertEqual(len(self.toAgent()), 1)

    def test_ping(self):
        """
        A PING from the client is answered by the daemon with a PONG of the
        same payload, not relayed; a PONG is ignored.
        """
        self.fromClient(wire.ping(b"hello?"))
        (pong,) = self.toClient()
        self.assertEqual((pong.type, pong.stream, pong.payload), (FrameType.PONG, 0, b"hello?"))
        self.fromClient(wire.pong(b"whatever"))
        self.assertEqual(self.toClient(), [])
        self.assertEqual(self.toAgent(), [])
        self.assertEqual(self.closes, [])


class ProtocolErrorTests(SessionTestCase):
    """
    Clients that break the protocol get ERROR on stream 0 and a 1002 close.
    """

    def test_textMessage(self):
        """
        A text message is BAD_PAYLOAD.
        """
        self.fromClient(wire.request(1, "ping").decode("latin-1"), isBinary=False)
        self.assertProtocolError(Code.BAD_PAYLOAD)
        self.assertEqual(self.toAgent(), [])

    def test_garbage(self):
        """
        A binary message that is not one frame gets the framing error's
        code.
        """
        cases = [
            (b"\x00\x00\x00\x06\x99\x00\x00\x00\x00\x01", Code.UNKNOWN_FRAME_TYPE),
            (b"\x00\x00", Code.TRUNCATED),
            (wire.end(1) + wire.end(2), Code.BAD_PAYLOAD),
            (wire.HEADER.pack(6, FrameType.DATA, 7, 1), Code.BAD_FLAGS),
        ]
        for message, code in cases:
            self.setUp()
            self.fromClient(message)
            self.assertProtocolError(code)

    def test_handshakeFrames(self):
        """
        HELLO, AUTH and READY from a client are UNEXPECTED_FRAME: sessions
        never see the agent handshake.
        """
        for message in (wire.hello("ab" * 16), wire.auth("00" * 32, "ab" * 16), wire.ready(1)):
            self.setUp()
            self.fromClient(message)
            self.assertProtocolError(Code.UNEXPECTED_FRAME)
            self.assertEqual(self.toAgent(), [])

    def test_agentOnlyFrames(self):
        """
        RESULT, ERROR and EVENT (agent-to-client frames) from a client are
        UNEXPECTED_FRAME and are not relayed.
        """
        for message in (wire.result(1), wire.error(1, "X", "y"), wire.event(1, {})):
            self.setUp()
            self.openStream(1)
            self.fromClient(message)
            self.assertProtocolError(Code.UNEXPECTED_FRAME)
            self.assertEqual(self.toAgent(), [])

    def test_closedOnce(self):
        """
        A second protocol error does not close the WebSocket again.
        """
        self.fromClient(b"junk")
        self.fromClient(b"more junk")
        self.assertEqual(self.closes, [CLOSE_PROTOCOL_ERROR])


class AgentToClientTests(SessionTestCase):
    """
    Frames from the agent are relayed with the client's stream id.
    """

    def test_progressForwarded(self):
        """
        DATA, EVENT, END and WINDOW from the agent reach the client on its
        stream id, flags and payload unchanged, and keep the stream open.
        """
        stream = self.openStream(5)
        messages = [
            wire.data(stream, b"out", wire.CHANNEL_STDOUT),
            wire.data(stream, b"err", wire.CHANNEL_STDERR),
            wire.event(stream, {"entries": []}),
            wire.window(stream, 1234),
            wire.end(stream),
        ]
        for message in messages:
            self.fromAgent(message)
        self.assertEqual(
            [bytes(m) for m, _ in self.messages], [wire.restream(m, 5) for m in messages]
        )
        self.assertIn(stream, self.connection.streams)
        self.assertEqual(self.connection.closed, [])

    def test_resultClosesMapping(self):
        """
        A RESULT reaches the client on its stream and ends the mapping: the
        agent stream is closed, later client frames on it are dropped and
        the client may reuse the id for a new request.
        """
        stream = self.openStream(5)
        self.fromAgent(wire.result(stream, {"exit_code": 0}))
        (result,) = self.toClient()
        self.assertEqual((result.type, result.stream), (FrameType.RESULT, 5))
        self.assertEqual(result.json(), {"exit_code": 0})
        self.assertEqual(self.connection.closed, [stream])
        self.fromClient(wire.data(5, b"late"))
        self.assertEqual(self.toAgent(), [])
        again = self.openStream(5)
        self.assertNotEqual(again, stream)

    def test_errorClosesMapping(self):
        """
        An ERROR reaches the client on its stream with its details and ends
        the mapping.
        """
        stream = self.openStream(8)
        self.fromAgent(wire.error(stream, "ENOENT", "no such file", path="/x"))
        (error,) = self.toClient()
        self.assertEqual((error.type, error.stream), (FrameType.ERROR, 8))
        self.assertEqual(error.json(), {"code": "ENOENT", "message": "no such file", "path": "/x"})
        self.assertEqual(self.connection.closed, [stream])
        self.assertEqual(self.session._to_agent, {})

    def test_unmappedAgentStreamDropped(self):
        """
        A frame from the agent for a stream the session does not map is
        dropped.
        """
        self.session.frameReceived(wire.decode_one(wire.result(4242, {})))
        self.assertEqual(self.messages, [])

    def test_streamsIndependent(self):
        """
        Answers go to the right client stream when several are open.
        """
        a = self.openStream(1)
        b = self.openStream(2)
        self.fromAgent(wire.data(b, b"for two"))
        self.fromAgent(wire.result(a, {}))
        self.assertEqual(
            [(f.type, f.stream, f.payload) for f in self.toClient()],
            [(FrameType.DATA, 2, b"for two"), (FrameType.RESULT, 1, b"{}")],
        )
        self.assertIn(b, self.connection.streams)


class EndingTests(SessionTestCase):
    """
    The agent going away, the client going away, the sandbox destroyed.
    """

    def test_agentLost(self):
        """
        C{agentLost} sends ERROR SANDBOX_UNAVAILABLE on the client stream and
        forgets the mapping.
        """
        one = self.openStream(1)
        two = self.openStream(2)
        lost = AgentLost(Code.SANDBOX_UNAVAILABLE, "the sandbox's agent connection closed")
        self.session.agentLost(one, lost)
        (error,) = self.toClient()
        self.assertEqual((error.type, error.stream), (FrameType.ERROR, 1))
        self.assertEqual(error.json()["code"], Code.SANDBOX_UNAVAILABLE)
        self.assertEqual(self.session._to_agent, {2: two})

    def test_agentLostUnknownStream(self):
        """
        C{agentLost} for a stream the session does not map sends nothing.
        """
        self.session.agentLost(999, AgentLost(Code.SANDBOX_UNAVAILABLE, "gone"))
        self.assertEqual(self.messages, [])

    def test_connectionLostClosesSession(self):
        """
        When the agent connection is lost, every open stream gets
        SANDBOX_UNAVAILABLE and the WebSocket closes with 1011.
        """
        self.session.onOpen()
        self.assertIn(self.session, self.manager.registry.sessionsOf(self.sandbox))
        self.openStream(1)
        self.openStream(2)
        self.connection.lose(AgentLost(Code.SANDBOX_UNAVAILABLE, "agent went away"))
        errors = self.toClient()
        self.assertEqual(
            sorted((f.type, f.stream, f.json()["code"]) for f in errors),
            [(FrameType.ERROR, 1, Code.SANDBOX_UNAVAILABLE),
             (FrameType.ERROR, 2, Code.SANDBOX_UNAVAILABLE)],
        )
        self.assertEqual(self.closes, [CLOSE_AGENT_LOST])

    def test_openWithAgentGone(self):
        """
        A session opening on a sandbox whose agent is already gone closes
        with 1011.
        """
        self.connection.connected = False
        self.session.onOpen()
        self.assertEqual(self.closes, [CLOSE_AGENT_LOST])

    def test_onCloseCancels(self):
        """
        When the WebSocket closes, each open stream is cancelled on the
        agent (CANCEL with the agent's id) and closed, and the session leaves
        the sandbox.
        """
        self.session.onOpen()
        one = self.openStream(1)
        two = self.openStream(2)
        self.fromAgent(wire.result(one, {}))
        self.connection.closed.clear()
        self.session.onClose(True, 1000, None)
        self.assertEqual(
            [(f.type, f.stream) for f in self.toAgent()], [(FrameType.CANCEL, two)]
        )
        self.assertEqual(self.connection.closed, [two])
        self.assertNotIn(self.session, self.manager.registry.sessionsOf(self.sandbox))
        self.assertEqual(self.session._to_agent, {})

    def test_onCloseAgentGone(self):
        """
        When the agent connection is already gone, closing sends no CANCEL.
        """
        self.openStream(1)
        self.connection.connected = False
        self.session.onClose(False, 1006, None)
        self.assertEqual(self.toAgent(), [])

    def test_onCloseBeforeOpen(self):
        """
        A WebSocket refused during the opening handshake (no sandbox) closes
        without touching any agent connection.
        """
        session = SandboxSession()
        session.onClose(False, 1006, None)

    def test_sandboxDestroyed(self):
        """
        C{sandboxUnavailable(normal=True)} fails every open stream with
        SANDBOX_UNAVAILABLE, closes their agent streams and closes the
        WebSocket with 1000.
        """
        one = self.openStream(1)
        two = self.openStream(2)
        self.session.sandboxUnavailable("the sandbox was destroyed", normal=True)
        self.assertEqual(
            sorted((f.type, f.stream, f.json()["code"]) for f in self.toClient()),
            [(FrameType.ERROR, 1, Code.SANDBOX_UNAVAILABLE),
             (FrameType.ERROR, 2, Code.SANDBOX_UNAVAILABLE)],
        )
        self.assertEqual(sorted(self.connection.closed), [one, two])
        self.assertEqual(self.closes, [CLOSE_NORMAL])


class ConnectTests(TestCase):
    """
    The opening handshake finds the sandbox from the path.
    """

    def makeSession(self, sandboxes):
        session = SandboxSession()
        session.factory = SessionFactory(FakeManager(sandboxes))
        return session

    def test_sandboxIdFromPath(self):
        """
        C{sandbox_id_from_path} takes the id out of C{/sandboxes/{id}/ws}
        (a trailing slash allowed) and gives None for any other path.
        """
        self.assertEqual(sandbox_id_from_path("/sandboxes/sb-123/ws"), "sb-123")
        self.assertEqual(sandbox_id_from_path("/sandboxes/sb-123/ws/"), "sb-123")
        for path in ("/", "/sandboxes/sb-123", "/sandboxes/sb-123/exec",
                     "/sandboxes/a/b/ws", "/other/sb-123/ws", "/sandboxes/ws"):
            self.assertIsNone(sandbox_id_from_path(path), path)

    def test_unknownSandbox(self):
        """
        A path naming no known sandbox (or no sandbox) is refused with 404.
        """
        connection = FakeAgentConnection()
        session = self.makeSession({"sb-1": FakeSandbox(connection)})
        for path in ("/sandboxes/sb-2/ws", "/sandboxes//ws", "/elsewhere"):
            e = self.assertRaises(ConnectionDeny, session.onConnect, FakeRequest(path))
            self.assertEqual(e.code, 404)

    def test_sandboxWithoutConnection(self):
        """
        A sandbox with no agent connection (still booting) is refused with
        404.
        """
        session = self.makeSession({"sb-1": FakeSandbox(None)})
        e = self.assertRaises(
            ConnectionDeny, session.onConnect, FakeRequest("/sandboxes/sb-1/ws")
        )
        self.assertEqual(e.code, 404)

    def test_knownSandbox(self):
        """
        A known sandbox is accepted (no subprotocol, a fresh resume token in
        X-Sandbox-Session) and the session uses its agent connection.
        """
        connection = FakeAgentConnection()
        sandbox = FakeSandbox(connection)
        session = self.makeSession({"sb-1": sandbox})
        protocol, headers = session.onConnect(FakeRequest("/sandboxes/sb-1/ws"))
        self.assertIsNone(protocol)
        self.assertRegex(headers["X-Sandbox-Session"], "^[0-9a-f]{32}$")
        self.assertIs(session.sandbox, sandbox)
        self.assertIs(session._connection, connection)

    def test_factoryLimits(self):
        """
        The factory lets through a message holding the largest frame and
        does not fragment outgoing ones.
        """
        factory = SessionFactory(FakeManager({}))
        self.assertEqual(factory.maxMessagePayloadSize, wire.MAX_PAYLOAD + wire.HEADER_SIZE)
        self.assertEqual(factory.maxFramePayloadSize, wire.MAX_PAYLOAD + wire.HEADER_SIZE)
        self.assertEqual(factory.autoFragmentSize, 0)


class ClockTimer:
    """
    Stands in for autobahn's batched timer (C{factory._batched_timer}), so
    handshake timeouts run on the test's Clock, not the global reactor.
    """

    def __init__(self, clock):
        self._clock = clock

    def call_later(self, delay, function, *args, **kwargs):
        return self._clock.callLater(delay, function, *args, **kwargs)


class RecordingClient(WebSocketClientProtocol):
    """
    A WebSocket client that records what the server sends.
    """

    def __init__(self):
        super().__init__()
        self.opened = False
        self.received = []
        self.closed = None

    def onConnect(self, response):
        self.token = response.headers.get("x-sandbox-session")

    def onOpen(self):
        self.opened = True

    def onMessage(self, payload, isBinary):
        self.received.append((payload, isBinary))

    def onClose(self, wasClean, code, reason):
        self.closed = code


class DestroyTests(SessionTestCase):
    """
    ``sandbox.destroy``: the one method the session answers itself.
    """

    def test_destroys(self):
        """
        The daemon destroys the sandbox as DELETE would, answers RESULT on
        the request's stream before failing the other open streams, and
        closes with 1000; the request never reaches the agent.
        """
        self.session.onOpen()
        self.openStream(1)
        self.fromClient(wire.request(3, wire.DESTROY_METHOD))
        self.assertEqual(self.manager.destroyed, [("sb-1", "DELETE")])
        frames = self.toClient()
        self.assertEqual([(f.type, f.stream) for f in frames],
                         [(FrameType.RESULT, 3), (FrameType.ERROR, 1)])
        self.assertEqual(frames[0].json(), {"id": "sb-1"})
        self.assertEqual(frames[1].json()["code"], Code.SANDBOX_UNAVAILABLE)
        self.assertEqual(self.closes, [CLOSE_NORMAL])
        self.assertEqual(self.toAgent(), [])

    def test_params(self):
        """
        Parameters are BAD_PARAMS, as the agent answers unknown ones; the
        sandbox stays.
        """
        self.fromClient(wire.request(3, wire.DESTROY_METHOD, {"force": True}))
        (error,) = self.toClient()
        self.assertEqual((error.type, error.stream, error.json()["code"]),
                         (FrameType.ERROR, 3, Code.BAD_PARAMS))
        self.assertEqual(self.manager.destroyed, [])
        self.assertEqual(self.closes, [])

    def test_streamInUse(self):
        """
        On a stream already open it is STREAM_IN_USE; the sandbox stays.
        """
        self.openStream(3)
        self.fromClient(wire.request(3, wire.DESTROY_METHOD))
        (error,) = self.toClient()
        self.assertEqual(error.json()["code"], Code.STREAM_IN_USE)
        self.assertEqual(self.manager.destroyed, [])

    def test_alreadyGone(self):
        """
        A sandbox the manager no longer has (destroyed meanwhile) is
        SANDBOX_NOT_FOUND, as DELETE would answer.
        """
        self.manager.sandboxes.clear()
        self.fromClient(wire.request(3, wire.DESTROY_METHOD))
        (error,) = self.toClient()
        self.assertEqual((error.stream, error.json()["code"]), (3, "SANDBOX_NOT_FOUND"))
        self.assertEqual(self.manager.destroyed, [])

    def test_closing(self):
        """
        On a session already closing (its sandbox failed) it is
        SANDBOX_UNAVAILABLE, on which the SDKs ask DELETE instead; nothing
        is destroyed.
        """
        self.session.sandboxUnavailable("the sandbox failed: gone")
        self.toClient()
        self.fromClient(wire.request(3, wire.DESTROY_METHOD))
        (error,) = self.toClient()
        self.assertEqual((error.stream, error.json()["code"]), (3, Code.SANDBOX_UNAVAILABLE))
        self.assertEqual(self.manager.destroyed, [])

    def test_sealedRelayed(self):
        """
        A sealed request naming the method belongs to the agent (the
        daemon cannot answer inside an encrypted session): relayed.
        """
        name = wire.DESTROY_METHOD.encode()
        sealed = wire.encode(FrameType.REQUEST, 3, b"\x01" + b"s" * 16 + bytes([len(name)]) + name,
                             wire.SEALED)
        self.fromClient(sealed)
        (relayed,) = self.toAgent()
        self.assertEqual(relayed.type, FrameType.REQUEST)
        self.assertEqual(self.manager.destroyed, [])

    def test_otherMethodsRelayed(self):
        """
        Only the method itself is answered: a request that merely mentions
        it (a command echoing the name) goes to the agent.
        """
        self.openStream(3, params={"cmd": ["echo", wire.DESTROY_METHOD]})
        self.assertEqual(self.manager.destroyed, [])


class EndToEndBase(TestCase):
    """
    A real autobahn client talks to a session over an in-memory connection.
    """

    def setUp(self):
        self.clock = Clock()
        self.connection = FakeAgentConnection()
        self.sandbox = FakeSandbox(self.connection)
        self.manager = FakeManager({"sb-1": self.sandbox})

    def connect(self, path="/sandboxes/sb-1/ws"):
        # One factory, as in the daemon: it keeps the detached sessions.
        server_factory = getattr(self, "serverFactory", None)
        if server_factory is None:
            server_factory = self.serverFactory = SessionFactory(self.manager, self.clock)
        server_factory.reactor = self.clock
        server_factory._batched_timer = ClockTimer(self.clock)
        client_factory = WebSocketClientFactory("ws://localhost" + path, reactor=self.clock)
        client_factory.protocol = RecordingClient
        client_factory.setProtocolOptions(serverConnectionDropTimeout=0)
        client_factory._batched_timer = ClockTimer(self.clock)
        address = IPv4Address("TCP", "127.0.0.1", 7522)
        self.server = server_factory.buildProtocol(address)
        self.client = client_factory.buildProtocol(address)
        self.pump = iosim.connect(
            self.server,
            iosim.makeFakeServer(self.server),
            self.client,
            iosim.makeFakeClient(self.client),
            clock=self.clock,
        )
        self.pump.flush()

    def clientFrames(self):
        received, self.client.received = self.client.received, []
        return [wire.decode_one(payload) for payload, isBinary in received if isBinary]


class EndToEndTests(EndToEndBase):
    """
    Relaying, closing and errors over a real WebSocket.
    """

    def test_requestAndResult(self):
        """
        A REQUEST sent by a client reaches the agent on an agent stream and
        the agent's RESULT comes back on the client's stream.
        """
        self.connect()
        self.assertTrue(self.client.opened)
        self.assertIn(self.server, self.manager.registry.sessionsOf(self.sandbox))
        self.client.sendMessage(wire.request(5, "ping"), isBinary=True)
        self.pump.flush()
        (request,) = [wire.decode_one(m) for m in self.connection.sent]
        self.assertEqual(request.json(), {"method": "ping", "params": {}})
        self.connection.streams[request.stream].frameReceived(
            wire.decode_one(wire.result(request.stream, {}))
        )
        self.pump.flush()
        (result,) = self.clientFrames()
        self.assertEqual((result.type, result.stream), (FrameType.RESULT, 5))

    def test_factoryOptions(self):
        """
        A session takes every option of its factory, as Autobahn's own copy
        would, and Autobahn is left no options to pretty-print (its debug
        dump, made on every connection whether logged or not).
        """
        printed = []
        self.patch(autobahn_protocol, "pformat", lambda obj: printed.append(obj) or "")
        self.connect()
        self.assertTrue(self.client.opened)
        self.assertEqual(
            {name: getattr(self.server, name) for name in WebSocketServerProtocol.CONFIG_ATTRS},
            {name: getattr(self.serverFactory, name)
             for name in WebSocketServerProtocol.CONFIG_ATTRS})
        self.assertEqual(self.server.maxFramePayloadSize, wire.MAX_PAYLOAD + wire.HEADER_SIZE)
        # The client's connection still makes its dump; the server's made none.
        dumped = [item[0] for obj in printed if isinstance(obj, list) for item in obj]
        self.assertIn("maskClientFrames", dumped)
        self.assertNotIn("requireMaskedClientFrames", dumped)

    def test_textMessageClose1002(self):
        """
        A text message gets ERROR BAD_PAYLOAD on stream 0 and the client
        sees the WebSocket close with code 1002.
        """
        self.connect()
        self.client.sendMessage(b"hello", isBinary=False)
        self.pump.flush()
        (error,) = self.clientFrames()
        self.assertEqual((error.stream, error.json()["code"]), (0, Code.BAD_PAYLOAD))
        self.assertEqual(self.client.closed, CLOSE_PROTOCOL_ERROR)

    def test_agentLostClose1011(self):
        """
        When the agent connection is lost the client's open stream gets
        SANDBOX_UNAVAILABLE and the WebSocket closes with code 1011, even
        with a long non-ASCII reason.
        """
        self.connect()
        self.client.sendMessage(wire.request(1, "process.stream", {"cmd": "yes"}), isBinary=True)
        self.pump.flush()
        self.connection.lose(AgentLost(Code.SANDBOX_UNAVAILABLE, "\u00e9" * 200))
        self.pump.flush()
        (error,) = self.clientFrames()
        self.assertEqual((error.stream, error.json()["code"]), (1, Code.SANDBOX_UNAVAILABLE))
        self.assertEqual(self.client.closed, CLOSE_AGENT_LOST)

    def test_destroyedClose1000(self):
        """
        C{sandboxUnavailable(normal=True)} closes the client's WebSocket with
        code 1000.
        """
        self.connect()
        self.server.sandboxUnavailable("the sandbox was destroyed", normal=True)
        self.pump.flush()
        self.assertEqual(self.client.closed, CLOSE_NORMAL)
        self.assertNotIn(self.server, self.manager.registry.sessionsOf(self.sandbox))

    def test_destroyOverSession(self):
        """
        Over a real WebSocket: ``sandbox.destroy`` gets its RESULT, then the
        WebSocket closes with 1000.
        """
        self.connect()
        self.client.sendMessage(wire.request(1, wire.DESTROY_METHOD), isBinary=True)
        self.pump.flush()
        (result,) = self.clientFrames()
        self.assertEqual((result.type, result.stream), (FrameType.RESULT, 1))
        self.assertEqual(self.client.closed, CLOSE_NORMAL)
        self.assertEqual(self.manager.destroyed, [("sb-1", "DELETE")])

    def test_clientCloseCancels(self):
        """
        A client closing its WebSocket cancels its open streams on the agent.
        """
        self.connect()
        self.client.sendMessage(wire.request(1, "process.stream", {"cmd": "yes"}), isBinary=True)
        self.pump.flush()
        (request,) = [wire.decode_one(m) for m in self.connection.sent]
        self.connection.sent.clear()
        self.client.sendClose(1000)
        self.pump.flush()
        (cancel,) = [wire.decode_one(m) for m in self.connection.sent]
        self.assertEqual((cancel.type, cancel.stream), (FrameType.CANCEL, request.stream))
        self.assertNotIn(self.server, self.manager.registry.sessionsOf(self.sandbox))

    def test_unknownSandboxRefused(self):
        """
        Connecting to a sandbox the manager does not know never opens a
        session.
        """
        self.connect("/sandboxes/nope/ws")
        self.assertFalse(self.client.opened)
        self.assertEqual(self.manager.registry.sessionsOf(self.sandbox), set())

    def test_transportLostCancels(self):
        """
        A connection dropped without a closing handshake still runs the
        session's close: with ttl 0 there is nothing to resume, so its open
        streams are cancelled on the agent and it leaves the sandbox.
        """
        self.connect()
        self.client.sendMessage(wire.request(3, "process.stream", {"cmd": "yes"}), isBinary=True)
        self.pump.flush()
        (request,) = [wire.decode_one(m) for m in self.connection.sent]
        self.connection.sent.clear()
        self.client.transport.abortConnection()
        self.pump.flush()
        (cancel,) = [wire.decode_one(m) for m in self.connection.sent]
        self.assertEqual((cancel.type, cancel.stream), (FrameType.CANCEL, request.stream))
        self.assertNotIn(self.server, self.manager.registry.sessionsOf(self.sandbox))


class ResumeTests(EndToEndBase):
    """
    A client that drops gets its streams back with ``?resume=<token>``, with
    what they produced meanwhile.
    """

    def setUp(self):
        super().setUp()
        self.sandbox.ttl = 30

    def startStream(self):
        self.connect()
        self.client.sendMessage(wire.request(3, "process.stream", {"cmd": "x"}), isBinary=True)
        self.pump.flush()
        (request,) = [wire.decode_one(m) for m in self.connection.sent]
        self.connection.sent.clear()
        return request.stream

    def agentSends(self, stream, *chunks):
        for chunk in chunks:
            self.connection.streams[stream].frameReceived(
                wire.decode_one(wire.data(stream, chunk, wire.CHANNEL_STDOUT))
            )

    def drop(self):
        token = self.client.token
        self.client.transport.abortConnection()
        self.pump.flush()
        return token

    def agentFrames(self):
        sent, self.connection.sent = self.connection.sent, []
        return [wire.decode_one(m) for m in sent]

    def test_resumeDeliversMissedOutputInOrder(self):
        """
        Output the agent sends while the client is away is acknowledged to
        the agent (WINDOW), nothing is cancelled, and after the resume the
        client gets it in order on its own stream id, then live output.
        """
        stream = self.startStream()
        self.agentSends(stream, b"one")
        self.pump.flush()
        self.assertEqual([f.payload for f in self.clientFrames()], [b"one"])
        token = self.drop()
        self.assertEqual(self.manager.registry.sessionsOf(self.sandbox), set())
        self.agentSends(stream, b"two", b"three")
        self.assertEqual(
            [(f.type, f.stream, f.window()) for f in self.agentFrames()],
            [(FrameType.WINDOW, stream, 3), (FrameType.WINDOW, stream, 5)],
        )
        self.connect(f"/sandboxes/sb-1/ws?resume={token}")
        self.assertTrue(self.client.opened)
        self.assertEqual(self.client.token, token)
        self.agentSends(stream, b"four")
        self.pump.flush()
        self.assertEqual(
            [(f.stream, f.payload) for f in self.clientFrames()],
            [(3, b"two"), (3, b"three"), (3, b"four")],
        )

    def test_lostInFlightSentAgain(self):
        """
        With ``received=<n>`` a resume first gets again, in order, what the
        daemon sent after the client's n-th message (lost in flight when
        the connection dropped), then what was kept while detached, then
        live output.
        """
        stream = self.startStream()
        self.agentSends(stream, b"one", b"two", b"three")
        self.pump.flush()
        self.assertEqual(len(self.clientFrames()), 3)
        token = self.drop()
        self.agentSends(stream, b"four")
        self.connect(f"/sandboxes/sb-1/ws?resume={token}&received=1")
        self.agentSends(stream, b"five")
        self.pump.flush()
        self.assertEqual(
            [f.payload for f in self.clientFrames()], [b"two", b"three", b"four", b"five"]
        )
        # The count goes on across resumes: read all, nothing comes again.
        token = self.drop()
        self.connect(f"/sandboxes/sb-1/ws?resume={token}&received=5")
        self.assertTrue(self.client.opened)
        self.assertEqual(self.clientFrames(), [])

    def test_replayNoLongerKeptRefused(self):
        """
        A resume asking for messages the session no longer keeps is refused
        with 410 rather than leaving a hole, and its streams are cancelled.
        """
        self.patch(sentlog, "REPLAY_LIMIT", len(wire.data(3, b"two", wire.CHANNEL_STDOUT)))
        stream = self.startStream()
        self.agentSends(stream, b"one", b"two")
        self.pump.flush()
        token = self.drop()
        self.agentFrames()
        session = self.serverFactory.buildProtocol(None)
        e = self.assertRaises(
            ConnectionDeny, session.onConnect,
            FakeRequest("/sandboxes/sb-1/ws", {"resume": [token], "received": ["0"]}),
        )
        self.assertEqual(e.code, 410)
        self.assertIn("after the first 0 messages is no longer kept", e.reason)
        (cancel,) = self.agentFrames()
        self.assertEqual((cancel.type, cancel.stream), (FrameType.CANCEL, stream))
        self.assertEqual(self.manager.registry.detachedOf(self.sandbox), {})

    def test_receivedRefusedKeepsSession(self):
        """
        A ``received`` that is not a count, or counts more than the session
        sent, is refused with 400; the session is still there to resume.
        """
        stream = self.startStream()
        self.agentSends(stream, b"one")
        self.pump.flush()
        token = self.drop()
        for received in ["2", "-1", "one", "\u0661"]:
            session = self.serverFactory.buildProtocol(None)
            e = self.assertRaises(
                ConnectionDeny, session.onConnect,
                FakeRequest("/sandboxes/sb-1/ws", {"resume": [token], "received": [received]}),
            )
            self.assertEqual(e.code, 400, received)
        self.connect(f"/sandboxes/sb-1/ws?resume={token}&received=0")
        self.assertEqual([f.payload for f in self.clientFrames()], [b"one"])

    def test_windowCreditRepaid(self):
        """
        The client's WINDOW for output the daemon already acknowledged is
        kept back; credit beyond that reaches the agent.
        """
        stream = self.startStream()
        token = self.drop()
        self.agentSends(stream, b"12345")
        self.agentFrames()
        self.connect(f"/sandboxes/sb-1/ws?resume={token}")
        self.client.sendMessage(wire.window(3, 4), isBinary=True)
        self.pump.flush()
        self.assertEqual(self.agentFrames(), [])
        self.client.sendMessage(wire.window(3, 10), isBinary=True)
        self.pump.flush()
        (window,) = self.agentFrames()
        self.assertEqual((window.type, window.stream, window.window()),
                         (FrameType.WINDOW, stream, 9))

    def test_truncationCounted(self):
        """
        Beyond the buffer's limit output is dropped, and the client is told
        how many bytes with an EVENT {"dropped_bytes": n} after what was kept.
        """
        self.patch(detached, "RESUME_BUFFER", 4)
        stream = self.startStream()
        token = self.drop()
        self.agentSends(stream, b"abc", b"defg", b"hi")
        self.connection.streams[stream].frameReceived(
            wire.decode_one(wire.result(stream, {"exit_code": 0}))
        )
        self.connect(f"/sandboxes/sb-1/ws?resume={token}")
        frames = self.clientFrames()
        self.assertEqual(
            [(f.type, f.payload if f.type is FrameType.DATA else f.json()) for f in frames],
            [(FrameType.DATA, b"abc"), (FrameType.EVENT, {"dropped_bytes": 6}),
             (FrameType.RESULT, {"exit_code": 0})],
        )

    def test_unknownTokenRefused(self):
        """
        A resume token the sandbox does not know is refused with 410.
        """
        session = SessionFactory(self.manager).buildProtocol(None)
        e = self.assertRaises(
            ConnectionDeny, session.onConnect,
            FakeRequest("/sandboxes/sb-1/ws", {"resume": ["f" * 32]}),
        )
        self.assertEqual(e.code, 410)

    def test_expiresAfterTtl(self):
        """
        A detached session nobody resumes within the sandbox's ttl is
        discarded: its streams are cancelled on the agent.
        """
        stream = self.startStream()
        token = self.drop()
        self.clock.advance(29)
        self.assertIn(token, self.manager.registry.detachedOf(self.sandbox))
        self.assertEqual(self.agentFrames(), [])
        self.clock.advance(2)
        self.assertEqual(self.manager.registry.detachedOf(self.sandbox), {})
        (cancel,) = self.agentFrames()
        self.assertEqual((cancel.type, cancel.stream), (FrameType.CANCEL, stream))

    def test_cleanCloseCancels(self):
        """
        A client closing with 1000 meant to leave: nothing is kept.
        """
        stream = self.startStream()
        self.client.sendClose(1000)
        self.pump.flush()
        (cancel,) = self.agentFrames()
        self.assertEqual((cancel.type, cancel.stream), (FrameType.CANCEL, stream))
        self.assertEqual(self.manager.registry.detachedOf(self.sandbox), {})

    def test_resumeReplacesLiveConnection(self):
        """
        Resuming while the old connection is still open moves the streams to
        the new one and closes the old with 4000; nothing is cancelled.
        """
        stream = self.startStream()
        old_client, old_pump = self.client, self.pump
        token = old_client.token
        self.connect(f"/sandboxes/sb-1/ws?resume={token}")
        old_pump.flush()
        self.assertEqual(old_client.closed, CLOSE_REPLACED)
        self.agentSends(stream, b"here")
        self.pump.flush()
        self.assertEqual([(f.stream, f.payload) for f in self.clientFrames()], [(3, b"here")])
        self.assertEqual(
            [f for f in self.agentFrames() if f.type is FrameType.CANCEL], []
        )


class ReconnectingAgentTests(SessionTestCase):
    """
    While the sandbox's agent link reconnects (its server was killed and
    comes back), the client's messages wait and then go on in order.
    """

    def setUp(self):
        super().setUp()
        self.connection.reconnecting = True
        self.connection.up = Deferred()
        self.connection.whenConnected = lambda: self.connection.up

    def test_heldThenRelayedInOrder(self):
        """
        Requests sent while the agent reconnects reach the new connection,
        in order, once it is up; nothing is answered with an error.
        """
        self.fromClient(wire.request(1, "process.exec", {"cmd": "echo a"}))
        self.fromClient(wire.request(3, "process.exec", {"cmd": "echo b"}))
        self.assertEqual((self.toAgent(), self.toClient()), ([], []))
        self.connection.reconnecting = False
        self.connection.up.callback(True)
        sent = self.toAgent()
        self.assertEqual([f.json()["params"]["cmd"] for f in sent], ["echo a", "echo b"])
        self.assertEqual(self.toClient(), [])

    def test_linkLostFailsHeld(self):
        """
        When the agent does not come back, held requests are answered with
        SANDBOX_UNAVAILABLE.
        """
        self.fromClient(wire.request(1, "process.exec", {"cmd": "true"}))
        self.connection.reconnecting = False
        self.connection.connected = False
        self.connection.up.callback(False)
        (error,) = self.toClient()
        self.assertEqual((error.type, error.json()["code"]), (FrameType.ERROR, Code.SANDBOX_UNAVAILABLE))

    def test_holdIsBounded(self):
        """
        Beyond HOLD_LIMIT bytes, messages are no longer held.
        """
        self.patch(session_module, "HOLD_LIMIT", 10)
        self.connection.connected = False
        self.fromClient(wire.request(1, "process.exec", {"cmd": "x" * 40}))
        (error,) = self.toClient()
        self.assertEqual(error.json()["code"], Code.SANDBOX_UNAVAILABLE)
