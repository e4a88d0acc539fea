"""
The MCP server (``sandbox-mcp``, sandbox_mcp/) driven by the ``mcp``
package's own client: over stdio (the server a subprocess, as MCP clients
run it) and over streamable HTTP, against a real ``twistd -n sandboxd``,
real containers and the real agent.

The client is asyncio (anyio): each test runs it with ``asyncio.run`` in the
test method of a SynchronousTestCase.  Nothing here needs the reactor (the
daemon and the MCP server are subprocesses), and a fresh event loop per test
keeps the client's tasks away from trial's reactor.
"""

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from mcp import Client, StdioServerParameters
from twisted.trial.unittest import SynchronousTestCase

from sandbox_mcp import TOOL_NAMES
from tests.daemon import free_port
from tests.mcputil import decode_png, python_daemon


def text(result):
    """
    The text of a tool result's first content block.
    """
    return result.content[0].text


class McpTestCase(SynchronousTestCase):
    """
    ``session(body)``: start ``python -m sandbox_mcp`` on stdio against the
    shared daemon, connect the mcp client, ``await body(client)``.
    """

    def setUp(self):
        self.daemon = python_daemon()
        self.downloads = tempfile.mkdtemp(prefix="sandbox-mcp-dl-")
        self.addCleanup(shutil.rmtree, self.downloads, True)

    def params(self, *args):
        env = {"SANDBOX_ENDPOINT": self.daemon.endpoint, "PYTHONPATH": os.getcwd()}
        return StdioServerParameters(
            command=sys.executable,
            args=["-m", "sandbox_mcp", "--download-dir", self.downloads, *args],
            env=env,
            cwd=self.downloads,
        )

    def session(self, body, *args):
        async def run():
            async with Client(self.params(*args)) as client:
                return await asyncio.wait_for(body(client), 240)

        return asyncio.run(run())

    def call(self, client, name, **arguments):
        return client.call_tool(name, arguments)

    async def ok(self, client, name, **arguments):
        """
        Call a tool that must succeed; its text.
        """
        result = await client.call_tool(name, arguments)
        self.assertFalse(result.is_error, f"{name}: {text(result)}")
        return text(result)

    async def error(self, client, name, **arguments):
        """
        Call a tool that must answer a tool error; its text.
        """
        result = await client.call_tool(name, arguments)
        self.assertTrue(result.is_error, f"{name} should have failed: {text(result)}")
        return text(result)

    async def create(self, client, **arguments):
        return json.loads(await self.ok(client, "sandbox_create", **arguments))["id"]


class ToolListTests(McpTestCase):
    """
    The tools the server offers.
    """

    def test_every_tool_listed(self):
        """
        The reference's 18 tools and sandbox_run_code are listed, each with
        a description, and with the reference's parameters.
        """

        async def body(client):
            return (await client.list_tools()).tools

        tools = {tool.name: tool for tool in self.session(body)}
        self.assertEqual(set(tools), set(TOOL_NAMES))
        self.assertEqual(len(tools), 19)
        for tool in tools.values():
            self.assertTrue(tool.description, tool.name)

        def params(name):
            return set(tools[name].input_schema["properties"])

        self.assertEqual(params("sandbox_create"), {"profile", "template", "memory", "cpu", "ttl", "labels"})
        self.assertLessEqual({"command", "timeout", "working_dir", "env"}, params("sandbox_exec"))
        self.assertLessEqual({"code", "language"}, params("sandbox_eval"))
        self.assertLessEqual({"start_line", "end_line"}, params("sandbox_read_file"))
        self.assertEqual(tools["sandbox_write_file"].input_schema["properties"]["mode"]["enum"],
                         ["create", "overwrite", "append"])
        self.assertLessEqual({"operation", "old_str", "new_str", "insert_line"}, params("sandbox_edit_file"))
        self.assertIn("depth", params("sandbox_list_files"))
        self.assertLessEqual({"source_path", "url"}, params("sandbox_upload"))
        self.assertLessEqual({"code", "context", "timeout"}, params("sandbox_run_code"))


