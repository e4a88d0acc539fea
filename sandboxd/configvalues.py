"""
The values a configuration file holds: sizes, durations and TCP addresses
(parsed), the kinds a setting may have, and the checks settings name.  Each
raises C{ValueError} with the reason; L{sandboxd.config} turns it into a
C{ConfigError} naming the file and the key.
"""

import base64
import binascii
import ipaddress
import math
import re
from urllib.parse import urlsplit

from sandboxd.egress.policy import parse_network

RUNTIMES = ("docker", "docker+gvisor", "firecracker", "qemu")
DEFAULT_TCP_PORT = 7522

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([kmgt]?)", re.IGNORECASE)
_MAX_SIZE = (1 << 63) - 1
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION = re.compile(rf"(?:{_DURATION_PART.pattern})+")
_NODE_ID = re.compile(r"[a-z0-9]{1,16}")
_HOST_PORT = re.compile(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]*))(?::(?P<port>[0-9]+))?")


def parse_size(text):
    """
    Parse C{"512m"}, C{"4G"} (binary k/m/g/t), C{"1.5k"} (truncated to whole
    bytes) or a byte count (C{"1024"}, C{1024}) into C{int} bytes, or raise
    C{ValueError}.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    elif not isinstance(text, str):
        raise ValueError(f"invalid size {text!r}: expected a string like '512m'")
    elif match := _SIZE.fullmatch(text.strip()):
        number, unit = match.groups()
        whole, _, fraction = number.partition(".")
        scale = _SIZE_UNITS[unit.lower()]
        size = int(whole) * scale + int(fraction or "0") * scale // 10 ** len(fraction)
    else:
        raise ValueError(f"invalid size {text!r} ({_hint(text, 'k, m, g or t')})")
    if not 0 <= size <= _MAX_SIZE:
        raise ValueError(f"invalid size {text!r}: " + (
            "must not be negative" if size < 0 else "too large"))
    return size


def _hint(text, units):
    """Explain why C{text} is not a size or duration."""
    negative = text.strip().startswith("-")
    return "must not be negative" if negative else f"use a number with {units}"


def format_size(size):
    """
    Write a byte count with the largest suffix that keeps it whole, so that
    C{parse_size(format_size(n)) == n}: C{4294967296} -> C{"4g"}.
    """
    for unit in "tgmk":
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return str(size)


def parse_duration(text):
    """
    Parse C{"50ms"}, C{"10s"}, C{"1.5m"} or C{"1h30m"} into C{float} seconds
    (an C{int} or C{float} is seconds already), or raise C{ValueError}.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"invalid duration {text!r}: must be finite and not negative")
        return float(text)
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: expected a string like '10s'")
    stripped = text.strip()
    if _DURATION.fullmatch(stripped) is None:
        hint = _hint(text, "ms, s, m or h, e.g. '10s' or '1h30m'")
        raise ValueError(f"invalid duration {text!r} ({hint})")
    return sum(float(number) * _DURATION_UNITS[unit]
               for number, unit in _DURATION_PART.findall(stripped))


def parse_tcp_address(text):
    """
    Split C{"7522"}, C{":7522"}, C{"127.0.0.1:7522"}, C{"[::1]:7522"} or a bare
    IP (port 7522) into C{(host, port)}; no host means C{"0.0.0.0"}.
    """
    hint = f"invalid TCP address {text!r} (use PORT, :PORT, HOST:PORT or [IPV6]:PORT)"
    if not text:
        raise ValueError(hint)
    if re.fullmatch(r"[0-9]+", text):
        host, port = "", text
    elif _is_ip(text):
        host, port = text, None
    else:
        match = _HOST_PORT.fullmatch(text)
        if match is None:
            raise ValueError(hint)
        host, port = match["v6"] or match["host"], match["port"]
    host = host or "0.0.0.0"
    port = DEFAULT_TCP_PORT if port is None else int(port)
    if not _is_ip(host) or port > 65535:
        raise ValueError(hint)
    return host, port


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def describe(value):
    """Name a TOML value's type (and show it, if a scalar) for an error."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string",
             list: "array", dict: "table"}
    name = names.get(type(value), type(value).__name__)
    shown = str(value).lower() if isinstance(value, bool) else repr(value)
    return name if isinstance(value, (list, dict)) else f"{name} {shown}"


def _expect(value, types, what):
    """Return C{value} if it is one of C{types} (bool is not an int here)."""
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        raise ValueError(f"expected {what}, got {describe(value)}")
    return value


def _as_float(value):
    number = float(_expect(value, (int, float), "a number"))
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


KINDS = {
    "str": lambda value: _expect(value, (str,), "a string"),
    "bool": lambda value: _expect(value, (bool,), "a boolean"),
    "int": lambda value: _expect(value, (int,), "an integer"),
    "float": _as_float,
    "size": lambda value: parse_size(_expect(value, (str, int), "a size like '512m'")),
    "duration": lambda value: parse_duration(_expect(value, (str,), "a duration like '10s'")),
    "network": parse_network,
    "strings": lambda value: tuple(_expect(item, (str,), "a string in the array")
                                   for item in _expect(value, (list,), "an array of strings")),
}


def rule(ok, reason):
    """A check that raises C{ValueError(reason)} unless C{ok(value)}."""

    def check(value):
        if not ok(value):
            raise ValueError(reason.format(value=value))

    return check


positive = rule(lambda value: value > 0, "must be greater than 0, got {value!r}")
not_negative = rule(lambda value: value >= 0, "must not be negative, got {value!r}")
port = rule(lambda value: 0 <= value <= 65535, "must be a port from 0 to 65535, got {value}")
not_empty = rule(bool, "must not be empty")
ip = rule(_is_ip, "invalid IP address {value!r}")
node_id = rule(lambda value: not value or _NODE_ID.fullmatch(value),
                 "invalid node id {value!r} (use 1 to 16 of a-z and 0-9)")
runtime = rule(RUNTIMES.__contains__,
                 "unknown runtime {value!r} (use one of " + ", ".join(RUNTIMES) + ")")
tunnel_auth = rule(("none", "token").__contains__,
                     "unknown tunnel auth {value!r} (use \"none\" or \"token\")")
ttl_action = rule(("destroy", "pause").__contains__,
                  "unknown ttl_action {value!r} (use destroy or pause)")
accel = rule(("auto", "kvm", "tcg").__contains__,
               "unknown accelerator {value!r} (use auto, kvm or tcg)")
vsock_cid = rule(lambda value: value >= 3, "must be at least 3 (0-2 are reserved), got {value}")


def _is_url(value):
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


url_or_empty = rule(lambda value: not value or _is_url(value),
                    "must be an http:// or https:// URL, got {value!r}")
key_prefix = rule(lambda value: value.startswith("/") and value.endswith("/"),
                  "must start and end with '/', got {value!r}")


def urls(values):
    """Check that every entry is an http(s) URL."""
    for index, value in enumerate(values):
        if not _is_url(value):
            raise ValueError(f"entry {index} {value!r} is not an http:// or https:// URL")


def tcp(value):
    """Check C{server.tcp}: empty (off) or an address L{parse_tcp_address} takes."""
    if value:
        parse_tcp_address(value)


def public_keys(keys):
    """Check that every key is base64 of 32 bytes."""
    for index, key in enumerate(keys):
        try:
            raw = base64.b64decode(key, validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 32:
            raise ValueError(f"entry {index} {key!r} is not base64 of a 32-byte Ed25519 key")
