"""
The MCP server (``sandbox-mcp``) as an agent uses it, through the ``mcp``
package's own client against a real daemon: the persistent interpreter
(sandbox_run_code), a scripted fix-the-bug loop, the streamable HTTP
transport, and what happens when no daemon answers.
"""

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import Daemon, free_port
from tests.mcputil import McpTestCase, decode_png, text


class RunCodeTests(McpTestCase):
    """
    sandbox_run_code: the persistent interpreter through MCP.
    """

    def test_interpreter(self):
        """
        A variable set in one call is used in the next; a matplotlib figure
        arrives as image content whose PNG decodes; a DataFrame as text and
        an HTML resource; a ``while True`` is interrupted at the timeout and
        the next call still sees the old state.
        """

        async def body(client):
            sid = await self.create(client, profile="python")
            c = lambda **kw: client.call_tool("sandbox_run_code", dict(sandbox_id=sid, **kw))  # noqa: E731
            results = [
                await c(code="total = 40"),
                await c(code="print('seen', total)\ntotal + 2"),
                await c(code="import matplotlib.pyplot as plt\nplt.figure(figsize=(2, 2), dpi=40)\n"
                             "plt.plot([0, 1], [1, 0]);"),
                await c(code="import pandas as pd\npd.DataFrame({'k': [1, 2]})"),
                await c(code="while True:\n    total += 0", timeout=2),
                await c(code="total"),
                await c(code="1/0"),
            ]
            await self.ok(client, "sandbox_destroy", sandbox_id=sid)
            return results

        setv, used, plot, frame, stuck, after, failed = self.session(body)
        self.assertEqual(text(used), "[stdout]\nseen 40\n\n[result]\n42")
        image = plot.content[1]
        self.assertEqual((image.type, image.mime_type), ("image", "image/png"))
        self.assertEqual(decode_png(base64.b64decode(image.data)), (80, 80))
        self.assertIn("k", text(frame))
        self.assertEqual(frame.content[1].resource.mime_type, "text/html")
        self.assertIn("<table", frame.content[1].resource.text)
        self.assertIn("[interrupted", text(stuck))
        self.assertIn("KeyboardInterrupt", text(stuck))
        self.assertEqual(text(after), "[result]\n40")
        self.assertFalse(failed.is_error)
        self.assertIn("[error] ZeroDivisionError", text(failed))


class AgentLoopTests(McpTestCase):
    """
    What an agent does with the tools, scripted.
    """

    def test_fix_a_bug(self):
        """
        Write a module with a bug and its test, run the test (it fails),
        read the failure and the file, fix it with str_replace, rerun: pass.
        The fix keeps the file's size and comes within a second of the first
        run: the rerun must not use the first run's bytecode cache.
        """

        async def body(client):
            sid = await self.create(client)
            c = lambda name, **kw: self.ok(client, name, sandbox_id=sid, **kw)  # noqa: E731
            await c("sandbox_write_file", path="/root/app/shop.py", content=(
                "def total(prices, discount):\n"
                "    return sum(prices) + discount\n"))
            await c("sandbox_write_file", path="/root/app/test_shop.py", content=(
                "import unittest\nfrom shop import total\n\n"
                "class T(unittest.TestCase):\n"
                "    def test_discount(self):\n"
                "        self.assertEqual(total([10, 5], 3), 12)\n\n"
                "unittest.main()\n"))
            first = await c("sandbox_exec", command="python3 test_shop.py", working_dir="/root/app")
            source = await c("sandbox_read_file", path="/root/app/shop.py")
            line = next(l for l in source.splitlines() if "discount" in l and "return" in l)
            await c("sandbox_edit_file", path="/root/app/shop.py", old_str=line,
                    new_str=line.replace("+ discount", "- discount"))
            second = await c("sandbox_exec", command="python3 test_shop.py", working_dir="/root/app")
            files = await c("sandbox_list_files", path="/root/app")
            await self.ok(client, "sandbox_destroy", sandbox_id=sid)
            return first, second, files

        first, second, files = self.session(body)
        self.assertTrue(first.startswith("exit_code: 1"), first)
        self.assertIn("AssertionError: 18 != 12", first)
        self.assertTrue(second.startswith("exit_code: 0"), second)
        self.assertIn("OK", second)
        self.assertNotIn("__pycache__", files)


