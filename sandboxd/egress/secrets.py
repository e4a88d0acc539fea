"""
Secrets that stay out of the sandbox.

A create body's ``secrets`` maps a name to a value (optionally bound to
hosts): ``{"API_KEY": {"value": "...", "hosts": ["api.example.com"]}}`` or
``{"API_KEY": "..."}`` (any host the sandbox may reach).  The daemon keeps
the value in memory only (L{SecretVault}); the sandbox gets an opaque
placeholder per secret (its environment has ``API_KEY=<placeholder>``), and
the daemon's egress proxy (L{sandboxd.egress.proxy}) puts the value in
place of the placeholder in the headers of requests leaving through it, for
the bound hosts only.  No message here ever quotes a value.
"""

import re
import secrets as random

import attr

MAX_SECRETS = 32
MAX_VALUE = 4096
MAX_HOSTS = 32
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}")
PLACEHOLDER_PREFIX = "SBXSECRET_"


@attr.s(frozen=True, auto_attribs=True)
class SecretSpec:
    """
    One secret: its value (never printed) and the hosts it may be sent to
    (empty: any).
    """

    value: str = attr.ib(repr=False)
    hosts: tuple = ()


def parse_secrets(value):
    """
    ``{name: SecretSpec}`` from a create body's ``secrets``; ValueError
    naming the secret (never its value) otherwise.
    """
    if not isinstance(value, dict):
        raise ValueError("must be an object of NAME: value or NAME: {value, hosts}")
    if len(value) > MAX_SECRETS:
        raise ValueError(f"at most {MAX_SECRETS} secrets")
    specs = {}
    for name, entry in value.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name[:64]!r} is not a secret name (letters, digits, _)")
        hosts = ()
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - {"value", "hosts"})
            if unknown:
                raise ValueError(f"{name}: unknown key {unknown[0]!r}")
            hosts = entry.get("hosts") or []
            if (not isinstance(hosts, list) or len(hosts) > MAX_HOSTS
                    or not all(isinstance(h, str) and _HOST.fullmatch(h) for h in hosts)):
                raise ValueError(f"{name}: hosts must be an array of at most {MAX_HOSTS} "
                                 "host names or IPv4 addresses")
            entry = entry.get("value")
        if not isinstance(entry, str) or not entry or len(entry) > MAX_VALUE:
            raise ValueError(f"{name}: the value must be a string of 1 to {MAX_VALUE} characters")
        if any(c in entry for c in "\r\n\0"):
            raise ValueError(f"{name}: the value must not hold CR, LF or NUL (it goes in headers)")
        specs[name] = SecretSpec(entry, tuple(h.lower() for h in hosts))
    return specs


class SecretVault:
    """
    The secrets of every sandbox, in the daemon's memory only: a restart
    forgets them (docs/egress.md).  Placeholders are random per sandbox and
    secret.
    """

    def __init__(self):
        self._bySandbox = {}

    def grant(self, sandbox_id, specs):
        """
        Hold ``specs`` ({name: SecretSpec}) for the sandbox; return {name:
        placeholder}.
        """
        held = {name: (PLACEHOLDER_PREFIX + random.token_hex(16), spec)
                for name, spec in specs.items()}
        if held:
            self._bySandbox[sandbox_id] = held
        return {name: placeholder for name, (placeholder, _) in held.items()}

    def has(self, sandbox_id):
        return sandbox_id in self._bySandbox

    def drop(self, sandbox_id):
        """
        Forget the sandbox's secrets.
        """
        self._bySandbox.pop(sandbox_id, None)

    def substitute(self, sandbox_id, host, value):
        """
        ``value`` (a header value) with each of the sandbox's placeholders
        whose secret may go to ``host`` replaced by the secret.
        """
        for placeholder, spec in self._bySandbox.get(sandbox_id, {}).values():
            if placeholder in value and (not spec.hosts or host.lower() in spec.hosts):
                value = value.replace(placeholder, spec.value)
        return value
