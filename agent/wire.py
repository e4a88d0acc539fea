"""
The agent wire protocol, version 1: frames, their codec and an incremental framer.

This module is sans-IO and uses the standard library only: the guest agent,
the daemon's Twisted protocol and the Python SDK all import it.  The format is
specified byte by byte in docs/protocol.md.

Every frame is::

    length  u32 big-endian   number of bytes that follow this field (>= 6)
    type    u8               a FrameType
    flags   u8               for DATA: the channel (0 body/stdin, 1 stdout, 2 stderr)
    stream  u32 big-endian   0 for the connection itself, else a request's stream
    payload length - 6 bytes JSON (UTF-8 object) or raw bytes for DATA
"""

import enum
import hashlib
import hmac
import json
import os
import struct

VERSION = 1

HEADER = struct.Struct("!IBBI")
HEADER_SIZE = HEADER.size  # 10
_STREAM_FIELD = struct.Struct("!I")
_AFTER_LENGTH = HEADER_SIZE - 4

#: The largest payload of any frame.
MAX_PAYLOAD = 1 << 20
#: The largest JSON payload (REQUEST, RESULT, ERROR, EVENT, HELLO, AUTH...).
MAX_JSON = 256 * 1024
#: The size senders cut DATA into.
CHUNK_SIZE = 256 * 1024
#: Bytes a sender may send on a stream before the receiver grants more.
INITIAL_WINDOW = 4 * 1024 * 1024
#: Streams one connection may have open at once.
MAX_STREAMS = 1024
#: The largest stream id.
MAX_STREAM_ID = 0xFFFFFFFF

CHANNEL_BODY = 0
CHANNEL_STDOUT = 1
CHANNEL_STDERR = 2
CHANNELS = (CHANNEL_BODY, CHANNEL_STDOUT, CHANNEL_STDERR)

#: The flag bit of a frame whose payload is sealed end to end (agent.e2e);
#: a sealed DATA frame keeps its channel in the low bits.
SEALED = 0x80
#: What sealing adds to a JSON payload at most: a REQUEST's clear prefix
#: (version, session id, method name) and the counter and tag.
SEALED_EXTRA = 1 + 16 + 1 + 255 + 24
#: A sealed frame's counter (8 bytes) and AES-GCM tag (16 bytes).
SEALED_OVERHEAD = 24


class FrameType(enum.IntEnum):
    """
    The kinds of frame.  Stream 0 carries the connection-level ones.
    """

    HELLO = 0x01  # agent -> client, stream 0: {"version", "nonce"}
    AUTH = 0x02  # client -> agent, stream 0: {"version", "mac"}
    READY = 0x03  # agent -> client, stream 0: {"version", "pid"}
    PING = 0x04  # either way, stream 0: opaque payload echoed in PONG
    PONG = 0x05
    REQUEST = 0x10  # client -> agent: {"method", "params"} opens a stream
    DATA = 0x11  # either way: raw bytes on a channel (flags)
    END = 0x12  # either way: the sender sends no more DATA on this stream
    RESULT = 0x13  # agent -> client: JSON result; closes the stream
    ERROR = 0x14  # agent -> client: {"code", "message", ...}; closes the stream
    CANCEL = 0x15  # client -> agent: stop the request; answered by ERROR CANCELLED
    WINDOW = 0x16  # either way: u32 big-endian credit increment for DATA
    EVENT = 0x17  # agent -> client: JSON progress that does not close the stream


JSON_TYPES = frozenset(
    {
        FrameType.HELLO,
        FrameType.AUTH,
        FrameType.READY,
        FrameType.REQUEST,
        FrameType.RESULT,
        FrameType.ERROR,
        FrameType.EVENT,
    }
)
#: Frames that may carry the SEALED flag.
SEALABLE_TYPES = frozenset(
    {
        FrameType.REQUEST,
        FrameType.DATA,
        FrameType.END,
        FrameType.RESULT,
        FrameType.ERROR,
        FrameType.EVENT,
    }
)
#: Frames that end a stream from the agent's side.
FINAL_TYPES = frozenset({FrameType.RESULT, FrameType.ERROR})


