"""
End-to-end encryption between a client (the SDK) and the agent, sans-IO.

The daemon relays every frame of a session; with encryption the payloads it
relays are sealed so that it learns method names and frame sizes only
(docs/security.md, "End-to-end encryption", specifies all of this byte by
byte).  This module holds the whole construction and no I/O: the agent and
the Python SDK both import it.  It needs the ``cryptography`` package, which
the agent imports only when a session asks for encryption (agent.e2e_agent).

Handshake (in a clear ``e2e.hello`` request, docs/protocol.md)::

    client -> agent   {"version": 1, "sandbox": id, "client_key": hex X25519 ephemeral}
    agent  -> client  {"version": 1, "session": hex 16 bytes, "agent_key": hex X25519
                       ephemeral, "identity": hex X25519 static, "confirm": hex}

    TH      = SHA-256(LABEL || lp(sandbox) || client_key || session || agent_key || identity)
    IKM     = X25519(client eph, agent eph) || X25519(client eph, agent static)
    c2a || a2c || confirm_key = HKDF-SHA256(salt=TH, IKM, info=LABEL || " keys", 96)
    confirm = HMAC-SHA256(confirm_key, "agent confirms" || TH)

Sealing: one ``Sealer`` per direction.  Frame ``n`` of a direction (a u64
counter, strictly increasing, sent in clear) is AES-256-GCM under the key of
epoch ``n >> REKEY_SHIFT`` with the 12-byte nonce ``0^4 || n``; the
associated data is the frame header as the two ends see it (type, flags
with the SEALED bit, the logical stream: the counter of the stream's
REQUEST, and the frame's index within its stream and direction).  Epoch
keys ratchet: ``secret' = HKDF-Expand(secret, "next")``, ``key =
HKDF-Expand(secret, "key")``; an old epoch's key is forgotten.
"""

import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from .e2e_codes import CODES, Code, E2EError  # noqa: F401 (re-exported)
from .wire import HEADER, SEALED, FrameType

VERSION = 1
LABEL = b"sandboxd-e2e-v1"
#: A sealed payload's counter and tag.
TAG_SIZE = 16
COUNTER = struct.Struct("!Q")
OVERHEAD = COUNTER.size + TAG_SIZE  # 24, wire.SEALED_OVERHEAD
#: A sealed REQUEST's clear prefix: version, session id, method length.
SESSION_ID_SIZE = 16
#: Frames sealed under one key: 2^16 frames of at most 1 MiB is 64 GiB,
#: well inside AES-GCM's bound for one key.
REKEY_SHIFT = 16
#: How far ahead of the last counter a frame may jump (frames the daemon
#: dropped for streams it closed leave gaps): at most one epoch.
MAX_GAP = 1 << REKEY_SHIFT
#: A session ends before its counter reaches this.
MAX_COUNTER = (1 << 63) - 1

_KEY = b"key"
_NEXT = b"next"
_AD = struct.Struct("!8sBBQQ")
_AD_LABEL = b"sbx-e2e1"


def _public_bytes(key):
    return key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def fingerprint(public):
    """
    The fingerprint of a static public key (32 raw bytes): ``sha256:`` and
    64 hex characters, what a client pins.
    """
    return "sha256:" + hashlib.sha256(public).hexdigest()


def normalise_pin(pin):
    """
    A pin as given by a user (with or without ``sha256:``, any case, or the
    raw public key in hex) -> the fingerprint form; E2EError if neither.
    """
    text = pin.strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:") :]
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise E2EError(Code.IDENTITY_MISMATCH, f"{pin!r} is not a key fingerprint")
    return "sha256:" + text


class Identity:
    """
    The agent's static X25519 key.  ``private`` is 32 random bytes made at
    boot (agent.e2e_agent); the public half is computed here.
    """

    def __init__(self, private=None):
        self._key = X25519PrivateKey.from_private_bytes(
            private if private is not None else os.urandom(32)
        )
        self.public = _public_bytes(self._key)
        self.fingerprint = fingerprint(self.public)

    def exchange(self, peer_public):
        return self._key.exchange(X25519PublicKey.from_public_bytes(peer_public))


