"""
Tests for L{agent.wire}: the frame codec, the incremental framer, the
authentication MAC and the flow-control windows (docs/protocol.md).
"""

import hashlib
import hmac
import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from agent import wire
from agent.wire import Code, Frame, FrameType, ProtocolError

_CONNECTION_TYPES = (
    FrameType.HELLO,
    FrameType.AUTH,
    FrameType.READY,
    FrameType.PING,
    FrameType.PONG,
)
_UNKNOWN_TYPE_BYTES = [b for b in range(256) if b not in {t.value for t in FrameType}]


def header(length, frame_type, flags=0, stream=0):
    """
    A raw frame header, whatever its fields.
    """
    return wire.HEADER.pack(length, frame_type, flags, stream)


def pattern(size):
    """
    ``size`` bytes that are not all alike, so misplaced slices show.
    """
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def feed_in_pieces(framer, data, cuts):
    """
    Feed ``data`` to ``framer`` cut at the offsets ``cuts``; return the frames.
    """
    frames = []
    start = 0
    for cut in sorted(cuts) + [len(data)]:
        frames.extend(framer.feed(data[start:cut]))
        start = cut
    return frames


class HelperRoundTripTests(TestCase):
    """
    Every frame helper encodes a frame that decodes to what it was given.
    """

    def test_request(self):
        """
        C{request} is a REQUEST on its stream with C{method} and C{params},
        C{params} defaulting to an empty object.
        """
        frame = wire.decode_one(wire.request(7, "fs.read", {"path": "/etc/hosts"}))
        self.assertEqual(
            (frame.type, frame.stream, frame.flags),
            (FrameType.REQUEST, 7, 0),
        )
        self.assertEqual(
            frame.json(), {"method": "fs.read", "params": {"path": "/etc/hosts"}}
        )
        self.assertEqual(
            wire.decode_one(wire.request(8, "ping")).json(),
            {"method": "ping", "params": {}},
        )

    def test_dataOnEachChannel(self):
        """
        C{data} carries raw bytes with the channel in the flags byte, for
        the body, stdout and stderr channels; the body is the default.
        """
        chunk = pattern(1000)
        for channel in wire.CHANNELS:
            frame = wire.decode_one(wire.data(3, chunk, channel))
            self.assertEqual(
                (frame.type, frame.stream, frame.flags, frame.payload),
                (FrameType.DATA, 3, channel, chunk),
            )
        self.assertEqual(wire.decode_one(wire.data(3, b"x")).flags, wire.CHANNEL_BODY)

    def test_dataFromMemoryview(self):
        """
        C{data} accepts the memoryviews C{chunks} yields.
        """
        buffer = bytearray(pattern(10))
        (view,) = wire.chunks(buffer)
        self.assertEqual(wire.decode_one(wire.data(1, view)).payload, bytes(buffer))

    def test_endAndCancel(self):
        """
        C{end} and C{cancel} are empty frames on their stream: exactly the
        10-byte header.
        """
        for helper, frame_type in ((wire.end, FrameType.END), (wire.cancel, FrameType.CANCEL)):
            encoded = helper(9)
            self.assertEqual(encoded, header(6, frame_type, 0, 9))
            frame = wire.decode_one(encoded)
            self.assertEqual((frame.type, frame.stream, frame.payload), (frame_type, 9, b""))

    def test_result(self):
        """
        C{result} is a RESULT with the given object, an empty one by default.
        """
        frame = wire.decode_one(wire.result(4, {"exit_code": 0, "timed_out": False}))
        self.assertEqual((frame.type, frame.stream), (FrameType.RESULT, 4))
        self.assertEqual(frame.json(), {"exit_code": 0, "timed_out": False})
        self.assertEqual(wire.decode_one(wire.result(4)).json(), {})

    def test_errorWithDetails(self):
        """
        C{error} is an ERROR with C{code}, C{message} and any details as
        extra keys.
        """
        frame = wire.decode_one(wire.error(5, "ENOENT", "no such file", path="/nope"))
        self.assertEqual((frame.type, frame.stream), (FrameType.ERROR, 5))
        self.assertEqual(
            frame.json(), {"code": "ENOENT", "message": "no such file", "path": "/nope"}
        )

    def test_errorOnStreamZero(self):
        """
        An ERROR on stream 0 (a connection-level failure, such as
        AUTH_FAILED) decodes: the protocol allows ERROR on any stream.
        """
        frame = wire.decode_one(wire.error(0, Code.AUTH_FAILED, "bad mac"))
        self.assertEqual((frame.type, frame.stream), (FrameType.ERROR, 0))
        self.assertEqual(frame.json()["code"], Code.AUTH_FAILED)

    def test_event(self):
        """
        C{event} is an EVENT with the given object.
        """
        frame = wire.decode_one(wire.event(2, {"entries": [{"name": "a"}]}))
        self.assertEqual((frame.type, frame.stream), (FrameType.EVENT, 2))
        self.assertEqual(frame.json(), {"entries": [{"name": "a"}]})

    def test_window(self):
        """
        C{window} is a WINDOW whose 4-byte big-endian payload
        C{Frame.window} reads back, up to 2**32 - 1.
        """
        for increment in (1, wire.INITIAL_WINDOW, 0xFFFFFFFF):
            frame = wire.decode_one(wire.window(6, increment))
            self.assertEqual((frame.type, frame.stream), (FrameType.WINDOW, 6))
            self.assertEqual(frame.payload, struct.pack("!I", increment))
            self.assertEqual(frame.window(), increment)

    def test_pingPong(self):
        """
        C{ping} and C{pong} are stream-0 frames carrying opaque bytes.
        """
        for helper, frame_type in ((wire.ping, FrameType.PING), (wire.pong, FrameType.PONG)):
            frame = wire.decode_one(helper(b"\x00\x01opaque"))
            self.assertEqual(
                (frame.type, frame.stream, frame.payload),
                (frame_type, 0, b"\x00\x01opaque"),
            )
            self.assertEqual(wire.decode_one(helper()).payload, b"")

    def test_helloAuthReady(self):
        """
        C{hello}, C{auth} and C{ready} are the stream-0 handshake frames,
        each with the protocol version; AUTH carries the MAC of the nonce.
        """
        nonce = wire.new_nonce()
        secret = wire.new_secret()
        frame = wire.decode_one(wire.hello(nonce))
        self.assertEqual((frame.type, frame.stream), (FrameType.HELLO, 0))
        self.assertEqual(frame.json(), {"version": wire.VERSION, "nonce": nonce})
        frame = wire.decode_one(wire.auth(secret, nonce))
        self.assertEqual((frame.type, frame.stream), (FrameType.AUTH, 0))
        self.assertEqual(
            frame.json(), {"version": wire.VERSION, "mac": wire.auth_mac(secret, nonce)}
        )
        frame = wire.decode_one(wire.ready(4242))
        self.assertEqual((frame.type, frame.stream), (FrameType.READY, 0))
        self.assertEqual(frame.json(), {"version": wire.VERSION, "pid": 4242})

    def test_jsonIsCompactUTF8(self):
        """
        JSON payloads are compact UTF-8 (not ASCII escapes) and round-trip
        non-ASCII text.
        """
        encoded = wire.result(1, {"name": "caf\u00e9"})
        self.assertEqual(encoded[wire.HEADER_SIZE :], '{"name":"caf\u00e9"}'.encode())
        self.assertEqual(wire.decode_one(encoded).json(), {"name": "caf\u00e9"})

    def test_frameEncode(self):
        """
        C{Frame.encode} gives back the bytes the frame was decoded from, and
        frames compare equal by type, stream, flags and payload.
        """
        encoded = wire.data(11, b"abc", wire.CHANNEL_STDERR)
        frame = wire.decode_one(encoded)
        self.assertEqual(frame.encode(), encoded)
        self.assertEqual(frame, Frame(FrameType.DATA, 11, b"abc", wire.CHANNEL_STDERR))
        self.assertNotEqual(frame, Frame(FrameType.DATA, 11, b"abc", wire.CHANNEL_STDOUT))
        self.assertNotEqual(frame, Frame(FrameType.DATA, 12, b"abc", wire.CHANNEL_STDERR))

    def test_headerLayout(self):
        """
        The header is length (u32, 6 + payload), type, flags, stream (u32),
        all big-endian.
        """
        self.assertEqual(wire.HEADER_SIZE, 10)
        self.assertEqual(
            wire.data(0x01020304, b"xyz", 2),
            b"\x00\x00\x00\x09\x11\x02\x01\x02\x03\x04xyz",
        )


