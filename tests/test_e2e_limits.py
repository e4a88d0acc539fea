"""
Integration tests of resource stats, the daemon-wide limits and the
runtime checks at start-up, against a real ``twistd -n sandboxd`` and real
containers.
"""

import asyncio
import json
import os
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from sandbox import connect_sandbox
from tests.daemon import Daemon, on_gvisor, runtime_daemon
from tests.dockerutil import require_docker

#: A process that keeps ~120 MiB resident until killed.
HOLD_MEMORY = (
    "python3 -c 'import time; b = bytearray(120 << 20); "
    "[b.__setitem__(i, 1) for i in range(0, len(b), 4096)]; print(\"held\", flush=True); "
    "time.sleep(600)'"
)


class StatsTests(SynchronousTestCase):
    """
    GET /sandboxes/{id}/stats, the SDK's stats() and ``sbx stats``.
    """

    runtime = "docker"

    def setUp(self):
        require_docker()
        self.daemon = runtime_daemon(self.runtime)

    def create(self):
        status, sandbox = self.daemon.request("POST", "/sandboxes", {})
        self.assertEqual(status, 201, sandbox)
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{sandbox['id']}")
        return sandbox["id"]

    def test_memory_usage_rises(self):
        """
        Every field is there; memory used rises by about what a process in
        the sandbox holds, within the limit; pids and network move too.
        """
        sandbox_id = self.create()

        async def scenario():
            async with await connect_sandbox(sandbox_id, endpoint=self.daemon.endpoint) as sbx:
                before = await sbx.stats()
                holder = await sbx.process.spawn(HOLD_MEMORY)
                async for event in holder:
                    if "held" in event.data:
                        break
                during = await sbx.stats()
                await holder.kill()
                return before, during

        before, during = asyncio.run(scenario())
        self.assertEqual(
            set(before),
            {"cpu_percent", "memory_usage_bytes", "memory_limit_bytes", "network_rx_bytes",
             "network_tx_bytes", "pids", "uptime_seconds"},
        )
        self.assertEqual(during["memory_limit_bytes"], 256 << 20)
        grown = during["memory_usage_bytes"] - before["memory_usage_bytes"]
        self.assertGreater(grown, 100 << 20, (before, during))
        self.assertLessEqual(during["memory_usage_bytes"], during["memory_limit_bytes"])
        self.assertGreater(during["pids"], before["pids"] - 1)
        self.assertGreaterEqual(during["pids"], 2)
        self.assertGreater(during["network_rx_bytes"], 0)
        self.assertGreater(during["network_tx_bytes"], 0)
        self.assertGreaterEqual(during["uptime_seconds"], before["uptime_seconds"])

    def test_sbx_stats(self):
        """
        ``sbx stats ID`` prints every field (sizes readable), ``--json`` the
        object; an unknown id is a one-line error.
        """
        sandbox_id = self.create()

        def sbx(*args):
            return subprocess.run(
                [sys.executable, "-m", "sbx.main", *args],
                capture_output=True, env=self.daemon.env, timeout=60,
            )

        done = sbx("stats", sandbox_id)
        self.assertEqual(done.returncode, 0, done.stderr)
        text = done.stdout.decode()
        for key in ("cpu_percent:", "memory_usage_bytes:", "memory_limit_bytes: 256",
                    "pids:", "uptime_seconds:"):
            self.assertIn(key, text)
        done = sbx("stats", "--json", sandbox_id)
        self.assertEqual(json.loads(done.stdout)["memory_limit_bytes"], 256 << 20)
        done = sbx("stats", "sbx-00000000")
        self.assertEqual(done.returncode, 1)
        self.assertIn(b"sbx-00000000 not found", done.stderr)


class LimitTests(SynchronousTestCase):
    """
    The create rate limit and the summed-memory cap, on a daemon of their
    own (no warm pool).
    """

    def test_rate_limit_and_capacity(self):
        """
        With limits.max_total_memory for two 256 MiB sandboxes, the third is
        a 503 AT_CAPACITY with Retry-After; the Unix socket (the operator)
        is never rate limited, while a TCP caller past
        limits.create_rate_limit creates a minute gets 429 RATE_LIMITED with
        Retry-After; freeing a sandbox makes room.
        """
        daemon = Daemon(
            min_base=0,
            pool_config="total_warm = 0\n",
            limits_config='create_rate_limit = 3\nmax_total_memory = "600m"\n',
        )
        daemon.start()
        self.addCleanup(daemon.stop)
        # With no warm pool, start() returns once the API answers, which is
        # before the manager has removed orphans: a create racing that
        # removal could lose its container.  Wait for the manager.
        _wait_for_log(daemon, "sandboxd ready")
        first = daemon.request("POST", "/sandboxes", {})
        self.assertEqual(first[0], 201, first)
        self.assertEqual(daemon.request("POST", "/sandboxes", {})[0], 201)
        status, body = daemon.request("POST", "/sandboxes", {})
        self.assertEqual((status, body["error"]["code"]), (503, "AT_CAPACITY"))
        self.assertIn("limits.max_total_memory", body["error"]["message"])
        self.assertEqual(daemon.last_headers.get("Retry-After"), "1")
        status, body = daemon.request("POST", "/sandboxes", {})
        self.assertEqual((status, body["error"]["code"]), (503, "AT_CAPACITY"))
        status, body = daemon.tcpRequest("POST", "/sandboxes")
        self.assertEqual((status, body["error"]["code"]), (503, "AT_CAPACITY"))
        self.assertEqual(daemon.request("DELETE", f"/sandboxes/{first[1]['id']}")[0], 204)
        self.assertEqual(daemon.tcpRequest("POST", "/sandboxes")[0], 201)
        status, body = daemon.tcpRequest("POST", "/sandboxes")
        self.assertEqual((status, body["error"]["code"]), (503, "AT_CAPACITY"))
        status, body = daemon.tcpRequest("POST", "/sandboxes")
        self.assertEqual((status, body["error"]["code"]), (429, "RATE_LIMITED"))
        status, body = daemon.request("POST", "/sandboxes", {})
        self.assertEqual((status, body["error"]["code"]), (503, "AT_CAPACITY"))


class StartupTests(SynchronousTestCase):
    """
    A profile naming a runtime this machine cannot serve stops the daemon
    at start-up with a message saying so.
    """

    def test_runtime_the_engine_lacks(self):
        """
        runtime = "firecracker" with no firecracker binary (none here) fails
        the start: twistd exits, and its log names what is missing.
        """
        require_docker()
        daemon = Daemon(
            min_base=0,
            extra_config='[pool.base.vm]\nruntime = "firecracker"\n'
                         '[firecracker]\nbinary_path = "firecracker-not-installed"\n'
                         'kernel_path = "/nonexistent/vmlinux"\n',
        )
        daemon.spawn()
        try:
            code = daemon.process.wait(60)
        except subprocess.TimeoutExpired:
            daemon.stop()
            self.fail(f"sandboxd kept running:\n{daemon.logTail()}")
        self.assertNotEqual(code, None)
        log = daemon.logTail()
        self.assertIn("sandboxd cannot start", log)
        self.assertIn("firecracker.binary_path 'firecracker-not-installed' is not installed", log)
        self.assertFalse(os.path.exists(daemon.socket) and _answers(daemon), log)


def _wait_for_log(daemon, text, patience=60):
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        with open(daemon.log, errors="replace") as f:
            if text in f.read():
                return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never logged:\n{daemon.logTail()}")


def _answers(daemon):
    try:
        daemon.request("GET", "/health")
    except OSError:
        return False
    return True


on_gvisor(globals(), StatsTests)