class LifecycleTests(McpTestCase):
    """
    Creating, listing, running in and destroying sandboxes through MCP.
    """

    def test_create_exec_eval_destroy(self):
        """
        sandbox_create (with a profile, labels and a ttl) gives an id that
        sandbox_list shows and sandbox_exec runs in (working_dir, env,
        exit code, both outputs); sandbox_eval runs python and sh files;
        after sandbox_destroy the id is gone and using it is a tool error.
        """

        async def body(client):
            created = json.loads(await self.ok(
                client, "sandbox_create", profile="python", labels={"who": "mcp"}, ttl=60))
            sid = created["id"]
            listed = json.loads(await self.ok(client, "sandbox_list", labels={"who": "mcp"}))
            profiles = json.loads(await self.ok(client, "sandbox_list_profiles"))
            ran = await self.ok(client, "sandbox_exec", sandbox_id=sid,
                                command="pwd; echo $GREETING; echo oops >&2; exit 3",
                                working_dir="/tmp", env={"GREETING": "hello"}, timeout=30)
            py = await self.ok(client, "sandbox_eval", sandbox_id=sid,
                               code="import sys\nprint(sys.version_info[0] * 14)")
            sh = await self.ok(client, "sandbox_eval", sandbox_id=sid, code="echo $((6*7))", language="sh")
            slow = await self.ok(client, "sandbox_exec", sandbox_id=sid, command="sleep 30", timeout=1)
            await self.ok(client, "sandbox_destroy", sandbox_id=sid)
            after = json.loads(await self.ok(client, "sandbox_list"))
            gone = await self.error(client, "sandbox_exec", sandbox_id=sid, command="true")
            return created, listed, profiles, ran, py, sh, slow, after, gone

        created, listed, profiles, ran, py, sh, slow, after, gone = self.session(body)
        sid = created["id"]
        self.assertEqual((created["profile"], created["labels"], created["ttl"]),
                         ("python", {"who": "mcp"}, 60))
        self.assertEqual([s["id"] for s in listed], [sid])
        self.assertIn("python", [p["name"] for p in profiles])
        self.assertEqual(ran, "exit_code: 3\n--- stdout ---\n/tmp\nhello\n\n--- stderr ---\noops\n")
        self.assertIn("42", py)
        self.assertIn("42", sh)
        self.assertIn("timed out", slow)
        self.assertNotIn(sid, [s["id"] for s in after])
        self.assertIn("SANDBOX_NOT_FOUND", gone)

    def test_errors_are_tool_errors(self):
        """
        An unknown sandbox, arguments the schema refuses, an unknown
        language and a refused create arrive as tool errors naming the
        problem; the server goes on answering.
        """

        async def body(client):
            sid = await self.create(client)
            errors = [
                await self.error(client, "sandbox_exec", sandbox_id="sbx-00000000", command="true"),
                await self.error(client, "sandbox_expose_port", sandbox_id=sid, port=70000),
                await self.error(client, "sandbox_eval", sandbox_id=sid, code="x", language="cobol"),
                await self.error(client, "sandbox_create", profile="no-such-profile"),
                await self.error(client, "sandbox_create", memory="1000t"),
            ]
            still = await self.ok(client, "sandbox_exec", sandbox_id=sid, command="echo alive")
            await self.ok(client, "sandbox_destroy", sandbox_id=sid)
            return errors, still

        errors, still = self.session(body)
        self.assertIn("SANDBOX_NOT_FOUND", errors[0])
        self.assertIn("port", errors[1])
        self.assertIn("UNKNOWN_LANGUAGE", errors[2])
        self.assertIn("no-such-profile", errors[3])
        self.assertIn("LIMIT_EXCEEDED", errors[4])
        self.assertIn("alive", still)


