"""
The daemon's configuration: a TOML file read into frozen attrs classes.

L{load_config} reads a file (or none: the built-in defaults), applies the
C{SANDBOX_*} environment overrides and checks every rule; anything wrong is a
L{ConfigError} naming the file and the dotted key.  See docs/config.md.
"""

import base64
import os
import re
import tomllib
from types import MappingProxyType

import attrs

from sandboxd import configvalues as values
from sandboxd.egress.policy import OPEN_POLICY
from sandboxd.configvalues import (  # noqa: F401 (re-exported)
    format_size,
    parse_duration,
    parse_size,
    parse_tcp_address,
)

ENVIRONMENT_OVERRIDES = {"SANDBOX_SOCKET": "socket", "SANDBOX_TCP": "tcp",
                         "SANDBOX_DATA_DIR": "data_dir"}

_PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class ConfigError(Exception):
    """The configuration is unusable; the message reads C{source: key: reason}."""

    def __init__(self, source, key, reason):
        prefix = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(prefix + reason)
        self.source, self.key, self.reason = source, key, reason


def _setting(kind, default, check=None):
    """A setting read from the file: its kind, default (as written) and check."""
    if kind in ("size", "duration", "strings"):
        default = values.KINDS[kind](default)
    return attrs.field(default=default, metadata={"kind": kind, "check": check})


@attrs.frozen
class ServerConfig:
    """C{[server]}: where the daemon listens and keeps its state."""

    socket: str = _setting("str", "/var/run/sandboxd/sandboxd.sock")
    tcp: str = _setting("str", "", values.tcp)
    tls_cert: str = _setting("str", "")
    tls_key: str = _setting("str", "")
    tls_client_ca: str = _setting("str", "")
    socket_group: str = _setting("str", "")
    data_dir: str = _setting("str", "/var/lib/sandboxd", values.not_empty)
    node_id: str = _setting("str", "", values.node_id)


@attrs.frozen
class MultiTenantConfig:
    """C{[multi_tenant]}: Ed25519-signed identities from a trusted proxy."""

    enabled: bool = _setting("bool", False)
    public_keys: tuple = _setting("strings", [], values.public_keys)

    @property
    def public_key_bytes(self):
        """The public keys as raw 32-byte strings."""
        return tuple(base64.b64decode(key) for key in self.public_keys)


@attrs.frozen
class UiConfig:
    """C{[ui]}: the web dashboard at C{/ui/} (docs/ui.md)."""

    #: Served on the TCP listener too (the Unix socket always serves it).
    enabled: bool = _setting("bool", False)
    #: The page offers no actions and no terminal (a viewer's page).
    read_only: bool = _setting("bool", False)


@attrs.frozen
class LimitsConfig:
    """C{[limits]}: hard caps on what callers may ask for."""

    max_sandboxes: int = _setting("int", 100, values.positive)
    max_memory: int = _setting("size", "4g", values.positive)
    max_cpu: float = _setting("float", 4.0, values.positive)
    max_total_memory: int = _setting("size", "0", values.not_negative)
    max_total_cpu: float = _setting("float", 0.0, values.not_negative)
    max_ttl: int = _setting("int", 86400, values.positive)
    idle_timeout: float = _setting("duration", "5m", values.positive)
    max_templates: int = _setting("int", 50, values.positive)
    max_template_size: int = _setting("size", "2g", values.positive)
    template_expiry_days: int = _setting("int", 60, values.positive)
    create_rate_limit: int = _setting("int", 600, values.positive)
    create_rate_burst: int = _setting("int", 100, values.positive)
    rate_limit_entries: int = _setting("int", 10000, values.positive)
    max_tunnels: int = _setting("int", 10, values.positive)
    max_connections_per_tunnel: int = _setting("int", 100, values.positive)
    tunnel_bind_address: str = _setting("str", "127.0.0.1", values.ip)
    tunnel_port_min: int = _setting("int", 0, values.port)
    tunnel_port_max: int = _setting("int", 0, values.port)
    max_volume_size: int = _setting("size", "10g", values.positive)
    max_volumes: int = _setting("int", 20, values.positive)


@attrs.frozen
class TunnelsConfig:
    """C{[tunnels]}: how port tunnels reach a sandbox's ports (docs/tunnels.md)."""

    connect_timeout: float = _setting("duration", "5s", values.positive)
    expose_timeout: float = _setting("duration", "30s", values.positive)
    auth: str = _setting("str", "none", values.tunnel_auth)


@attrs.frozen
class NetworkConfig:
    """C{[network]}: the Docker bridge sandboxes run on."""

    bridge_name: str = _setting("str", "sandboxd-net", values.not_empty)


