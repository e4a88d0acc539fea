"""
The daemon's configuration: a TOML file read into frozen attrs classes.

L{load_config} reads a file (or none: the built-in defaults), applies the
C{SANDBOX_*} environment overrides and checks every rule; anything wrong is a
L{ConfigError} naming the file and the dotted key.  See docs/config.md.
"""

import base64
import binascii
import ipaddress
import math
import os
import re
import tomllib
from types import MappingProxyType

import attrs

RUNTIMES = ("docker", "docker+gvisor", "firecracker", "qemu")
DEFAULT_TCP_PORT = 7522
ENVIRONMENT_OVERRIDES = {"SANDBOX_SOCKET": "socket", "SANDBOX_TCP": "tcp",
                         "SANDBOX_DATA_DIR": "data_dir"}

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([kmgt]?)", re.IGNORECASE)
_MAX_SIZE = (1 << 63) - 1
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION = re.compile(rf"(?:{_DURATION_PART.pattern})+")
_NODE_ID = re.compile(r"[a-z0-9]{1,16}")
_PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_HOST_PORT = re.compile(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]*))(?::(?P<port>[0-9]+))?")


class ConfigError(Exception):
    """The configuration is unusable; the message reads C{source: key: reason}."""

    def __init__(self, source, key, reason):
        prefix = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(prefix + reason)
        self.source, self.key, self.reason = source, key, reason


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


def _describe(value):
    """Name a TOML value's type (and show it, if a scalar) for an error."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string",
             list: "array", dict: "table"}
    name = names.get(type(value), type(value).__name__)
    shown = str(value).lower() if isinstance(value, bool) else repr(value)
    return name if isinstance(value, (list, dict)) else f"{name} {shown}"


def _expect(value, types, what):
    """Return C{value} if it is one of C{types} (bool is not an int here)."""
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        raise ValueError(f"expected {what}, got {_describe(value)}")
    return value


def _as_float(value):
    number = float(_expect(value, (int, float), "a number"))
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


_KINDS = {
    "str": lambda value: _expect(value, (str,), "a string"),
    "bool": lambda value: _expect(value, (bool,), "a boolean"),
    "int": lambda value: _expect(value, (int,), "an integer"),
    "float": _as_float,
    "size": lambda value: parse_size(_expect(value, (str, int), "a size like '512m'")),
    "duration": lambda value: parse_duration(_expect(value, (str,), "a duration like '10s'")),
    "strings": lambda value: tuple(_expect(item, (str,), "a string in the array")
                                   for item in _expect(value, (list,), "an array of strings")),
}


def _rule(ok, reason):
    """A check that raises C{ValueError(reason)} unless C{ok(value)}."""

    def check(value):
        if not ok(value):
            raise ValueError(reason.format(value=value))

    return check


_positive = _rule(lambda value: value > 0, "must be greater than 0, got {value!r}")
_not_negative = _rule(lambda value: value >= 0, "must not be negative, got {value!r}")
_port = _rule(lambda value: 0 <= value <= 65535, "must be a port from 0 to 65535, got {value}")
_not_empty = _rule(bool, "must not be empty")
_ip = _rule(_is_ip, "invalid IP address {value!r}")
_node_id = _rule(lambda value: not value or _NODE_ID.fullmatch(value),
                 "invalid node id {value!r} (use 1 to 16 of a-z and 0-9)")
_runtime = _rule(RUNTIMES.__contains__,
                 "unknown runtime {value!r} (use one of " + ", ".join(RUNTIMES) + ")")
_tunnel_auth = _rule(("none", "token").__contains__,
                     "unknown tunnel auth {value!r} (use \"none\" or \"token\")")
_accel = _rule(("auto", "kvm", "tcg").__contains__,
               "unknown accelerator {value!r} (use auto, kvm or tcg)")
_vsock_cid = _rule(lambda value: value >= 3, "must be at least 3 (0-2 are reserved), got {value}")


def _tcp(value):
    """Check C{server.tcp}: empty (off) or an address L{parse_tcp_address} takes."""
    if value:
        parse_tcp_address(value)


def _public_keys(keys):
    """Check that every key is base64 of 32 bytes."""
    for index, key in enumerate(keys):
        try:
            raw = base64.b64decode(key, validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 32:
            raise ValueError(f"entry {index} {key!r} is not base64 of a 32-byte Ed25519 key")


def _setting(kind, default, check=None):
    """A setting read from the file: its kind, default (as written) and check."""
    if kind in ("size", "duration", "strings"):
        default = _KINDS[kind](default)
    return attrs.field(default=default, metadata={"kind": kind, "check": check})


@attrs.frozen
class ServerConfig:
    """C{[server]}: where the daemon listens and keeps its state."""

    socket: str = _setting("str", "/var/run/sandboxd/sandboxd.sock")
    tcp: str = _setting("str", "", _tcp)
    tls_cert: str = _setting("str", "")
    tls_key: str = _setting("str", "")
    tls_client_ca: str = _setting("str", "")
    socket_group: str = _setting("str", "")
    data_dir: str = _setting("str", "/var/lib/sandboxd", _not_empty)
    node_id: str = _setting("str", "", _node_id)


@attrs.frozen
class MultiTenantConfig:
    """C{[multi_tenant]}: Ed25519-signed identities from a trusted proxy."""

    enabled: bool = _setting("bool", False)
    public_keys: tuple = _setting("strings", [], _public_keys)

    @property
    def public_key_bytes(self):
        """The public keys as raw 32-byte strings."""
        return tuple(base64.b64decode(key) for key in self.public_keys)


@attrs.frozen
class LimitsConfig:
    """C{[limits]}: hard caps on what callers may ask for."""

    max_sandboxes: int = _setting("int", 100, _positive)
    max_memory: int = _setting("size", "4g", _positive)
    max_cpu: float = _setting("float", 4.0, _positive)
    max_total_memory: int = _setting("size", "0", _not_negative)
    max_total_cpu: float = _setting("float", 0.0, _not_negative)
    max_ttl: int = _setting("int", 86400, _positive)
    idle_timeout: float = _setting("duration", "5m", _positive)
    max_templates: int = _setting("int", 50, _positive)
    max_template_size: int = _setting("size", "2g", _positive)
    template_expiry_days: int = _setting("int", 60, _positive)
    create_rate_limit: int = _setting("int", 600, _positive)
    create_rate_burst: int = _setting("int", 100, _positive)
    rate_limit_entries: int = _setting("int", 10000, _positive)
    max_tunnels: int = _setting("int", 10, _positive)
    max_connections_per_tunnel: int = _setting("int", 100, _positive)
    tunnel_bind_address: str = _setting("str", "127.0.0.1", _ip)
    tunnel_port_min: int = _setting("int", 0, _port)
    tunnel_port_max: int = _setting("int", 0, _port)


@attrs.frozen
class TunnelsConfig:
    """C{[tunnels]}: how port tunnels reach a sandbox's ports (docs/tunnels.md)."""

    connect_timeout: float = _setting("duration", "5s", _positive)
    expose_timeout: float = _setting("duration", "30s", _positive)
    auth: str = _setting("str", "none", _tunnel_auth)