class FileToolTests(McpTestCase):
    """
    Reading, writing, editing, listing and moving files through MCP.
    """

    def test_write_read_edit_list(self):
        """
        write_file's three modes (create refuses an existing file), read_file
        with a line range, edit_file's str_replace (refusing a missing or
        repeated string) and insert, and list_files to a depth.
        """

        async def body(client):
            sid = await self.create(client)
            c = lambda name, **kw: self.ok(client, name, sandbox_id=sid, **kw)  # noqa: E731
            e = lambda name, **kw: self.error(client, name, sandbox_id=sid, **kw)  # noqa: E731
            await c("sandbox_write_file", path="/root/p/q/notes.txt", content="one\ntwo\n", mode="create")
            exists = await e("sandbox_write_file", path="/root/p/q/notes.txt", content="x", mode="create")
            await c("sandbox_write_file", path="/root/p/q/notes.txt", content="three\n", mode="append")
            whole = await c("sandbox_read_file", path="/root/p/q/notes.txt")
            middle = await c("sandbox_read_file", path="p/q/notes.txt", start_line=2, end_line=3)
            await c("sandbox_write_file", path="/root/p/dup.txt", content="a\nb\na\n")
            missing = await e("sandbox_edit_file", path="/root/p/dup.txt", old_str="zzz", new_str="y")
            repeated = await e("sandbox_edit_file", path="/root/p/dup.txt", old_str="a", new_str="y")
            await c("sandbox_edit_file", path="/root/p/dup.txt", old_str="a\nb", new_str="A\nB")
            await c("sandbox_edit_file", path="/root/p/dup.txt", operation="insert", insert_line=0, new_str="top")
            await c("sandbox_edit_file", path="/root/p/dup.txt", operation="insert", insert_line=4, new_str="end")
            edited = await c("sandbox_read_file", path="/root/p/dup.txt")
            shallow = await c("sandbox_list_files", path="/root/p")
            deep = await c("sandbox_list_files", path="/root/p", depth=2)
            await self.ok(client, "sandbox_destroy", sandbox_id=sid)
            return exists, whole, middle, missing, repeated, edited, shallow, deep

        exists, whole, middle, missing, repeated, edited, shallow, deep = self.session(body)
        self.assertIn("FILE_EXISTS", exists)
        self.assertEqual(whole, "one\ntwo\nthree\n")
        self.assertEqual(middle, "two\nthree\n")
        self.assertIn("NO_MATCH", missing)
        self.assertIn("NOT_UNIQUE", repeated)
        self.assertIn("2 times", repeated)
        self.assertEqual(edited, "top\nA\nB\na\nend\n")
        self.assertIn("/root/p/q/", shallow)
        self.assertNotIn("notes.txt", shallow)
        self.assertIn("/root/p/q/notes.txt", deep)

    def test_limits_binary_and_large(self):
        """
        A binary file is refused by read_file with a hint to download it;
        a file larger than --max-output is cut with a note of its size;
        long command output is cut with a note of how much.
        """

        async def body(client):
            sid = await self.create(client)
            await self.ok(client, "sandbox_exec", sandbox_id=sid,
                          command="printf 'PK\\003\\004\\000\\377' > /root/b.zip; "
                                  "python3 -c \"print('y' * 5000)\" > /root/big.txt")
            binary = await self.error(client, "sandbox_read_file", sandbox_id=sid, path="/root/b.zip")
            big = await self.ok(client, "sandbox_read_file", sandbox_id=sid, path="/root/big.txt")
            loud = await self.ok(client, "sandbox_exec", sandbox_id=sid, command="seq 1 2000")
            await self.ok(client, "sandbox_destroy", sandbox_id=sid)
            return binary, big, loud

        binary, big, loud = self.session(body, "--max-output", "1000")
        self.assertIn("BINARY_FILE", binary)
        self.assertIn("sandbox_download", binary)
        self.assertTrue(big.startswith("y" * 1000 + "\n[..."), big[:1100])
        self.assertIn("file is 5001 bytes", big)
        self.assertIn("more characters cut", loud)
        self.assertLess(len(loud), 1200)

    def test_upload_download(self):
        """
        Upload from a host file, a host directory and a URL (served inside
        the sandbox, fetched by its agent); host paths outside the upload
        directory are refused.  Download a file and a directory (as a tar)
        into the download directory; paths leading out of it are refused.
        """
        source = tempfile.mkdtemp(prefix="sandbox-mcp-up-")
        self.addCleanup(shutil.rmtree, source, True)
        with open(os.path.join(source, "one.txt"), "w") as f:
            f.write("first")
        os.mkdir(os.path.join(source, "tree"))
        with open(os.path.join(source, "tree", "two.txt"), "w") as f:
            f.write("second")

        async def body(client):
            sid = await self.create(client, profile="python")
            c = lambda name, **kw: self.ok(client, name, sandbox_id=sid, **kw)  # noqa: E731
            await c("sandbox_upload", destination="/root/in/", source_path=os.path.join(source, "one.txt"))
            await c("sandbox_upload", destination="/root/tree", source_path=os.path.join(source, "tree"))
            await c("sandbox_run_code", code=(
                "import functools, http.server, threading, os\n"
                "os.makedirs('/root/www', exist_ok=True)\n"
                "open('/root/www/page.txt', 'w').write('from a url')\n"
                "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory='/root/www')\n"
                "srv = http.server.ThreadingHTTPServer(('127.0.0.1', 8765), h)\n"
                "threading.Thread(target=srv.serve_forever, daemon=True).start()"))
            await c("sandbox_upload", destination="/root/in/", url="http://127.0.0.1:8765/page.txt")
            listing = await c("sandbox_exec", command="cat /root/in/one.txt /root/tree/two.txt /root/in/page.txt")
            outside = [
                await self.error(client, "sandbox_upload", sandbox_id=sid, destination="/root/",
                                 source_path=path)
                for path in ("/etc/hostname", "../" + os.path.basename(self.downloads))
            ]
            saved = await c("sandbox_download", path="/root/in/one.txt")
            await c("sandbox_download", path="/root/tree", destination="sub/tree.tar")
            escapes = [
                await self.error(client, "sandbox_download", sandbox_id=sid, path="/root/in/one.txt",
                                 destination="../escape.txt"),
                await self.error(client, "sandbox_download", sandbox_id=sid, path="/root/in/one.txt",
                                 destination="/tmp/escape.txt"),
            ]
            await self.ok(client, "sandbox_destroy", sandbox_id=sid)
            return listing, outside, saved, escapes

        listing, outside, saved, escapes = self.session(body, "--upload-dir", source)
        self.assertIn("firstsecondfrom a url", listing)
        for refused in outside:
            self.assertIn("PATH_ESCAPE", refused)
        self.assertIn(os.path.join(self.downloads, "one.txt"), saved)
        with open(os.path.join(self.downloads, "one.txt")) as f:
            self.assertEqual(f.read(), "first")
        import tarfile

        with tarfile.open(os.path.join(self.downloads, "sub", "tree.tar")) as tar:
            self.assertEqual(tar.extractfile("tree/two.txt").read(), b"second")
        for escape in escapes:
            self.assertIn("PATH_ESCAPE", escape)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.downloads), "escape.txt")))


