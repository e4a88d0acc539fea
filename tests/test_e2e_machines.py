"""
Integration tests of sandboxes that live like machines (docs/lifecycle.md):
a sandbox paused and resumed keeps its processes and memory, uses no CPU
while paused, refuses calls with SANDBOX_PAUSED, and comes back paused after
a daemon killed with SIGKILL restarts.  Real dockerd, real containers (runc
and gVisor), a real daemon process and its SQLite file.
"""

import asyncio
import time

from twisted.trial.unittest import TestCase

from tests.daemon import NO_RATE_LIMIT, Daemon, on_gvisor
from tests.dockerutil import require_docker

#: A shell counting in its own memory, writing the count (and its pid) out
#: every 2000 steps with builtins only: a process that restarted would start
#: again from 0.
COUNTER = ("i=0; while :; do i=$((i+1)); if [ $((i % 2000)) = 0 ]; then"
           " echo \"$$ $i\" > /tmp/count; fi; done")


def run(coroutine):
    return asyncio.run(coroutine)


class PauseTests(TestCase):
    runtime = "docker"

    def setUp(self):
        require_docker()
        self.daemon = Daemon(min_base=0, runtime=self.runtime,
                             limits_config=f"{NO_RATE_LIMIT}\n")
        self.daemon.start()
        self.addCleanup(self.daemon.stop)

    def request(self, method, path, body=None):
        return self.daemon.request(method, path, body)

    def waitFor(self, predicate, timeout=30, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        self.fail(f"{what}: not true within {timeout}s\n{self.daemon.logTail(20)}")

    async def count(self, sbx):
        """
        (pid, count) of the counting shell, once it has written one.
        """
        for _ in range(300):
            result = await sbx.process.exec_("cat /tmp/count 2>/dev/null || true")
            fields = result.stdout.split()
            if len(fields) == 2:
                return int(fields[0]), int(fields[1])
            await asyncio.sleep(0.1)
        self.fail("the counter never wrote its count")

    def cpuWhilePaused(self, sandbox_id):
        """
        The engine's CPU rate of the sandbox over one stats cycle.
        """
        status, stats = self.request("GET", f"/sandboxes/{sandbox_id}/stats")
        self.assertEqual(status, 200, stats)
        return stats["cpu_percent"]

    def test_pause_resume_and_restart(self):
        """
        A counting process is paused (state ``paused``, stats near zero CPU,
        a call on the open session and a new session both refused with
        SANDBOX_PAUSED), resumed, and counts on from where it was in the
        same process; paused again and the daemon killed with SIGKILL and
        restarted, the sandbox is listed paused, and resumed it counts on
        again; the events say paused and resumed.
        """
        from sandbox import SandboxPausedError, connect_sandbox, create_sandbox

        async def first():
            async with await create_sandbox(endpoint=self.daemon.endpoint, ttl=300) as sbx:
                await sbx.process.exec_(
                    f"setsid sh -c '{COUNTER}' </dev/null >/dev/null 2>&1 &")
                pid, before = await self.count(sbx)
                info = await sbx.pause()
                self.assertEqual(info["state"], "paused")
                with self.assertRaises(SandboxPausedError):
                    await sbx.process.exec_("true")
                with self.assertRaises(SandboxPausedError):
                    await connect_sandbox(sbx.id, endpoint=self.daemon.endpoint)
                paused_cpu = [self.cpuWhilePaused(sbx.id) for _ in range(3)]
                info = await sbx.resume()
                self.assertEqual(info["state"], "running")
                again, after = await self.count(sbx)
                self.assertEqual(again, pid)
                self.assertGreaterEqual(after, before)
                later = await self.waitForMore(sbx, after)
                await sbx.pause()
                return sbx.id, pid, later, paused_cpu

        sandbox_id, pid, before, paused_cpu = run(first())
        # Frozen: the engine sees (next to) no CPU used over each cycle.
        self.assertLess(max(paused_cpu), 1.0, paused_cpu)
        self.daemon.kill()
        self.daemon.spawn()
        self.daemon.waitReady(90)
        # Listed once the restarted daemon has adopted what it recorded.
        self.waitFor(lambda: self.request("GET", "/sandboxes")[1], what="adoption")
        status, info = self.request("GET", f"/sandboxes/{sandbox_id}")
        self.assertEqual((status, info.get("state")), (200, "paused"), self.daemon.logTail(40))
        status, info = self.request("POST", f"/sandboxes/{sandbox_id}/resume")
        self.assertEqual((status, info["state"]), (200, "disconnected"), info)

        async def second():
            async with await connect_sandbox(sandbox_id, endpoint=self.daemon.endpoint) as sbx:
                again, after = await self.count(sbx)
                self.assertEqual(again, pid)
                self.assertGreaterEqual(after, before)
                await self.waitForMore(sbx, after)

        run(second())
        status, events = self.request("GET", f"/events/history?sandbox={sandbox_id}")
        types = [e["type"] for e in events]
        self.assertEqual(types.count("sandbox.paused"), 2, types)
        self.assertEqual(types.count("sandbox.resumed"), 2, types)
        self.assertNotIn("sandbox.failed", types)

    async def waitForMore(self, sbx, count):
        """
        The counter's next count above ``count`` (it runs).
        """
        for _ in range(300):
            _, now = await self.count(sbx)
            if now > count:
                return now
            await asyncio.sleep(0.1)
        self.fail(f"the counter stayed at {count}")

    def test_errors(self):
        """
        Pausing or resuming an unknown sandbox is 404; resuming a running one
        and pausing a paused one answer 200 and change nothing; a paused
        sandbox can be destroyed.
        """
        status, body = self.request("POST", "/sandboxes/sbx-00000000/pause")
        self.assertEqual((status, body["error"]["code"]), (404, "SANDBOX_NOT_FOUND"))
        status, sandbox = self.request("POST", "/sandboxes", {"ttl": 60})
        self.assertEqual(status, 201, sandbox)
        path = f"/sandboxes/{sandbox['id']}"
        for action, state in (("resume", "running"), ("pause", "paused"), ("pause", "paused")):
            status, body = self.request("POST", f"{path}/{action}")
            self.assertEqual((status, body.get("state")), (200, state), body)
        self.assertEqual(self.request("DELETE", path)[0], 204)
        self.waitFor(lambda: not self.daemon.containers(sandbox["id"]),
                     what="the paused container removed")


on_gvisor(globals(), PauseTests)