@attrs.frozen
class NetworkConfig:
    """C{[network]}: the Docker bridge sandboxes run on."""

    bridge_name: str = _setting("str", "sandboxd-net", _not_empty)


@attrs.frozen
class PoolConfig:
    """C{[pool]}: how many warm sandboxes to keep and how to watch them."""

    total_warm: int = _setting("int", 8, _not_negative)
    min_per_image: int = _setting("int", 0, _not_negative)
    min_base: int = _setting("int", 2, _not_negative)
    max_warm: int = _setting("int", 32, _not_negative)
    rebalance_window: float = _setting("duration", "1h", _positive)
    health_interval: float = _setting("duration", "10s", _positive)
    liveness_timeout: float = _setting("duration", "50ms", _positive)


@attrs.frozen
class Profile:
    """C{[pool.base.<name>]}: a kind of sandbox the pool keeps warm."""

    name: str = "default"
    image: str = _setting("str", "sandbox-base:latest", _not_empty)
    memory: int = _setting("size", "512m", _positive)
    cpu: float = _setting("float", 1.0, _positive)
    storage: int = _setting("size", "500m", _positive)
    runtime: str = _setting("str", "docker", _runtime)


@attrs.frozen
class FirecrackerConfig:
    """C{[firecracker]}: the microVM runtime."""

    binary_path: str = _setting("str", "/usr/bin/firecracker", _not_empty)
    kernel_path: str = _setting("str", "")
    rootfs_dir: str = _setting("str", "/var/lib/sandboxd/firecracker", _not_empty)
    vsock_cid_base: int = _setting("int", 3, _vsock_cid)


