"""
Unit tests of the ``sbx`` CLI: each runs ``python -m sbx.main`` in a
subprocess against the fake daemon of tests/fakedaemon.py (via
``SANDBOX_ENDPOINT`` or ``--endpoint``) and checks output and exit status.
Integration tests against the real daemon come from the daemon's author.
"""

import json
import os
import shutil
import sys
import tempfile

from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase

import sandbox
from tests.fakedaemon import FakeDaemon

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Collect(protocol.ProcessProtocol):
    def __init__(self, stdin):
        self.stdin = stdin
        self.out = []
        self.err = []
        self.done = defer.Deferred()

    def connectionMade(self):
        if self.stdin:
            self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data):
        self.out.append(data)

    def errReceived(self, data):
        self.err.append(data)

    def processEnded(self, reason):
        self.done.callback((b"".join(self.out), b"".join(self.err), reason.value.exitCode))


class CLITests(TestCase):
    """
    ``sbx`` commands against the fake daemon.
    """

    def setUp(self):
        self.daemon = FakeDaemon(reactor)
        directory = tempfile.mkdtemp(prefix="sbxcli-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.directory = directory
        self.endpoint = self.daemon.listen_unix(os.path.join(directory, "d.sock"))
        self.addCleanup(self.daemon.stop)
        self.sid = self.daemon.add_sandbox(labels={"env": "prod"})["id"]

    def sbx(self, *args, stdin=b"", endpoint=None):
        """
        Run ``sbx ARGS``; fire with (stdout bytes, stderr text, exit status).
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
        env["SANDBOX_ENDPOINT"] = endpoint or self.endpoint
        env["PYTHONPATH"] = ROOT
        collect = _Collect(stdin)
        reactor.spawnProcess(
            collect, sys.executable, [sys.executable, "-m", "sbx.main", *args],
            env=env, path=ROOT,
        )
        return collect.done.addCallback(lambda r: (r[0], r[1].decode(), r[2]))

    async def test_create(self):
        """
        create prints the new id; only given fields are sent, and ttl
        always (600 by default, so the sandbox outlives each command's
        session).
        """
        out, err, code = await self.sbx(
            "create", "--ttl", "60", "-l", "a=b", "-l", "c=d=e", "--memory", "1g",
            "--cpu", "2", "--storage", "1073741824", "--profile", "default",
        )
        self.assertEqual((err, code), ("", 0))
        new = out.decode().strip()
        self.assertEqual(self.daemon.sandboxes[new]["labels"], {"a": "b", "c": "d=e"})
        body = json.loads(self.daemon.requests[-1][3])
        self.assertEqual(body, {"profile": "default", "memory": "1g", "cpu": 2.0,
                                "storage": 1073741824, "ttl": 60,
                                "labels": {"a": "b", "c": "d=e"}})
        out, err, code = await self.sbx("create")
        self.assertEqual((code, self.daemon.requests[-1][3]), (0, b'{"ttl":600}'))

    async def test_ls(self):
        """
        ls prints a table (ID, PROFILE, STATE, AGE, LABELS); --json the list;
        -l filters by label.
        """
        other = self.daemon.add_sandbox()["id"]
        out, err, code = await self.sbx("ls")
        lines = out.decode().splitlines()
        self.assertEqual(lines[0].split(), ["ID", "PROFILE", "STATE", "AGE", "LABELS"])
        self.assertEqual(lines[1].split()[:3], [self.sid, "default", "running"])
        self.assertEqual(lines[1].split()[4], "env=prod")
        self.assertEqual(lines[2].split()[4], "-")
        out, err, code = await self.sbx("ls", "--json")
        self.assertEqual(json.loads(out), list(self.daemon.sandboxes.values()))
        out, err, code = await self.sbx("ls", "--json", "-l", "env=prod")
        self.assertEqual([s["id"] for s in json.loads(out)], [self.sid])
        self.assertEqual(self.daemon.requests[-1][1], "/sandboxes")
        self.assertNotIn(other, out.decode())

    async def test_rm(self):
        """
        rm destroys and prints each id; an unknown id is one error line and
        status 1; --all destroys everything.
        """
        out, err, code = await self.sbx("rm", self.sid, "sbx-nope")
        self.assertEqual(out.decode(), f"{self.sid}\n")
        self.assertEqual((err, code), ("sbx: error: sandbox sbx-nope not found\n", 1))
        self.assertEqual(self.daemon.sandboxes, {})
        for _ in range(3):
            self.daemon.add_sandbox()
        out, err, code = await self.sbx("rm", "--all")
        self.assertEqual((len(out.splitlines()), err, code), (3, "", 0))
        self.assertEqual(self.daemon.sandboxes, {})
        out, err, code = await self.sbx("rm")
        self.assertEqual((err, code), ("sbx: error: rm needs sandbox ids, or --all\n", 1))

    async def test_exec(self):
        """
        exec streams stdout and stderr and exits with the command's status;
        one argument runs under the shell, several are an argv; options
        reach the request.
        """
        self.daemon.scripts["mixed"] = [
            ("stdout", b"out1\n"), ("stderr", b"err1\n"), ("stdout", b"out2\n"),
            ("result", {"exit_code": 4, "timed_out": False, "truncated": False}),
        ]
        out, err, code = await self.sbx("exec", self.sid, "echo hello world")
        self.assertEqual((out, err, code), (b"hello world\n", "", 0))
        out, err, code = await self.sbx("exec", self.sid, "mixed")
        self.assertEqual((out, err, code), (b"out1\nout2\n", "err1\n", 4))
        out, err, code = await self.sbx(
            "exec", "--cwd", "/tmp", "-e", "A=1", "--timeout", "5", self.sid, "exit", "7"
        )
        self.assertEqual(code, 7)
        self.assertEqual(self.daemon.exec_params[-1], {
            "cmd": ["exit", "7"], "cwd": "/tmp", "env": {"A": "1"}, "timeout": 5.0})
        out, err, code = await self.sbx("exec", self.sid, "frob")
        self.assertEqual((err, code), ("sh: 1: frob: not found\n", 127))

    async def test_unknown_sandbox(self):
        """
        Commands on an unknown id fail with "sandbox ID not found".
        """
        for args in (["exec", "sbx-nope", "ls"], ["fs", "read", "sbx-nope", "/x"],
                     ["fs", "ls", "sbx-nope", "/"], ["stats", "sbx-nope"]):
            out, err, code = await self.sbx(*args)
            self.assertEqual((out, err, code),
                             (b"", "sbx: error: sandbox sbx-nope not found\n", 1), args)

    async def test_fs(self):
        """
        fs write streams stdin into a file, fs read streams it back byte for
        byte; fs ls lists (table or JSON); file errors are one line.
        """
        content = os.urandom(3 * 1024 * 1024 + 17)
        out, err, code = await self.sbx("fs", "write", self.sid, "/root/data", stdin=content)
        self.assertEqual((out, err, code), (b"", "", 0))
        self.assertEqual(self.daemon.files[self.sid]["/root/data"], content)
        out, err, code = await self.sbx("fs", "read", self.sid, "/root/data")
        self.assertEqual((out == content, err, code), (True, "", 0))
        out, err, code = await self.sbx("fs", "ls", self.sid, "/root", "--json")
        self.assertEqual(
            [(e["name"], e["size"], e["type"]) for e in json.loads(out)],
            [("data", len(content), "file")],
        )
        out, err, code = await self.sbx("fs", "ls", self.sid, "/")
        lines = out.decode().splitlines()
        self.assertEqual(lines[0].split(), ["MODE", "SIZE", "MODIFIED", "NAME"])
        self.assertTrue(lines[1].startswith("drwxr-xr-x"))
        out, err, code = await self.sbx("fs", "read", self.sid, "/root/missing")
        self.assertEqual((err, code), ("sbx: error: /root/missing: No such file or directory\n", 1))

    async def test_info_commands(self):
        """
        health, profiles and version print what the daemon says; --json
        prints its JSON.
        """
        out, err, code = await self.sbx("health", "--json")
        self.assertEqual((json.loads(out)["version"], code), ("0.1.0-fake", 0))
        out, err, code = await self.sbx("health")
        self.assertIn("version:   0.1.0-fake", out.decode())
        self.assertIn("default  2", out.decode())
        out, err, code = await self.sbx("profiles", "--json")
        self.assertEqual(json.loads(out), self.daemon.profiles)
        out, err, code = await self.sbx("profiles")
        self.assertEqual(out.decode().splitlines()[1].split(),
                         ["default", "sandbox-base:latest", "512m", "1.0", "500m", "docker"])
        out, err, code = await self.sbx("version")
        self.assertEqual((out.decode(), code),
                         (f"client: {sandbox.__version__}\nserver: 0.1.0-fake\n", 0))

    async def test_daemon_down(self):
        """
        With no daemon: one error line naming the endpoint with a hint, status
        1; version still prints the client version.
        """
        missing = f"unix://{self.directory}/nothing.sock"
        for args in (["ls"], ["exec", self.sid, "ls"], ["health", "--json"]):
            out, err, code = await self.sbx(*args, endpoint=missing)
            self.assertEqual((out, code), (b"", 1))
            self.assertEqual(len(err.splitlines()), 1)
            self.assertTrue(err.startswith(f"sbx: error: cannot connect to the daemon at {missing}"))
            self.assertIn("make run", err)
        out, err, code = await self.sbx("version", endpoint=missing)
        self.assertEqual((out.decode(), code), (f"client: {sandbox.__version__}\n", 1))
        self.assertTrue(err.startswith("sbx: error: cannot connect"))

    async def test_endpoint_option(self):
        """
        --endpoint wins over SANDBOX_ENDPOINT; a bad one is an error line.
        """
        missing = f"unix://{self.directory}/nothing.sock"
        out, err, code = await self.sbx("--endpoint", self.endpoint, "ls", "--json",
                                        endpoint=missing)
        self.assertEqual((len(json.loads(out)), code), (1, 0))
        out, err, code = await self.sbx("--endpoint", "ftp://x", "ls")
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith("sbx: error: invalid endpoint 'ftp://x'"))

    async def test_usage(self):
        """
        Usage errors exit 2.
        """
        for args in ([], ["exec", self.sid], ["create", "-l", "novalue"]):
            out, err, code = await self.sbx(*args)
            self.assertEqual(code, 2, args)
            self.assertIn("error:", err)


class CommandTableTests(TestCase):
    """
    The parser and the command table agree.
    """

    def test_every_command_has_a_handler(self):
        """
        Every command the parser accepts (``fs read`` as ``fs_read``) has a
        coroutine function in L{sbx.commands.COMMANDS}, and the table holds
        no command the parser cannot produce.
        """
        import argparse
        import inspect

        from sbx.commands import COMMANDS
        from sbx.main import build_parser

        def names(parser, prefix=""):
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, sub in action.choices.items():
                        nested = list(names(sub, f"{prefix}{name}_"))
                        yield from nested or [f"{prefix}{name}"]

        parsed = set(names(build_parser()))
        self.assertEqual(parsed, set(COMMANDS))
        for name, handler in COMMANDS.items():
            self.assertTrue(inspect.iscoroutinefunction(handler), name)
