"""
WebSocket sessions: a client's frames relayed to a sandbox's agent and back.

Each binary message is one wire frame.  The session maps the client's stream
ids to fresh ids on the sandbox's shared agent connection, so any number of
sessions share it.  Flow control is end to end (WINDOW frames pass through),
so the daemon holds at most a window per stream.

The handshake answers with ``X-Sandbox-Session: <token>``.  A client whose
connection drops (no close frame) may open ``/sandboxes/{id}/ws?resume=<token>``
within the sandbox's ttl and get its streams back, with what they produced
meanwhile (sandboxd.api.detached).  With ``&received=<n>`` (the messages it
read) it first gets again those the dropped connection lost in flight
(sandboxd.api.sentlog).  Resuming a session whose old connection is still
open takes the streams over and closes the old one with 4000.

One request is the daemon's own, never relayed: ``sandbox.destroy``
(``DELETE /sandboxes/{id}`` without an HTTP request, docs/api.md).
"""

import json
import os

from autobahn.exception import Disconnected
from autobahn.twisted.websocket import (
    ConnectionDeny,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.util import encode_truncate
from zope.interface import implementer

from agent import wire
from sandboxd.api.detached import DetachedSession
from sandboxd.api.registry import SessionRegistry
from sandboxd.api.sentlog import SentLog
from sandboxd.api.wsoptions import FactoryOptions
from sandboxd.api import wsauth
from sandboxd.protocols.agent import IStreamHandler
from sandboxd.sandbox import State

_FT = wire.FrameType
_RELAYED = frozenset({_FT.DATA, _FT.END, _FT.CANCEL, _FT.WINDOW})
#: What a REQUEST for the daemon's own method holds (looked for before parsing).
_DESTROY_NAME = wire.DESTROY_METHOD.encode()

#: Bytes of client messages held while the agent reconnects; beyond, they
#: go on at once (and fail with SANDBOX_UNAVAILABLE).
HOLD_LIMIT = 8 * 1024 * 1024

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_AGENT_LOST = 1011
CLOSE_REPLACED = 4000
#: Close codes that mean the client left on purpose.
_CLEAN_CODES = frozenset({1000, 1001})


def sandbox_id_from_path(path):
    """
    ``/sandboxes/{id}/ws`` -> id, else None.
    """
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "sandboxes" and parts[2] == "ws":
        return parts[1]
    return None


def _method_of(frame):
    """The method a REQUEST frame names (sealed ones too), or None."""
    if frame.flags & wire.SEALED:
        return wire.sealed_method(frame)
    try:
        return frame.json().get("method")
    except wire.ProtocolError:
        return None


def _destroy_request(frame):
    """
    The body of a REQUEST if it is a clear ``sandbox.destroy``, else None
    (a sealed one is the agent's: the daemon cannot answer inside an
    encrypted session).
    """
    if frame.flags & wire.SEALED:
        return None
    try:
        body = frame.json()
    except wire.ProtocolError:
        return None
    return body if body.get("method") == wire.DESTROY_METHOD else None


def _received(values):
    """
    The ``received`` query parameter of a resume: how many messages the
    client read (None when absent).
    """
    if not values:
        return None
    value = values[-1]
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise ConnectionDeny(400, f"received must be a count of messages, not {value[:20]!r}")
    return int(value)


@implementer(IStreamHandler)
class SandboxSession(FactoryOptions, WebSocketServerProtocol):
    """
    One client's session with one sandbox.
    """

    #: Client messages held while the agent reconnects (else None).
    _held = None
    _heldSize = 0
    #: Relayed requests being timed for the factory's meter: agent stream
    #: -> token (set in onConnect).
    _calls = None

    def onConnect(self, request):
        sandbox_id = sandbox_id_from_path(request.path)
        sandbox = self.factory.manager.get(sandbox_id) if sandbox_id else None
        if sandbox is not None and sandbox.state is State.PAUSED:
            raise ConnectionDeny(409, f"sandbox {sandbox_id} is paused: resume it first")
        if sandbox is None or sandbox.connection is None:
            raise ConnectionDeny(404, f"sandbox {sandbox_id} not found")
        protocol, _ = wsauth.negotiate(request, self.factory.tokens, sandbox.id)
        self.sandbox = sandbox
        self._connection = sandbox.connection
        self._to_agent = {}
        self._to_client = {}
        self._owed = {}
        self._calls = {}
        self._closing = False
        self._resumed = None
        self._log = SentLog()
        self._replay = ()
        resume = request.params.get("resume")
        if resume:
            received = _received(request.params.get("received"))
            self._resumed, self._replay = self._takeOver(sandbox, resume[-1], received)
            self._log = self._resumed.log
            self.token = self._resumed.token
        else:
            self.token = os.urandom(16).hex()
        headers = {"X-Sandbox-Session": self.token}
        if "created" in request.params:
            # GET /sandboxes/new/ws: the sandbox just made, as POST answers it.
            headers["X-Sandbox"] = json.dumps(sandbox.toJSON(), ensure_ascii=True)
        return (protocol, headers)

    def _takeOver(self, sandbox, token, received):
        """
        The detached session ``token`` of the sandbox, taken from the
        connection still holding it if there is one, and the messages to
        send again after the client's ``received``-th (None: none).
        """
        sessions = self.factory.sessions
        for other in sessions.sessionsOf(sandbox):
            if getattr(other, "token", None) == token:
                other.handOver()
        detached = sessions.take(sandbox, token)
        if detached is None or detached.connection is not sandbox.connection:
            raise ConnectionDeny(
                410, f"session {token[:8]}... of sandbox {sandbox.id} cannot be resumed"
            )
        replay = ()
        if received is not None:
            try:
                replay = detached.log.since(received)
            except ValueError as e:
                sessions.keep(sandbox, detached)
                raise ConnectionDeny(400, str(e))
            if replay is None:
                detached.discard()
                raise ConnectionDeny(
                    410,
                    f"session {token[:8]}... of sandbox {sandbox.id} cannot be resumed: "
                    f"what it sent after the first {received} messages is no longer kept",
                )
        if detached.expiry is not None and detached.expiry.active():
            detached.expiry.cancel()
        return detached, replay

    def onOpen(self):
        if self.factory.meter is not None:
            self.factory.meter.sessions.add(self)
        self.factory.sessions.opened(self.sandbox, self)
        if not self._connection.connected:
            self._closeWith(CLOSE_AGENT_LOST, "the sandbox's agent is unavailable")
            return
        self._agentGone = self._connection.whenLost()
        self._agentGone.addCallbacks(self._agentConnectionLost, lambda _: None)
        detached, self._resumed = self._resumed, None
        if detached is not None:
            self._to_agent, self._to_client = detached.to_agent, detached.to_client
            self._owed = detached.owed
            for stream in self._to_client:
                self._connection.reassign(stream, self)
            replay, self._replay = self._replay, ()
            for message in replay:
                self._tapped(message)
                self._sendQuietly(message)
            for frame in detached.kept():
                self._sendToClient(frame)

    def handOver(self):
        """
        Another connection resumes this session: leave it the streams and
        close this one.
        """
        self._detach()
        self._closeWith(CLOSE_REPLACED, "the session was resumed elsewhere")

    def _detach(self):
        """
        Keep the open streams (and what they produce) for a resume.
        """
        detached = DetachedSession(
            self.token, self._connection, self._to_agent, self._to_client, self._owed, self._log
        )
        self._to_agent, self._to_client, self._owed = {}, {}, {}
        # Whatever this connection still sends is not the session's.
        self._log = SentLog(limit=0)
        self.factory.sessions.keep(self.sandbox, detached)
        return detached

    def onMessage(self, payload, isBinary):
        if self._held is None and getattr(self._connection, "reconnecting", False):
            # The agent's server was killed and is coming back (a link,
            # sandboxd.protocols.link): hold the client's messages till then.
            self._held = []
            self._connection.whenConnected().addCallback(self._release)
        if self._held is not None and self._heldSize + len(payload) <= HOLD_LIMIT:
            self._held.append((payload, isBinary))
            self._heldSize += len(payload)
            return
        self._relay(payload, isBinary)

    def _release(self, up):
        held, self._held, self._heldSize = self._held, None, 0
        for payload, isBinary in held:
            self._relay(payload, isBinary)

    def _relay(self, payload, isBinary):
        if self.factory.tap is not None:
            self.factory.tap.relayed(">", self.sandbox.id, payload)
        if not isBinary:
            self._protocolError(wire.Code.BAD_PAYLOAD, "messages must be binary frames")
            return
        try:
            frame = wire.decode_one(payload)
        except wire.ProtocolError as e:
            self._protocolError(e.code, e.message)
            return
        frame_type = frame.type
        if frame_type is _FT.REQUEST:
            asked = _destroy_request(frame) if _DESTROY_NAME in payload else None
            if asked is not None:
                self._destroy(frame.stream, asked.get("params"))
            else:
                self._open(frame, payload)
        elif frame_type in _RELAYED:
            stream = self._to_agent.get(frame.stream)
            if stream is None:
                return
            if frame_type is _FT.WINDOW and frame.stream in self._owed:
                payload = self._repay(frame, stream)
                if payload is None:
                    return
            self._connection.send(wire.restream(payload, stream))
        elif frame_type is _FT.PING:
            self._send(wire.pong(frame.payload))
        elif frame_type is _FT.PONG:
            pass
        else:
            self._protocolError(
                wire.Code.UNEXPECTED_FRAME, f"clients may not send {frame_type.name}"
            )

    def _repay(self, frame, stream):
        """
        A client WINDOW for output the daemon already acknowledged while the
        session was detached: keep back that much; the rest, if any, goes on.
        """
        try:
            increment = frame.window()
        except wire.ProtocolError:
            return None
        owed = self._owed.pop(frame.stream)
        if increment <= owed:
            if owed > increment:
                self._owed[frame.stream] = owed - increment
            return None
        return wire.window(stream, increment - owed)

    def _open(self, frame, payload):
        client_stream = frame.stream
        if client_stream in self._to_agent:
            self._sendToClient(
                wire.error(client_stream, wire.Code.STREAM_IN_USE, "stream is open")
            )
            return
        if len(self._to_agent) >= wire.MAX_STREAMS:
            self._sendToClient(
                wire.error(
                    client_stream,
                    wire.Code.TOO_MANY_STREAMS,
                    f"at most {wire.MAX_STREAMS} streams at once",
                )
            )
            return
        if self.sandbox.state is State.PAUSED:
            self._sendToClient(wire.error(
                client_stream, wire.Code.SANDBOX_PAUSED,
                f"sandbox {self.sandbox.id} is paused: resume it first",
            ))
            return
        if not self._connection.connected:
            self._sendToClient(
                wire.error(
                    client_stream,
                    wire.Code.SANDBOX_UNAVAILABLE,
                    "the sandbox's agent is unavailable",
                )
            )
            return
        stream = self._connection.openStream(self)
        self._to_agent[client_stream] = stream
        self._to_client[stream] = client_stream
        self._connection.send(wire.restream(payload, stream))
        if self.factory.meter is not None and self._calls is not None:
            self._calls[stream] = self.factory.meter.callStarted(_method_of(frame))

    def _destroy(self, client_stream, params):
        """
        ``sandbox.destroy``: what ``DELETE /sandboxes/{id}`` does, on the
        credentials that opened the session.  The RESULT goes before the
        sandbox's sessions close (with 1000), this one among them.
        """
        manager = self.factory.manager
        if client_stream in self._to_agent:
            self._sendToClient(
                wire.error(client_stream, wire.Code.STREAM_IN_USE, "stream is open"))
        elif params not in (None, {}):
            self._sendToClient(wire.error(
                client_stream, wire.Code.BAD_PARAMS, f"{wire.DESTROY_METHOD} takes no params"))
        elif self._closing:
            # Failed or going: DELETE is the one to say which (the SDKs fall
            # back to it on this code).
            self._sendToClient(wire.error(
                client_stream, wire.Code.SANDBOX_UNAVAILABLE, "the session is closing"))
        elif manager.get(self.sandbox.id) is not self.sandbox:
            self._sendToClient(wire.error(
                client_stream, "SANDBOX_NOT_FOUND", f"sandbox {self.sandbox.id} not found"))
        else:
            self._sendToClient(wire.result(client_stream, {"id": self.sandbox.id}))
            manager.destroy(self.sandbox.id, reason="DELETE")

    # IStreamHandler: frames from the agent

    def frameReceived(self, frame):
        client_stream = self._to_client.get(frame.stream)
        if client_stream is None:
            return
        if frame.type in wire.FINAL_TYPES:
            self._forget(frame.stream)
        self._sendToClient(
            wire.encode(frame.type, client_stream, frame.payload, frame.flags)
        )

    def agentLost(self, stream, lost):
        client_stream = self._to_client.get(stream)
        self._forget(stream)
        if client_stream is not None:
            self._sendToClient(
                wire.error(client_stream, lost.code, lost.message)
            )

    def _agentConnectionLost(self, lost):
        # Not _connectionLost: autobahn's own method of that name must run.
        self._closeWith(CLOSE_AGENT_LOST, lost.message)

    def sandboxUnavailable(self, reason, normal=False):
        """
        The sandbox is going away (destroyed, failed, or the daemon is
        stopping): fail what is open with ``reason`` and close, with 1000
        when ``normal`` (destroyed on purpose), else 1011.
        """
        for stream, client_stream in list(self._to_client.items()):
            self._forget(stream)
            self._sendToClient(
                wire.error(client_stream, wire.Code.SANDBOX_UNAVAILABLE, reason)
            )
        self._closeWith(CLOSE_NORMAL if normal else CLOSE_AGENT_LOST, reason)

    # Closing

    def onClose(self, wasClean, code, reason):
        sandbox = getattr(self, "sandbox", None)
        if sandbox is None:
            return
        if self.factory.meter is not None:
            self.factory.meter.sessions.discard(self)
        agent_gone = getattr(self, "_agentGone", None)
        if agent_gone is not None and not agent_gone.called:
            agent_gone.cancel()
        dropped = not (wasClean and code in _CLEAN_CODES) and not self._closing
        if self._resumed is not None:
            # Closed during the handshake: the streams wait for another try.
            self._resumed.expiry = self.factory.expireLater(sandbox, self._resumed)
            self.factory.sessions.keep(sandbox, self._resumed)
        elif dropped and sandbox.ttl > 0 and sandbox.alive and self._connection.connected:
            detached = self._detach()
            detached.expiry = self.factory.expireLater(sandbox, detached)
        else:
            for stream in list(self._to_client):
                self._forget(stream)
                if self._connection.connected:
                    self._connection.send(wire.cancel(stream))
        self.factory.sessions.closed(sandbox, self)

    def _forget(self, stream):
        call = self._calls.pop(stream, None) if self._calls else None
        if call is not None:
            self.factory.meter.callEnded(call)
        client_stream = self._to_client.pop(stream, None)
        if client_stream is not None:
            self._to_agent.pop(client_stream, None)
        self._connection.closeStream(stream)

    def _protocolError(self, code, message):
        self._sendToClient(wire.error(0, code, message))
        self._closeWith(CLOSE_PROTOCOL_ERROR, code)

    def _closeWith(self, code, reason):
        if not self._closing:
            self._closing = True
            # sendClose refuses 1002 and 1011 from applications; the frame is valid.
            self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123))

    def _sendToClient(self, data):
        """Relay ``data`` (an encoded frame) to the client."""
        self._tapped(data)
        self._send(data)

    def _tapped(self, data):
        if self.factory.tap is not None:
            self.factory.tap.relayed("<", self.sandbox.id, data)

    def _send(self, data):
        """Send ``data``, numbered and kept for a resume (sandboxd.api.sentlog)."""
        self._log.sent(data, keep=self.sandbox.ttl > 0)
        self._sendQuietly(data)

    def _sendQuietly(self, data):
        try:
            self.sendMessage(data, isBinary=True)
        except Disconnected:
            pass


