"""
A Hypothesis state machine over the daemon's side of an agent connection
(L{sandboxd.protocols.agent.AgentConnection} with its inbound limits): the
daemon opens, grants, reassigns and closes streams and makes calls, while a
hostile agent sends DATA within and beyond its credit, frames for streams
never opened or already closed, answers, PINGs and garbage, cut at any byte;
the transport may drop at any point.  A model says what each handler must
have received and how the connection must end.
"""

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
from zope.interface import implementer

from agent import wire
from agent.wire import Code, FrameType
from sandboxd.protocols.agent import (
    AgentCallError,
    AgentConnection,
    AgentLost,
    IStreamHandler,
)
from sandboxd.protocols.inbound import PING_RATE

SECRET = "5e" * 32
NONCE = "0123456789abcdef" * 2
#: DATA sizes the agent picks from: empty, small, a chunk, the largest frame.
SIZES = st.sampled_from([0, 1, 4096, wire.CHUNK_SIZE, wire.MAX_PAYLOAD])


@implementer(IStreamHandler)
class Handler:
    """
    Records the (type, payload) of each frame and each loss it is told of.
    """

    def __init__(self):
        self.frames = []
        self.lost = []

    def frameReceived(self, frame):
        self.frames.append((frame.type, frame.payload))

    def agentLost(self, stream, lost):
        self.lost.append((stream, lost.code))