class EncoderLimitTests(TestCase):
    """
    The encoder refuses to build frames over the payload caps.
    """

    def test_payloadTooLarge(self):
        """
        A payload over MAX_PAYLOAD is FRAME_TOO_LARGE; one at the cap encodes.
        """
        self.assertEqual(len(wire.data(1, bytes(wire.MAX_PAYLOAD))), wire.MAX_PAYLOAD + 10)
        e = self.assertRaises(ProtocolError, wire.data, 1, bytes(wire.MAX_PAYLOAD + 1))
        self.assertEqual(e.code, Code.FRAME_TOO_LARGE)

    def test_jsonTooLarge(self):
        """
        A JSON payload over MAX_JSON is FRAME_TOO_LARGE.
        """
        e = self.assertRaises(
            ProtocolError, wire.result, 3, {"blob": "x" * wire.MAX_JSON}
        )
        self.assertEqual((e.code, e.stream), (Code.FRAME_TOO_LARGE, 3))


class FramerTests(TestCase):
    """
    The incremental framer turns any split of a byte stream into the same
    frames.
    """

    def sampleStream(self):
        frames = [
            wire.hello("ab" * 16),
            wire.request(1, "process.exec", {"cmd": "true"}),
            wire.data(1, pattern(300), wire.CHANNEL_STDOUT),
            wire.end(1),
            wire.window(1, 77),
            wire.ping(b"12345678"),
            wire.result(1, {"exit_code": 0}),
            wire.cancel(2),
        ]
        return b"".join(frames), [wire.decode_one(f) for f in frames]

    def test_splitAtEveryByteBoundary(self):
        """
        A multi-frame byte string cut in two at every possible offset
        decodes to the same frames, and nothing stays buffered.
        """
        stream, expected = self.sampleStream()
        for cut in range(len(stream) + 1):
            framer = wire.Framer()
            self.assertEqual(feed_in_pieces(framer, stream, [cut]), expected, cut)
            self.assertEqual(framer.buffered, 0)
            framer.finish()

    def test_oneByteAtATime(self):
        """
        The same byte string fed one byte at a time decodes to the same
        frames, each as soon as its last byte arrives.
        """
        stream, expected = self.sampleStream()
        framer = wire.Framer()
        frames = []
        for i in range(len(stream)):
            frames.extend(framer.feed(stream[i : i + 1]))
        self.assertEqual(frames, expected)
        self.assertEqual(framer.buffered, 0)

    def test_buffered(self):
        """
        C{buffered} counts the bytes of the incomplete frame held.
        """
        framer = wire.Framer()
        encoded = wire.data(1, b"hello")
        self.assertEqual(framer.feed(encoded[:7]), [])
        self.assertEqual(framer.buffered, 7)
        self.assertEqual(len(framer.feed(encoded[7:] + encoded[:12])), 1)
        self.assertEqual(framer.buffered, 12)

    def test_frameTooShort(self):
        """
        A length field below 6 is FRAME_TOO_SHORT.
        """
        for length in range(6):
            e = self.assertRaises(
                ProtocolError, wire.Framer().feed, header(length, FrameType.END, 0, 1)
            )
            self.assertEqual(e.code, Code.FRAME_TOO_SHORT)

    def test_frameTooLargeFromHeaderAlone(self):
        """
        A header announcing a payload over MAX_PAYLOAD is FRAME_TOO_LARGE as
        soon as the header is in, before any of the payload arrives, so the
        framer never buffers it.
        """
        framer = wire.Framer()
        big = header(6 + wire.MAX_PAYLOAD + 1, FrameType.DATA, 0, 1)
        self.assertEqual(framer.feed(big[:9]), [])
        e = self.assertRaises(ProtocolError, framer.feed, big[9:])
        self.assertEqual((e.code, e.stream), (Code.FRAME_TOO_LARGE, 1))
        self.assertTrue(framer.buffered <= wire.HEADER_SIZE)
        e = self.assertRaises(
            ProtocolError, wire.Framer().feed, header(0xFFFFFFFF, FrameType.DATA, 0, 1)
        )
        self.assertEqual(e.code, Code.FRAME_TOO_LARGE)

    def test_payloadAtMaxAccepted(self):
        """
        A DATA frame of exactly MAX_PAYLOAD and a JSON frame of exactly
        MAX_JSON decode.
        """
        framer = wire.Framer()
        data = wire.data(1, pattern(wire.MAX_PAYLOAD))
        json_frame = wire.encode(FrameType.RESULT, 1, b" " * wire.MAX_JSON)
        frames = framer.feed(data + json_frame)
        self.assertEqual(
            [(f.type, len(f.payload)) for f in frames],
            [(FrameType.DATA, wire.MAX_PAYLOAD), (FrameType.RESULT, wire.MAX_JSON)],
        )

    def test_customMaxPayload(self):
        """
        A framer built with a smaller C{max_payload} enforces it.
        """
        framer = wire.Framer(max_payload=100)
        self.assertEqual(len(framer.feed(wire.data(1, bytes(100)))), 1)
        e = self.assertRaises(ProtocolError, framer.feed, header(107, FrameType.DATA, 0, 1))
        self.assertEqual(e.code, Code.FRAME_TOO_LARGE)

    def test_jsonTypesAboveMaxJSON(self):
        """
        Every JSON frame type is FRAME_TOO_LARGE above MAX_JSON, from the
        header alone; DATA of the same size is fine.
        """
        for frame_type in wire.JSON_TYPES:
            stream = 0 if frame_type in _CONNECTION_TYPES else 1
            e = self.assertRaises(
                ProtocolError,
                wire.Framer().feed,
                header(6 + wire.MAX_JSON + 1, frame_type, 0, stream),
            )
            self.assertEqual(e.code, Code.FRAME_TOO_LARGE, frame_type)
        framer = wire.Framer()
        self.assertEqual(
            framer.feed(header(6 + wire.MAX_JSON + 1, FrameType.DATA, 0, 1)), []
        )

    def test_unknownFrameType(self):
        """
        A type byte that is no FrameType is UNKNOWN_FRAME_TYPE.
        """
        for type_byte in _UNKNOWN_TYPE_BYTES:
            e = self.assertRaises(
                ProtocolError, wire.Framer().feed, header(6, type_byte, 0, 1)
            )
            self.assertEqual(e.code, Code.UNKNOWN_FRAME_TYPE, type_byte)

    def test_flagsOnNonData(self):
        """
        Flags on any frame other than DATA are BAD_FLAGS.
        """
        for frame_type in FrameType:
            if frame_type is FrameType.DATA:
                continue
            stream = 0 if frame_type in _CONNECTION_TYPES else 1
            e = self.assertRaises(
                ProtocolError, wire.Framer().feed, header(6, frame_type, 1, stream)
            )
            self.assertEqual(e.code, Code.BAD_FLAGS, frame_type)

    def test_unknownDataChannel(self):
        """
        A DATA frame on a channel other than 0, 1 or 2 is BAD_FLAGS, with or
        without the SEALED bit (0x80 alone is a sealed channel 0).
        """
        for channel in (3, 4, 0x40, 0x83, 0xFF):
            e = self.assertRaises(
                ProtocolError, wire.Framer().feed, header(6, FrameType.DATA, channel, 1)
            )
            self.assertEqual((e.code, e.stream), (Code.BAD_FLAGS, 1))

    def test_connectionFrameOnStream(self):
        """
        HELLO, AUTH, READY, PING and PONG on a stream other than 0 are
        BAD_STREAM.
        """
        for frame_type in _CONNECTION_TYPES:
            e = self.assertRaises(
                ProtocolError, wire.Framer().feed, header(6, frame_type, 0, 1)
            )
            self.assertEqual(e.code, Code.BAD_STREAM, frame_type)

    def test_streamFrameOnStreamZero(self):
        """
        REQUEST, DATA, END, RESULT, CANCEL, WINDOW and EVENT on stream 0 are
        BAD_STREAM.
        """
        for frame_type in FrameType:
            if frame_type in _CONNECTION_TYPES or frame_type is FrameType.ERROR:
                continue
            e = self.assertRaises(
                ProtocolError, wire.Framer().feed, header(6, frame_type, 0, 0)
            )
            self.assertEqual(e.code, Code.BAD_STREAM, frame_type)

    def test_highestStreamId(self):
        """
        Stream ids go up to 2**32 - 1.
        """
        frame = wire.decode_one(wire.end(wire.MAX_STREAM_ID))
        self.assertEqual(frame.stream, 0xFFFFFFFF)

    def test_truncated(self):
        """
        C{finish} after a byte stream that stopped inside a frame (even
        inside its header) is TRUNCATED; after whole frames it is quiet.
        """
        encoded = wire.data(1, b"abcdef")
        for cut in range(1, len(encoded)):
            framer = wire.Framer()
            framer.feed(encoded[:cut])
            e = self.assertRaises(ProtocolError, framer.finish)
            self.assertEqual(e.code, Code.TRUNCATED)
        framer = wire.Framer()
        framer.feed(encoded)
        framer.finish()
        wire.Framer().finish()

    def test_bufferBoundedOverLongStream(self):
        """
        Feeding a 3 MiB stream of frames (several of the largest) in
        randomly sized pieces, the framer never holds more than
        MAX_PAYLOAD + HEADER_SIZE bytes between feeds, and decodes every
        frame.
        """
        rng = random.Random(20240601)
        encoded = []
        total = 0
        while total < 3 * 1024 * 1024:
            size = rng.choice([0, 1, 1000, wire.CHUNK_SIZE, wire.MAX_PAYLOAD])
            frame = wire.data(1 + len(encoded), pattern(size), rng.choice(wire.CHANNELS))
            encoded.append(frame)
            total += len(frame)
        stream = b"".join(encoded)
        framer = wire.Framer()
        frames = []
        offset = 0
        while offset < len(stream):
            piece = rng.randint(1, 300_000)
            frames.extend(framer.feed(stream[offset : offset + piece]))
            offset += piece
            self.assertTrue(
                framer.buffered <= wire.MAX_PAYLOAD + wire.HEADER_SIZE, framer.buffered
            )
        self.assertEqual(frames, [wire.decode_one(f) for f in encoded])
        self.assertEqual(framer.buffered, 0)