class SessionFactory(WebSocketServerFactory):
    """
    Builds SandboxSessions for the sandboxes ``manager`` knows, and keeps
    track of them (``sessions``, observing the manager's lifecycle).
    """

    protocol = SandboxSession

    def __init__(self, manager, clock=None, meter=None, tap=None):
        super().__init__()
        #: A relaytap.RelayTap copying every relayed frame (or None).
        self.tap = tap
        #: A DaemonMetrics (or None): open sessions, relayed call latency.
        self.meter = meter
        if clock is None:
            from twisted.internet import reactor as clock
        self.manager = manager
        self.clock = clock
        self.sessions = SessionRegistry(manager)
        #: Short-lived session tokens for browsers (sandboxd.api.wsauth).
        self.tokens = wsauth.SessionTokens(clock)
        manager.lifecycle.observe(self.sessions)
        self.setProtocolOptions(
            maxFramePayloadSize=wire.MAX_PAYLOAD + wire.HEADER_SIZE,
            maxMessagePayloadSize=wire.MAX_PAYLOAD + wire.HEADER_SIZE,
            autoFragmentSize=0,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=2,
        )

    def expireLater(self, sandbox, detached):
        """
        Discard a detached session if nobody resumes it within the
        sandbox's ttl.
        """

        return self.clock.callLater(sandbox.ttl, self.sessions.expire, sandbox, detached)
