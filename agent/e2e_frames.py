"""
Sealing and opening whole wire frames of one encrypted session, sans-IO.

agent.e2e holds the cryptography; this module decides which frames are
sealed and keeps, per stream, its logical id (the counter of its REQUEST,
the same at both ends whatever stream ids the daemon maps it to) and the
index of the next frame each way, so that a frame dropped, repeated or
moved inside a stream fails authentication.

Sealed: REQUEST, DATA, END, RESULT, EVENT and ERROR on a request's stream.
In clear: WINDOW and CANCEL (the daemon reads and sends them), PING, PONG
and ERROR on stream 0 (the connection's).  An ERROR in clear on a stream is
taken only with a code the daemon may send (RELAY_CODES) or an E2E code;
anything else that should be sealed but is not is ``E2E_UNSEALED``.
"""

from . import wire
from .e2e import CODES, OVERHEAD, SEALED, Code, E2EError, sealed_header
from .wire import sealed_method  # noqa: F401 (re-exported)

_FT = wire.FrameType
SEALABLE = frozenset({_FT.REQUEST, _FT.DATA, _FT.END, _FT.RESULT, _FT.EVENT, _FT.ERROR})
#: ERROR codes the daemon itself sends on a client's stream, in clear.
RELAY_CODES = frozenset(
    {wire.Code.SANDBOX_UNAVAILABLE, wire.Code.STREAM_IN_USE, wire.Code.TOO_MANY_STREAMS}
)
#: The largest plaintext of a sealed frame (JSON types / DATA).
MAX_SEALED_JSON = wire.MAX_JSON
MAX_SEALED_DATA = wire.MAX_PAYLOAD - OVERHEAD


def is_sealed(frame):
    return bool(frame.flags & SEALED)


def session_of(frame):
    """
    The session id a sealed REQUEST names.
    """
    return bytes(frame.payload[1:17])


class _Stream:
    __slots__ = ("lstream", "sent", "received")

    def __init__(self, lstream):
        self.lstream = lstream
        self.sent = 0
        self.received = 0


class Sealing:
    """
    The frames of one encrypted session at one end (``client`` or agent),
    keyed by the wire stream ids of that end.
    """

    def __init__(self, channel, client):
        self.channel = channel
        self.client = client
        self.streams = {}

    @property
    def failure(self):
        return self.channel.failure

    def seal(self, data):
        """
        An encoded frame -> the encoded frame to send (sealed, or as it was
        for the frames that travel in clear).
        """
        length, frame_type, flags, stream = wire.HEADER.unpack_from(data)
        if frame_type not in SEALABLE or stream == 0:
            return data
        payload = memoryview(data)[wire.HEADER_SIZE :]
        if frame_type == _FT.REQUEST:
            if not self.client:
                raise E2EError(Code.MALFORMED, "the agent sends no REQUEST")
            method = wire.decode_json(payload, stream).get("method")
            frame, lstream = self.channel.seal_request(flags, payload, str(method), stream)
            state = self.streams[stream] = _Stream(lstream)
            state.sent = 1
            return self._bounded(frame, stream)
        state = self.streams.get(stream)
        if state is None:
            return data  # an ERROR answering a clear request, say
        head = sealed_header(frame_type, flags, stream, len(payload))
        frame = self.channel.seal(
            frame_type, flags, state.lstream, state.sent, payload, head=head
        )
        state.sent += 1
        if not self.client and frame_type in wire.FINAL_TYPES:
            del self.streams[stream]
        return self._bounded(frame, stream)

    @staticmethod
    def _bounded(frame, stream):
        if len(frame) - wire.HEADER_SIZE > wire.MAX_PAYLOAD:
            raise wire.ProtocolError(
                wire.Code.FRAME_TOO_LARGE, "the sealed frame exceeds MAX_PAYLOAD", stream
            )
        return frame

    def open(self, frame):
        """
        A received frame -> the plaintext Frame, or None to ignore it.
        E2EError when it must end the session.
        """
        kind = frame.type
        if not is_sealed(frame):
            return self._clear(frame)
        flags = frame.flags & ~SEALED
        if kind is _FT.REQUEST:
            if self.client:
                raise E2EError(Code.MALFORMED, "the client takes no REQUEST")
            plaintext, method, lstream = self.channel.open_request(flags, frame.payload)
            inner = wire.decode_json(plaintext, frame.stream).get("method")
            if inner != method:
                raise E2EError(Code.MALFORMED, f"sealed method {inner!r} is not {method!r}")
            state = self.streams[frame.stream] = _Stream(lstream)
            state.received = 1
            return wire.Frame(kind, frame.stream, plaintext, flags)
        state = self.streams.get(frame.stream)
        if state is None:
            return None  # a stream this end gave up on
        plaintext, _ = self.channel.open(
            kind, flags, state.lstream, state.received, frame.payload
        )
        state.received += 1
        if self.client and kind in wire.FINAL_TYPES:
            del self.streams[frame.stream]
        return wire.Frame(kind, frame.stream, plaintext, flags)

    def _clear(self, frame):
        kind = frame.type
        if frame.stream == 0 or kind is _FT.WINDOW or kind is _FT.CANCEL:
            return frame
        if kind is _FT.REQUEST and not self.client:
            return frame  # a clear request: not this session's
        if frame.stream not in self.streams:
            return frame if kind is _FT.ERROR else None
        if kind is _FT.ERROR and self.client:
            code = frame.json().get("code")
            if code in RELAY_CODES or code in CODES:
                del self.streams[frame.stream]
                return frame
        if kind is _FT.EVENT and self.client:
            return None  # the daemon's own dropped_bytes: the gap fails the stream
        raise E2EError(Code.UNSEALED, f"{kind.name} on an encrypted stream came in clear")

    def forget(self, stream):
        """
        This end closed ``stream`` (gave up on it, or the agent ended it).
        """
        self.streams.pop(stream, None)