class PayloadTests(TestCase):
    """
    Payload accessors reject malformed payloads with BAD_PAYLOAD.
    """

    def test_badJSON(self):
        """
        A payload that is not JSON, or not UTF-8, is BAD_PAYLOAD on the
        frame's stream.
        """
        for payload in (b"{", b"not json", b"\xff\xfe{}", b""):
            e = self.assertRaises(ProtocolError, Frame(FrameType.RESULT, 3, payload).json)
            self.assertEqual((e.code, e.stream), (Code.BAD_PAYLOAD, 3), payload)

    def test_nonObjectJSON(self):
        """
        JSON that is not an object is BAD_PAYLOAD.
        """
        for payload in (b"[]", b"1", b'"text"', b"null", b"true"):
            e = self.assertRaises(ProtocolError, Frame(FrameType.REQUEST, 1, payload).json)
            self.assertEqual(e.code, Code.BAD_PAYLOAD, payload)

    def test_deeplyNestedJSON(self):
        """
        JSON nested too deeply for the parser is BAD_PAYLOAD, not a
        RecursionError escaping to the caller.
        """
        for payload in (b"[" * 100_000, b'{"a":' * 40_000):
            frame = wire.decode_one(wire.encode(FrameType.REQUEST, 1, payload))
            e = self.assertRaises(ProtocolError, frame.json)
            self.assertEqual(e.code, Code.BAD_PAYLOAD)

    def test_windowPayloadRules(self):
        """
        A WINDOW payload must be exactly 4 bytes holding a positive
        increment; anything else is BAD_PAYLOAD.
        """
        for payload in (b"", b"\x00\x00\x01", b"\x00\x00\x00\x01\x00", b"\x00" * 4):
            frame = wire.decode_one(wire.encode(FrameType.WINDOW, 2, payload))
            e = self.assertRaises(ProtocolError, frame.window)
            self.assertEqual((e.code, e.stream), (Code.BAD_PAYLOAD, 2), payload)