class AgentConnectionMachine(RuleBasedStateMachine):
    """
    The model: per stream opened, its handler, the frames it must have
    seen, its credit, and whether the daemon closed it; the code the
    connection must end with once the agent broke a rule.
    """

    @initialize(cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=3))
    def connect(self, cuts):
        self.clock = Clock()
        self.transport = StringTransport()
        self.connection = AgentConnection(SECRET, self.clock, label="machine")
        self.connection.makeConnection(self.transport)
        self.streams = {}
        self.handlers = {}
        self.expected = {}
        self.credit = {}
        self.calls = {}
        self.pings = 0
        self.broken = None
        self.lost = False
        ready = self.connection.whenReady()
        self.agentSends(wire.hello(NONCE) + wire.ready(42), cuts)
        assert self.transport.value().startswith(wire.auth(SECRET, NONCE))
        self.transport.clear()
        assert ready.called and ready.result is self.connection

    # How the agent's bytes arrive: in pieces, cut anywhere.

    def agentSends(self, data, cuts=()):
        """
        Deliver ``data`` cut at ``cuts``; a transport stops delivering once
        aborted or lost.
        """
        offsets = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
        for start, end in zip(offsets, offsets[1:]):
            if self.transport.disconnecting or self.lost:
                return
            self.connection.dataReceived(data[start:end])

    def breaks(self, *codes):
        """
        The agent just broke a rule: the connection must abort, and end
        with one of ``codes``.
        """
        self.broken = codes
        assert self.transport.disconnecting, f"not aborted after {codes}"

    @property
    def alive(self):
        return self.broken is None and not self.lost

    def openStreams(self):
        return sorted(s for s, state in self.streams.items() if state == "open")

    # The daemon

    @precondition(lambda self: self.alive)
    @rule()
    def openStream(self):
        handler = Handler()
        stream = self.connection.openStream(handler)
        assert stream not in self.streams
        self.streams[stream] = "open"
        self.handlers[stream] = [handler]
        self.expected[handler] = []
        self.credit[stream] = wire.INITIAL_WINDOW

    @precondition(lambda self: self.alive and self.openStreams())
    @rule(data=st.data(), increment=st.integers(min_value=0, max_value=wire.INITIAL_WINDOW))
    def grant(self, data, increment):
        stream = data.draw(st.sampled_from(self.openStreams()))
        self.connection.send(wire.window(stream, increment))
        self.credit[stream] += increment

    @precondition(lambda self: self.alive and self.openStreams())
    @rule(data=st.data())
    def reassign(self, data):
        stream = data.draw(st.sampled_from(self.openStreams()))
        handler = Handler()
        self.connection.reassign(stream, handler)
        self.handlers[stream].append(handler)
        self.expected[handler] = []

    @precondition(lambda self: self.alive and self.openStreams())
    @rule(data=st.data())
    def closeStream(self, data):
        stream = data.draw(st.sampled_from(self.openStreams()))
        self.connection.closeStream(stream)
        self.streams[stream] = "closed"

    @precondition(lambda self: self.alive)
    @rule(method=st.sampled_from(["fs.stat", "process.exec"]))
    def call(self, method):
        self.transport.clear()
        outcome = []
        self.connection.call(method, {}).addBoth(outcome.append)
        (request,) = wire.Framer().feed(self.transport.value())
        self.transport.clear()
        assert request.type is FrameType.REQUEST and request.json()["method"] == method
        stream = request.stream
        self.calls[stream] = outcome
        self.streams[stream] = "call"
        self.credit[stream] = wire.INITIAL_WINDOW
        self.handlers[stream] = []

    # Steps the ping budget refills by exactly (no float rounding at its edge).
    @rule(seconds=st.sampled_from([0, 0.5, 1, 5]))
    def time(self, seconds):
        self.clock.advance(seconds)
        self.pings = max(0.0, self.pings - seconds * PING_RATE[0])

    # The agent

    @precondition(lambda self: self.streams)
    @rule(data=st.data(), size=SIZES, cuts=st.lists(st.integers(min_value=1, max_value=20)))
    def agentData(self, data, size, cuts):
        self.dataFrame(data.draw(st.sampled_from(sorted(self.streams))), size, cuts)

    @precondition(lambda self: self.streams)
    @rule(data=st.data(), frames=st.integers(min_value=1, max_value=6))
    def agentFloods(self, data, frames):
        stream = data.draw(st.sampled_from(sorted(self.streams)))
        for _ in range(frames):
            self.dataFrame(stream, wire.MAX_PAYLOAD)

    def dataFrame(self, stream, size, cuts=()):
        payload = b"d" * size
        self.agentSends(wire.data(stream, payload), cuts)
        if not self.alive:
            return
        state = self.streams[stream]
        if state in ("closed", "answered"):
            return
        if size > self.credit[stream]:
            self.breaks(Code.WINDOW_EXCEEDED)
            return
        self.credit[stream] -= size
        if state == "open":
            self.expected[self.handlers[stream][-1]].append((FrameType.DATA, payload))

    @precondition(lambda self: self.streams)
    @rule(data=st.data(), ok=st.booleans())
    def agentAnswers(self, data, ok):
        stream = data.draw(st.sampled_from(sorted(self.streams)))
        frame = wire.result(stream, {"ok": 1}) if ok else wire.error(stream, Code.INTERNAL, "no")
        self.agentSends(frame)
        if not self.alive:
            return
        if self.streams[stream] == "open":
            handler = self.handlers[stream][-1]
            self.expected[handler].append((FrameType.RESULT if ok else FrameType.ERROR,
                                           frame[wire.HEADER_SIZE:]))
        elif self.streams[stream] == "call":
            self.streams[stream] = "answered"

    @rule(ahead=st.integers(min_value=1, max_value=1000))
    def agentNamesUnopenedStream(self, ahead):
        stream = max(self.streams, default=0) + ahead
        self.agentSends(wire.data(stream, b"x"))
        if self.alive:
            self.breaks(Code.BAD_STREAM)

    @precondition(lambda self: self.alive)
    @rule(count=st.integers(min_value=1, max_value=60))
    def agentPings(self, count):
        self.transport.clear()
        for _ in range(count):
            self.agentSends(wire.ping(b"p"))
            if not self.alive:
                return
            self.pings += 1
            if self.pings > PING_RATE[1]:
                self.breaks(Code.RATE_EXCEEDED)
                return
        assert self.transport.value() == wire.pong(b"p") * count

    @rule(junk=st.binary(min_size=wire.HEADER_SIZE, max_size=40))
    def agentSendsGarbage(self, junk):
        # A length below the header's rest, or an unknown type: never a frame.
        frame = (3).to_bytes(4, "big") + junk[4:]
        self.agentSends(frame)
        if self.alive:
            self.breaks(Code.FRAME_TOO_SHORT)

    @precondition(lambda self: not self.lost)
    @rule()
    def transportLost(self):
        self.connection.connectionLost(Failure(ConnectionLost()))
        self.lost = True

    # What must hold after every step

    @invariant()
    def handlersSawExactly(self):
        for handler, frames in self.expected.items():
            assert handler.frames == frames, (handler.frames[-3:], frames[-3:])

    @invariant()
    def lossToldOnce(self):
        for stream, handlers in self.handlers.items():
            for handler in handlers:
                told = [s for s, _ in handler.lost]
                if self.lost and self.streams[stream] == "open" and handler is handlers[-1]:
                    assert told == [stream], (stream, told)
                else:
                    assert told == [], (stream, told)

    @invariant()
    def callsEnd(self):
        """
        A call ends once: with its answer, or with the connection's end.
        """
        for stream, outcome in self.calls.items():
            if self.streams[stream] == "answered":
                assert len(outcome) == 1 and (
                    outcome[0] == {"ok": 1} or outcome[0].check(AgentCallError)), outcome
            elif self.lost:
                assert len(outcome) == 1 and outcome[0].check(AgentLost), outcome
            else:
                assert outcome == [], outcome

    @invariant()
    def endsWithTheCodeOfTheBreach(self):
        if self.lost:
            lost = self.connection.whenLost()
            assert lost.called
            code = lost.result.code
            expected = self.broken or (Code.SANDBOX_UNAVAILABLE,)
            assert code in expected, (code, expected)


class AgentConnectionMachineTests(SynchronousTestCase):
    def test_machine(self):
        """
        Whatever the daemon and a hostile agent do, in any order: each
        handler sees exactly its stream's frames within credit, in order; a
        breach aborts with its code; a loss tells each open stream once and
        ends every call.
        """
        run_state_machine_as_test(
            AgentConnectionMachine,
            settings=settings(max_examples=150, stateful_step_count=40, deadline=None),
        )