class PortAndTemplateTests(McpTestCase):
    """
    Tunnels and templates through MCP.
    """

    def test_ports(self):
        """
        A server started in the sandbox gets a path-proxy URL, and a
        dedicated host port that answers from this host; list_ports shows
        it, close_port closes it.
        """

        async def body(client):
            sid = await self.create(client, profile="python")
            c = lambda name, **kw: self.ok(client, name, sandbox_id=sid, **kw)  # noqa: E731
            await c("sandbox_run_code", code=(
                "import http.server, threading\n"
                "class H(http.server.BaseHTTPRequestHandler):\n"
                "    def do_GET(self):\n"
                "        self.send_response(200); self.end_headers(); self.wfile.write(b'tunnelled')\n"
                "srv = http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H)\n"
                "threading.Thread(target=srv.serve_forever, daemon=True).start()"))
            url = await c("sandbox_port_url", port=8080)
            exposed = json.loads(await c("sandbox_expose_port", port=8080, timeout=30))
            body = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{exposed['host_port']}/", timeout=30).read())
            listed = json.loads(await c("sandbox_list_ports"))
            await c("sandbox_close_port", port=8080)
            after = json.loads(await c("sandbox_list_ports"))
            await self.ok(client, "sandbox_destroy", sandbox_id=sid)
            return sid, url, exposed, body, listed, after

        sid, url, exposed, body, listed, after = self.session(body)
        self.assertTrue(url.endswith(f"/sandboxes/{sid}/ports/8080/"), url)
        self.assertEqual(body, b"tunnelled")
        self.assertEqual([t["port"] for t in listed], [8080])
        self.assertEqual(after, [])

    def test_templates_follow_the_daemon(self):
        """
        The template tools ask the daemon at each call: a daemon without
        templates (no /templates route, or none served) gets a tool error
        saying templates are not available; one with them lists and saves.
        """
        status, _ = self.daemon.request("GET", "/templates")

        async def body(client):
            sid = await self.create(client)
            listed = await client.call_tool("sandbox_list_templates", {})
            saved = await client.call_tool("sandbox_create_template", {"sandbox_id": sid, "label": "mcp"})
            await self.ok(client, "sandbox_destroy", sandbox_id=sid)
            return listed, saved

        listed, saved = self.session(body)
        if status == 200:
            self.assertFalse(listed.is_error, text(listed))
            self.assertIsInstance(json.loads(text(listed)), list)
            self.assertFalse(saved.is_error, text(saved))
            self.assertIn("tpl-", text(saved))
        else:
            for result in (listed, saved):
                self.assertTrue(result.is_error)
                self.assertIn("TEMPLATES_NOT_AVAILABLE", text(result))


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
            await self.ok(client, "sandbox_destroy", sandbox_id=sid)
            return first, second

        first, second = self.session(body)
        self.assertTrue(first.startswith("exit_code: 1"), first)
        self.assertIn("AssertionError: 18 != 12", first)
        self.assertTrue(second.startswith("exit_code: 0"), second)
        self.assertIn("OK", second)


class HttpTransportTests(McpTestCase):
    """
    The same server over streamable HTTP.
    """

    def test_streamable_http(self):
        """
        ``sandbox-mcp --transport http`` serves the tools at /mcp: the mcp
        client creates a sandbox, runs a command and code, gets a tool
        error for a bad id, destroys the sandbox.
        """
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox_mcp", "--transport", "http", "--port", str(port)],
            env=self.daemon.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

        def stop():
            process.terminate()
            process.wait(30)

        self.addCleanup(stop)
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.monotonic() + 60
        while True:
            try:
                import socket

                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    self.fail(f"sandbox-mcp did not listen: {process.stderr.read().decode()}")
                time.sleep(0.1)

        async def run():
            async with Client(url) as client:
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
        from tests.daemon import Daemon

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
