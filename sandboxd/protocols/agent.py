"""
The daemon's end of a connection to a sandbox's guest agent.

One ``AgentConnection`` per sandbox carries every stream of every client
session: it authenticates once (HELLO / AUTH / READY), then hands each
incoming frame to whoever opened its stream.  The codec is ``agent.wire``.
The agent is untrusted: a handshake that does not finish in
L{HANDSHAKE_TIMEOUT} seconds, and any frame beyond its credit or rates
(L{sandboxd.protocols.inbound}), end the connection with a named code.
"""

import itertools

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from agent import wire
from sandboxd.protocols.inbound import InboundLimits

#: Seconds an agent has from the connection to READY.
HANDSHAKE_TIMEOUT = 10.0


#: What a VM's restarted agent writes on its virtio-serial port (agent/vserial.py).
_AGENT_RESTARTED = b"\nSANDBOXD-RESET\n"


class AgentLost(Exception):
    """
    The agent connection closed or broke; ``code`` says how.
    """

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AgentCallError(Exception):
    """
    The agent answered a call with ERROR.
    """

    def __init__(self, code, message, details=None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


class IStreamHandler(Interface):
    """
    Receives the frames of the streams it opened on an agent connection.
    """

    def frameReceived(frame):
        """
        A frame for one of this handler's streams arrived.
        """

    def agentLost(stream, lost):
        """
        The connection ended with ``stream`` still open; ``lost`` is the
        AgentLost saying how.
        """


class IAgentConnection(Interface):
    """
    An authenticated, multiplexed connection to one agent.
    """

    connected = Attribute("True until the connection is lost.")

    def openStream(handler):
        """
        Reserve a fresh stream id routed to ``handler``; return the id.
        """

    def closeStream(stream):
        """
        Forget a stream: later frames for it are dropped.
        """

    def reassign(stream, handler):
        """
        Route an open stream's later frames to ``handler`` instead.
        """

    def send(data):
        """
        Write encoded frames to the agent.
        """

    def call(method, params=None):
        """
        Run a request whose answer is a single RESULT; fire with its JSON.
        """

    def ping(timeout):
        """
        Fire True when a PONG comes back within ``timeout`` seconds, else False.
        """

    def whenLost():
        """
        Fire with the AgentLost that ends the connection (at once if it has
        ended); cancelling the Deferred stops waiting.
        """

    def disconnect(reason="the sandbox was destroyed"):
        """
        Close the connection; open streams get AgentLost with ``reason``.
        """

    def abort(reason):
        """
        Drop the connection at once; open streams get AgentLost with ``reason``.
        """


@implementer(IStreamHandler)
class _CallHandler:
    """
    Collects the RESULT or ERROR of a request that has no body.
    """

    def __init__(self, connection):
        self._connection = connection
        self.done = Deferred()

    def frameReceived(self, frame):
        if frame.type is wire.FrameType.RESULT:
            result = frame.json()
            self._connection.closeStream(frame.stream)
            self.done.callback(result)
        elif frame.type is wire.FrameType.ERROR:
            body = frame.json()
            self._connection.closeStream(frame.stream)
            self.done.errback(
                AgentCallError(
                    body.pop("code", wire.Code.INTERNAL), body.pop("message", ""), body
                )
            )

    def agentLost(self, stream, failure):
        self.done.errback(failure)


@implementer(IAgentConnection)
class AgentConnection(Protocol):
    """
    The client side of the agent protocol.

    ``whenReady`` fires with the connection once the agent said READY, or
    fails with AgentLost if authentication did not complete.
    """

    log = Logger()

    def __init__(self, secret, clock, label=""):
        self._secret = secret
        self._clock = clock
        self.label = label
        self._framer = wire.Framer()
        self._streams = {}
        self._stream_ids = itertools.count(1)
        self._ready = False
        self._ready_waiters = []
        self._pings = {}
        self._ping_ids = itertools.count(1)
        self._lost = None
        self._lost_waiters = []
        self.connected = False
        self.agent_pid = None
        self._limits = InboundLimits(clock)
        self._handshakeTimer = None

    # Protocol

    def connectionMade(self):
        self.connected = True
        self._handshakeTimer = self._clock.callLater(
            HANDSHAKE_TIMEOUT, self._handshakeExpired
        )
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)

    def dataReceived(self, data):
        try:
            frames = self._framer.feed(data)
            for frame in frames:
                self._frameReceived(frame)
        except wire.ProtocolError as e:
            if _AGENT_RESTARTED in data:
                # A VM's agent started again by its PID 1 says so on its
                # virtio-serial port (docs/protocol.md): the sandbox lives,
                # this connection's streams are gone.
                self._fail(AgentLost(wire.Code.SANDBOX_UNAVAILABLE,
                                     "the sandbox's agent restarted"))
                return
            self.log.warn(
                "agent {label} broke the protocol: {error}", label=self.label, error=e
            )
            self._fail(AgentLost(e.code, e.message))

    def connectionLost(self, reason=ConnectionDone):
        self.connected = False
        self._stopHandshakeTimer()
        if self._lost is None:
            self._lost = AgentLost(
                wire.Code.SANDBOX_UNAVAILABLE, "the sandbox's agent connection closed"
            )
        lost = self._lost
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(lost)
        for waiter in self._ready_waiters:
            waiter.errback(lost)
        self._ready_waiters = []
        for call in self._pings.values():
            call.cancel()
        self._pings.clear()
        streams, self._streams = self._streams, {}
        for stream, handler in streams.items():
            try:
                handler.agentLost(stream, lost)
            except Exception:
                self.log.failure("stream handler failed on agent loss")

    def _fail(self, lost):
        self._lost = lost
        if self.transport is not None:
            self.transport.abortConnection()

    def _handshakeExpired(self):
        self._handshakeTimer = None
        self.log.warn("agent {label} did not finish its handshake", label=self.label)
        self._fail(
            AgentLost(
                wire.Code.TIMEOUT,
                f"the agent did not finish its handshake within {HANDSHAKE_TIMEOUT:g} s",
            )
        )

    def _stopHandshakeTimer(self):
        timer, self._handshakeTimer = self._handshakeTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    # Frames

    def _frameReceived(self, frame):
        if self._lost is not None:
            return
        if not self._ready:
            self._handshake(frame)
            return
        self._limits.check(frame)
        frame_type = frame.type
        if frame.stream:
            handler = self._streams.get(frame.stream)
            if handler is not None:
                handler.frameReceived(frame)
        elif frame_type is wire.FrameType.PONG:
            self._pongReceived(frame.payload)
        elif frame_type is wire.FrameType.PING:
            self.transport.write(wire.pong(frame.payload))
        elif frame_type is wire.FrameType.ERROR:
            body = frame.json()
            self._fail(AgentLost(body.get("code", wire.Code.INTERNAL), body.get("message", "")))
        else:
            self._fail(
                AgentLost(
                    wire.Code.UNEXPECTED_FRAME, f"unexpected {frame_type.name} on stream 0"
                )
            )

    def _handshake(self, frame):
        if frame.type is wire.FrameType.HELLO:
            hello = frame.json()
            if hello.get("version") != wire.VERSION:
                self._fail(
                    AgentLost(
                        wire.Code.VERSION_MISMATCH,
                        f"agent speaks version {hello.get('version')!r}",
                    )
                )
                return
            self.transport.write(wire.auth(self._secret, str(hello.get("nonce", ""))))
        elif frame.type is wire.FrameType.READY:
            self._ready = True
            self._stopHandshakeTimer()
            self.agent_pid = frame.json().get("pid")
            waiters, self._ready_waiters = self._ready_waiters, []
            for waiter in waiters:
                waiter.callback(self)
        elif frame.type is wire.FrameType.ERROR:
            body = frame.json()
            self._fail(AgentLost(body.get("code", wire.Code.AUTH_FAILED), body.get("message", "")))
        else:
            self._fail(
                AgentLost(
                    wire.Code.UNEXPECTED_FRAME, f"{frame.type.name} before READY"
                )
            )

    # IAgentConnection

    def whenReady(self):
        if self._ready:
            return succeed(self)
        waiter = Deferred()
        self._ready_waiters.append(waiter)
        return waiter

    def whenLost(self):
        """
        Fire with the AgentLost that ended the connection.  Cancelling the
        Deferred stops waiting.
        """
        if not self.connected and self._lost is not None:
            return succeed(self._lost)
        waiter = Deferred(lambda d: self._lost_waiters.remove(d))
        self._lost_waiters.append(waiter)
        return waiter

    def openStream(self, handler):
        stream = next(self._stream_ids)
        self._streams[stream] = handler
        self._limits.opened(stream)
        return stream

    def closeStream(self, stream):
        self._streams.pop(stream, None)
        self._limits.closed(stream)

    def reassign(self, stream, handler):
        if stream in self._streams:
            self._streams[stream] = handler

    def send(self, data):
        self._limits.sent(data)
        self.transport.write(data)

    @property
    def openStreams(self):
        return len(self._streams)

    def call(self, method, params=None):
        handler = _CallHandler(self)
        stream = self.openStream(handler)
        self.transport.write(wire.request(stream, method, params))
        return handler.done

    def ping(self, timeout):
        if not self.connected:
            return succeed(False)
        ping_id = next(self._ping_ids)
        answered = Deferred()
        self._pings[ping_id] = answered
        self.transport.write(wire.ping(ping_id.to_bytes(8, "big")))

        def expired():
            if self._pings.pop(ping_id, None) is answered:
                answered.callback(False)

        timer = self._clock.callLater(timeout, expired)
        answered.addErrback(lambda _: False)
        answered.addBoth(lambda ok: (timer.active() and timer.cancel(), ok)[1])
        return answered

    def _pongReceived(self, payload):
        answered = self._pings.pop(int.from_bytes(payload, "big"), None)
        if answered is not None:
            answered.callback(True)

    def disconnect(self, reason="the sandbox was destroyed"):
        if self.transport is not None and self.connected:
            if self._lost is None:
                self._lost = AgentLost(wire.Code.SANDBOX_UNAVAILABLE, reason)
            self.transport.loseConnection()

    def abort(self, reason):
        """
        Drop the connection now (the agent is dead or unreachable): every
        open call and stream fails with SANDBOX_UNAVAILABLE and ``reason``.
        """
        if self.transport is not None and self.connected:
            self._fail(AgentLost(wire.Code.SANDBOX_UNAVAILABLE, reason))


class AgentConnectionFactory(Factory):
    """
    Builds one AgentConnection for one sandbox.
    """

    noisy = False

    def __init__(self, secret, clock, label=""):
        self._secret = secret
        self._clock = clock
        self._label = label

    def buildProtocol(self, addr):
        connection = AgentConnection(self._secret, self._clock, self._label)
        connection.factory = self
        return connection
