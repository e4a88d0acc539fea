"""
Integration tests of the sandbox capabilities (fs, env, process, net,
watch) through the Python SDK and ``sbx``, against a real ``twistd -n
sandboxd``, real containers and the real agent.

One daemon is shared by the tests of this module (started on first use,
stopped when the test process exits).
"""

import asyncio
import atexit
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from sandbox import FileError, PathNotFoundError, create_sandbox
from tests.daemon import Daemon
from tests.dockerutil import require_docker

_shared = None


def shared_daemon():
    global _shared
    if _shared is None:
        daemon = Daemon(min_base=2)
        daemon.start()
        atexit.register(daemon.stop)
        _shared = daemon
    return _shared


class AgentE2ETestCase(SynchronousTestCase):
    """
    A shared daemon; ``scenario(coroutine_function)`` runs it with a fresh
    sandbox (destroyed afterwards).
    """

    def setUp(self):
        require_docker()
        self.daemon = shared_daemon()

    def scenario(self, body):
        async def run():
            sbx = await create_sandbox(endpoint=self.daemon.endpoint)
            try:
                return await asyncio.wait_for(body(sbx), 120)
            finally:
                try:
                    await sbx.destroy()
                except Exception:
                    await sbx.close()

        return asyncio.run(run())

    def sbx(self, *args, stdin=None, timeout=60):
        """
        Run the sbx CLI against the daemon: (exit code, stdout, stderr).
        """
        done = subprocess.run(
            [sys.executable, "-m", "sbx.main", *args],
            input=stdin,
            capture_output=True,
            env=self.daemon.env,
            timeout=timeout,
        )
        return done.returncode, done.stdout, done.stderr

    def create(self):
        status, sandbox = self.daemon.request("POST", "/sandboxes", {})
        self.assertEqual(status, 201, sandbox)
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{sandbox['id']}")
        return sandbox["id"]


class FilesystemTests(AgentE2ETestCase):
    """
    fs.* through the SDK in a real sandbox.
    """

    def test_write_modes_stat_list(self):
        """
        write creates with a mode, replaces, appends; stat and list (with
        depth) describe the result.
        """

        async def body(sbx):
            await sbx.fs.write("/root/f.sh", "#!/bin/sh\necho hi\n", mode=0o755)
            info = await sbx.fs.stat("/root/f.sh")
            self.assertEqual((info.type, info.size, info.mode), ("file", 18, 0o755))
            self.assertEqual((await sbx.process.exec_("/root/f.sh")).stdout, "hi\n")
            await sbx.fs.write("/root/log", "a")
            await sbx.fs.write("/root/log", "b", append=True)
            self.assertEqual(await sbx.fs.read("/root/log"), b"ab")
            await sbx.fs.write("/root/log", "c")
            self.assertEqual(await sbx.fs.read("/root/log"), b"c")
            await sbx.fs.mkdir("/root/d/e/f", parents=True)
            await sbx.fs.write("/root/d/e/x", b"12345")
            entries = await sbx.fs.list("/root/d", depth=2)
            self.assertEqual([e.path for e in entries], ["/root/d/e", "/root/d/e/f", "/root/d/e/x"])
            self.assertEqual([e.type for e in entries], ["dir", "dir", "file"])
            self.assertEqual(entries[2].size, 5)
            self.assertEqual([e.name for e in await sbx.fs.list("/root/d")], ["e"])

        self.scenario(body)

    def test_mkdir_remove_rename(self):
        """
        mkdir, rename (also from /root to /tmp) and recursive remove act in
        the sandbox; each error is named and carries the path.
        """

        async def body(sbx):
            self.assertEqual(await sbx.fs.mkdir("/root/m"), "/root/m")
            with self.assertRaises(FileError) as caught:
                await sbx.fs.mkdir("/root/m")
            self.assertEqual((caught.exception.code, caught.exception.path), ("EEXIST", "/root/m"))
            await sbx.fs.write("/root/m/f", "data")
            with self.assertRaises(FileError) as caught:
                await sbx.fs.remove("/root/m")
            self.assertEqual(caught.exception.code, "ENOTEMPTY")
            await sbx.fs.rename("/root/m", "/tmp/moved")
            self.assertFalse(await sbx.fs.exists("/root/m"))
            self.assertEqual(await sbx.fs.read("/tmp/moved/f"), b"data")
            await sbx.fs.write("/tmp/other", "x")
            with self.assertRaises(FileError) as caught:
                await sbx.fs.rename("/tmp/other", "/tmp/moved/f", overwrite=False)
            self.assertEqual((caught.exception.code, caught.exception.path), ("EEXIST", "/tmp/moved/f"))
            await sbx.fs.remove("/tmp/moved", recursive=True)
            self.assertFalse(await sbx.fs.exists("/tmp/moved"))
            with self.assertRaises(PathNotFoundError) as caught:
                await sbx.fs.remove("/tmp/moved")
            self.assertEqual(caught.exception.path, "/tmp/moved")

        self.scenario(body)

    def test_errors(self):
        """
        Reading a directory is EISDIR, a path through a file ENOTDIR, writing
        the read-only root EROFS, each with the path.
        """

        async def body(sbx):
            cases = [
                (sbx.fs.read("/root"), "EISDIR", "/root"),
                (sbx.fs.list("/etc/passwd"), "ENOTDIR", "/etc/passwd"),
                (sbx.fs.write("/etc/x", "x"), "EROFS", "/etc/x"),
                (sbx.fs.mkdir("/usr/x"), "EROFS", "/usr/x"),
            ]
            for call, code, path in cases:
                with self.assertRaises(FileError) as caught:
                    await call
                self.assertEqual((caught.exception.code, caught.exception.path), (code, path))

        self.scenario(body)

    def test_sbx_fs(self):
        """
        sbx fs write/read/ls work on a real sandbox.
        """
        sandbox_id = self.create()
        self.assertEqual(self.sbx("fs", "write", sandbox_id, "/root/t", stdin=b"hey")[0], 0)
        self.assertEqual(self.sbx("fs", "read", sandbox_id, "/root/t")[:2], (0, b"hey"))
        code, out, err = self.sbx("fs", "ls", sandbox_id, "/root")
        self.assertEqual(code, 0, err)
        self.assertIn(b" t\n", out + b"\n")


class EnvTests(AgentE2ETestCase):
    """
    env.* in a real sandbox.
    """

    def test_env_applies_to_later_processes(self):
        """
        Variables set through one session reach later execs and streams of
        another; deleted ones disappear.
        """

        async def body(sbx):
            await sbx.env.set({"GREETING": "hello"}, TARGET="world")
            self.assertEqual(await sbx.env.get("GREETING"), "hello")
            self.assertEqual((await sbx.process.exec_("echo $GREETING $TARGET")).stdout, "hello world\n")
            from sandbox import connect_sandbox

            async with await connect_sandbox(sbx.id, endpoint=self.daemon.endpoint) as other:
                handle = await other.process.stream_exec("echo $TARGET")
                self.assertEqual([e.data async for e in handle], ["world\n"])
            self.assertEqual(await sbx.env.delete("TARGET", "NOPE"), ["TARGET"])
            self.assertIsNone(await sbx.env.get("TARGET"))
            self.assertEqual(await sbx.env.get("TARGET", "dflt"), "dflt")
            env = await sbx.env.list()
            self.assertEqual(env["GREETING"], "hello")
            self.assertNotIn("SANDBOX_AGENT_SECRET", env)
            self.assertEqual((await sbx.process.exec_("echo x${TARGET}x")).stdout, "xx\n")

        self.scenario(body)