@attrs.frozen
class PoolConfig:
    """C{[pool]}: how many warm sandboxes to keep and how to watch them."""

    total_warm: int = _setting("int", 8, values.not_negative)
    min_per_image: int = _setting("int", 0, values.not_negative)
    min_base: int = _setting("int", 2, values.not_negative)
    max_warm: int = _setting("int", 32, values.not_negative)
    rebalance_window: float = _setting("duration", "1h", values.positive)
    health_interval: float = _setting("duration", "10s", values.positive)
    liveness_timeout: float = _setting("duration", "50ms", values.positive)


@attrs.frozen
class Profile:
    """C{[pool.base.<name>]}: a kind of sandbox the pool keeps warm."""

    name: str = "default"
    image: str = _setting("str", "sandbox-base:latest", values.not_empty)
    memory: int = _setting("size", "512m", values.positive)
    cpu: float = _setting("float", 1.0, values.positive)
    storage: int = _setting("size", "500m", values.positive)
    runtime: str = _setting("str", "docker", values.runtime)
    ttl_action: str = _setting("str", "destroy", values.ttl_action)
    network: object = _setting("network", OPEN_POLICY)


@attrs.frozen
class FirecrackerConfig:
    """C{[firecracker]}: the microVM runtime."""

    binary_path: str = _setting("str", "/usr/bin/firecracker", values.not_empty)
    kernel_path: str = _setting("str", "")
    rootfs_dir: str = _setting("str", "/var/lib/sandboxd/firecracker", values.not_empty)
    vsock_cid_base: int = _setting("int", 3, values.vsock_cid)


@attrs.frozen
class QemuConfig:
    """C{[qemu]}: the QEMU VM runtime (docs/runtimes.md)."""

    binary: str = _setting("str", "qemu-system-x86_64", values.not_empty)
    kernel: str = _setting("str", "/var/lib/sandboxd/vm/vmlinuz", values.not_empty)
    initrd: str = _setting("str", "/var/lib/sandboxd/vm/initrd.img", values.not_empty)
    disk_dir: str = _setting("str", "/var/lib/sandboxd/vm/disks", values.not_empty)
    accel: str = _setting("str", "auto", values.accel)


@attrs.frozen
class ClusterConfig:
    """C{[cluster]}: membership in a cluster of nodes behind routers (docs/deploy.md)."""

    etcd: tuple = _setting("strings", [], values.urls)
    advertise: str = _setting("str", "", values.url_or_empty)
    prefix: str = _setting("str", "/sandboxd/", values.key_prefix)
    lease_ttl: float = _setting("duration", "6s", values.positive)
    refresh: float = _setting("duration", "2s", values.positive)

    @property
    def enabled(self):
        """Whether the node joins a cluster (etcd endpoints are set)."""
        return bool(self.etcd)


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
    ui: UiConfig = attrs.Factory(UiConfig)
    cluster: ClusterConfig = attrs.Factory(ClusterConfig)

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
        converted = values.KINDS[field.metadata["kind"]](value)
        if field.metadata["check"] is not None:
            field.metadata["check"](converted)
    except ValueError as error:
        raise ConfigError(source, key, str(error)) from None
    return converted


def _read_table(cls, table, source, prefix, skip=(), **extra):
    """Build C{cls} from a TOML table, rejecting unknown keys and bad values."""
    if not isinstance(table, dict):
        raise ConfigError(source, prefix, f"expected a table, got {values.describe(table)}")
    fields = {f.name: f for f in attrs.fields(cls) if "kind" in f.metadata}
    settings = {}
    for name, value in table.items():
        if name in skip:
            continue
        if name not in fields:
            raise ConfigError(source, f"{prefix}.{name}",
                              f"unknown key (known keys: {', '.join(fields)})")
        settings[name] = _read_setting(fields[name], value, source, f"{prefix}.{name}")
    return cls(**settings, **extra)


def _read_profiles(table, source):
    """Read C{[pool.base.*]}; with no profile there is the built-in C{default}."""
    if not isinstance(table, dict):
        raise ConfigError(source, "pool.base", f"expected a table, got {values.describe(table)}")
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
             "firecracker": FirecrackerConfig, "qemu": QemuConfig, "ui": UiConfig,
             "cluster": ClusterConfig}


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
    cluster = config.cluster
    if cluster.enabled:
        if not server.node_id:
            fail("server.node_id", "required because cluster.etcd is set (routers forward "
                 "by the node id inside a sandbox id)")
        if not cluster.advertise:
            fail("cluster.advertise", "required because cluster.etcd is set")
        if cluster.refresh >= cluster.lease_ttl:
            fail("cluster.refresh", f"{cluster.refresh:g} s is not below cluster.lease_ttl "
                 f"({cluster.lease_ttl:g} s): the lease would expire between refreshes")
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
        if profile.runtime in ("qemu", "firecracker") and profile.network.rules:
            fail(f"pool.base.{name}.network", f"runtime {profile.runtime} gives sandboxes no "
                 "network device: an allow list cannot be honoured")
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