@attrs.frozen
class QemuConfig:
    """C{[qemu]}: the QEMU VM runtime (docs/runtimes.md)."""

    binary: str = _setting("str", "qemu-system-x86_64", _not_empty)
    kernel: str = _setting("str", "/var/lib/sandboxd/vm/vmlinuz", _not_empty)
    initrd: str = _setting("str", "/var/lib/sandboxd/vm/initrd.img", _not_empty)
    disk_dir: str = _setting("str", "/var/lib/sandboxd/vm/disks", _not_empty)
    accel: str = _setting("str", "auto", _accel)


def _default_profiles():
    return MappingProxyType({"default": Profile()})


@attrs.frozen
class Config:
    """The whole configuration; C{Config()} is the built-in defaults."""

    server: ServerConfig = attrs.Factory(ServerConfig)
    multi_tenant: MultiTenantConfig = attrs.Factory(MultiTenantConfig)
    limits: LimitsConfig = attrs.Factory(LimitsConfig)
    network: NetworkConfig = attrs.Factory(NetworkConfig)
    tunnels: TunnelsConfig = attrs.Factory(TunnelsConfig)
    pool: PoolConfig = attrs.Factory(PoolConfig)
    profiles: MappingProxyType = attrs.field(
        factory=_default_profiles, converter=lambda p: MappingProxyType(dict(p)))
    firecracker: FirecrackerConfig = attrs.Factory(FirecrackerConfig)
    qemu: QemuConfig = attrs.Factory(QemuConfig)

    def endpoint_strings(self):
        """Strports descriptions for the Unix socket and the TCP (or TLS) listener."""
        server, endpoints = self.server, []
        if server.socket:
            endpoints.append(
                f"unix:{_escape(server.socket)}:mode=660:backlog={LISTEN_BACKLOG}")
        if server.tcp:
            host, port = parse_tcp_address(server.tcp)
            if server.tls_cert:
                endpoints.append(
                    f"ssl:{port}:interface={_escape(host)}"
                    f":privateKey={_escape(server.tls_key)}:certKey={_escape(server.tls_cert)}"
                    f":backlog={LISTEN_BACKLOG}")
            else:
                endpoints.append(
                    f"tcp:{port}:interface={_escape(host)}:backlog={LISTEN_BACKLOG}")
        return endpoints


#: Connections a listener queues before accepting (a burst of 100 clients
#: must not be refused).
LISTEN_BACKLOG = 1024


def _escape(text):
    """Backslash-escape the characters strports treats specially."""
    return re.sub(r"([\\:=])", r"\\\1", text)


def _read_setting(field, value, source, key):
    """Convert and check one value; a problem is a L{ConfigError} for C{key}."""
    try:
        converted = _KINDS[field.metadata["kind"]](value)
        if field.metadata["check"] is not None:
            field.metadata["check"](converted)
    except ValueError as error:
        raise ConfigError(source, key, str(error)) from None
    return converted


def _read_table(cls, table, source, prefix, skip=(), **extra):
    """Build C{cls} from a TOML table, rejecting unknown keys and bad values."""
    if not isinstance(table, dict):
        raise ConfigError(source, prefix, f"expected a table, got {_describe(table)}")
    fields = {f.name: f for f in attrs.fields(cls) if "kind" in f.metadata}
    values = {}
    for name, value in table.items():
        if name in skip:
            continue
        if name not in fields:
            raise ConfigError(source, f"{prefix}.{name}",
                              f"unknown key (known keys: {', '.join(fields)})")
        values[name] = _read_setting(fields[name], value, source, f"{prefix}.{name}")
    return cls(**values, **extra)


def _read_profiles(table, source):
    """Read C{[pool.base.*]}; with no profile there is the built-in C{default}."""
    if not isinstance(table, dict):
        raise ConfigError(source, "pool.base", f"expected a table, got {_describe(table)}")
    profiles = {}
    for name, body in table.items():
        if not _PROFILE_NAME.fullmatch(name):
            raise ConfigError(source, f"pool.base.{name}", "invalid profile name (use 1 to 32 "
                              "of a-z, 0-9, '-' and '_', starting with a letter or digit)")
        profiles[name] = _read_table(Profile, body, source, f"pool.base.{name}", name=name)
    return profiles or _default_profiles()


_SECTIONS = {"server": ServerConfig, "multi_tenant": MultiTenantConfig,
             "limits": LimitsConfig, "network": NetworkConfig, "tunnels": TunnelsConfig,
             "pool": PoolConfig,
             "firecracker": FirecrackerConfig, "qemu": QemuConfig}


