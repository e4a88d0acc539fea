"""
Checking a signed request (docs/multi-tenant.md): headers present and well
formed, timestamp inside the window, Ed25519 signature by one of the
configured public keys, body hash matching the body, nonce never seen.

No I/O and no Twisted: ``Verifier.verify`` takes the request's parts and a
clock (anything with ``seconds()``), and returns the L{Tenant} or raises
L{SignatureRefused} with the code the API answers (401).
"""

import base64
import binascii
import hashlib
from collections import OrderedDict

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sandboxd.tenancy import canonical
from sandboxd.tenancy.canonical import MalformedField

#: Seconds a timestamp may be behind or ahead of the daemon's clock.
WINDOW = 30
#: Nonces remembered at most (each for 2 x WINDOW seconds at most).
REPLAY_ENTRIES = 100_000


@attrs.frozen
class Quotas:
    """
    What the signing proxy allows this identity (None: no quota of its own).
    """

    max_concurrent: int = None
    max_ttl: int = None
    max_templates: int = None

    @classmethod
    def fromHeaders(cls, values):
        """From the three quota header values (bytes, b"" = absent)."""
        return cls(*(int(v) if v else None for v in values))

    def headerValues(self):
        """The three quota header values (bytes, b"" = absent)."""
        return tuple(b"" if v is None else str(v).encode()
                     for v in (self.max_concurrent, self.max_ttl, self.max_templates))


@attrs.frozen
class Tenant:
    """
    A verified caller: its identity and quotas.
    """

    identity: str
    quotas: Quotas = attrs.Factory(Quotas)


class SignatureRefused(Exception):
    """
    The request's signature is refused; ``code`` is the API's error code.
    """

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class ReplayCache:
    """
    The nonces of accepted requests, each kept until its timestamp leaves
    the window (after that the window refuses the request anyway).

    Bounded: at most ``entries`` nonces.  When it is full of nonces still
    in their window, ``add`` refuses (``REPLAY_CACHE_FULL``) rather than
    forget one, so a replay is never let through.
    """

    def __init__(self, clock, window=WINDOW, entries=REPLAY_ENTRIES):
        self._clock = clock
        self._window = window
        self.entries = entries
        self._seen = OrderedDict()  # nonce -> the time it may be forgotten

    def __len__(self):
        return len(self._seen)

    def _expire(self, now):
        # Nearly in order of expiry (timestamps vary by at most the window):
        # stop at the first one still live.
        while self._seen:
            nonce, until = next(iter(self._seen.items()))
            if until > now:
                break
            del self._seen[nonce]

    def add(self, nonce, timestamp):
        """
        Remember ``nonce`` (of a request signed at ``timestamp``), or raise
        L{SignatureRefused} if it was seen already or there is no room.
        """
        now = self._clock.seconds()
        self._expire(now)
        if nonce in self._seen:
            raise SignatureRefused("SIGNATURE_REPLAYED", "this nonce was used already")
        if len(self._seen) >= self.entries:
            raise SignatureRefused(
                "REPLAY_CACHE_FULL", f"{self.entries} nonces are in their window; retry later")
        self._seen[nonce] = max(now, timestamp) + self._window + 1


def load_public_keys(raw_keys):
    """Ed25519 public keys from raw 32-byte strings."""
    return tuple(Ed25519PublicKey.from_public_bytes(key) for key in raw_keys)


def body_digest(body):
    """The lower-case hex SHA-256 of ``body`` (bytes)."""
    return hashlib.sha256(body).hexdigest().encode()


class Verifier:
    """
    Verifies signed requests with ``public_keys`` (raw 32-byte Ed25519
    keys: any of them may have signed, for rotation) on ``clock``.
    """

    def __init__(self, public_keys, clock, window=WINDOW, replay_entries=REPLAY_ENTRIES):
        self._clock = clock
        self._window = window
        self.replays = ReplayCache(clock, window, replay_entries)
        self.reload(public_keys)

    def reload(self, public_keys):
        """Verify with these keys from now on (the replay cache stays)."""
        self._keys = load_public_keys(public_keys)

    def verify(self, method, target, headers, body=b"", digest=None):
        """
        The L{Tenant} of a request: ``method`` and ``target`` (the raw
        request target, ``/path?query``) as bytes, ``headers`` a callable
        (name -> bytes or None), ``body`` the whole body (bytes), or its
        ``digest`` (L{body_digest}) when that was computed piecewise.
        Raise L{SignatureRefused}.
        """
        values = {name: headers(name) for name in canonical.ALL}
        missing = [name for name in canonical.REQUIRED if values[name] is None]
        if missing:
            raise SignatureRefused("SIGNATURE_MISSING",
                                   f"a signed request needs the {', '.join(missing)} header(s)")
        path, query = canonical.split_target(target)
        quotas = tuple(values[name] or b"" for name in canonical.QUOTAS)
        try:
            text = canonical.canonical_string(
                method, path, query, values[canonical.CONTENT_SHA256],
                values[canonical.IDENTITY], quotas, values[canonical.TIMESTAMP],
                values[canonical.NONCE])
        except MalformedField as e:
            raise SignatureRefused("SIGNATURE_MALFORMED", str(e))
        signature = _signature(values[canonical.SIGNATURE])
        timestamp = int(values[canonical.TIMESTAMP])
        now = self._clock.seconds()
        if timestamp < now - self._window:
            raise SignatureRefused(
                "SIGNATURE_EXPIRED",
                f"signed {int(now - timestamp)} s ago; the window is {self._window} s")
        if timestamp > now + self._window:
            raise SignatureRefused(
                "SIGNATURE_FUTURE",
                f"signed {int(timestamp - now)} s ahead of the daemon's clock;"
                f" the window is {self._window} s")
        if not any(_valid(key, signature, text) for key in self._keys):
            raise SignatureRefused(
                "SIGNATURE_INVALID", "the signature is not valid under any configured key")
        if (digest or body_digest(body)) != values[canonical.CONTENT_SHA256]:
            raise SignatureRefused(
                "BODY_TAMPERED", "the body's SHA-256 is not the one that was signed")
        self.replays.add(values[canonical.NONCE], timestamp)
        return Tenant(values[canonical.IDENTITY].decode("ascii"), Quotas.fromHeaders(quotas))


def _signature(value):
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 64:
        raise SignatureRefused(
            "SIGNATURE_MALFORMED", f"{canonical.SIGNATURE}: must be base64 of 64 bytes")
    return raw


def _valid(key, signature, text):
    try:
        key.verify(signature, text)
    except InvalidSignature:
        return False
    return True
