"""
The MCP server's tools (``sandbox-mcp``, sandbox_mcp/) driven over stdio by
the ``mcp`` package's own client (the server a subprocess, as MCP clients
run it), against a real ``twistd -n sandboxd``, real containers and the
real agent: lifecycle, files, ports, templates.  The interpreter, the agent
loop, streamable HTTP and start-up: tests/test_e2e_mcp_agent.py.
"""

import asyncio
import json
import os
import shutil
import tarfile
import tempfile
import time
import urllib.request

from sandbox_mcp import TOOL_NAMES
from tests.mcputil import McpTestCase, text


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

    def test_sandboxes_end_with_the_server(self):
        """
        A sandbox the MCP server made with ttl 0 (the default) ends when the
        server does (its session closes); one made with a ttl is kept.
        """

        async def body(client):
            return await self.create(client), await self.create(client, ttl=120)

        brief, kept = self.session(body)
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{kept}")
        deadline = time.monotonic() + 60
        while self.daemon.request("GET", f"/sandboxes/{brief}")[0] != 404:
            self.assertLess(time.monotonic(), deadline, f"{brief} outlived the MCP server")
            time.sleep(0.2)
        status, info = self.daemon.request("GET", f"/sandboxes/{kept}")
        self.assertEqual(status, 200)
        self.assertEqual(info["state"], "disconnected")

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
