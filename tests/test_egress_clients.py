"""
The clients' side of egress rules and secrets against the fake daemon of
tests/fakedaemon.py: the Python SDK's create arguments (sent in a POST body,
never in a URL) and ``sbx create --network/--allow/--secret`` (secret values
from the environment, never the command line).
"""

import asyncio
import json
import os
import shutil
import sys
import tempfile

from twisted.internet import reactor, threads
from twisted.trial.unittest import TestCase

from sandbox import Client, create_sandbox
from tests.fakedaemon import FakeDaemon
from tests.test_cli import ROOT, _Collect


class EgressClientTests(TestCase):
    def setUp(self):
        self.daemon = FakeDaemon(reactor)
        directory = tempfile.mkdtemp(prefix="sbxegress-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.endpoint = self.daemon.listen_unix(os.path.join(directory, "d.sock"))
        self.addCleanup(self.daemon.stop)

    def sbx(self, *args, env=None):
        full = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
        full.update(env or {}, SANDBOX_ENDPOINT=self.endpoint, PYTHONPATH=ROOT)
        collect = _Collect(b"")
        reactor.spawnProcess(collect, sys.executable, [sys.executable, "-m", "sbx.main", *args],
                             env=full, path=ROOT)
        return collect.done.addCallback(lambda r: (r[0], r[1].decode(), r[2]))

    def client(self, fn):
        """Run the coroutine function ``fn`` in a worker thread's own event loop."""
        return threads.deferToThread(lambda: asyncio.run(asyncio.wait_for(fn(), 30)))

    def last_body(self):
        method, path, headers, body = self.daemon.requests[-1]
        return method, path, json.loads(body)

    async def test_client_create_sends_network_and_secrets(self):
        """
        Client.create puts ``network`` and ``secrets`` in the POST body.
        """
        async def create():
            client = Client(self.endpoint)
            try:
                await client.create(network={"allow": ["10.0.0.1:80"]}, secrets={"K": "v"})
            finally:
                await client.close()

        await self.client(create)
        self.assertEqual(("POST", "/sandboxes", {"network": {"allow": ["10.0.0.1:80"]},
                                                 "secrets": {"K": "v"}}), self.last_body())

    async def test_create_sandbox_with_secrets_never_uses_a_url(self):
        """
        create_sandbox with secrets creates through POST (a secret never
        travels in the one-round-trip route's query string).
        """
        async def create():
            async with await create_sandbox(endpoint=self.endpoint, network="none",
                                            secrets={"K": "hunter2"}) as sbx:
                return sbx.id

        self.assertTrue(await self.client(create))
        paths = [path for _, path, _, _ in self.daemon.requests]
        self.assertFalse(any("hunter2" in path for path in paths), paths)
        posts = [json.loads(body) for method, path, _, body in self.daemon.requests
                 if method == "POST" and path == "/sandboxes"]
        self.assertEqual([{"network": "none", "secrets": {"K": "hunter2"}}], posts)

    async def test_sbx_create_flags(self):
        """
        --allow (repeated) makes an allow list; --secret NAME:HOSTS takes the
        value from $NAME; --network none alone; --allow with --network and
        an unset secret variable are refused by name.
        """
        out, err, code = await self.sbx(
            "create", "--allow", "10.0.0.0/8", "--allow", "api.example.com:443",
            "--secret", "TOKEN:api.example.com", "--secret", "OTHER",
            env={"TOKEN": "t0k", "OTHER": "o"})
        self.assertEqual(("", 0), (err, code))
        self.assertEqual({"ttl": 600, "network": {"allow": ["10.0.0.0/8", "api.example.com:443"]},
                          "secrets": {"TOKEN": {"value": "t0k", "hosts": ["api.example.com"]},
                                      "OTHER": "o"}}, self.last_body()[2])
        out, err, code = await self.sbx("create", "--network", "none")
        self.assertEqual({"ttl": 600, "network": "none"}, self.last_body()[2])
        out, err, code = await self.sbx("create", "--network", "open", "--allow", "10.0.0.1")
        self.assertNotEqual(0, code)
        self.assertIn("exclude", err)
        out, err, code = await self.sbx("create", "--secret", "UNSET_SECRET_VAR")
        self.assertNotEqual(0, code)
        self.assertIn("$UNSET_SECRET_VAR is not set", err)