def _read_document(document, source, environ):
    """Build and check a L{Config} from a parsed TOML document."""
    for name in sorted(document.keys() - _SECTIONS.keys()):
        what = "section" if isinstance(document[name], dict) else "top-level key"
        raise ConfigError(source, name, f"unknown {what} (known sections: {', '.join(_SECTIONS)})")
    skip = {"pool": ("base",)}
    sections = {name: _read_table(cls, document.get(name, {}), source, name, skip.get(name, ()))
                for name, cls in _SECTIONS.items()}
    sections["server"] = _apply_environment(sections["server"], environ)
    profiles = _read_profiles(document.get("pool", {}).get("base", {}), source)
    config = Config(profiles=profiles, **sections)
    _check_config(config, source)
    return config


def _apply_environment(server, environ):
    """Override C{[server]} settings from the non-empty environment variables."""
    fields = attrs.fields_dict(ServerConfig)
    for variable, name in ENVIRONMENT_OVERRIDES.items():
        if environ.get(variable):
            value = _read_setting(fields[name], environ[variable],
                                  "environment", f"{variable} (server.{name})")
            server = attrs.evolve(server, **{name: value})
    return server


def _check_config(config, source):
    """Enforce the rules that involve more than one setting."""

    def fail(key, reason):
        raise ConfigError(source, key, reason)

    server, limits, pool = config.server, config.limits, config.pool
    for have, lack in (("tls_cert", "tls_key"), ("tls_key", "tls_cert")):
        if getattr(server, have) and not getattr(server, lack):
            fail(f"server.{lack}", f"required because server.{have} is set (set both or neither)")
    if server.tls_client_ca and not server.tls_cert:
        fail("server.tls_cert", "required because server.tls_client_ca is set")
    if not server.socket and not server.tcp:
        fail("server", "no listener: set server.socket or server.tcp")
    if config.multi_tenant.enabled and not config.multi_tenant.public_keys:
        fail("multi_tenant.public_keys", "required when multi_tenant.enabled is true")
    if limits.tunnel_port_min > limits.tunnel_port_max:
        fail("limits.tunnel_port_min", f"{limits.tunnel_port_min} is above "
             f"limits.tunnel_port_max ({limits.tunnel_port_max})")
    if pool.total_warm > pool.max_warm:
        fail("pool.total_warm", f"{pool.total_warm} is above pool.max_warm ({pool.max_warm})")
    if pool.min_base * len(config.profiles) > pool.max_warm:
        fail("pool.min_base", f"{pool.min_base} per profile x {len(config.profiles)} profiles "
             f"is above pool.max_warm ({pool.max_warm})")
    for name, profile in config.profiles.items():
        if profile.memory > limits.max_memory:
            fail(f"pool.base.{name}.memory", f"{format_size(profile.memory)} is above "
                 f"limits.max_memory ({format_size(limits.max_memory)})")
        if limits.max_total_memory and profile.memory > limits.max_total_memory:
            fail(f"pool.base.{name}.memory", f"{format_size(profile.memory)} is above "
                 f"limits.max_total_memory ({format_size(limits.max_total_memory)})")
        if limits.max_total_cpu and profile.cpu > limits.max_total_cpu:
            fail(f"pool.base.{name}.cpu",
                 f"{profile.cpu:g} is above limits.max_total_cpu ({limits.max_total_cpu:g})")
        if profile.cpu > limits.max_cpu:
            fail(f"pool.base.{name}.cpu",
                 f"{profile.cpu:g} is above limits.max_cpu ({limits.max_cpu:g})")
        if profile.runtime == "firecracker" and not config.firecracker.kernel_path:
            fail("firecracker.kernel_path",
                 f"required because profile {name!r} uses the firecracker runtime")


def parse_config(text, source="<string>", environ=os.environ):
    """Read a configuration from TOML text (named C{source} in a L{ConfigError})."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        at = re.search(r" \(at (?:line (\d+), column \d+|end of document)\)$", message)
        if at is not None:
            line = at[1] or text.count("\n") + 1
            message = f"line {line}: {message[:at.start()]}"
        raise ConfigError(source, None, f"invalid TOML: {message}") from None
    return _read_document(document, source, environ)


def load_config(path=None, environ=os.environ):
    """
    Read the file at C{path} (C{None}: the built-in defaults), then apply the
    non-empty L{ENVIRONMENT_OVERRIDES}; raise L{ConfigError} if unusable.
    """
    if path is None:
        return _read_document({}, "<defaults>", environ)
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            text = handle.read().decode("utf-8")
    except OSError as error:
        raise ConfigError(source, None, f"cannot read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(source, None, f"not UTF-8 text: {error.reason}") from None
    return parse_config(text, source, environ)