class HttpTransportTests(McpTestCase):
    """
    The same server over streamable HTTP.
    """

    def test_streamable_http(self):
        """
        ``sandbox-mcp --transport http --token T`` serves the tools at /mcp:
        a request without the token is refused (401 UNAUTHORIZED); the mcp
        client sending it creates a sandbox, runs a command and code, gets
        a tool error for a bad id, destroys the sandbox.
        """
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox_mcp", "--transport", "http", "--port", str(port)],
            env=dict(self.daemon.env, SANDBOX_MCP_TOKEN="s3cret"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def stop():
            process.terminate()
            process.wait(30)
            process.stderr.close()

        self.addCleanup(stop)
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    self.fail(f"sandbox-mcp did not listen: {process.stderr.read().decode()}")
                time.sleep(0.1)
        request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        self.assertEqual(refused.exception.code, 401)
        self.assertEqual(json.loads(refused.exception.read())["error"]["code"], "UNAUTHORIZED")
        refused.exception.close()

        async def run():
            async with httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret"}, timeout=300) as http:
                async with Client(streamable_http_client(url, http_client=http)) as client:
                    sid = await self.create(client, profile="python")
                    ran = await self.ok(client, "sandbox_exec", sandbox_id=sid, command="echo over-http")
                    code = await self.ok(client, "sandbox_run_code", sandbox_id=sid, code="6 * 7")
                    bad = await self.error(client, "sandbox_exec", sandbox_id="sbx-ffffffff", command="true")
                    await self.ok(client, "sandbox_destroy", sandbox_id=sid)
                    return ran, code, bad

        ran, code, bad = asyncio.run(asyncio.wait_for(run(), 180))
        self.assertIn("over-http", ran)
        self.assertEqual(code, "[result]\n42")
        self.assertIn("SANDBOX_NOT_FOUND", bad)

    def test_http_needs_token_off_loopback(self):
        """
        Listening on a non-loopback address without a token is refused at
        start-up, named.
        """
        done = subprocess.run(
            [sys.executable, "-m", "sandbox_mcp", "--transport", "http", "--host", "0.0.0.0"],
            env=self.daemon.env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        self.assertNotEqual(done.returncode, 0)
        self.assertIn(b"refusing to listen on 0.0.0.0 without a token", done.stderr)


class StartupTests(SynchronousTestCase):
    """
    What sandbox-mcp does when no daemon answers.
    """

    def test_no_daemon_says_how(self):
        """
        With no daemon at the endpoint, sandbox-mcp exits non-zero saying
        where it looked and how to start one (never silently).
        """
        directory = tempfile.mkdtemp(prefix="sandbox-mcp-none-")
        self.addCleanup(shutil.rmtree, directory, True)
        env = dict(os.environ, SANDBOX_ENDPOINT=f"unix://{directory}/none.sock")
        done = subprocess.run([sys.executable, "-m", "sandbox_mcp"], env=env,
                              capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        self.assertNotEqual(done.returncode, 0)
        self.assertEqual(done.stdout, b"")
        message = done.stderr.decode()
        self.assertIn(f"no sandboxd answers at unix://{directory}/none.sock", message)
        self.assertIn("twistd -n sandboxd", message)
        self.assertIn("--start-daemon", message)

    def test_start_daemon(self):
        """
        With ``--start-daemon`` and a config, sandbox-mcp starts
        ``twistd -n sandboxd`` when none answers, says so on stderr, serves
        tools through it, and stops it when the MCP session ends.
        """
        daemon = Daemon(min_base=0)
        self.addCleanup(daemon.stop)
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "sandbox_mcp", "--start-daemon", "--daemon-config", daemon.config],
            env={"SANDBOX_ENDPOINT": daemon.endpoint, "PYTHONPATH": os.getcwd()},
            cwd=daemon.dir,
        )

        async def run():
            async with Client(params) as client:
                result = await client.call_tool("sandbox_list", {})
                health = await asyncio.to_thread(daemon.request, "GET", "/health")
                return result, health

        result, health = asyncio.run(asyncio.wait_for(run(), 240))
        self.assertFalse(result.is_error, text(result))
        self.assertEqual(json.loads(text(result)), [])
        self.assertEqual(health[0], 200)
        with open(os.path.join(daemon.dir, "sandboxd-mcp.log"), "rb") as log:
            self.assertIn(b"sandboxd", log.read())
        deadline = time.monotonic() + 60
        while os.path.exists(daemon.socket) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(os.path.exists(daemon.socket), "the started daemon is still serving")
