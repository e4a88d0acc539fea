"""
The canonical string a signing proxy signs and the daemon verifies
(docs/multi-tenant.md, "The canonical string").

Pure functions, no I/O: the daemon's verifier, the gateway's signer and the
tests build the same bytes here.  The string is eleven lines joined by
``\\n`` (no trailing newline)::

    sandboxd-sig-v1
    METHOD                  upper-case, as sent
    PATH                    the raw request path, as sent (percent-escapes kept)
    QUERY                   the query's ``name=value`` pairs, sorted as bytes
    BODY-SHA256             lower-case hex SHA-256 of the body
    IDENTITY
    MAX-CONCURRENT          the quota headers' values, "" when absent
    MAX-TTL
    MAX-TEMPLATES
    TIMESTAMP               whole seconds since the epoch, decimal
    NONCE

Every field is checked before it goes in (L{check_fields}): none may hold a
newline or any byte outside printable ASCII, so two different requests can
never build the same string.
"""

import re

#: The first line: the version of this format.
VERSION = b"sandboxd-sig-v1"

IDENTITY = "X-Sandbox-Identity"
TIMESTAMP = "X-Sandbox-Timestamp"
NONCE = "X-Sandbox-Nonce"
SIGNATURE = "X-Sandbox-Signature"
CONTENT_SHA256 = "X-Sandbox-Content-SHA256"
MAX_CONCURRENT = "X-Sandbox-Max-Concurrent"
MAX_TTL = "X-Sandbox-Max-TTL"
MAX_TEMPLATES = "X-Sandbox-Max-Templates"

#: The headers every signed request carries.
REQUIRED = (IDENTITY, TIMESTAMP, NONCE, CONTENT_SHA256, SIGNATURE)
#: The quota headers, in their order in the canonical string.
QUOTAS = (MAX_CONCURRENT, MAX_TTL, MAX_TEMPLATES)
#: Every header the signature covers or carries (a gateway strips these
#: from what its callers send).
ALL = REQUIRED + QUOTAS

_IDENTITY = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}")
_NONCE = re.compile(rb"[A-Za-z0-9_-]{16,64}")
_TIMESTAMP = re.compile(rb"[0-9]{1,12}")
_QUOTA = re.compile(rb"(?:[0-9]{1,9})?")
_SHA256 = re.compile(rb"[0-9a-f]{64}")
_METHOD = re.compile(rb"[A-Z]{1,16}")
_PATH = re.compile(rb"/[\x21-\x7e]*")
_QUERY = re.compile(rb"[\x21-\x7e]*")


class MalformedField(ValueError):
    """
    A field cannot go into a canonical string; ``field`` names it (a header
    name, or ``method``, ``path``, ``query``).
    """

    def __init__(self, field, reason):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def valid_identity(text):
    """Whether ``text`` (str) may be an identity."""
    return _IDENTITY.fullmatch(text.encode("utf-8", "replace")) is not None


def canonical_query(query):
    """
    The query string (bytes, without ``?``) with its ``&``-separated pairs
    sorted as bytes; empty pairs dropped, a pair without ``=`` gets one.
    Escapes are kept as sent: ``a=%41`` and ``a=A`` differ.
    """
    pairs = []
    for pair in query.split(b"&"):
        if not pair:
            continue
        if b"=" not in pair:
            pair += b"="
        pairs.append(pair)
    return b"&".join(sorted(pairs))


def split_target(target):
    """
    ``(path, query)`` of a request target (bytes) as sent on the request
    line: ``/a/b?x=1`` -> ``(b"/a/b", b"x=1")``.
    """
    path, _, query = target.partition(b"?")
    return path, query


def _check(pattern, value, field, reason):
    if not isinstance(value, bytes) or pattern.fullmatch(value) is None:
        raise MalformedField(field, reason)
    return value


def check_fields(method, path, query, body_sha256, identity, quotas, timestamp, nonce):
    """
    Raise L{MalformedField} unless every field has its form.  ``quotas`` is
    a 3-tuple of bytes (b"" = absent) in the order of L{QUOTAS}.
    """
    _check(_METHOD, method, "method", "must be 1 to 16 upper-case letters")
    _check(_PATH, path, "path", "must start with / and hold printable ASCII only")
    _check(_QUERY, query, "query", "must hold printable ASCII only")
    _check(_SHA256, body_sha256, CONTENT_SHA256, "must be 64 lower-case hex digits")
    _check(_IDENTITY, identity, IDENTITY,
           "must be 1 to 128 of A-Z a-z 0-9 . _ @ : + - (starting with a letter or digit)")
    if len(quotas) != len(QUOTAS):
        raise MalformedField("quotas", f"expected {len(QUOTAS)} values")
    for name, value in zip(QUOTAS, quotas):
        _check(_QUOTA, value, name, "must be a whole number of at most 9 digits")
    _check(_TIMESTAMP, timestamp, TIMESTAMP, "must be whole seconds since the epoch")
    _check(_NONCE, nonce, NONCE, "must be 16 to 64 of A-Z a-z 0-9 _ -")


def canonical_string(method, path, query, body_sha256, identity, quotas, timestamp, nonce):
    """
    The bytes to sign (all arguments bytes; ``query`` raw, it is sorted
    here); raise L{MalformedField} for a field that has not its form.
    """
    check_fields(method, path, query, body_sha256, identity, quotas, timestamp, nonce)
    return b"\n".join([
        VERSION, method, path, canonical_query(query), body_sha256, identity,
        *quotas, timestamp, nonce,
    ])
