"""
What a sandbox may reach on the network: ``open`` (anything the host's
Docker bridge reaches, the default), ``none`` (nothing), or an allow list of
``host:port``, ``IP``, ``IP:port``, ``CIDR`` and ``CIDR:port`` entries.

The same shape is written in a profile (``network = "none"``, ``network =
{allow = ["10.0.0.0/8", "api.example.com:443"]}``) and in a create body
(``"network": {"allow": [...]}``).  Pure values and parsing only; the
firewall that enforces a policy is L{sandboxd.egress.firewall}.
"""

import ipaddress
import re

import attr

OPEN = "open"
NONE = "none"
ALLOW = "allow"

#: Entries an allow list may hold.
MAX_RULES = 64
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*",
    re.IGNORECASE,
)


@attr.s(frozen=True, auto_attribs=True)
class Rule:
    """
    One allow-list entry: a network (an IPv4 CIDR, a single address as /32)
    or a host name (resolved by the daemon when the rule is applied), and a
    port (None: every port).
    """

    host: str = None  # a host name, or None when ``network`` is set
    network: str = None  # "a.b.c.d/n"
    port: int = None

    def __str__(self):
        where = self.host or self.network
        if self.network is not None and self.network.endswith("/32"):
            where = self.network[:-3]
        return where if self.port is None else f"{where}:{self.port}"


@attr.s(frozen=True, auto_attribs=True)
class NetworkPolicy:
    """
    A sandbox's egress policy: ``mode`` is ``open``, ``none`` or ``allow``
    (then ``rules`` holds the entries).
    """

    mode: str = OPEN
    rules: tuple = ()

    @property
    def is_open(self):
        return self.mode == OPEN

    @property
    def needs_dns(self):
        """
        Whether the sandbox must resolve names itself: some rule names a host.
        """
        return any(rule.host is not None for rule in self.rules)

    def toJSON(self):
        """
        The policy as written: ``"open"``, ``"none"`` or ``{"allow": [...]}``.
        """
        if self.mode != ALLOW:
            return self.mode
        return {ALLOW: [str(rule) for rule in self.rules]}


OPEN_POLICY = NetworkPolicy(OPEN)


def parse_network(value):
    """
    A L{NetworkPolicy} from its written form; ValueError saying what is
    wrong otherwise.
    """
    if isinstance(value, NetworkPolicy):
        return value
    if value in (OPEN, NONE):
        return NetworkPolicy(value)
    if isinstance(value, str):
        raise ValueError(f"{value!r} is not a network policy: use \"open\", \"none\" "
                         f"or {{allow = [\"host:port\", \"CIDR\", ...]}}")
    if not isinstance(value, dict) or set(value) != {ALLOW}:
        raise ValueError("must be \"open\", \"none\" or an object with one key, allow")
    entries = value[ALLOW]
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ValueError("allow must be an array of strings (\"host:port\", \"IP\", \"CIDR\")")
    if len(entries) > MAX_RULES:
        raise ValueError(f"allow holds at most {MAX_RULES} entries")
    return NetworkPolicy(ALLOW, tuple(parse_rule(entry) for entry in entries))


def parse_rule(text):
    """
    One allow-list entry: ``host:port``, ``host``, ``IP[:port]`` or
    ``CIDR[:port]`` (IPv4; a host name is resolved when applied).
    """
    where, port = text.strip(), None
    if where.count(":") == 1:
        where, _, digits = where.partition(":")
        if not digits.isdigit() or not 0 < int(digits) < 65536:
            raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
        port = int(digits)
    elif ":" in where:
        raise ValueError(f"{text!r}: IPv6 is not supported (sandboxes have IPv4 only)")
    if not where:
        raise ValueError(f"{text!r}: empty host")
    try:
        network = ipaddress.IPv4Network(where, strict=False)
    except ValueError:
        if "/" in where or re.fullmatch(r"[0-9.]+", where):
            raise ValueError(f"{text!r} is not a valid IPv4 address or CIDR") from None
        if not _HOSTNAME.fullmatch(where):
            raise ValueError(f"{text!r} is not a host name, IPv4 address or CIDR") from None
        return Rule(host=where.lower(), port=port)
    return Rule(network=str(network), port=port)
