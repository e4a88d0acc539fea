"""
Integration tests of sandboxes that live like machines (docs/lifecycle.md):
a sandbox paused and resumed keeps its processes and memory, uses no CPU
while paused, refuses calls with SANDBOX_PAUSED, and comes back paused after
a daemon killed with SIGKILL restarts; volumes keep data across sandboxes
and restarts, hold their size cap, and are each tenant's own.  Real dockerd, real containers (runc
and gVisor), a real daemon process and its SQLite file.
"""

import asyncio
import os
import time

from twisted.trial.unittest import TestCase

from tests.daemon import NO_RATE_LIMIT, Daemon, on_gvisor
from tests.dockerutil import require_docker
from tests.tenancyutil import multi_tenant_config, signed_request

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


class VolumeTestCase(TestCase):
    """
    Volumes on a multi-tenant daemon: the operator (Unix socket) drives the
    data tests, tenants sign their requests over TCP.
    """

    runtime = "docker"

    def setUp(self):
        require_docker()
        self.daemon = Daemon(min_base=0, runtime=self.runtime,
                             limits_config=f'{NO_RATE_LIMIT}\nmax_volume_size = "64m"\n',
                             extra_config=multi_tenant_config())
        self.daemon.start()
        self.addCleanup(self.daemon.stop)

    def request(self, method, path, body=None):
        return self.daemon.request(method, path, body)

    def volumeDirs(self):
        root = os.path.join(self.daemon.data_dir, "volumes")
        return os.listdir(root) if os.path.isdir(root) else []



class VolumeTests(VolumeTestCase):
    def test_data_outlives_sandboxes(self):
        """
        Written by sandbox A, whose writes past the size cap fail with
        ENOSPC and whose volume cannot be deleted while it runs (409
        VOLUME_IN_USE); A destroyed, B mounts it read-only and finds the
        data (and cannot write); after a daemon killed with SIGKILL restarts,
        the volume is listed and its data there; deleted, its host
        directory is gone.
        """
        from sandbox import FileError, create_sandbox

        status, volume = self.request("POST", "/volumes", {"name": "work", "size": "16m"})
        self.assertEqual(status, 201, volume)
        self.assertEqual((volume["name"], volume["size"], volume["used_by"]),
                         ("work", 16 << 20, []))
        endpoint = self.daemon.endpoint

        async def writer():
            async with await create_sandbox(endpoint=endpoint, ttl=60,
                                            volumes=[("work", "/data")]) as sbx:
                await sbx.fs.write("/data/hello", b"kept")
                full = await sbx.process.exec_(
                    "dd if=/dev/zero of=/data/big bs=1M count=32 2>&1")
                status, body = self.request("DELETE", "/volumes/work")
                users = self.request("GET", "/volumes")[1][0]["used_by"]
                await sbx.destroy()
                return sbx.id, full, status, body, users

        a_id, full, status, body, users = run(writer())
        self.assertNotEqual(full.exit_code, 0)
        self.assertIn("No space left on device", full.stdout)
        self.assertEqual((status, body["error"]["code"]), (409, "VOLUME_IN_USE"))
        self.assertEqual(users, [a_id])

        async def reader(path):
            async with await create_sandbox(
                    endpoint=endpoint, ttl=60,
                    volumes=[{"name": "work", "path": path, "read_only": True}]) as sbx:
                data = await sbx.fs.read(f"{path}/hello")
                with self.assertRaises(FileError) as refused:
                    await sbx.fs.write(f"{path}/more", b"x")
                await sbx.destroy()
                return data, refused.exception.code

        self.assertEqual(run(reader("/mnt/work")), (b"kept", "EROFS"))
        self.daemon.kill()
        self.daemon.spawn()
        self.daemon.waitReady(90)
        self.assertEqual([v["name"] for v in self.request("GET", "/volumes")[1]], ["work"])
        self.assertEqual(run(reader("/srv/again")), (b"kept", "EROFS"))
        self.assertEqual(len(self.volumeDirs()), 1)
        self.assertEqual(self.request("DELETE", "/volumes/work")[0], 204)
        self.assertEqual(self.volumeDirs(), [])
        self.assertEqual(self.request("GET", "/volumes")[1], [])