class Code:
    """
    The named errors of the protocol (the "code" of an ERROR frame).
    """

    # Framing and connection.
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
    FRAME_TOO_SHORT = "FRAME_TOO_SHORT"
    UNKNOWN_FRAME_TYPE = "UNKNOWN_FRAME_TYPE"
    BAD_FLAGS = "BAD_FLAGS"
    BAD_PAYLOAD = "BAD_PAYLOAD"
    BAD_STREAM = "BAD_STREAM"
    UNEXPECTED_FRAME = "UNEXPECTED_FRAME"
    TRUNCATED = "TRUNCATED"
    VERSION_MISMATCH = "VERSION_MISMATCH"
    AUTH_FAILED = "AUTH_FAILED"
    STREAM_IN_USE = "STREAM_IN_USE"
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    WINDOW_EXCEEDED = "WINDOW_EXCEEDED"
    RATE_EXCEEDED = "RATE_EXCEEDED"
    # Requests.
    UNKNOWN_METHOD = "UNKNOWN_METHOD"
    BAD_PARAMS = "BAD_PARAMS"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    INTERNAL = "INTERNAL"
    # The daemon, relaying.
    SANDBOX_UNAVAILABLE = "SANDBOX_UNAVAILABLE"
    SANDBOX_PAUSED = "SANDBOX_PAUSED"


class ProtocolError(Exception):
    """
    A peer broke the protocol.  ``code`` is one of ``Code``.
    """

    def __init__(self, code, message, stream=0):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.stream = stream


class Frame:
    """
    One decoded frame.  ``payload`` is bytes; ``json()`` parses it.
    """

    __slots__ = ("type", "flags", "stream", "payload")

    def __init__(self, type, stream, payload=b"", flags=0):
        self.type = type
        self.stream = stream
        self.payload = payload
        self.flags = flags

    def __repr__(self):
        return (
            f"Frame({self.type.name}, stream={self.stream}, flags={self.flags}, "
            f"payload={len(self.payload)} bytes)"
        )

    def _key(self):
        return (self.type, self.stream, self.flags, bytes(self.payload))

    def __eq__(self, other):
        if not isinstance(other, Frame):
            return NotImplemented
        return self._key() == other._key()

    def json(self):
        """
        The payload as a JSON object (a dict), or ProtocolError BAD_PAYLOAD.
        """
        return decode_json(self.payload, self.stream)

    def window(self):
        """
        The credit increment of a WINDOW frame.
        """
        if len(self.payload) != 4:
            raise ProtocolError(
                Code.BAD_PAYLOAD, "WINDOW payload must be 4 bytes", self.stream
            )
        (increment,) = struct.unpack("!I", self.payload)
        if increment == 0:
            raise ProtocolError(
                Code.BAD_PAYLOAD, "WINDOW increment must be positive", self.stream
            )
        return increment

    def encode(self):
        return encode(self.type, self.stream, self.payload, self.flags)