def _transcript(sandbox_id, client_key, session_id, agent_key, identity):
    sid = sandbox_id.encode()
    h = hashlib.sha256(LABEL)
    h.update(struct.pack("!H", len(sid)) + sid)
    for part in (client_key, session_id, agent_key, identity):
        h.update(part)
    return h.digest()


def _schedule(th, ikm):
    okm = HKDF(hashes.SHA256(), 96, th, LABEL + b" keys").derive(ikm)
    return okm[:32], okm[32:64], okm[64:]


def _confirmation(confirm_key, th):
    return hmac.new(confirm_key, b"agent confirms" + th, hashlib.sha256).digest()


def _hex(value, size, what):
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise E2EError(Code.HANDSHAKE_FAILED, f"{what} must be {size} bytes in hex")
    return raw


class ClientHandshake:
    """
    The client's half: ``hello()`` is the params of ``e2e.hello``;
    ``finish(result)`` checks the agent's answer (and the pin) and returns
    the client's Channel.
    """

    def __init__(self, sandbox_id, pin=None, rekey_shift=REKEY_SHIFT, private=None):
        """
        ``private`` (32 bytes) fixes the ephemeral key: for test vectors only.
        """
        self.sandbox_id = sandbox_id
        self.pin = normalise_pin(pin) if pin else None
        self._key = (
            X25519PrivateKey.from_private_bytes(private) if private else X25519PrivateKey.generate()
        )
        self.client_key = _public_bytes(self._key)
        self._rekey_shift = rekey_shift

    def hello(self):
        return {"version": VERSION, "sandbox": self.sandbox_id, "client_key": self.client_key.hex()}

    def finish(self, result):
        if not isinstance(result, dict) or result.get("version") != VERSION:
            raise E2EError(Code.HANDSHAKE_FAILED, "the agent's hello has another version")
        session_id = _hex(result.get("session"), SESSION_ID_SIZE, "session")
        agent_key = _hex(result.get("agent_key"), 32, "agent_key")
        identity = _hex(result.get("identity"), 32, "identity")
        confirm = _hex(result.get("confirm"), 32, "confirm")
        seen = fingerprint(identity)
        if self.pin is not None and not hmac.compare_digest(seen, self.pin):
            raise E2EError(
                Code.IDENTITY_MISMATCH,
                f"the agent's key is {seen}, not the pinned {self.pin}",
            )
        th = _transcript(self.sandbox_id, self.client_key, session_id, agent_key, identity)
        try:
            ee = self._key.exchange(X25519PublicKey.from_public_bytes(agent_key))
            es = self._key.exchange(X25519PublicKey.from_public_bytes(identity))
        except ValueError as e:  # a low-order point gives an all-zero secret
            raise E2EError(Code.HANDSHAKE_FAILED, f"bad agent key: {e}") from None
        c2a, a2c, confirm_key = _schedule(th, ee + es)
        if not hmac.compare_digest(_confirmation(confirm_key, th), confirm):
            raise E2EError(Code.HANDSHAKE_FAILED, "the agent did not confirm the keys")
        return Channel(session_id, seen, c2a, a2c, self._rekey_shift)


