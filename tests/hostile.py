"""
What the hostile-code suite (tests/test_hostile.py) shares: a test case
with a daemon on its runtime, commands in sandboxes, the engine's view of
them, and the probes the attacks use.
"""

import asyncio
import socket
import textwrap
import time

from twisted.trial.unittest import SynchronousTestCase

from sandbox import connect_sandbox
from tests.daemon import runtime_daemon
from tests.dockerutil import require_docker

#: Where the agent's code lives in the image.
AGENT_DIR = "/usr/lib/python3/dist-packages/agent"

#: Python printing this sandbox's address on the bridge.
MY_ADDRESS = "import socket; print(socket.gethostbyname(socket.gethostname()))"


#: Python printing its effective capabilities and its no_new_privs flag.
REPORT_PRIVILEGES = """\
import ctypes, re
status = open("/proc/self/status").read()
print(re.search(r"CapEff:\\s+(\\w+)", status).group(1), ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))
"""


#: Four busy shell loops, for 20 s at most, in the background.
BUSY_LOOPS = "for i in 1 2 3 4; do timeout 20 sh -c 'while :; do :; done' >/dev/null 2>&1 & done"

#: Shell killing them.
KILL_BUSY_LOOPS = (
    "for p in $(grep -l -a '[w]hile :' /proc/[0-9]*/cmdline | cut -d/ -f3); do kill -9 $p; done"
)


def run(coroutine):
    return asyncio.run(coroutine)


def probe_connect(host, port, timeout=3):
    """
    Python source that tries a TCP connection and prints the outcome:
    "connected" or the error's name.
    """
    return textwrap.dedent(
        f"""
        import socket
        s = socket.socket()
        s.settimeout({timeout})
        try:
            s.connect(({host!r}, {port}))
            print("connected")
        except OSError as e:
            print(type(e).__name__, e.errno)
        """
    )


class HostileTestCase(SynchronousTestCase):
    """
    A shared daemon whose default profile runs on C{runtime}, and helpers
    to attack from inside its sandboxes.
    """

    runtime = "docker"

    def setUp(self):
        self.docker = require_docker()
        self.daemon = runtime_daemon(self.runtime)

    # Helpers

    def create(self, **body):
        # Attacks open several sessions one after the other: outlive each.
        body.setdefault("ttl", 600)
        status, sandbox = self.daemon.request("POST", "/sandboxes", body)
        self.assertEqual(status, 201, sandbox)
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{sandbox['id']}")
        return sandbox["id"]

    def sh(self, sandbox_id, cmd, timeout=120, **kwargs):
        """
        The ExecResult of ``cmd`` in the sandbox.
        """

        async def scenario():
            async with await connect_sandbox(sandbox_id, endpoint=self.daemon.endpoint) as sbx:
                return await asyncio.wait_for(sbx.process.exec_(cmd, **kwargs), timeout)

        return run(scenario())

    def py(self, sandbox_id, source, **kwargs):
        """
        The ExecResult of the Python ``source`` run in the sandbox.
        """
        run(self._write(sandbox_id, "/root/attack.py", textwrap.dedent(source)))
        return self.sh(sandbox_id, "python3 /root/attack.py", **kwargs)

    def address(self, sandbox_id):
        result = self.sh(sandbox_id, f'python3 -c "{MY_ADDRESS}"')
        address = result.stdout.strip()
        self.assertRegex(address, r"^\d+\.\d+\.\d+\.\d+$", result)
        return address

    def container(self, sandbox_id):
        """
        The engine's view of the sandbox's container.
        """
        found = self.docker.api.containers(
            all=True, filters={"name": f"^/sandboxd-{sandbox_id}$"}
        )
        self.assertEqual(len(found), 1, sandbox_id)
        return self.docker.api.inspect_container(found[0]["Id"])

    def gateway(self):
        """
        The host's address on the sandboxes' bridge.
        """
        network = self.docker.api.inspect_network("sandboxd-net")
        return network["IPAM"]["Config"][0]["Gateway"]

    def assertUnharmed(self, *bystanders):
        """
        The daemon answers and still creates sandboxes; every bystander
        sandbox still runs commands.
        """
        status, health = self.daemon.request("GET", "/health")
        self.assertEqual((status, health["status"]), (200, "ok"))
        for sandbox_id in bystanders:
            self.assertEqual(self.sh(sandbox_id, "echo alive").stdout, "alive\n", sandbox_id)
        fresh = self.create()
        self.assertEqual(self.sh(fresh, "echo fresh").stdout, "fresh\n")

    async def _write(self, sandbox_id, path, text):
        async with await connect_sandbox(sandbox_id, endpoint=self.daemon.endpoint) as sbx:
            await sbx.fs.write(path, text)

    def listening(self, host, port, patience=30):
        """
        Whether host:port accepts a connection from the host within
        ``patience`` seconds.
        """
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host, port), timeout=2):
                    return True
            except OSError:
                time.sleep(0.2)
        return False

    def gone(self, container, patience=60):
        """
        Whether the engine forgets the container within ``patience`` seconds
        (a deadline for a removal under way, not a measurement).
        """
        import docker.errors

        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            try:
                self.docker.api.inspect_container(container)
            except docker.errors.NotFound:
                return True
            time.sleep(0.2)
        return False
