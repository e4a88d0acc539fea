"""
The gateway's configuration file (TOML): where it listens, the daemon it
forwards to, its signing key, and its API keys::

    listen = "tcp:7600:interface=127.0.0.1"   # strports description
    upstream = "http://127.0.0.1:7522"          # sandboxd's TCP listener
    upstream_ca = ""                            # CA file for an https upstream
    signing_key = "/etc/sandboxd/gateway.key"   # base64 raw 32-byte Ed25519 seed

    [[keys]]
    sha256 = "<hex SHA-256 of the API key>"     # the key itself is never stored
    identity = "team-a"
    max_concurrent = 10                         # optional quotas
    max_ttl = 3600
    max_templates = 20
"""

import base64
import binascii
import hashlib
import re
import tomllib
from urllib.parse import urlsplit

import attrs

from sandboxd.tenancy.canonical import valid_identity
from sandboxd.tenancy.signer import load_private_key
from sandboxd.tenancy.verifier import Quotas

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOP = {"listen", "upstream", "upstream_ca", "signing_key", "keys"}
_KEY = {"sha256", "identity", "max_concurrent", "max_ttl", "max_templates"}


class GatewayConfigError(Exception):
    """The gateway's configuration is unusable; the message names the key."""


@attrs.frozen
class ApiKey:
    """What one API key stands for."""

    identity: str
    quotas: Quotas


@attrs.frozen
class GatewayConfig:
    listen: str
    upstream: str
    upstream_ca: str
    signing_key: object = attrs.field(repr=False)
    keys: dict = attrs.field(repr=False)

    def lookup(self, api_key):
        """The L{ApiKey} of a presented key (str), or None."""
        digest = hashlib.sha256(api_key.encode("utf-8", "replace")).hexdigest()
        # Looked up by digest: how long it takes says nothing about a key.
        return self.keys.get(digest)


def key_digest(api_key):
    """The ``sha256`` to write in the keys file for an API key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def _fail(source, key, reason):
    raise GatewayConfigError(f"{source}: {key}: {reason}")


def _quota(source, where, entry, name):
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**9:
        _fail(source, f"{where}.{name}", "must be a whole number from 0 to 999999999")
    return value


def parse_gateway_config(text, source="<string>"):
    """A L{GatewayConfig} from TOML text; L{GatewayConfigError} if unusable."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GatewayConfigError(f"{source}: invalid TOML: {e}") from None
    for name in sorted(set(document) - _TOP):
        _fail(source, name, f"unknown key (known: {', '.join(sorted(_TOP))})")
    listen = document.get("listen", "tcp:7600:interface=127.0.0.1")
    upstream = document.get("upstream", "http://127.0.0.1:7522")
    parts = urlsplit(upstream) if isinstance(upstream, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        _fail(source, "upstream", "must be http://host:port or https://host:port")
    path = document.get("signing_key")
    if not isinstance(path, str) or not path:
        _fail(source, "signing_key", "required: a file holding base64 of a 32-byte key")
    try:
        with open(path, "rb") as f:
            raw = base64.b64decode(f.read().strip(), validate=True)
    except OSError as e:
        _fail(source, "signing_key", f"cannot read {path}: {e.strerror}")
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        _fail(source, "signing_key", f"{path} does not hold base64 of 32 bytes")
    keys = {}
    entries = document.get("keys", [])
    if not isinstance(entries, list):
        _fail(source, "keys", "must be an array of tables ([[keys]])")
    for index, entry in enumerate(entries):
        where = f"keys[{index}]"
        if not isinstance(entry, dict):
            _fail(source, where, "must be a table")
        for name in sorted(set(entry) - _KEY):
            _fail(source, f"{where}.{name}", "unknown key")
        digest = entry.get("sha256")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            _fail(source, f"{where}.sha256", "must be 64 lower-case hex digits")
        identity = entry.get("identity")
        if not isinstance(identity, str) or not valid_identity(identity):
            _fail(source, f"{where}.identity", "must be 1 to 128 of A-Z a-z 0-9 . _ @ : + -")
        if digest in keys:
            _fail(source, f"{where}.sha256", "listed twice")
        keys[digest] = ApiKey(identity, Quotas(*(_quota(source, where, entry, n) for n in
                                                 ("max_concurrent", "max_ttl",
                                                  "max_templates"))))
    return GatewayConfig(listen, upstream, document.get("upstream_ca", ""),
                         load_private_key(raw), keys)


def load_gateway_config(path):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GatewayConfigError(f"{path}: cannot read: {e}") from None
    return parse_gateway_config(text, path)
