"""
Property tests of what users hand the daemon and the CLI: create bodies,
TOML configuration files and ``sbx`` arguments.  Whatever the input, the
answer is the parsed value within its limits or a named error; never
another exception, never a traceback.
"""

import contextlib
import io
import json
import math
import os
import sys

import attrs
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from sandboxd.api.errors import ApiError
from sandboxd.api.requests import parse_create
from sandboxd.config import Config, ConfigError, LimitsConfig, parse_config

#: JSON values of any shape, kept small.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                               max_size=3),
    max_leaves=8,
)
#: Values a create body's fields get: plausible ones and any JSON.
field_values = {
    "profile": st.sampled_from(["default", "python", ""]) | json_values,
    "template": st.sampled_from(["tpl-00000000"]) | json_values,
    "memory": st.sampled_from(["512m", "1g", "64g", "0", "-1m", "1x", 536870912]) | json_values,
    "cpu": st.sampled_from([0.5, 1, 2, 64, 0, -1]) | json_values,
    "storage": st.sampled_from(["1g", "10g", "0"]) | json_values,
    "ttl": st.sampled_from([0, 60, 86400, 86401, -1]) | json_values,
    "labels": st.dictionaries(st.text(max_size=70), st.text(max_size=300), max_size=3)
    | json_values,
}
create_bodies = st.fixed_dictionaries(
    {}, optional={name: values for name, values in field_values.items()}
) | st.dictionaries(st.text(max_size=10), json_values, max_size=4)


class CreateBodyTests(SynchronousTestCase):
    """
    ``parse_create`` over any JSON object.
    """

    @settings(max_examples=300, deadline=None)
    @given(create_bodies)
    def test_parsedWithinLimitsOrNamedError(self, body):
        """
        Any body is either a create request within the limits (memory, cpu,
        ttl; labels strings) or a 400 with a named code.
        """
        limits = LimitsConfig()
        try:
            request = parse_create(body, limits)
        except ApiError as e:
            self.assertEqual(e.status, 400, e.message)
            self.assertTrue(e.code.isupper() and e.message, (e.code, e.message))
            return
        if request.memory is not None:
            self.assertTrue(0 < request.memory <= limits.max_memory, request.memory)
        if request.cpu is not None:
            self.assertTrue(0 < request.cpu <= limits.max_cpu, request.cpu)
        self.assertTrue(0 <= request.ttl <= limits.max_ttl, request.ttl)
        for key, value in (request.labels or {}).items():
            self.assertIsInstance(key, str)
            self.assertIsInstance(value, str)
        self.assertTrue(set(body) <= {field for field in field_values})


def _toml_value(value):
    """``value`` written as TOML (inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml(document):
    """A document of tables of key/values (sub-tables inline) as TOML text."""
    lines = []
    for section, table in document.items():
        lines.append(f"[{section}]")
        lines.extend(f"{json.dumps(key)} = {_toml_value(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


toml_scalars = (
    st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=16)
    | st.sampled_from(["1g", "512m", "10s", "50ms", "127.0.0.1:0", "runc", "docker+gvisor",
                       "qemu", "firecracker", "token", "none", "/tmp/x.sock", ""])
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                               max_size=2),
    max_leaves=5,
)


def _tables():
    """
    Strategies for each known section's table: its own keys with any
    values, and now and then a key it does not have.
    """
    tables = {}
    for section in attrs.fields(Config):
        if section.name == "profiles":
            continue
        keys = [field.name for field in attrs.fields(section.type or type(getattr(
            Config(), section.name)))]
        tables[section.name] = st.dictionaries(
            st.sampled_from(keys) | st.text(min_size=1, max_size=8), toml_values, max_size=4)
    return tables


documents = st.dictionaries(
    st.sampled_from(sorted(_tables())) | st.text(min_size=1, max_size=8),
    st.dictionaries(st.text(min_size=1, max_size=8), toml_values, max_size=3),
    max_size=4,
) | st.fixed_dictionaries({}, optional=_tables())


class ConfigFileTests(SynchronousTestCase):
    """
    ``parse_config`` over TOML documents of any shape and over any text.
    """

    def check(self, text):
        try:
            config = parse_config(text, source="prop.toml", environ={})
        except ConfigError as e:
            self.assertIn("prop.toml", str(e))
            return None
        self.assertIsInstance(config, Config)
        return config

    @settings(max_examples=250, deadline=None)
    @given(documents)
    def test_documents(self, document):
        """
        A document of known and unknown sections, keys and values of any
        type is a Config that keeps the cross-setting rules, or a
        ConfigError naming the file.
        """
        config = self.check(_toml(document))
        if config is None:
            return
        limits, pool = config.limits, config.pool
        self.assertLessEqual(limits.tunnel_port_min, limits.tunnel_port_max)
        self.assertLessEqual(pool.total_warm, pool.max_warm)
        self.assertTrue(config.server.socket or config.server.tcp)
        for profile in config.profiles.values():
            self.assertLessEqual(profile.memory, limits.max_memory)
            self.assertTrue(math.isfinite(profile.cpu) and profile.cpu <= limits.max_cpu)

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=200))
    def test_anyText(self, text):
        """
        Any text at all: a Config or a ConfigError, nothing else.
        """
        self.check(text)


#: Words ``sbx`` arguments are made of: commands, options, values.
sbx_words = st.sampled_from([
    "create", "ls", "rm", "exec", "attach", "fs", "read", "write", "upload", "download",
    "stats", "port", "url", "expose", "close", "health", "version", "profiles", "events",
    "pool", "status", "resize", "flush", "--json", "--all", "--profile", "--memory", "--cpu",
    "--ttl", "--label", "--timeout", "--cwd", "--env", "--mode", "--append", "--after",
    "--limit", "--type", "-f", "--endpoint", "sbx-00000000", "/root/x", "1g", "-1", "0",
    "8080", "70000", "abc", "", "--", "-", "=", "777", "9x",
]) | st.text(max_size=8)


class SbxArgumentTests(SynchronousTestCase):
    """
    ``sbx`` over any argument list, with no daemon listening.
    """

    def setUp(self):
        self.endpoint = "unix://" + os.path.abspath(self.mktemp()) + ".sock"

    @settings(max_examples=200, deadline=None)
    @given(st.lists(sbx_words, max_size=6))
    def test_anyArguments(self, argv):
        """
        Exit 0 (help), 2 (usage, with the usage line) or 1 (named error
        lines on stderr, here: the daemon cannot be reached, once per
        sandbox an ``rm`` names); never a traceback.
        """
        from sbx.main import main

        stderr, stdout = io.StringIO(), io.StringIO()
        environ = {"SANDBOX_ENDPOINT": self.endpoint}
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout), \
                _environment(environ), _stdin(b""):
            try:
                main(list(argv))
                code = 0
            except SystemExit as e:
                code = e.code
        text = stderr.getvalue()
        self.assertNotIn("Traceback", text)
        self.assertIn(code, (0, 1, 2), (argv, code, text))
        if code == 2:
            self.assertIn("usage:", text)
        elif code == 1:
            lines = text.strip().splitlines()
            self.assertTrue(lines and all(line.startswith("sbx: ") for line in lines),
                            (argv, text))


@contextlib.contextmanager
def _environment(values):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _stdin(data):
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
    try:
        yield
    finally:
        sys.stdin = saved