def encode(frame_type, stream, payload=b"", flags=0):
    """
    The bytes of one frame.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(
            Code.FRAME_TOO_LARGE,
            f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}",
            stream,
        )
    header = HEADER.pack(len(payload) + _AFTER_LENGTH, frame_type, flags, stream)
    return header + payload if payload else header


def encode_json(frame_type, stream, obj):
    """
    The bytes of a frame whose payload is ``obj`` as compact JSON.
    """
    payload = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    if len(payload) > MAX_JSON:
        raise ProtocolError(
            Code.FRAME_TOO_LARGE,
            f"JSON payload of {len(payload)} bytes exceeds {MAX_JSON}",
            stream,
        )
    return encode(frame_type, stream, payload)


def decode_json(payload, stream=0):
    """
    Parse a JSON object payload; anything else is ProtocolError BAD_PAYLOAD.
    """
    try:
        obj = json.loads(bytes(payload))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(Code.BAD_PAYLOAD, f"invalid JSON: {e}", stream)
    if not isinstance(obj, dict):
        raise ProtocolError(Code.BAD_PAYLOAD, "JSON payload must be an object", stream)
    return obj


#: The method a daemon's session answers itself rather than relay
#: (docs/protocol.md): destroy the session's sandbox.
DESTROY_METHOD = "sandbox.destroy"


def request(stream, method, params=None):
    return encode_json(
        FrameType.REQUEST, stream, {"method": method, "params": params or {}}
    )


def data(stream, chunk, channel=CHANNEL_BODY):
    return encode(FrameType.DATA, stream, chunk, channel)


def end(stream):
    return encode(FrameType.END, stream)


def result(stream, obj=None):
    return encode_json(FrameType.RESULT, stream, obj or {})


def error(stream, code, message, **details):
    body = {"code": code, "message": message}
    body.update(details)
    return encode_json(FrameType.ERROR, stream, body)


def event(stream, obj):
    return encode_json(FrameType.EVENT, stream, obj)


def cancel(stream):
    return encode(FrameType.CANCEL, stream)


def window(stream, increment):
    return encode(FrameType.WINDOW, stream, struct.pack("!I", increment))


def ping(payload=b""):
    return encode(FrameType.PING, 0, payload)


def pong(payload=b""):
    return encode(FrameType.PONG, 0, payload)


_TYPES = {t.value: t for t in FrameType}


class Framer:
    """
    Turns a byte stream into frames, holding at most one frame's bytes.

    ``feed(data)`` returns the complete frames so far and raises
    ProtocolError at the first malformed header; after an error the framer
    must be discarded together with its connection.
    """

    def __init__(self, max_payload=MAX_PAYLOAD):
        self._buffer = bytearray()
        self._max_payload = max_payload

    @property
    def buffered(self):
        """
        Bytes held waiting for the rest of a frame.
        """
        return len(self._buffer)

    def feed(self, data):
        buffer = self._buffer
        buffer += data
        frames = []
        offset = 0
        size = len(buffer)
        while size - offset >= HEADER_SIZE:
            length, type_byte, flags, stream = HEADER.unpack_from(buffer, offset)
            self._check(length, type_byte, flags, stream)
            end = offset + 4 + length
            if end > size:
                break
            frames.append(
                Frame(
                    _TYPES[type_byte],
                    stream,
                    bytes(buffer[offset + HEADER_SIZE : end]),
                    flags,
                )
            )
            offset = end
        if offset:
            del buffer[:offset]
        return frames

    def _check(self, length, type_byte, flags, stream):
        if length < _AFTER_LENGTH:
            raise ProtocolError(
                Code.FRAME_TOO_SHORT, f"length field {length} is below {_AFTER_LENGTH}"
            )
        if length - _AFTER_LENGTH > self._max_payload:
            raise ProtocolError(
                Code.FRAME_TOO_LARGE,
                f"payload of {length - _AFTER_LENGTH} bytes exceeds {self._max_payload}",
                stream,
            )
        frame_type = _TYPES.get(type_byte)
        if frame_type is None:
            raise ProtocolError(
                Code.UNKNOWN_FRAME_TYPE, f"unknown frame type 0x{type_byte:02x}", stream
            )
        if flags & SEALED and frame_type in SEALABLE_TYPES:
            flags &= ~SEALED
            json_limit = MAX_JSON + SEALED_EXTRA
        else:
            json_limit = MAX_JSON
        if frame_type is FrameType.DATA:
            if flags not in CHANNELS:
                raise ProtocolError(
                    Code.BAD_FLAGS, f"unknown DATA channel {flags}", stream
                )
        elif flags:
            raise ProtocolError(
                Code.BAD_FLAGS, f"{frame_type.name} frames carry no flags", stream
            )
        if frame_type in _CONNECTION_TYPES:
            if stream != 0:
                raise ProtocolError(
                    Code.BAD_STREAM, f"{frame_type.name} belongs on stream 0", stream
                )
        elif stream == 0 and frame_type is not FrameType.ERROR:
            raise ProtocolError(
                Code.BAD_STREAM, f"{frame_type.name} needs a stream id above 0"
            )
        if frame_type in JSON_TYPES and length - _AFTER_LENGTH > json_limit:
            raise ProtocolError(
                Code.FRAME_TOO_LARGE,
                f"JSON payload of {length - _AFTER_LENGTH} bytes exceeds {json_limit}",
                stream,
            )

    def finish(self):
        """
        The byte stream ended: complain if it stopped inside a frame.
        """
        if self._buffer:
            raise ProtocolError(
                Code.TRUNCATED, f"stream ended {len(self._buffer)} bytes into a frame"
            )


_T = FrameType
#: Frames that belong on stream 0 only.
_CONNECTION_TYPES = frozenset({_T.HELLO, _T.AUTH, _T.READY, _T.PING, _T.PONG})


def decode_one(data):
    """
    Decode exactly one whole frame from ``data`` (e.g. a WebSocket message).
    """
    framer = Framer()
    frames = framer.feed(data)
    if len(frames) != 1 or framer.buffered:
        if not frames:
            raise ProtocolError(Code.TRUNCATED, "message holds no whole frame")
        raise ProtocolError(Code.BAD_PAYLOAD, "message must hold exactly one frame")
    return frames[0]


# Authentication: the agent says HELLO with a fresh nonce; the client proves it
# knows the per-sandbox secret with an HMAC of that nonce; the secret itself
# never crosses the wire.


def new_secret():
    """
    A fresh per-sandbox secret (hex text, so it fits an environment variable).
    """
    return os.urandom(32).hex()


def new_nonce():
    return os.urandom(16).hex()


def auth_mac(secret, nonce):
    """
    The proof of ``secret`` for ``nonce``.
    """
    return hmac.new(
        secret.encode(), b"sandbox-agent-v1:" + nonce.encode(), hashlib.sha256
    ).hexdigest()


def check_mac(secret, nonce, mac):
    if not isinstance(mac, str) or not mac.isascii():
        return False
    return hmac.compare_digest(auth_mac(secret, nonce), mac)


def hello(nonce):
    return encode_json(FrameType.HELLO, 0, {"version": VERSION, "nonce": nonce})


def auth(secret, nonce):
    return encode_json(
        FrameType.AUTH, 0, {"version": VERSION, "mac": auth_mac(secret, nonce)}
    )


def ready(pid):
    return encode_json(FrameType.READY, 0, {"version": VERSION, "pid": pid})


class SendWindow:
    """
    The credit a sender has left on one stream.
    """

    __slots__ = ("credit",)

    def __init__(self, credit=INITIAL_WINDOW):
        self.credit = credit

    def take(self, n):
        """
        Spend ``n`` bytes of credit; False (and nothing spent) when short.
        """
        if n > self.credit:
            return False
        self.credit -= n
        return True

    def grant(self, increment):
        self.credit += increment


class ReceiveWindow:
    """
    What a receiver has promised to accept on one stream.

    ``received(n)`` enforces the limit; ``consumed(n)`` returns the credit to
    grant back (0 until half the window has been consumed, so grants are
    batched).
    """

    __slots__ = ("size", "outstanding", "_unacknowledged")

    def __init__(self, size=INITIAL_WINDOW):
        self.size = size
        self.outstanding = size
        self._unacknowledged = 0

    def received(self, n, stream=0):
        if n > self.outstanding:
            raise ProtocolError(
                Code.WINDOW_EXCEEDED,
                f"{n} bytes sent with only {self.outstanding} granted",
                stream,
            )
        self.outstanding -= n

    def consumed(self, n):
        self._unacknowledged += n
        if self._unacknowledged * 2 >= self.size:
            grant = self._unacknowledged
            self._unacknowledged = 0
            self.outstanding += grant
            return grant
        return 0


def chunks(buffer, size=CHUNK_SIZE):
    """
    Slice ``buffer`` into DATA-sized pieces (memoryviews, no copies).
    """
    view = memoryview(buffer)
    for start in range(0, len(view), size):
        yield view[start : start + size]


def sealed_method(frame):
    """
    The method a sealed REQUEST names in clear (version, a 16-byte session
    id, the name's length and the name: docs/security.md), or None.
    """
    payload = frame.payload
    if len(payload) < 18 or not frame.flags & SEALED:
        return None
    n = payload[17]
    if len(payload) < 18 + n:
        return None
    return bytes(payload[18 : 18 + n]).decode("ascii", "replace")


def restream(message, stream):
    """
    The encoded frame ``message`` with its stream id replaced (for relays).
    """
    buffer = bytearray(message)
    _STREAM_FIELD.pack_into(buffer, 6, stream)
    return bytes(buffer)
