"""
End-to-end tests: a real ``twistd -n sandboxd``, real containers, the real
agent, driven through the ``sbx`` CLI, the Python SDK and raw HTTP.

One daemon is shared by the tests of this module (started on first use,
stopped when the test process exits); tests that stop or break a daemon make
their own.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from agent import wire
from sandbox import (
    DaemonUnavailableError,
    NotFoundError,
    SandboxUnavailableError,
    create_sandbox,
)
from tests.daemon import Daemon, on_gvisor, runtime_daemon
from tests.dockerutil import require_docker
from tests.sdkwait import until_running



def run(coroutine):
    return asyncio.run(coroutine)


class E2ETestCase(SynchronousTestCase):
    """
    A shared daemon whose default profile runs on C{runtime} (runc here;
    the C{GVisor*} subclasses at the end of the module use gVisor).
    """

    runtime = "docker"

    def setUp(self):
        require_docker()
        self.daemon = runtime_daemon(self.runtime)

    def sbx(self, *args, stdin=None, env=None):
        """
        Run the sbx CLI against the daemon: (exit code, stdout, stderr).
        """
        done = subprocess.run(
            [sys.executable, "-m", "sbx.main", *args],
            input=stdin,
            capture_output=True,
            env=env or self.daemon.env,
            timeout=60,
        )
        return done.returncode, done.stdout, done.stderr

    def create(self, **body):
        # Tests open several sessions one after the other: outlive each.
        body.setdefault("ttl", 600)
        status, sandbox = self.daemon.request("POST", "/sandboxes", body)
        self.assertEqual(status, 201, sandbox)
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{sandbox['id']}")
        return sandbox


class CLITests(E2ETestCase):
    """
    The tour of the README through ``sbx``.
    """

    def test_create_exec_fs_ls_rm(self):
        """
        sbx create prints an id; exec prints the output and passes the exit
        code through; fs write/read round-trip stdin bytes; ls lists the
        sandbox (also as JSON); rm removes it.
        """
        code, out, err = self.sbx("create")
        self.assertEqual(code, 0, err)
        sandbox_id = out.decode().strip()
        self.assertRegex(sandbox_id, r"^sbx-[0-9a-f]{8}$")
        self.addCleanup(self.sbx, "rm", sandbox_id)

        self.assertEqual(self.sbx("exec", sandbox_id, "echo hello")[:2], (0, b"hello\n"))
        code, out, err = self.sbx("exec", sandbox_id, "echo oops >&2; exit 7")
        self.assertEqual((code, out, err), (7, b"", b"oops\n"))

        content = bytes(range(256)) * 1000
        code, _, err = self.sbx("fs", "write", sandbox_id, "/root/a.bin", stdin=content)
        self.assertEqual(code, 0, err)
        code, out, err = self.sbx("fs", "read", sandbox_id, "/root/a.bin")
        self.assertEqual((code, out), (0, content), err)

        code, out, _ = self.sbx("ls")
        self.assertIn(sandbox_id, out.decode())
        code, out, _ = self.sbx("ls", "--json")
        self.assertIn(sandbox_id, [s["id"] for s in json.loads(out)])

        self.assertEqual(self.sbx("rm", sandbox_id)[0], 0)
        status, _ = self.daemon.request("GET", f"/sandboxes/{sandbox_id}")
        self.assertEqual(status, 404)

    def test_rm_all(self):
        """
        sbx rm --all destroys every sandbox of the daemon.
        """
        for _ in range(2):
            self.assertEqual(self.sbx("create")[0], 0)
        self.assertEqual(self.sbx("rm", "--all")[0], 0)
        self.assertEqual(self.daemon.request("GET", "/sandboxes"), (200, []))

    def test_unknown_id_and_daemon_down(self):
        """
        An unknown id and an unreachable daemon are one-line errors with exit
        code 1.
        """
        code, _, err = self.sbx("exec", "sbx-00000000", "true")
        self.assertEqual(code, 1)
        self.assertIn(b"sbx-00000000 not found", err)
        env = dict(self.daemon.env, SANDBOX_ENDPOINT="unix:///nonexistent/sandboxd.sock")
        code, _, err = self.sbx("ls", env=env)
        self.assertEqual(code, 1)
        self.assertIn(b"/nonexistent/sandboxd.sock", err)
        self.assertEqual(err.count(b"\n"), 1, err)

    def test_update(self):
        """
        ``sbx update`` sets the ttl and labels (``--unlabel`` removes one);
        the SDK's ``set_ttl`` and ``update`` do the same through PATCH; an
        unknown id is a one-line error.
        """
        code, out, err = self.sbx("create", "--ttl", "30", "-l", "a=1", "-l", "b=2")
        self.assertEqual(code, 0, err)
        sandbox_id = out.decode().strip()
        self.addCleanup(self.sbx, "rm", sandbox_id)
        code, out, err = self.sbx("update", sandbox_id, "--ttl", "900", "-l", "c=3",
                                  "--unlabel", "a", "--json")
        self.assertEqual(code, 0, err)
        info = json.loads(out)
        self.assertEqual((info["ttl"], info["labels"]), (900, {"b": "2", "c": "3"}))
        code, _, err = self.sbx("update", "sbx-00000000", "--ttl", "5")
        self.assertEqual((code, err.decode().strip()),
                         (1, "sbx: error: sandbox sbx-00000000 not found"))

        async def scenario():
            from sandbox import connect_sandbox

            async with await connect_sandbox(sandbox_id, endpoint=self.daemon.endpoint) as sbx:
                await sbx.set_ttl(1200)
                info = await sbx.update(labels={"b": None})
                self.assertEqual((info["ttl"], info["labels"]), (1200, {"c": "3"}))
                self.assertEqual((await sbx.refresh())["ttl"], 1200)

        run(scenario())

    def test_health_and_version(self):
        """
        sbx health reports the pool; sbx version the client and server
        versions.
        """
        code, out, _ = self.sbx("health", "--json")
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out)["status"], "ok")
        code, out, _ = self.sbx("version")
        self.assertEqual(code, 0)
        self.assertEqual(out.decode().count("0.1.0"), 2, out)


class SDKTests(E2ETestCase):
    """
    The Python SDK against real sandboxes.
    """

    def test_readme_snippet(self):
        """
        Write a Python file, run it, stream output that arrives over time.
        """

        async def scenario():
            async with await create_sandbox(endpoint=self.daemon.endpoint) as sbx:
                await sbx.fs.write("/root/main.py", "print('hello')")
                result = await sbx.process.exec_("python3 /root/main.py")
                self.assertEqual((result.stdout, result.exit_code), ("hello\n", 0))
                handle = await sbx.process.stream_exec(
                    "for i in 1 2 3; do echo $i; sleep 0.2; done"
                )
                seen = []
                loop = asyncio.get_running_loop()
                async for event in handle:
                    seen.append((loop.time(), event.channel, event.data))
                self.assertEqual(await handle.exit_code(), 0)
                await sbx.destroy()
                return seen

        seen = run(scenario())
        self.assertEqual([d for _, _, d in seen], ["1\n", "2\n", "3\n"])
        self.assertEqual({c for _, c, _ in seen}, {"stdout"})
        # Chunks came as produced, not all at the end.
        self.assertGreater(seen[-1][0] - seen[0][0], 0.3)

    def test_warm_and_cold(self):
        """
        A default create is served from the warm pool; a create with another
        memory size is a cold start with that limit applied.
        """
        self.daemon.waitReady(60)
        warm = self.create()
        self.assertEqual(warm["method"], "warm")
        cold = self.create(memory="300m")
        self.assertEqual((cold["method"], cold["memory"]), ("cold", 300 << 20))

        async def limit():
            from sandbox import connect_sandbox

            async with await connect_sandbox(cold["id"], endpoint=self.daemon.endpoint) as sbx:
                # cgroup v2, else v1; gVisor shows no cgroups but sizes
                # its /proc/meminfo to the limit.
                return (await sbx.process.exec_(
                    "cat /sys/fs/cgroup/memory.max 2>/dev/null"
                    " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
                    " || echo $(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) * 1024 ))"
                )).stdout

        self.assertEqual(run(limit()).strip(), str(300 << 20))

    def test_session_fails_when_destroyed(self):
        """
        A call pending when the sandbox is destroyed fails at once with
        SandboxUnavailableError instead of hanging.
        """

        async def scenario():
            sbx = await create_sandbox(endpoint=self.daemon.endpoint)
            pending = asyncio.ensure_future(sbx.process.exec_("sleep 30"))
            await until_running(sbx, "sleep 30")
            status, _ = await asyncio.to_thread(
                self.daemon.request, "DELETE", f"/sandboxes/{sbx.id}"
            )
            self.assertEqual(status, 204)
            with self.assertRaises(SandboxUnavailableError):
                await asyncio.wait_for(pending, 5)
            await sbx.close()

        run(scenario())

    def test_destroy_over_session(self):
        """
        ``destroy()`` goes over the session, not HTTP (the client's DELETE
        is made to fail): the sandbox is gone from the API with a
        ``sandbox.destroyed`` event (reason ``DELETE``), and another
        session's pending call fails at once.
        """
        from sandbox import Client, connect_sandbox

        async def scenario():
            async with Client(self.daemon.endpoint) as client:
                async def no_delete(sandbox_id):
                    raise AssertionError("destroy() sent DELETE")

                sbx = await create_sandbox(client=client, ttl=60)
                client.destroy = no_delete
                other = await connect_sandbox(sbx.id, endpoint=self.daemon.endpoint)
                pending = asyncio.ensure_future(other.process.exec_("sleep 30"))
                await until_running(other, "sleep 30")
                await sbx.destroy()
                with self.assertRaises(SandboxUnavailableError):
                    await asyncio.wait_for(pending, 5)
                await other.close()
                return sbx.id, sbx.closed

        sandbox_id, closed = run(scenario())
        self.assertTrue(closed)
        status, _ = self.daemon.request("GET", f"/sandboxes/{sandbox_id}")
        self.assertEqual(status, 404)
        status, events = self.daemon.request("GET", f"/events/history?sandbox={sandbox_id}")
        self.assertEqual(status, 200, events)
        destroyed = [e for e in events if e["type"] == "sandbox.destroyed"]
        self.assertEqual([e["data"].get("reason") for e in destroyed], ["DELETE"], events)

    def test_errors_are_typed(self):
        """
        Unknown sandboxes, missing files and an absent daemon raise the SDK's
        typed errors.
        """

        async def scenario():
            from sandbox import connect_sandbox

            with self.assertRaises(NotFoundError):
                await connect_sandbox("sbx-00000000", endpoint=self.daemon.endpoint)
            async with await create_sandbox(endpoint=self.daemon.endpoint) as sbx:
                with self.assertRaises(NotFoundError) as caught:
                    await sbx.fs.read("/root/missing")
                self.assertEqual(caught.exception.code, "ENOENT")
                await sbx.destroy()
            with self.assertRaises(DaemonUnavailableError):
                await create_sandbox(endpoint="unix:///nonexistent.sock")

        run(scenario())


class HTTPTests(E2ETestCase):
    """
    Raw HTTP against the real daemon.
    """

    def test_errors_and_tcp(self):
        """
        Bad bodies and unknown ids get named errors; the TCP listener serves
        the same API.
        """
        status, body = self.daemon.request("POST", "/sandboxes", {"memory": "lots"})
        self.assertEqual((status, body["error"]["code"]), (400, "INVALID_FIELD"))
        status, body = self.daemon.request("DELETE", "/sandboxes/sbx-00000000")
        self.assertEqual((status, body["error"]["code"]), (404, "SANDBOX_NOT_FOUND"))
        status, body = self.daemon.tcpRequest("GET", "/health")
        self.assertEqual((status, body["status"]), (200, "ok"))

    def test_labels_filter(self):
        """
        GET /sandboxes?label=k:v keeps only the sandboxes having that label.
        """
        a = self.create(labels={"team": "red"})
        self.create(labels={"team": "blue"})
        status, listed = self.daemon.request("GET", "/sandboxes?label=team:red")
        self.assertEqual([s["id"] for s in listed], [a["id"]])


class IsolationTests(E2ETestCase):
    """
    What a sandbox's processes cannot do, proven by trying it.
    """

    def execIn(self, sandbox_id, cmd):
        async def scenario():
            from sandbox import connect_sandbox

            async with await connect_sandbox(sandbox_id, endpoint=self.daemon.endpoint) as sbx:
                return await sbx.process.exec_(cmd)

        return run(scenario())

    def test_writes_only_tmp_and_root(self):
        """
        The root filesystem is read-only; /tmp and /root are writable.
        """
        sandbox = self.create()
        for path in ("/etc/x", "/usr/x", "/x", "/usr/lib/python3/dist-packages/agent/x.py"):
            result = self.execIn(sandbox["id"], f"touch {path}")
            self.assertNotEqual(result.exit_code, 0, path)
            self.assertIn("Read-only file system", result.stderr)
        result = self.execIn(sandbox["id"], "touch /tmp/x /root/x && echo ok")
        self.assertEqual(result.stdout, "ok\n")

    def test_no_capabilities(self):
        """
        Processes have no capabilities at all and cannot gain privileges
        (no_new_privs, read with prctl: gVisor's /proc/self/status lacks the
        NoNewPrivs line).
        """
        sandbox = self.create()
        result = self.execIn(
            sandbox["id"], "grep -E '^(CapEff|CapPrm|CapBnd)' /proc/self/status"
        )
        fields = dict(line.split(":\t") for line in result.stdout.splitlines())
        self.assertEqual(
            fields,
            {"CapPrm": "0000000000000000", "CapEff": "0000000000000000",
             "CapBnd": "0000000000000000"},
        )
        result = self.execIn(
            sandbox["id"],
            "python3 -c 'import ctypes; print(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))'",
        )
        self.assertEqual(result.stdout, "1\n", result.stderr)  # PR_GET_NO_NEW_PRIVS
        result = self.execIn(sandbox["id"], "mount -t tmpfs none /mnt")
        self.assertNotEqual(result.exit_code, 0)

    def test_secret_is_unreadable(self):
        """
        The agent's secret is neither in a process's environment nor in the
        agent processes' /proc entries: unreadable under runc (the agent is
        not dumpable), scrubbed from the environment block under gVisor
        (whose /proc shows it to the sandbox's processes).
        """
        sandbox = self.create()
        result = self.execIn(sandbox["id"], "env")
        self.assertNotIn("SANDBOX_AGENT_SECRET", result.stdout)
        self.assertEqual(result.exit_code, 0)
        agents = self.execIn(
            sandbox["id"], "grep -l -a '[m].agent' /proc/[0-9]*/cmdline | cut -d/ -f3"
        ).stdout.split()
        self.assertIn("1", agents)
        self.assertGreaterEqual(len(agents), 2, agents)  # init and server
        for pid in agents:
            result = self.execIn(sandbox["id"], f"cat /proc/{pid}/environ | tr '\\0' '\\n'")
            self.assertNotRegex(result.stdout, "[0-9a-f]{64}", pid)
            if self.runtime == "docker":
                self.assertIn("Permission denied", result.stderr, pid)

    def test_sandboxes_cannot_reach_each_other(self):
        """
        From sandbox A, sandbox B's agent port does not answer, while the
        host (the daemon's side of the bridge) reaches it.
        """
        a = self.create()
        b = self.create()
        address = self.execIn(
            b["id"],
            "python3 -c \"import socket; print(socket.gethostbyname(socket.gethostname()))\"",
        ).stdout.strip()
        self.assertRegex(address, r"^\d+\.\d+\.\d+\.\d+$")
        with socket.create_connection((address, 7070), timeout=5) as s:
            s.settimeout(5)
            framer = wire.Framer()
            frames = []
            while not frames:
                frames = framer.feed(s.recv(4096))
            self.assertIs(frames[0].type, wire.FrameType.HELLO)
        probe = (
            "import socket\n"
            "s = socket.socket(); s.settimeout(2)\n"
            f"print(s.connect_ex(('{address}', 7070)))\n"
        )
        result = self.execIn(a["id"], f"python3 -c \"{probe}\"")
        self.assertNotEqual(result.stdout.strip(), "0", result)
        self.assertEqual(result.exit_code, 0, result.stderr)


class LifecycleTests(SynchronousTestCase):
    """
    A daemon's own start and stop.
    """

    def test_stop_removes_its_containers(self):
        """
        Stopping the daemon destroys its warm and running sandboxes; no
        container labelled with its owner remains.
        """
        client = require_docker()
        daemon = Daemon(min_base=1)
        daemon.start()
        try:
            status, _ = daemon.request("POST", "/sandboxes", {})
            self.assertEqual(status, 201)
            daemon.start()  # returns once the pool has refilled
            owner = os.path.abspath(os.path.join(daemon.dir, "data"))
            mine = client.api.containers(all=True, filters={"label": f"sandboxd.owner={owner}"})
            self.assertGreaterEqual(len(mine), 2)
        finally:
            # twistd exits by re-raising the SIGTERM it handled.
            self.assertIn(daemon.stop(), (0, -signal.SIGTERM), daemon.logTail())
        mine = client.api.containers(all=True, filters={"label": f"sandboxd.owner={owner}"})
        self.assertEqual(mine, [])

    def test_stop_during_refill_leaves_nothing(self):
        """
        Stopping the daemon while a warm-pool refill is booting waits for
        that boot and removes its container too.
        """
        client = require_docker()
        daemon = Daemon(min_base=2)
        daemon.start()
        owner = os.path.abspath(os.path.join(daemon.dir, "data"))
        try:
            for _ in range(2):
                status, _ = daemon.request("POST", "/sandboxes", {})
                self.assertEqual(status, 201)
            # The refill starts after the pool's refill delay (docs/pool.md).
            deadline = time.monotonic() + 10
            starting = 0
            while not starting and time.monotonic() < deadline:
                _, health = daemon.request("GET", "/health")
                starting = health["pool"]["default"]["starting"]
                time.sleep(0.01)
            self.assertGreater(starting, 0)
        finally:
            self.assertIn(daemon.stop(), (0, -signal.SIGTERM), daemon.logTail())
        mine = client.api.containers(all=True, filters={"label": f"sandboxd.owner={owner}"})
        self.assertEqual(mine, [])

    def test_bad_config_fails_start(self):
        """
        A config with an unknown key stops twistd with a message naming it.
        """
        daemon = Daemon()
        with open(daemon.config, "a") as f:
            f.write("[nonsense]\nkey = 1\n")
        done = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "sandboxd", "--config", daemon.config],
            capture_output=True, timeout=60,
        )
        self.assertNotEqual(done.returncode, 0)
        self.assertIn(b"nonsense", done.stdout + done.stderr)


on_gvisor(globals(), CLITests, SDKTests, HTTPTests, IsolationTests)
