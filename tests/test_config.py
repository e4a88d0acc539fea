"""
Tests for L{sandboxd.config}.
"""

import base64
import os
import re
import tomllib

import attrs
from hypothesis import given, strategies as st
from twisted.internet.endpoints import _parse, serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import TestCase

from sandboxd.config import (
    Config,
    ConfigError,
    Profile,
    format_size,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
    parse_tcp_address,
)

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(_ROOT, "config", "sandboxd.example.toml")
REFERENCE = os.path.join(_ROOT, "docs", "config.md")
KEY = base64.b64encode(bytes(range(32))).decode("ascii")
SHORT_KEY = base64.b64encode(bytes(31)).decode("ascii")
SECTIONS = ("server", "multi_tenant", "limits", "network", "tunnels", "pool", "firecracker", "qemu", "ui")


def parse(text, environ=None):
    """Parse C{text} as a file named C{/etc/sandboxd.toml} with no environment."""
    return parse_config(text, "/etc/sandboxd.toml", environ or {})


class ConfigErrorMixin:
    """Assert on a L{ConfigError} from some TOML text."""

    def assertConfigError(self, text, key, *fragments, environ=None):
        """
        Parsing C{text} fails with a L{ConfigError} for C{key} whose message
        begins with the file and key and contains every fragment.
        """
        error = self.assertRaises(ConfigError, parse, text, environ)
        message = str(error)
        self.assertEqual(error.key, key)
        source = "environment" if environ else "/etc/sandboxd.toml"
        self.assertTrue(message.startswith(f"{source}: {key}: "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return error


class DefaultsTests(TestCase):
    """The built-in defaults, used when there is no file."""

    def test_no_file(self):
        """
        L{load_config} with no path gives the documented defaults, converted:
        sizes in bytes, durations in seconds.
        """
        config = load_config(None, environ={})
        self.assertEqual(config, Config())
        self.assertEqual(config.server.socket, "/var/run/sandboxd/sandboxd.sock")
        self.assertEqual(config.server.tcp, "")
        self.assertEqual(config.server.data_dir, "/var/lib/sandboxd")
        self.assertEqual(config.server.node_id, "")
        self.assertFalse(config.multi_tenant.enabled)
        self.assertEqual(config.multi_tenant.public_keys, ())
        limits = config.limits
        self.assertEqual(
            (limits.max_sandboxes, limits.max_memory, limits.max_cpu, limits.max_ttl),
            (100, 4 << 30, 4.0, 86400))
        self.assertEqual(
            (limits.max_templates, limits.max_template_size, limits.template_expiry_days),
            (50, 2 << 30, 60))
        self.assertEqual(
            (limits.create_rate_limit, limits.rate_limit_entries, limits.max_tunnels,
             limits.max_connections_per_tunnel),
            (600, 10000, 10, 100))
        self.assertEqual(
            (limits.tunnel_bind_address, limits.tunnel_port_min, limits.tunnel_port_max),
            ("127.0.0.1", 0, 0))
        self.assertEqual(config.network.bridge_name, "sandboxd-net")
        pool = config.pool
        self.assertEqual(
            (pool.total_warm, pool.min_per_image, pool.min_base, pool.max_warm),
            (8, 0, 2, 32))
        self.assertEqual(
            (pool.rebalance_window, pool.health_interval, pool.liveness_timeout),
            (3600.0, 10.0, 0.05))
        self.assertEqual(
            config.firecracker,
            attrs.evolve(config.firecracker, binary_path="/usr/bin/firecracker",
                         kernel_path="", rootfs_dir="/var/lib/sandboxd/firecracker",
                         vsock_cid_base=3))
        self.assertEqual(
            (config.qemu.binary, config.qemu.kernel, config.qemu.initrd, config.qemu.disk_dir,
             config.qemu.accel),
            ("qemu-system-x86_64", "/var/lib/sandboxd/vm/vmlinuz",
             "/var/lib/sandboxd/vm/initrd.img", "/var/lib/sandboxd/vm/disks", "auto"))

    def test_default_profile(self):
        """
        With no profile in the file there is exactly one profile, C{default},
        with the documented image, memory, cpu, storage and runtime.
        """
        for config in [load_config(environ={}), parse(""), parse("[pool]\n[pool.base]\n")]:
            self.assertEqual(list(config.profiles), ["default"])
            self.assertEqual(
                config.profiles["default"],
                Profile(name="default", image="sandbox-base:latest", memory=512 << 20,
                        cpu=1.0, storage=500 << 20, runtime="docker"))

    def test_empty_file(self):
        """An empty file is the same as no file."""
        self.assertEqual(parse(""), load_config(environ={}))

    def test_frozen(self):
        """The configuration and its profiles cannot be changed in place."""
        config = Config()
        self.assertRaises(attrs.exceptions.FrozenInstanceError,
                          setattr, config.server, "socket", "/x")
        with self.assertRaises(TypeError):
            config.profiles["x"] = Profile(name="x")


class ExampleFileTests(TestCase):
    """The example file in C{config/} is complete and loads."""

    def test_loads(self):
        """
        The example file loads; apart from its profiles it only repeats the
        defaults, and its profiles are default, python, node and full, each
        on the image of that name that make images builds.
        """
        config = load_config(EXAMPLE, environ={})
        self.assertEqual(attrs.evolve(config, profiles=Config().profiles), Config())
        self.assertEqual(list(config.profiles), ["default", "python", "node", "full"])
        self.assertEqual(config.profiles["default"], Profile())
        self.assertEqual(
            config.profiles["python"],
            Profile(name="python", image="sandbox-python:latest", memory=1 << 30,
                    storage=1 << 30))
        self.assertEqual(
            config.profiles["node"],
            Profile(name="node", image="sandbox-node:latest", storage=1 << 30))
        self.assertEqual(
            config.profiles["full"],
            Profile(name="full", image="sandbox-full:latest", memory=1 << 30, cpu=2.0,
                    storage=1 << 30))
        self.assertLessEqual(config.pool.min_base * len(config.profiles), config.pool.max_warm)

    def test_every_setting(self):
        """
        The example file sets every key of every section and of a profile,
        each after a comment that states its default (the profiles after
        C{default} only set what differs).
        """
        with open(EXAMPLE, "rb") as handle:
            document = tomllib.load(handle)
        config = Config()
        self.assertEqual(sorted(document), sorted(SECTIONS))
        for section in SECTIONS:
            expected = set(attrs.fields_dict(type(getattr(config, section))))
            self.assertEqual(set(document[section]) - {"base"}, expected, section)
        self.assertEqual(set(document["pool"]["base"]["default"]),
                         set(attrs.fields_dict(Profile)) - {"name"})
        with open(EXAMPLE) as handle:
            lines = handle.read().splitlines()
        section = None
        for index, line in enumerate(lines):
            if line.startswith("["):
                section = line
            if section in ("[pool.base.python]", "[pool.base.node]", "[pool.base.full]"):
                continue
            if re.match(r"[a-z_]+ = ", line):
                comment = []
                while lines[index - 1 - len(comment)].startswith("# "):
                    comment.append(lines[index - 1 - len(comment)])
                self.assertIn("Default", " ".join(comment), line)

    def test_gvisor_example(self):
        """
        Uncommenting the example gVisor profile gives a second profile with
        the docker+gvisor runtime.
        """
        with open(EXAMPLE) as handle:
            text = handle.read()
        start = text.index("# [pool.base.gvisor]")
        block = text[start:text.index("\n\n", start)]
        text = text.replace(block, re.sub(r"(?m)^# ", "", block))
        config = parse_config(text, EXAMPLE, {})
        self.assertEqual(sorted(config.profiles), ["default", "full", "gvisor", "node", "python"])
        gvisor = config.profiles["gvisor"]
        self.assertEqual((gvisor.runtime, gvisor.memory, gvisor.cpu),
                         ("docker+gvisor", 1 << 30, 2.0))

    def test_reference_documents_every_key(self):
        """docs/config.md has a table row for every section and key."""
        with open(REFERENCE) as handle:
            reference = handle.read()
        config = Config()
        for section in SECTIONS:
            for key in attrs.fields_dict(type(getattr(config, section))):
                self.assertIn(f"| `{section}` | `{key}` |", reference)
        for key in set(attrs.fields_dict(Profile)) - {"name"}:
            self.assertIn(f"| `pool.base.<name>` | `{key}` |", reference)


class ParseSizeTests(TestCase):
    """L{parse_size} and L{format_size}."""

    def test_suffixes(self):
        """Each binary suffix, in either case, multiplies by a power of 1024."""
        cases = {"0": 0, "1024": 1024, "1k": 1024, "1K": 1024, "512m": 512 << 20,
                 "512M": 512 << 20, "4g": 4 << 30, "4G": 4 << 30, "2t": 2 << 40,
                 "2T": 2 << 40, " 8m ": 8 << 20, "1.5k": 1536, "0.5g": 512 << 20,
                 "1.0001k": 1024}
        for text, expected in cases.items():
            self.assertEqual(parse_size(text), expected, text)

    def test_integer(self):
        """A plain integer is a number of bytes."""
        self.assertEqual(parse_size(1048576), 1048576)
        self.assertEqual(parse_size(0), 0)

    def test_bad(self):
        """
        Empty, negative, unknown suffixes, spaces inside, non-strings and
        absurdly large values raise L{ValueError} that quotes the input.
        """
        cases = {"": "use a number with k, m, g or t", "-1g": "must not be negative",
                 "12x": "use a number with k, m, g or t", "4gb": "use a number",
                 "1 g": "use a number", "g": "use a number", "1.g": "use a number",
                 "1e3": "use a number", "0x10": "use a number"}
        for text, reason in cases.items():
            error = self.assertRaises(ValueError, parse_size, text)
            self.assertIn(f"invalid size {text!r}", str(error))
            self.assertIn(reason, str(error))
        self.assertIn("must not be negative", str(self.assertRaises(ValueError, parse_size, -1)))
        self.assertIn("too large", str(self.assertRaises(ValueError, parse_size, "9999999t")))
        for value in [True, 1.5, None, ["1g"]]:
            self.assertRaises(ValueError, parse_size, value)

    def test_format(self):
        """L{format_size} uses the largest suffix that keeps the number whole."""
        cases = {0: "0", 1000: "1000", 1024: "1k", 1536: "1536", 512 << 20: "512m",
                 4 << 30: "4g", 3 << 40: "3t", 2048 << 40: "2048t"}
        for size, expected in cases.items():
            self.assertEqual(format_size(size), expected)

    @given(st.integers(min_value=0, max_value=1 << 22),
           st.sampled_from(["", "k", "m", "g", "t", "K", "M", "G", "T"]))
    def test_round_trip_suffix(self, number, suffix):
        """C{"<n><suffix>"} parses to n times the suffix's power of 1024."""
        power = " kmgt".index(suffix.lower() or " ")
        self.assertEqual(parse_size(f"{number}{suffix}"), number * 1024 ** power)

    @given(st.integers(min_value=0, max_value=(1 << 63) - 1))
    def test_round_trip_format(self, size):
        """Formatting any byte count and parsing it back gives the same count."""
        self.assertEqual(parse_size(format_size(size)), size)
        self.assertEqual(parse_size(str(size)), size)


class ParseDurationTests(TestCase):
    """L{parse_duration}."""

    def test_units(self):
        """ms, s, m and h, fractions and combinations give float seconds."""
        cases = {"50ms": 0.05, "0s": 0.0, "10s": 10.0, "1.5s": 1.5, "1m": 60.0,
                 "1.5m": 90.0, "1h": 3600.0, "1h30m": 5400.0, "1m500ms": 60.5,
                 " 2h ": 7200.0}
        for text, expected in cases.items():
            result = parse_duration(text)
            self.assertIsInstance(result, float)
            self.assertAlmostEqual(result, expected, msg=text)

    def test_numbers(self):
        """An int or float is already seconds."""
        self.assertEqual(parse_duration(3), 3.0)
        self.assertEqual(parse_duration(0.25), 0.25)

    def test_bad(self):
        """
        Empty, unitless, negative, unknown units and non-strings raise
        L{ValueError} quoting the input.
        """
        cases = {"": "use a number with ms, s, m or h", "10": "use a number with ms",
                 "-1s": "must not be negative", "5d": "use a number", "1 s": "use a number",
                 "s": "use a number", "1hour": "use a number", "1h-5m": "use a number"}
        for text, reason in cases.items():
            error = self.assertRaises(ValueError, parse_duration, text)
            self.assertIn(f"invalid duration {text!r}", str(error))
            self.assertIn(reason, str(error))
        for value in [-1, float("inf"), float("nan"), True, None]:
            self.assertRaises(ValueError, parse_duration, value)


class FileErrorTests(ConfigErrorMixin, TestCase):
    """Errors name the file and the dotted key."""

    def test_bad_size_in_profile(self):
        """A bad profile size names the profile's key, as in the docs."""
        error = self.assertConfigError('[pool.base.python]\nmemory = "12x"\n',
                                       "pool.base.python.memory")
        self.assertEqual(
            str(error),
            "/etc/sandboxd.toml: pool.base.python.memory: invalid size '12x' "
            "(use a number with k, m, g or t)")

    def test_bad_duration(self):
        """A duration without a unit is an error naming the key."""
        self.assertConfigError('[pool]\nhealth_interval = "10"\n', "pool.health_interval",
                               "invalid duration '10'")

    def test_unknown_section(self):
        """An unknown section is named, with the known ones."""
        self.assertConfigError("[serverz]\nsocket = '/x'\n", "serverz",
                               "unknown section", "server, multi_tenant")

    def test_unknown_top_level_key(self):
        """A key outside any section is an unknown top-level key."""
        self.assertConfigError("socket = '/x'\n", "socket", "unknown top-level key")

    def test_unknown_key(self):
        """An unknown key in each kind of section is named in full."""
        cases = {"[server]\ncolour = 1\n": "server.colour",
                 "[limits]\nmax_sandbox = 5\n": "limits.max_sandbox",
                 "[pool]\nwarm = 5\n": "pool.warm",
                 "[pool.base.py]\nimgae = 'x'\n": "pool.base.py.imgae",
                 "[firecracker]\nkernel = 'x'\n": "firecracker.kernel"}
        for text, key in cases.items():
            self.assertConfigError(text, key, "unknown key")

    def test_wrong_types(self):
        """A value of the wrong TOML type is an error saying what was expected."""
        cases = [
            ("[server]\nsocket = 5\n", "server.socket", "expected a string, got integer 5"),
            ("server = 'x'\n", "server", "expected a table"),
            ("[multi_tenant]\nenabled = 'yes'\n", "multi_tenant.enabled", "expected a boolean"),
            ("[multi_tenant]\npublic_keys = 'k'\n", "multi_tenant.public_keys",
             "expected an array of strings"),
            ("[multi_tenant]\npublic_keys = [1]\n", "multi_tenant.public_keys",
             "expected a string in the array"),
            ("[limits]\nmax_sandboxes = '100'\n", "limits.max_sandboxes",
             "expected an integer, got string '100'"),
            ("[limits]\nmax_sandboxes = 100.0\n", "limits.max_sandboxes", "expected an integer"),
            ("[limits]\nmax_sandboxes = true\n", "limits.max_sandboxes",
             "expected an integer, got boolean true"),
            ("[limits]\nmax_cpu = '4'\n", "limits.max_cpu", "expected a number"),
            ("[limits]\nmax_cpu = inf\n", "limits.max_cpu", "expected a finite number"),
            ("[limits]\nmax_memory = 4.5\n", "limits.max_memory", "expected a size"),
            ("[pool]\nhealth_interval = 10\n", "pool.health_interval", "expected a duration"),
            ("[pool]\nbase = 3\n", "pool.base", "expected a table"),
            ("[pool.base]\npy = 3\n", "pool.base.py", "expected a table"),
        ]
        for text, key, fragment in cases:
            self.assertConfigError(text, key, fragment)

    def test_bad_values(self):
        """Values of the right type but outside their range are errors."""
        cases = [
            ("[server]\ntcp = 'localhost:7522'\n", "server.tcp", "invalid TCP address"),
            ("[server]\ndata_dir = ''\n", "server.data_dir", "must not be empty"),
            ("[server]\nnode_id = 'Node-1'\n", "server.node_id", "invalid node id"),
            ("[server]\nnode_id = 'a234567890abcdefg'\n", "server.node_id", "invalid node id"),
            ("[multi_tenant]\npublic_keys = ['not base64!']\n", "multi_tenant.public_keys",
             "entry 0"),
            (f"[multi_tenant]\npublic_keys = ['{KEY}', '{SHORT_KEY}']\n",
             "multi_tenant.public_keys", "entry 1", "32-byte"),
            ("[limits]\nmax_sandboxes = 0\n", "limits.max_sandboxes", "greater than 0"),
            ("[limits]\nmax_memory = '0'\n", "limits.max_memory", "greater than 0"),
            ("[limits]\nmax_cpu = -1\n", "limits.max_cpu", "greater than 0"),
            ("[limits]\nmax_ttl = 0\n", "limits.max_ttl", "greater than 0"),
            ("[limits]\ntunnel_bind_address = 'everywhere'\n", "limits.tunnel_bind_address",
             "invalid IP address"),
            ("[limits]\ntunnel_port_max = 65536\n", "limits.tunnel_port_max", "port"),
            ("[pool]\ntotal_warm = -1\n", "pool.total_warm", "must not be negative"),
            ("[pool]\nliveness_timeout = '0ms'\n", "pool.liveness_timeout", "greater than 0"),
            ("[pool.base.py]\nruntime = 'lxc'\n", "pool.base.py.runtime",
             "unknown runtime 'lxc'", "docker+gvisor"),
            ("[pool.base.py]\ncpu = 0\n", "pool.base.py.cpu", "greater than 0"),
            ("[pool.base.'Big Box']\n", "pool.base.Big Box", "invalid profile name"),
            ("[firecracker]\nvsock_cid_base = 2\n", "firecracker.vsock_cid_base", "at least 3"),
            ("[qemu]\naccel = 'hvf'\n", "qemu.accel", "use auto, kvm or tcg"),
            ("[qemu]\nkernel = ''\n", "qemu.kernel", "must not be empty"),
        ]
        for text, key, *fragments in cases:
            self.assertConfigError(text, key, *fragments)

    def test_toml_syntax(self):
        """Bad TOML is an error naming the file and the line."""
        error = self.assertRaises(ConfigError, parse, "[server]\n\nsocket /x\n")
        self.assertIsNone(error.key)
        self.assertTrue(str(error).startswith("/etc/sandboxd.toml: invalid TOML: line 3: "),
                        str(error))
        error = self.assertRaises(ConfigError, parse, "[server]\nsocket = [")
        self.assertIn("line 2: ", str(error))

    def test_missing_file(self):
        """A file that cannot be read is an error naming it."""
        path = self.mktemp()
        error = self.assertRaises(ConfigError, load_config, path, {})
        self.assertEqual(str(error), f"{path}: cannot read: No such file or directory")

    def test_not_utf8(self):
        """A file that is not UTF-8 is an error naming it."""
        path = self.mktemp()
        with open(path, "wb") as handle:
            handle.write(b"[server]\nsocket = '\xff'\n")
        error = self.assertRaises(ConfigError, load_config, path, {})
        self.assertTrue(str(error).startswith(f"{path}: not UTF-8"), str(error))

    def test_load_file(self):
        """L{load_config} reads a file given as a path-like object."""
        from pathlib import Path

        path = Path(self.mktemp())
        path.write_text("[server]\nnode_id = 'n1'\n")
        self.assertEqual(load_config(path, environ={}).server.node_id, "n1")


class CrossFieldTests(ConfigErrorMixin, TestCase):
    """Rules that involve more than one setting."""

    def test_tls_both_or_neither(self):
        """A certificate without a key, or a key without a certificate, is an error."""
        self.assertConfigError("[server]\ntcp = '7522'\ntls_cert = '/c.pem'\n",
                               "server.tls_key", "server.tls_cert is set")
        self.assertConfigError("[server]\ntcp = '7522'\ntls_key = '/k.pem'\n",
                               "server.tls_cert", "server.tls_key is set")

    def test_some_listener(self):
        """Turning off the socket with no TCP listener leaves nothing to serve on."""
        self.assertConfigError("[server]\nsocket = ''\n", "server", "no listener")
        config = parse("[server]\nsocket = ''\ntcp = '7522'\n")
        self.assertEqual(config.endpoint_strings(), ["tcp:7522:interface=0.0.0.0:backlog=1024"])

    def test_multi_tenant_needs_keys(self):
        """Multi-tenant mode without a public key is an error; with one it loads."""
        self.assertConfigError("[multi_tenant]\nenabled = true\n",
                               "multi_tenant.public_keys", "required")
        config = parse(f"[multi_tenant]\nenabled = true\npublic_keys = ['{KEY}']\n")
        self.assertEqual(config.multi_tenant.public_keys, (KEY,))
        self.assertEqual(config.multi_tenant.public_key_bytes, (bytes(range(32)),))

    def test_tunnel_ports(self):
        """tunnel_port_min above tunnel_port_max is an error; a range loads."""
        self.assertConfigError("[limits]\ntunnel_port_min = 9000\ntunnel_port_max = 8000\n",
                               "limits.tunnel_port_min", "9000 is above", "(8000)")
        config = parse("[limits]\ntunnel_port_min = 8000\ntunnel_port_max = 9000\n")
        self.assertEqual((config.limits.tunnel_port_min, config.limits.tunnel_port_max),
                         (8000, 9000))

    def test_total_warm(self):
        """total_warm above max_warm is an error; equal is fine."""
        self.assertConfigError("[pool]\ntotal_warm = 40\n", "pool.total_warm",
                               "40 is above pool.max_warm (32)")
        self.assertEqual(parse("[pool]\ntotal_warm = 32\n").pool.total_warm, 32)

    def test_min_base_times_profiles(self):
        """
        min_base counts per profile: with three profiles, min_base 11 needs
        33 warm slots, more than max_warm 32; min_base 10 fits.
        """
        profiles = "[pool.base.a]\n[pool.base.b]\n[pool.base.c]\n"
        self.assertConfigError("[pool]\nmin_base = 11\n" + profiles, "pool.min_base",
                               "3 profiles", "max_warm (32)")
        self.assertEqual(parse("[pool]\nmin_base = 10\n" + profiles).pool.min_base, 10)

    def test_profile_above_limits(self):
        """A profile's memory or cpu above the limits is an error naming the profile."""
        self.assertConfigError("[pool.base.big]\nmemory = '8g'\n", "pool.base.big.memory",
                               "8g is above limits.max_memory (4g)")
        self.assertConfigError("[pool.base.big]\ncpu = 8\n", "pool.base.big.cpu",
                               "8 is above limits.max_cpu (4)")
        self.assertConfigError("[limits]\nmax_memory = '256m'\n", "pool.base.default.memory",
                               "512m is above")
        config = parse("[limits]\nmax_memory = '16g'\nmax_cpu = 8\n"
                       "[pool.base.big]\nmemory = '16g'\ncpu = 8\n")
        self.assertEqual(config.profiles["big"].memory, 16 << 30)

    def test_firecracker_kernel(self):
        """A firecracker profile needs firecracker.kernel_path."""
        profile = "[pool.base.vm]\nruntime = 'firecracker'\n"
        self.assertConfigError(profile, "firecracker.kernel_path", "'vm'")
        config = parse(profile + "[firecracker]\nkernel_path = '/boot/vmlinux'\n")
        self.assertEqual(config.profiles["vm"].runtime, "firecracker")


class ProfileTests(TestCase):
    """Profiles defined in the file."""

    def test_file_profiles_replace_default(self):
        """
        Once the file defines a profile, only the file's profiles exist, each
        with the defaults for the keys it leaves out.
        """
        config = parse("[pool.base.python]\nimage = 'sandbox-python:latest'\nmemory = '1G'\n"
                       "[pool.base.node]\nruntime = 'docker+gvisor'\nstorage = 1048576\n")
        self.assertEqual(list(config.profiles), ["python", "node"])
        self.assertEqual(
            config.profiles["python"],
            Profile(name="python", image="sandbox-python:latest", memory=1 << 30, cpu=1.0,
                    storage=500 << 20, runtime="docker"))
        self.assertEqual(
            config.profiles["node"],
            Profile(name="node", image="sandbox-base:latest", memory=512 << 20, cpu=1.0,
                    storage=1 << 20, runtime="docker+gvisor"))

    def test_every_runtime(self):
        """Every documented runtime is accepted."""
        for runtime in ["docker", "docker+gvisor", "firecracker", "qemu"]:
            config = parse(f"[pool.base.p]\nruntime = '{runtime}'\n"
                           "[firecracker]\nkernel_path = '/k'\n")
            self.assertEqual(config.profiles["p"].runtime, runtime)

    def test_cpu_integer(self):
        """An integer cpu is stored as a float."""
        cpu = parse("[pool.base.p]\ncpu = 2\n").profiles["p"].cpu
        self.assertEqual((cpu, type(cpu)), (2.0, float))


class EnvironmentTests(ConfigErrorMixin, TestCase):
    """SANDBOX_SOCKET, SANDBOX_TCP and SANDBOX_DATA_DIR override the file."""

    def test_overrides(self):
        """Each variable replaces its setting, from the file or the defaults."""
        environ = {"SANDBOX_SOCKET": "/tmp/s.sock", "SANDBOX_TCP": "127.0.0.1:9000",
                   "SANDBOX_DATA_DIR": "/srv/sandboxd"}
        for config in [load_config(environ=environ),
                       parse("[server]\nsocket = '/a'\ntcp = '1'\ndata_dir = '/b'\n", environ)]:
            self.assertEqual(
                (config.server.socket, config.server.tcp, config.server.data_dir),
                ("/tmp/s.sock", "127.0.0.1:9000", "/srv/sandboxd"))

    def test_empty_ignored(self):
        """Empty variables leave the file's values alone."""
        environ = {"SANDBOX_SOCKET": "", "SANDBOX_TCP": "", "SANDBOX_DATA_DIR": ""}
        config = parse("[server]\nsocket = '/a'\ntcp = '1'\n", environ)
        self.assertEqual((config.server.socket, config.server.tcp, config.server.data_dir),
                         ("/a", "1", "/var/lib/sandboxd"))

    def test_other_variables_ignored(self):
        """Variables sandboxd does not know do not matter."""
        self.assertEqual(load_config(environ={"SANDBOX_ENDPOINT": "x", "HOME": "/"}), Config())

    def test_bad_override(self):
        """A bad value in a variable is an error naming the variable and the key."""
        self.assertConfigError("", "SANDBOX_TCP (server.tcp)", "invalid TCP address 'nope'",
                               environ={"SANDBOX_TCP": "nope"})

    def test_default_environ(self):
        """By default the process environment is read."""
        previous = os.environ.get("SANDBOX_DATA_DIR")
        os.environ["SANDBOX_DATA_DIR"] = "/srv/x"
        if previous is None:
            self.addCleanup(os.environ.pop, "SANDBOX_DATA_DIR")
        else:
            self.addCleanup(os.environ.__setitem__, "SANDBOX_DATA_DIR", previous)
        self.assertEqual(load_config().server.data_dir, "/srv/x")
        self.assertEqual(parse_config("").server.data_dir, "/srv/x")


class EndpointTests(TestCase):
    """L{Config.endpoint_strings}."""

    def endpoints(self, server_toml, environ=None):
        """The endpoint strings for a C{[server]} section."""
        return parse("[server]\n" + server_toml, environ).endpoint_strings()

    def test_default(self):
        """By default there is only the Unix socket, mode 0660."""
        self.assertEqual(Config().endpoint_strings(),
                         ["unix:/var/run/sandboxd/sandboxd.sock:mode=660:backlog=1024"])
        reactor = MemoryReactor()
        serverFromString(reactor, Config().endpoint_strings()[0]).listen(Factory())
        address, _, _, mode, _ = reactor.unixServers[0]
        self.assertEqual((address, mode), ("/var/run/sandboxd/sandboxd.sock", 0o660))

    def test_tcp_forms(self):
        """Each TCP form becomes a tcp endpoint with an explicit interface."""
        cases = {"7522": "tcp:7522:interface=0.0.0.0:backlog=1024",
                 ":7522": "tcp:7522:interface=0.0.0.0:backlog=1024",
                 "0.0.0.0:7522": "tcp:7522:interface=0.0.0.0:backlog=1024",
                 "127.0.0.1:8000": "tcp:8000:interface=127.0.0.1:backlog=1024",
                 "10.1.2.3": "tcp:7522:interface=10.1.2.3:backlog=1024",
                 "[::1]:7522": r"tcp:7522:interface=\:\:1:backlog=1024"}
        for tcp, expected in cases.items():
            self.assertEqual(self.endpoints(f"tcp = '{tcp}'\nsocket = ''\n"), [expected])

    def test_tcp_listens(self):
        """The tcp endpoint string listens on the configured host and port."""
        for tcp, host, port in [("127.0.0.1:8000", "127.0.0.1", 8000), ("[::1]:0", "::1", 0)]:
            reactor = MemoryReactor()
            endpoint = self.endpoints(f"tcp = '{tcp}'\nsocket = ''\n")[0]
            serverFromString(reactor, endpoint).listen(Factory())
            listened_port, _, _, interface = reactor.tcpServers[0]
            self.assertEqual((listened_port, interface), (port, host))

    def test_unix_and_tcp(self):
        """With both set there are two endpoints, the socket first."""
        self.assertEqual(self.endpoints("socket = '/run/s.sock'\ntcp = '7522'\n"),
                         ["unix:/run/s.sock:mode=660:backlog=1024", "tcp:7522:interface=0.0.0.0:backlog=1024"])

    def test_ssl(self):
        """With a certificate and key the TCP listener is TLS."""
        endpoints = self.endpoints("socket = ''\ntcp = '127.0.0.1:7522'\n"
                                   "tls_cert = '/etc/c.pem'\ntls_key = '/etc/k.pem'\n")
        self.assertEqual(
            endpoints,
            ["ssl:7522:interface=127.0.0.1:privateKey=/etc/k.pem:certKey=/etc/c.pem:backlog=1024"])
        self.assertEqual(
            _parse(endpoints[0]),
            (["ssl", "7522"],
             {"interface": "127.0.0.1", "privateKey": "/etc/k.pem", "certKey": "/etc/c.pem",
              "backlog": "1024"}))

    def test_escaping(self):
        """Colons, equals signs and backslashes in paths survive strports parsing."""
        socket, key, cert = r"/tmp/a:b=c\d.sock", "/k:1.pem", "/c=1.pem"
        endpoints = self.endpoints(
            f"socket = '{socket}'\ntcp = '7522'\ntls_key = '{key}'\ntls_cert = '{cert}'\n")
        self.assertEqual(endpoints[0], r"unix:/tmp/a\:b\=c\\d.sock:mode=660:backlog=1024")
        self.assertEqual(_parse(endpoints[0]), (["unix", socket], {"mode": "660", "backlog": "1024"}))
        self.assertEqual(_parse(endpoints[1])[1],
                         {"interface": "0.0.0.0", "privateKey": key, "certKey": cert, "backlog": "1024"})
        reactor = MemoryReactor()
        serverFromString(reactor, endpoints[0]).listen(Factory())
        self.assertEqual(reactor.unixServers[0][0], socket)

    def test_environment(self):
        """SANDBOX_TCP turns on TCP even when the file leaves it off."""
        self.assertEqual(self.endpoints("", {"SANDBOX_TCP": "7600"})[1],
                         "tcp:7600:interface=0.0.0.0:backlog=1024")


class TcpAddressTests(TestCase):
    """L{parse_tcp_address}."""

    def test_forms(self):
        """Every accepted form splits into host and port."""
        cases = {"7522": ("0.0.0.0", 7522), ":7522": ("0.0.0.0", 7522),
                 "127.0.0.1:1": ("127.0.0.1", 1), "127.0.0.1": ("127.0.0.1", 7522),
                 "[::]:80": ("::", 80), "[::1]": ("::1", 7522), "::1": ("::1", 7522),
                 "0": ("0.0.0.0", 0)}
        for text, expected in cases.items():
            self.assertEqual(parse_tcp_address(text), expected, text)

    def test_bad(self):
        """Host names, bad ports and junk are rejected."""
        for text in ["", "localhost", "localhost:7522", "1.2.3.4:", "1.2.3.4:70000",
                     ":", "[::1", "1:2:3", " 7522", "7522 ", "[1.2.3.4:5]"]:
            self.assertRaises(ValueError, parse_tcp_address, text)