class DecodeOneTests(TestCase):
    """
    C{decode_one} takes exactly one whole frame (a WebSocket message).
    """

    def test_noWholeFrame(self):
        """
        Nothing, or part of a frame, is TRUNCATED.
        """
        encoded = wire.result(1)
        for message in (b"", encoded[:4], encoded[:-1]):
            e = self.assertRaises(ProtocolError, wire.decode_one, message)
            self.assertEqual(e.code, Code.TRUNCATED, message)

    def test_twoFrames(self):
        """
        Two frames, or a frame and part of another, is BAD_PAYLOAD.
        """
        encoded = wire.end(1)
        for message in (encoded * 2, encoded + encoded[:3]):
            e = self.assertRaises(ProtocolError, wire.decode_one, message)
            self.assertEqual(e.code, Code.BAD_PAYLOAD, message)

    def test_malformedHeader(self):
        """
        A malformed header surfaces with its own code.
        """
        e = self.assertRaises(ProtocolError, wire.decode_one, header(6, 0x99, 0, 1))
        self.assertEqual(e.code, Code.UNKNOWN_FRAME_TYPE)


class AuthenticationTests(TestCase):
    """
    The MAC that proves the sandbox secret without sending it.
    """

    def test_macDefinition(self):
        """
        The MAC is lowercase hex HMAC-SHA256 keyed by the secret over
        "sandbox-agent-v1:" + nonce.
        """
        secret, nonce = "00" * 32, "ab" * 16
        expected = hmac.new(
            secret.encode(), ("sandbox-agent-v1:" + nonce).encode(), hashlib.sha256
        ).hexdigest()
        self.assertEqual(wire.auth_mac(secret, nonce), expected)

    def test_rightSecret(self):
        """
        C{check_mac} accepts the MAC of the same secret and nonce.
        """
        secret, nonce = wire.new_secret(), wire.new_nonce()
        self.assertTrue(wire.check_mac(secret, nonce, wire.auth_mac(secret, nonce)))

    def test_wrongSecretOrNonce(self):
        """
        C{check_mac} refuses a MAC made with another secret or another
        nonce.
        """
        secret, nonce = wire.new_secret(), wire.new_nonce()
        self.assertFalse(wire.check_mac(secret, nonce, wire.auth_mac(wire.new_secret(), nonce)))
        self.assertFalse(wire.check_mac(secret, nonce, wire.auth_mac(secret, wire.new_nonce())))
        self.assertFalse(wire.check_mac(secret, nonce, ""))

    def test_nonStringMac(self):
        """
        C{check_mac} refuses (rather than raising) a MAC that is not a
        string, as a JSON AUTH payload may hold anything.
        """
        secret, nonce = wire.new_secret(), wire.new_nonce()
        good = wire.auth_mac(secret, nonce)
        for mac in (None, 1, good.encode(), [good], {"mac": good}):
            self.assertFalse(wire.check_mac(secret, nonce, mac), mac)

    def test_nonASCIIMac(self):
        """
        C{check_mac} refuses (rather than raising TypeError from
        C{hmac.compare_digest}) a MAC string with non-ASCII characters.
        """
        secret, nonce = wire.new_secret(), wire.new_nonce()
        self.assertFalse(wire.check_mac(secret, nonce, "\u00e9" * 64))
        self.assertFalse(wire.check_mac(secret, nonce, "\ud800"))

    def test_secretsAndNonces(self):
        """
        Secrets are 64 hex characters, nonces 32, and each is fresh.
        """
        secret, nonce = wire.new_secret(), wire.new_nonce()
        self.assertEqual((len(secret), len(nonce)), (64, 32))
        int(secret, 16)
        int(nonce, 16)
        self.assertNotEqual(secret, wire.new_secret())
        self.assertNotEqual(nonce, wire.new_nonce())