def agent_handshake(identity, params, rekey_shift=REKEY_SHIFT, ephemeral=None, session_id=None):
    """
    The agent's half: the client's ``e2e.hello`` params -> (the RESULT
    object, the agent's Channel).  E2EError on a malformed hello.
    ``ephemeral`` and ``session_id`` (bytes) fix what is otherwise random:
    for test vectors only.
    """
    if not isinstance(params, dict) or params.get("version") != VERSION:
        raise E2EError(Code.HANDSHAKE_FAILED, f"e2e version must be {VERSION}")
    sandbox_id = params.get("sandbox")
    if not isinstance(sandbox_id, str) or len(sandbox_id.encode()) > 256:
        raise E2EError(Code.HANDSHAKE_FAILED, "sandbox must be a string (<= 256 bytes)")
    client_key = _hex(params.get("client_key"), 32, "client_key")
    ephemeral = (
        X25519PrivateKey.from_private_bytes(ephemeral) if ephemeral else X25519PrivateKey.generate()
    )
    agent_key = _public_bytes(ephemeral)
    session_id = session_id or os.urandom(SESSION_ID_SIZE)
    th = _transcript(sandbox_id, client_key, session_id, agent_key, identity.public)
    try:
        peer = X25519PublicKey.from_public_bytes(client_key)
        ee = ephemeral.exchange(peer)
        es = identity.exchange(client_key)
    except ValueError as e:
        raise E2EError(Code.HANDSHAKE_FAILED, f"bad client key: {e}") from None
    c2a, a2c, confirm_key = _schedule(th, ee + es)
    result = {
        "version": VERSION,
        "session": session_id.hex(),
        "agent_key": agent_key.hex(),
        "identity": identity.public.hex(),
        "fingerprint": identity.fingerprint,
        "confirm": _confirmation(confirm_key, th).hex(),
    }
    return result, Channel(session_id, identity.fingerprint, a2c, c2a, rekey_shift)


class _Keys:
    """
    One direction's epoch keys, ratcheting forward only.
    """

    __slots__ = ("secret", "epoch", "aead")

    def __init__(self, secret):
        self.secret = secret
        self.epoch = 0
        self.aead = AESGCM(HKDFExpand(hashes.SHA256(), 32, _KEY).derive(secret))

    def at(self, epoch):
        """
        The AEAD of ``epoch`` (>= the current one), without committing to it.
        """
        if epoch == self.epoch:
            return self.aead, self.secret
        secret = self.secret
        for _ in range(epoch - self.epoch):
            secret = HKDFExpand(hashes.SHA256(), 32, _NEXT).derive(secret)
        return AESGCM(HKDFExpand(hashes.SHA256(), 32, _KEY).derive(secret)), secret

    def commit(self, epoch, aead, secret):
        self.epoch, self.aead, self.secret = epoch, aead, secret


def _nonce(counter):
    return b"\0\0\0\0" + COUNTER.pack(counter)


def _ad(frame_type, flags, lstream, index, extra=b""):
    return _AD.pack(_AD_LABEL, frame_type, flags, lstream, index) + extra


def sealed_header(frame_type, flags, stream, size):
    """
    The wire header of a sealed frame of ``size`` plaintext (and clear
    prefix) bytes.
    """
    length = size + OVERHEAD + 6
    return HEADER.pack(length, frame_type, flags | SEALED, stream)


def request_prefix(session_id, method):
    """
    The clear start of a sealed REQUEST's payload: version, session id, the
    method name (what the daemon may read).
    """
    name = method.encode("ascii", "replace")[:255]
    return bytes((VERSION,)) + session_id + bytes((len(name),)) + name


def parse_request_prefix(payload):
    """
    A sealed REQUEST payload -> (session id, method, offset of the counter);
    E2EError MALFORMED if it is too short.
    """
    head = 2 + SESSION_ID_SIZE
    if len(payload) < head or payload[0] != VERSION:
        raise E2EError(Code.MALFORMED, "a sealed REQUEST needs version and session")
    n = payload[head - 1]
    if len(payload) < head + n + OVERHEAD:
        raise E2EError(Code.MALFORMED, "a sealed REQUEST is too short")
    session_id = bytes(payload[1 : 1 + SESSION_ID_SIZE])
    method = bytes(payload[head : head + n]).decode("ascii", "replace")
    return session_id, method, head + n


