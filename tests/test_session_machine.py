"""
A Hypothesis state machine over the session relay: a client's WebSocket
session (L{sandboxd.api.session.SandboxSession}, its WebSocket output
recorded) over a real L{AgentConnection} (on a StringTransport, the test
playing an honest agent).  The client opens, reuses, feeds, grants and
cancels streams, drops and resumes its session or closes it; the agent
answers and produces output; the agent connection may go.  A model says
which frames each side must have received, on which stream, in order.
"""

from autobahn.twisted.websocket import ConnectionDeny
from hypothesis import settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from agent import wire
from agent.wire import Code, FrameType
from sandboxd.api.session import CLOSE_AGENT_LOST, SandboxSession, SessionFactory
from sandboxd.protocols.agent import AgentConnection
from tests.test_session import FakeManager, FakeRequest, FakeSandbox

SECRET = "5e" * 32
NONCE = "0123456789abcdef" * 2
PATH = "/sandboxes/sb-1/ws"
CLIENT_STREAMS = st.integers(min_value=1, max_value=4)
#: Output sizes: small enough that a detached session keeps all of it.
SIZES = st.sampled_from([0, 1, 100, 65536])


class SessionRelayMachine(RuleBasedStateMachine):
    """
    The model: the client streams open on the session (client id -> agent
    id), the frames each client stream and each agent stream must have
    received, what the client owes back after a resume, and the agent's
    credit per stream.
    """

    @initialize()
    def connect(self):
        self.clock = Clock()
        self.transport = StringTransport()
        self.connection = AgentConnection(SECRET, self.clock, label="machine")
        self.connection.makeConnection(self.transport)
        self.connection.dataReceived(wire.hello(NONCE) + wire.ready(42))
        self.transport.clear()
        self.agentFramer = wire.Framer()
        self.sandbox = FakeSandbox(self.connection, ttl=60)
        self.factory = SessionFactory(FakeManager({"sb-1": self.sandbox}), self.clock)
        self.open = {}
        self.agentStreams = {}
        self.credit = {}
        self.owed = {}
        self.clientGot, self.clientWants = {}, {}
        self.agentGot, self.agentWants = {}, {}
        self.closes = []
        #: The stream of each message the client read on this session.
        self.clientLog = []
        self.detached = False
        self.agentGone = False
        self.session = self.newSession(FakeRequest(PATH))

    def newSession(self, request):
        session = SandboxSession()
        session.factory = self.factory
        session.sendMessage = self.toClient
        session.sendCloseFrame = lambda code=None, reasonUtf8=None, isReply=False: (
            self.closes.append(code))
        session.onConnect(request)
        session.onOpen()
        return session

    # What each side receives

    def toClient(self, payload, isBinary=False, **kwargs):
        assert isBinary
        frame = wire.decode_one(payload)
        self.clientLog.append(frame.stream)
        self.clientGot.setdefault(frame.stream, []).append((frame.type, frame.payload))

    def readAgent(self):
        frames = self.agentFramer.feed(self.transport.value())
        self.transport.clear()
        for frame in frames:
            self.agentGot.setdefault(frame.stream, []).append((frame.type, frame.payload))
        return frames

    def clientWill(self, stream, frame_type, payload):
        self.clientWants.setdefault(stream, []).append((frame_type, payload))

    def agentWill(self, stream, frame_type, payload):
        self.agentWants.setdefault(stream, []).append((frame_type, payload))

    @property
    def attached(self):
        return not self.detached and not self.agentGone

    # The client

    @precondition(lambda self: self.attached)
    @rule(stream=CLIENT_STREAMS)
    def clientRequests(self, stream):
        message = wire.request(stream, "process.exec", {"cmd": ["true"]})
        self.session.onMessage(message, True)
        if stream in self.open:
            self.clientWill(stream, FrameType.ERROR, wire.error(
                stream, Code.STREAM_IN_USE, "stream is open")[wire.HEADER_SIZE:])
            return
        (request,) = self.readAgent()
        assert request.type is FrameType.REQUEST, request
        assert request.stream not in self.agentStreams
        self.agentWill(request.stream, FrameType.REQUEST, message[wire.HEADER_SIZE:])
        self.open[stream] = request.stream
        self.agentStreams[request.stream] = stream
        self.credit[request.stream] = wire.INITIAL_WINDOW

    @precondition(lambda self: self.attached)
    @rule(stream=CLIENT_STREAMS,
          kind=st.sampled_from([FrameType.DATA, FrameType.END, FrameType.CANCEL]))
    def clientSends(self, stream, kind):
        payload = b"in" if kind is FrameType.DATA else b""
        self.session.onMessage(wire.encode(kind, stream, payload), True)
        self.readAgent()
        if stream in self.open:
            self.agentWill(self.open[stream], kind, payload)

    @precondition(lambda self: self.attached)
    @rule(stream=CLIENT_STREAMS, increment=st.integers(min_value=0, max_value=200000))
    def clientGrants(self, stream, increment):
        self.session.onMessage(wire.window(stream, increment), True)
        self.readAgent()
        if stream not in self.open:
            return
        owed = 0
        if stream in self.owed:
            owed = self.owed.pop(stream)
            if increment <= owed:
                if owed > increment:
                    self.owed[stream] = owed - increment
                return
        agent_stream = self.open[stream]
        self.agentWill(agent_stream, FrameType.WINDOW,
                       (increment - owed).to_bytes(4, "big"))
        self.credit[agent_stream] += increment - owed

    @precondition(lambda self: self.attached)
    @rule(payload=st.binary(max_size=8))
    def clientPings(self, payload):
        self.session.onMessage(wire.ping(payload), True)
        self.clientWill(0, FrameType.PONG, payload)

    @precondition(lambda self: self.attached and self.open)
    @rule(lost=st.integers(min_value=0, max_value=3))
    def clientDrops(self, lost):
        """
        No close frame: the session's streams wait for a resume.  The
        ``lost`` last messages sent were never read (lost in flight): the
        resume asks for them again.
        """
        lost = min(lost, len(self.clientLog))
        for stream in reversed(self.clientLog[len(self.clientLog) - lost:]):
            self.clientGot[stream].pop()
        del self.clientLog[len(self.clientLog) - lost:]
        self.session.onClose(False, 1006, "connection lost")
        self.detached = True
        self.detachedAt = self.clock.seconds()

    @rule(seconds=st.sampled_from([1, 30]))
    def time(self, seconds):
        """
        Time passes; a session detached for the sandbox's ttl is discarded
        (what it ran is cancelled) and can no longer be resumed.
        """
        self.clock.advance(seconds)
        if not self.detached or self.clock.seconds() - self.detachedAt < self.sandbox.ttl:
            return
        self.readAgent()
        for stream, agent_stream in sorted(self.open.items()):
            self.agentWill(agent_stream, FrameType.CANCEL, b"")
            self.forget(stream)
        # What the session kept for the client is gone with it.
        for stream in self.clientWants:
            self.clientWants[stream] = list(self.clientGot.get(stream, []))
        denied = []
        try:
            self.newSession(FakeRequest(PATH, {"resume": [self.session.token]}))
        except ConnectionDeny as e:
            denied.append(e.code)
        assert denied == [410], denied
        self.clientLog = []
        self.session = self.newSession(FakeRequest(PATH))
        self.detached = False

    @precondition(lambda self: self.detached and not self.agentGone)
    @rule()
    def clientResumes(self):
        received = str(len(self.clientLog))
        self.session = self.newSession(
            FakeRequest(PATH, {"resume": [self.session.token], "received": [received]}))
        self.detached = False
        # A client grants back what it consumed: the output it just got.
        for stream, owed in sorted(self.owed.items()):
            self.clientGrants(stream, owed)

    @precondition(lambda self: self.attached)
    @rule()
    def clientCloses(self):
        """A clean close: what is open is cancelled; a new session starts."""
        self.session.onClose(True, 1000, "bye")
        self.readAgent()
        for stream, agent_stream in sorted(self.open.items()):
            self.agentWill(agent_stream, FrameType.CANCEL, b"")
            self.forget(stream)
        self.clientLog = []
        self.session = self.newSession(FakeRequest(PATH))

    def forget(self, stream):
        agent_stream = self.open.pop(stream)
        del self.agentStreams[agent_stream]
        self.owed.pop(stream, None)

    # The agent

    @precondition(lambda self: self.agentStreams and not self.agentGone)
    @rule(data=st.data(), size=SIZES,
          kind=st.sampled_from([FrameType.DATA, FrameType.EVENT]))
    def agentOutput(self, data, size, kind):
        agent_stream = data.draw(st.sampled_from(sorted(self.agentStreams)))
        if kind is FrameType.DATA and size > self.credit[agent_stream]:
            return
        payload = b"o" * size if kind is FrameType.DATA else wire.event(
            agent_stream, {"n": size})[wire.HEADER_SIZE:]
        self.connection.dataReceived(wire.encode(kind, agent_stream, payload))
        self.readAgent()
        stream = self.agentStreams[agent_stream]
        self.clientWill(stream, kind, payload)
        if kind is FrameType.DATA:
            self.credit[agent_stream] -= size
            if self.detached:
                # Acknowledged to the agent at once; the client owes it back.
                self.agentWill(agent_stream, FrameType.WINDOW, size.to_bytes(4, "big"))
                self.credit[agent_stream] += size
                self.owed[stream] = self.owed.get(stream, 0) + size

    @precondition(lambda self: self.agentStreams and not self.agentGone)
    @rule(data=st.data(), ok=st.booleans())
    def agentAnswers(self, data, ok):
        agent_stream = data.draw(st.sampled_from(sorted(self.agentStreams)))
        frame = (wire.result(agent_stream, {"exit_code": 0}) if ok
                 else wire.error(agent_stream, Code.INTERNAL, "no"))
        self.connection.dataReceived(frame)
        stream = self.agentStreams[agent_stream]
        self.clientWill(stream, FrameType(frame[4]), frame[wire.HEADER_SIZE:])
        self.forget(stream)

    @precondition(lambda self: not self.agentGone and self.agentWants)
    @rule(data=st.data())
    def agentAnswersLate(self, data):
        """Output for a stream already finished is dropped."""
        ended = sorted(set(self.agentWants) - set(self.agentStreams))
        if ended:
            stream = data.draw(st.sampled_from(ended))
            self.connection.dataReceived(wire.data(stream, b"late"))

    @precondition(lambda self: self.attached and self.open)
    @rule()
    def agentGoes(self):
        self.connection.connectionLost(Failure(ConnectionLost()))
        self.agentGone = True
        for stream in sorted(self.open):
            self.clientWill(stream, FrameType.ERROR, wire.error(
                stream, Code.SANDBOX_UNAVAILABLE,
                "the sandbox's agent connection closed")[wire.HEADER_SIZE:])
            self.forget(stream)

    # What must hold after every step

    @invariant()
    def clientSawExactly(self):
        for stream in set(self.clientGot) | set(self.clientWants):
            got = self.clientGot.get(stream, [])
            wants = self.clientWants.get(stream, [])
            if self.detached:
                assert got == wants[:len(got)], (stream, got[-3:], wants[-3:])
            else:
                assert got == wants, (stream, got[-3:], wants[-3:])

    @invariant()
    def agentSawExactly(self):
        self.readAgent()
        for stream in set(self.agentGot) | set(self.agentWants):
            got, wants = self.agentGot.get(stream, []), self.agentWants.get(stream, [])
            assert got == wants, (stream, got[-3:], wants[-3:])

    @invariant()
    def closedOnlyWhenTheAgentWent(self):
        assert self.closes == ([CLOSE_AGENT_LOST] if self.agentGone else []), self.closes


class SessionRelayMachineTests(SynchronousTestCase):
    def test_machine(self):
        """
        Whatever a client and an honest agent do, in any order (streams
        reused, drops and resumes, clean closes, the agent going): each side
        gets exactly its streams' frames, in order, on the right ids (those
        lost in flight when the client dropped too); credit acknowledged
        while detached is taken back from the client's WINDOWs.
        """
        run_state_machine_as_test(
            SessionRelayMachine,
            settings=settings(max_examples=150, stateful_step_count=40, deadline=None),
        )
