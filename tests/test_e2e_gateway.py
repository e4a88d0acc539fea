"""
The signing gateway end to end: ``twistd -n sandboxd-gateway`` (TLS, from a
test CA) in front of a multi-tenant ``twistd -n sandboxd``.  An API key
creates a sandbox and runs a command in it over wss through the gateway; a
wrong key is 401; another key's tenant cannot see it; a caller cannot
claim another identity with its own headers.
"""

import asyncio
import base64
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from sandbox import Client, create_sandbox
from sandbox.errors import NotFoundError, SandboxError
from sandboxd.gateway.keys import key_digest
from tests.daemon import TWISTD, Daemon, free_port
from tests.tenancyutil import multi_tenant_config
from tests.tlsutil import make_test_ca


def start_gateway(directory, upstream_port, pems):
    """A running sandboxd-gateway; returns (process, port)."""
    port = free_port()
    key_file = os.path.join(directory, "gateway.key")
    with open(key_file, "w") as f:
        f.write(base64.b64encode(bytes(range(32))).decode())
    config = os.path.join(directory, "gateway.toml")
    with open(config, "w") as f:
        f.write(
            f'listen = "ssl:{port}:interface=127.0.0.1:privateKey={pems["server.key"]}'
            f':certKey={pems["server.pem"]}"\n'
            f'upstream = "http://127.0.0.1:{upstream_port}"\n'
            f'signing_key = "{key_file}"\n'
            f'[[keys]]\nsha256 = "{key_digest("team-a-key")}"\nidentity = "team-a"\n'
            "max_concurrent = 5\n"
            f'[[keys]]\nsha256 = "{key_digest("team-b-key")}"\nidentity = "team-b"\n')
    log = open(os.path.join(directory, "gateway.log"), "wb")
    process = subprocess.Popen(
        [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "sandboxd-gateway",
         "--config", config], stdout=log, stderr=subprocess.STDOUT, cwd=directory)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(open(log.name).read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the gateway did not listen in time")


class GatewayTests(SynchronousTestCase):
    """
    API key -> identity through the gateway, HTTP and WebSocket.
    """

    def setUp(self):
        self.daemon = Daemon(min_base=1, extra_config=multi_tenant_config())
        self.daemon.start()
        self.addCleanup(self.daemon.stop)
        self.pems = make_test_ca(self.daemon.dir)
        self.gateway, self.port = start_gateway(self.daemon.dir, self.daemon.port, self.pems)
        self.addCleanup(self._stopGateway)
        self.url = f"https://localhost:{self.port}"

    def _stopGateway(self):
        self.gateway.terminate()
        self.gateway.wait(30)

    def raw(self, method, path, key=None, headers=None, body=None):
        context = ssl.create_default_context(cafile=self.pems["ca.pem"])
        connection = http.client.HTTPSConnection("localhost", self.port, timeout=60,
                                                 context=context)
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def test_end_to_end(self):
        """
        With team A's key the SDK creates a sandbox and runs a command over
        wss through the gateway and reads its events over SSE through it
        (team-a's only); the daemon records it as team-a's; team B's key
        cannot see it.
        """

        async def go():
            async with Client(self.url, auth="team-a-key", ca_file=self.pems["ca.pem"]) as a:
                async with await create_sandbox(client=a, ttl=60) as sandbox:
                    result = await sandbox.process.exec_("echo through-the-gateway")
                    async with Client(self.url, auth="team-b-key",
                                      ca_file=self.pems["ca.pem"]) as b:
                        try:
                            await b.get(sandbox.id)
                        except NotFoundError as e:
                            hidden = e.code
                        else:
                            hidden = None
                        listed = await b.list()
                    status, recorded = self.daemon.request("GET", f"/sandboxes/{sandbox.id}")
                    streamed = []
                    events = a.events(after=0, reconnect=False)
                    try:
                        while sandbox.id not in {e.sandbox_id for e in streamed}:
                            streamed.append(await asyncio.wait_for(events.__anext__(), 30))
                    finally:
                        await events.aclose()
                    return result, hidden, listed, recorded, streamed

        result, hidden, listed, recorded, streamed = asyncio.run(go())
        self.assertEqual({e.identity for e in streamed}, {"team-a"})
        self.assertEqual((result.exit_code, result.stdout.strip()), (0, "through-the-gateway"))
        self.assertEqual(hidden, "SANDBOX_NOT_FOUND")
        self.assertEqual(listed, [])
        self.assertEqual(recorded["identity"], "team-a")

    def test_wrong_key(self):
        """
        No key: 401 API_KEY_MISSING; an unknown key: 401 API_KEY_INVALID
        (the SDK raises it with that code).
        """
        self.assertEqual(self.raw("GET", "/sandboxes")[1]["error"]["code"], "API_KEY_MISSING")
        status, body = self.raw("GET", "/sandboxes", key="nope")
        self.assertEqual((status, body["error"]["code"]), (401, "API_KEY_INVALID"))

        async def go():
            async with Client(self.url, auth="nope", ca_file=self.pems["ca.pem"]) as client:
                await client.list()

        with self.assertRaises(SandboxError) as caught:
            asyncio.run(go())
        self.assertEqual(caught.exception.code, "API_KEY_INVALID")

    def test_caller_headers_dropped(self):
        """
        A caller sending its own X-Sandbox-Identity or quota headers is
        still signed as its key's identity with its key's quotas.
        """
        status, created = self.raw(
            "POST", "/sandboxes", key="team-b-key", body=b"{}",
            headers={"X-Sandbox-Identity": "team-a", "X-Sandbox-Max-Concurrent": "0",
                     "Content-Type": "application/json"})
        self.assertEqual(status, 201, created)
        self.assertEqual(created["identity"], "team-b")