class Channel:
    """
    Both directions of one encrypted session, for one end.

    ``seal(type, flags, lstream, index, plaintext, prefix=b"")`` returns the
    sealed payload and the frame's counter; ``open(type, flags, lstream,
    index, payload, prefix_len=0)`` returns the plaintext and the counter.
    A REQUEST's logical stream is its own counter (``seal_request``,
    ``open_request``).  Both raise E2EError, after which the channel is
    spent: every later call raises the same error.
    """

    def __init__(self, session_id, fingerprint, send_secret, recv_secret, rekey_shift=REKEY_SHIFT):
        self.session_id = session_id
        self.fingerprint = fingerprint
        self._send = _Keys(send_secret)
        self._recv = _Keys(recv_secret)
        self._shift = rekey_shift
        self._max_gap = 1 << rekey_shift
        self._sent = -1  # the last counter sealed
        self._received = -1  # the last counter opened
        self.failure = None

    def _check(self):
        if self.failure is not None:
            raise self.failure

    def _fail(self, code, message):
        self.failure = E2EError(code, message)
        raise self.failure

    def next_counter(self):
        """
        The counter the next sealed frame will carry.
        """
        return self._sent + 1

    def seal(self, frame_type, flags, lstream, index, plaintext, prefix=b"", counter=None,
             head=b""):
        """
        ``head`` (the frame header, when the caller knows it) goes in front,
        so that a whole frame is put together with one copy.
        """
        self._check()
        n = self._sent + 1 if counter is None else counter
        if n > MAX_COUNTER:
            self._fail(Code.EXHAUSTED, "the session sealed 2^63 frames")
        epoch = n >> self._shift
        keys = self._send
        if epoch != keys.epoch:
            keys.commit(epoch, *keys.at(epoch))
        self._sent = n
        sealed = keys.aead.encrypt(
            _nonce(n), bytes(plaintext), _ad(frame_type, flags | SEALED, lstream, index, prefix)
        )
        return b"".join((head, prefix, COUNTER.pack(n), sealed))

    def seal_request(self, flags, plaintext, method, stream=None):
        """
        A sealed REQUEST payload (the whole frame on ``stream`` if given);
        returns (bytes, logical stream).
        """
        n = self._sent + 1
        prefix = request_prefix(self.session_id, method)
        head = b""
        if stream is not None:
            head = sealed_header(FrameType.REQUEST, flags, stream, len(prefix) + len(plaintext))
        return self.seal(FrameType.REQUEST, flags, n, 0, plaintext, prefix, n, head), n

    def peek_counter(self, payload, offset=0):
        if len(payload) < offset + OVERHEAD:
            self._fail(Code.MALFORMED, f"a sealed payload of {len(payload) - offset} bytes")
        return COUNTER.unpack_from(payload, offset)[0]

    def open(self, frame_type, flags, lstream, index, payload, prefix_len=0):
        self._check()
        n = self.peek_counter(payload, prefix_len)
        if n <= self._received:
            self._fail(
                Code.REPLAYED,
                f"frame counter {n} is not above {self._received}: replayed or reordered",
            )
        if n - self._received > self._max_gap:
            self._fail(Code.REPLAYED, f"frame counter {n} jumps past {self._received}")
        keys = self._recv
        epoch = n >> self._shift
        aead, secret = keys.at(epoch)
        try:
            plaintext = aead.decrypt(
                _nonce(n),
                bytes(payload[prefix_len + COUNTER.size :]),
                _ad(frame_type, flags | SEALED, lstream, index, bytes(payload[:prefix_len])),
            )
        except InvalidTag:
            self._fail(
                Code.TAMPERED,
                f"sealed frame {n} failed authentication (changed, dropped, reordered "
                "or moved to another stream)",
            )
        if epoch != keys.epoch:
            keys.commit(epoch, aead, secret)
        self._received = n
        return plaintext, n

    def open_request(self, flags, payload):
        """
        A sealed REQUEST payload -> (plaintext, method, logical stream).
        """
        self._check()
        try:
            session_id, method, offset = parse_request_prefix(payload)
        except E2EError as e:
            self._fail(e.code, e.message)
        n = self.peek_counter(payload, offset)
        plaintext, n = self.open(FrameType.REQUEST, flags, n, 0, payload, offset)
        return plaintext, method, n
