"""
Secrets that stay out of the sandbox, end to end: a real daemon and
container (runc, and gVisor through L{on_gvisor}), test servers in a
network namespace the test made (L{tests.netnsutil}), and a tap on the
sandbox's own network interface.  The bound server receives the real value;
the sandbox's environment, its processes' environments and command lines,
its writable files and every frame on its interface hold only the
placeholder.
"""

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from sandbox import NetworkError, connect_sandbox
from tests.daemon import on_gvisor, runtime_daemon
from tests.dockerutil import require_docker
from tests.netnsutil import PORTS, shared_network

#: Writes every frame seen on the interfaces of the current network
#: namespace to argv[1]; prints "ready" once listening.
TAP = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
out = open(sys.argv[1], "wb", buffering=0)
print("ready", flush=True)
while True:
    out.write(s.recv(65535))
"""


#: A user process's request with the placeholder from its environment
#: (urllib honours http_proxy).
USER_FETCH = """
import os, urllib.request
request = urllib.request.Request("{url}",
                                 headers={{"Authorization": "Bearer " + os.environ["API_TOKEN"]}})
print(urllib.request.urlopen(request, timeout=10).read().decode())
"""


def run(coroutine):
    return asyncio.run(coroutine)


class Tap:
    """
    Captures the sandbox container's traffic from inside its network
    namespace (nsenter from the host): its agent link, its proxy requests,
    anything it sends.
    """

    def __init__(self, container):
        pid = require_docker().api.inspect_container(container)["State"]["Pid"]
        fd, self.path = tempfile.mkstemp(prefix="sbxtest-tap-")
        os.close(fd)
        self.process = subprocess.Popen(
            ["nsenter", "-t", str(pid), "-n", sys.executable, "-c", TAP, self.path],
            stdout=subprocess.PIPE)
        assert self.process.stdout.readline().strip() == b"ready"

    def stop(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        with open(self.path, "rb") as f:
            data = f.read()
        os.unlink(self.path)
        return data


class SecretTests(SynchronousTestCase):
    """
    One secret bound to the near server, sent through net.fetch.
    """

    runtime = "docker"

    def setUp(self):
        self.daemon = runtime_daemon(self.runtime)
        self.net = shared_network()

    def test_secret_reaches_only_its_host(self):
        """
        The bound server sees the real value in the header, from net.fetch
        and from a user process's plain-http request (through http_proxy);
        the other server (not bound) sees the placeholder; nothing in
        the sandbox (env, /proc/*/environ and cmdline, /root, /tmp) nor on
        its interface (the agent's traffic, the proxy hop) holds the value;
        GET /sandboxes shows the secret's name and never its value.
        """
        net = self.net
        value = "s3cr3t-" + os.urandom(12).hex()
        status, created = self.daemon.request("POST", "/sandboxes", {
            "ttl": 300,
            "secrets": {"API_TOKEN": {"value": value, "hosts": [net.near]}},
        })
        self.assertEqual(201, status, created)
        sandbox_id = created["id"]
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{sandbox_id}")
        self.assertEqual(["API_TOKEN"], created["secrets"])
        tap = Tap(f"sandboxd-{sandbox_id}")

        async def body():
            async with await connect_sandbox(sandbox_id, endpoint=self.daemon.endpoint) as sbx:
                placeholder = (await sbx.process.exec_(["printenv", "API_TOKEN"])).stdout.strip()
                bearer = {"Authorization": f"Bearer {placeholder}"}
                near = await sbx.net.fetch(f"http://{net.near}:{PORTS[0]}/", headers=bearer)
                far = await sbx.net.fetch(f"http://{net.far}:{PORTS[0]}/", headers=bearer)
                # A user process's plain-http request goes through http_proxy too.
                user = await sbx.process.exec_(["python3", "-c", USER_FETCH.format(
                    url=f"http://{net.near}:{PORTS[1]}/")])
                dump = await sbx.process.exec_(
                    ["sh", "-c", "env; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline;"
                     " grep -r -a . /root /tmp 2>/dev/null; true"], timeout=60)
                return (placeholder, near.text(), far.text(), user.stdout.strip(),
                        dump.stdout + dump.stderr)

        placeholder, near, far, user, dump = run(body())
        captured = tap.stop()
        self.assertTrue(placeholder.startswith("SBXSECRET_"), placeholder)
        self.assertEqual(f"{net.near}:{PORTS[0]}", near)
        self.assertEqual(f"{net.far}:{PORTS[0]}", far)
        self.assertEqual([f"Bearer {value}"], net.seen(net.near, PORTS[0])[-1:])
        self.assertEqual([f"Bearer {placeholder}"], net.seen(net.far, PORTS[0])[-1:])
        self.assertEqual(f"{net.near}:{PORTS[1]}", user)
        self.assertEqual([f"Bearer {value}"], net.seen(net.near, PORTS[1])[-1:])
        self.assertIn(placeholder, dump)
        self.assertNotIn(value, dump)
        # The tap saw the sandbox's requests (placeholder) and never the value.
        self.assertIn(placeholder.encode(), captured)
        self.assertNotIn(value.encode(), captured)
        for path in (f"/sandboxes/{sandbox_id}", "/sandboxes", "/events/history?limit=1000"):
            status, answer = self.daemon.request("GET", path)
            self.assertNotIn(value, repr(answer))
        with open(self.daemon.log, errors="replace") as f:
            self.assertNotIn(value, f.read())
        for name in ("sandboxd.db", "sandboxd.db-wal"):
            path = os.path.join(self.daemon.data_dir, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    self.assertNotIn(value.encode(), f.read())

    def test_proxy_obeys_the_policy(self):
        """
        Through the proxy, net.fetch still obeys the sandbox's network
        policy: the allowed server answers, the other is EGRESS_DENIED.
        """
        net = self.net
        status, created = self.daemon.request("POST", "/sandboxes", {
            "ttl": 300, "network": {"allow": [f"{net.near}:{PORTS[0]}"]},
            "secrets": {"T": "v"},
        })
        self.assertEqual(201, status, created)
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{created['id']}")

        async def body():
            async with await connect_sandbox(created["id"], endpoint=self.daemon.endpoint) as sbx:
                ok = await sbx.net.fetch(f"http://{net.near}:{PORTS[0]}/")
                with self.assertRaises(NetworkError) as caught:
                    await sbx.net.fetch(f"http://{net.far}:{PORTS[0]}/")
                return ok.text(), caught.exception.code

        text, code = run(body())
        self.assertEqual(f"{net.near}:{PORTS[0]}", text)
        self.assertEqual("EGRESS_DENIED", code)

    def test_bad_secrets_are_named(self):
        """
        A malformed ``secrets`` is a 400 INVALID_FIELD that never quotes the value.
        """
        status, body = self.daemon.request(
            "POST", "/sandboxes", {"secrets": {"A": "hunter2\r\nX: y"}})
        self.assertEqual(400, status, body)
        self.assertEqual("INVALID_FIELD", body["error"]["code"])
        self.assertNotIn("hunter2", repr(body))


on_gvisor(globals(), SecretTests)