class VolumeAPITests(VolumeTestCase):
    def test_tenants(self):
        """
        Tenant B cannot see, mount or delete tenant A's volume (each answer
        is VOLUME_NOT_FOUND, as for no volume at all); B's volume of the same
        name is its own; the operator lists both with their identities.
        """
        def call(identity, method, target, body=None):
            return signed_request(self.daemon.port, method, target, body, identity=identity,
                                  timeout=self.daemon.request_timeout)[:2]

        status, made = call("tenant-a", "POST", "/volumes", {"name": "notes", "size": "8m"})
        self.assertEqual((status, made["identity"]), (201, "tenant-a"), made)
        self.assertEqual(call("tenant-b", "GET", "/volumes"), (200, []))
        status, body = call("tenant-b", "POST", "/sandboxes",
                            {"volumes": [{"name": "notes", "path": "/data"}]})
        self.assertEqual((status, body["error"]["code"]), (404, "VOLUME_NOT_FOUND"))
        status, body = call("tenant-b", "DELETE", "/volumes/notes")
        self.assertEqual((status, body["error"]["code"]), (404, "VOLUME_NOT_FOUND"))
        self.assertEqual(call("tenant-b", "POST", "/volumes",
                              {"name": "notes", "size": "8m"})[0], 201)
        listed = self.request("GET", "/volumes")[1]
        self.assertEqual(sorted((v["identity"], v["name"]) for v in listed),
                         [("tenant-a", "notes"), ("tenant-b", "notes")])
        self.assertEqual(call("tenant-a", "DELETE", "/volumes/notes")[0], 204)
        self.assertEqual([v["identity"] for v in self.request("GET", "/volumes")[1]],
                         ["tenant-b"])
        self.assertEqual(call("tenant-b", "DELETE", "/volumes/notes")[0], 204)

    def test_errors(self):
        """
        Bad names, sizes and mounts are 400s naming the field, a second
        volume of a name 409 VOLUME_EXISTS, an unknown one 404; nothing is
        left behind by any of them.
        """
        for body, code in [({"name": "Bad Name", "size": "8m"}, "INVALID_FIELD"),
                           ({"name": "x"}, "INVALID_FIELD"),
                           ({"name": "x", "size": "1k"}, "INVALID_FIELD"),
                           ({"name": "x", "size": "1g"}, "LIMIT_EXCEEDED"),
                           ({"name": "x", "size": "8m", "extra": 1}, "INVALID_FIELD")]:
            status, answer = self.request("POST", "/volumes", body)
            self.assertEqual((status, answer["error"]["code"]), (400, code), body)
        self.assertEqual(self.request("POST", "/volumes", {"name": "v", "size": "8m"})[0], 201)
        status, answer = self.request("POST", "/volumes", {"name": "v", "size": "8m"})
        self.assertEqual((status, answer["error"]["code"]), (409, "VOLUME_EXISTS"))
        for mounts in ([{"name": "v", "path": "relative"}], [{"name": "v", "path": "/etc/x"}],
                       [{"name": "v", "path": "/a/../b"}], [{"name": "v", "path": "/root"}],
                       [{"name": "v", "path": "/a"}, {"name": "v", "path": "/a"}]):
            status, answer = self.request("POST", "/sandboxes", {"volumes": mounts})
            self.assertEqual((status, answer["error"]["code"]), (400, "INVALID_FIELD"), mounts)
        status, answer = self.request("POST", "/sandboxes",
                                      {"volumes": [{"name": "nope", "path": "/data"}]})
        self.assertEqual((status, answer["error"]["code"]), (404, "VOLUME_NOT_FOUND"))
        status, answer = self.request("DELETE", "/volumes/nope")
        self.assertEqual((status, answer["error"]["code"]), (404, "VOLUME_NOT_FOUND"))
        self.assertEqual(self.request("GET", "/sandboxes")[1], [])
        self.assertEqual(self.request("DELETE", "/volumes/v")[0], 204)
        self.assertEqual(self.volumeDirs(), [])


on_gvisor(globals(), VolumeTests)