class WindowTests(TestCase):
    """
    Per-stream flow-control credit.
    """

    def test_sendWindowTake(self):
        """
        C{SendWindow.take} spends credit while there is enough and refuses,
        spending nothing, when there is not.
        """
        window = wire.SendWindow(100)
        self.assertTrue(window.take(60))
        self.assertEqual(window.credit, 40)
        self.assertFalse(window.take(41))
        self.assertEqual(window.credit, 40)
        self.assertTrue(window.take(40))
        self.assertEqual(window.credit, 0)
        self.assertFalse(window.take(1))

    def test_sendWindowGrant(self):
        """
        C{SendWindow.grant} adds credit; the default credit is
        INITIAL_WINDOW.
        """
        self.assertEqual(wire.SendWindow().credit, wire.INITIAL_WINDOW)
        window = wire.SendWindow(0)
        window.grant(10)
        self.assertTrue(window.take(10))

    def test_receiveWindowExceeded(self):
        """
        C{ReceiveWindow.received} past what was granted is WINDOW_EXCEEDED on
        the given stream; up to it is fine.
        """
        window = wire.ReceiveWindow(100)
        window.received(100)
        self.assertEqual(window.outstanding, 0)
        e = self.assertRaises(ProtocolError, window.received, 1, 7)
        self.assertEqual((e.code, e.stream), (Code.WINDOW_EXCEEDED, 7))

    def test_grantsBatchedAtHalfWindow(self):
        """
        C{consumed} grants nothing until half the window has been consumed,
        then grants everything consumed so far, which the sender may send
        again.
        """
        window = wire.ReceiveWindow(100)
        window.received(100)
        self.assertEqual(window.consumed(30), 0)
        self.assertEqual(window.consumed(19), 0)
        self.assertEqual(window.consumed(1), 50)
        self.assertEqual(window.outstanding, 50)
        window.received(50)
        self.assertEqual(window.consumed(50), 50)
        self.assertEqual(window.consumed(50), 50)
        self.assertEqual(window.outstanding, 100)

    def test_defaultReceiveWindow(self):
        """
        The default receive window is INITIAL_WINDOW, granted back in halves.
        """
        window = wire.ReceiveWindow()
        window.received(wire.INITIAL_WINDOW)
        self.assertEqual(window.consumed(wire.INITIAL_WINDOW // 2 - 1), 0)
        self.assertEqual(window.consumed(1), wire.INITIAL_WINDOW // 2)


class RelayHelperTests(TestCase):
    """
    C{restream} and C{chunks}.
    """

    def test_restreamChangesOnlyStream(self):
        """
        C{restream} rewrites bytes 6..9 (the stream id) and nothing else.
        """
        original = wire.data(5, pattern(40), wire.CHANNEL_STDERR)
        changed = wire.restream(original, 0xDEADBEEF)
        self.assertEqual(changed[:6], original[:6])
        self.assertEqual(changed[6:10], b"\xde\xad\xbe\xef")
        self.assertEqual(changed[10:], original[10:])
        frame = wire.decode_one(changed)
        self.assertEqual(
            (frame.type, frame.stream, frame.flags, frame.payload),
            (FrameType.DATA, 0xDEADBEEF, wire.CHANNEL_STDERR, pattern(40)),
        )
        self.assertIsInstance(changed, bytes)

    def test_chunksSlices(self):
        """
        C{chunks} cuts a buffer into CHUNK_SIZE pieces (the last shorter)
        that join back to it.
        """
        buffer = pattern(2 * wire.CHUNK_SIZE + 5)
        pieces = list(wire.chunks(buffer))
        self.assertEqual([len(p) for p in pieces], [wire.CHUNK_SIZE, wire.CHUNK_SIZE, 5])
        self.assertEqual(b"".join(pieces), buffer)
        self.assertEqual([bytes(p) for p in wire.chunks(b"abcdefg", 3)], [b"abc", b"def", b"g"])
        self.assertEqual(list(wire.chunks(b"")), [])

    def test_chunksDoNotCopy(self):
        """
        The pieces are views of the buffer itself, not copies.
        """
        buffer = bytearray(b"abcdef")
        pieces = list(wire.chunks(buffer, 4))
        self.assertIsInstance(pieces[0], memoryview)
        self.assertIs(pieces[0].obj, buffer)
        buffer[0:1] = b"Z"
        self.assertEqual(bytes(pieces[0]), b"Zbcd")


# Property tests.


@st.composite
def valid_frames(draw):
    """
    A frame the framer must accept: connection types on stream 0, ERROR on
    any stream, the others on a nonzero stream; payloads within the caps.
    """
    frame_type = draw(st.sampled_from(list(FrameType)))
    if frame_type in _CONNECTION_TYPES:
        stream = 0
    elif frame_type is FrameType.ERROR:
        stream = draw(st.one_of(st.just(0), st.integers(0, wire.MAX_STREAM_ID)))
    else:
        stream = draw(st.integers(1, wire.MAX_STREAM_ID))
    flags = draw(st.sampled_from(wire.CHANNELS)) if frame_type is FrameType.DATA else 0
    cap = wire.MAX_JSON if frame_type in wire.JSON_TYPES else wire.MAX_PAYLOAD
    payload = draw(
        st.one_of(
            st.binary(max_size=200),
            st.integers(0, cap).map(pattern),
        )
    )
    return Frame(frame_type, stream, payload, flags)


@st.composite
def almost_frames(draw):
    """
    Bytes shaped like frames with any header fields (so the framer gets
    past the first header often), or plain garbage.
    """
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            parts.append(draw(st.binary(max_size=40)))
            continue
        payload = draw(st.binary(max_size=40))
        length = draw(st.one_of(st.just(6 + len(payload)), st.integers(0, 0xFFFFFFFF)))
        type_byte = draw(
            st.one_of(st.sampled_from([t.value for t in FrameType]), st.integers(0, 255))
        )
        parts.append(
            header(length, type_byte, draw(st.integers(0, 3)), draw(st.integers(0, 3)))
            + payload
        )
    return b"".join(parts)


class PropertyTests(TestCase):
    """
    Properties of the codec over generated frames and bytes.
    """

    @settings(max_examples=150, deadline=None)
    @given(frames=st.lists(valid_frames(), max_size=8), data=st.data())
    def test_roundTripAnySplit(self, frames, data):
        """
        Any list of valid frames, encoded, concatenated and fed in random
        pieces, decodes to the same list with nothing left over.
        """
        stream = b"".join(f.encode() for f in frames)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
        framer = wire.Framer()
        self.assertEqual(feed_in_pieces(framer, stream, cuts), frames)
        framer.finish()

    @settings(max_examples=300, deadline=None)
    @given(garbage=st.one_of(st.binary(max_size=300), almost_frames()), data=st.data())
    def test_garbageOnlyProtocolError(self, garbage, data):
        """
        Arbitrary bytes, fed in random pieces, decode to frames or raise
        ProtocolError, never another exception; so do the payload accessors
        of what decodes, C{finish} and C{decode_one}.
        """
        cuts = data.draw(st.lists(st.integers(0, len(garbage)), max_size=6))
        framer = wire.Framer()
        frames = []
        try:
            frames = feed_in_pieces(framer, garbage, cuts)
            framer.finish()
        except ProtocolError as e:
            self.assertIn(e.code, vars(Code).values())
        for frame in frames:
            self.assertIn(frame.type, FrameType)
            try:
                if frame.type in wire.JSON_TYPES:
                    self.assertIsInstance(frame.json(), dict)
                elif frame.type is FrameType.WINDOW:
                    self.assertGreater(frame.window(), 0)
            except ProtocolError as e:
                self.assertEqual(e.code, Code.BAD_PAYLOAD)
        try:
            wire.decode_one(garbage)
        except ProtocolError:
            pass
