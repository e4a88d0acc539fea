"""
Unit tests of the code interpreter's kernel (sandbox/_kernel.py) run as the
SDK runs it (``python3 -u -c SOURCE``), here on the host with pipes, and of
the MCP server's output limits and path checks (sandbox_mcp/limits.py,
tools_files._inside).  The same kernel in a real sandbox:
tests/test_e2e_code.py.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

from twisted.trial.unittest import SynchronousTestCase

from sandbox._code import KERNEL_SOURCE


class KernelProcess:
    """
    The kernel in a subprocess: ``run(code)`` sends a request and returns
    the reply.
    """

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-c", KERNEL_SOURCE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.ready = json.loads(self.process.stdout.readline())
        self.serial = 0

    def send(self, code, max_output=None):
        self.serial += 1
        request = {"id": self.serial, "code": code}
        if max_output is not None:
            request["max_output"] = max_output
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()

    def reply(self):
        return json.loads(self.process.stdout.readline())

    def run(self, code, max_output=None):
        self.send(code, max_output)
        return self.reply()

    def close(self):
        self.process.kill()
        self.process.wait()
        for f in (self.process.stdin, self.process.stdout, self.process.stderr):
            f.close()


class KernelTests(SynchronousTestCase):
    """
    The kernel's protocol and behaviour.
    """

    def setUp(self):
        self.kernel = KernelProcess()
        self.addCleanup(self.kernel.close)

    def test_ready_then_state(self):
        """
        The kernel says it is ready with its pid; names persist between
        requests; each reply carries its request's id.
        """
        self.assertEqual(self.kernel.ready, {"ready": True, "pid": self.kernel.process.pid})
        self.kernel.run("a = [1, 2]")
        reply = self.kernel.run("a.append(3)\nlen(a)")
        self.assertEqual(reply["id"], 2)
        self.assertEqual(reply["result"], {"text/plain": "3"})
        self.assertIsNone(reply["error"])

    def test_output_of_subprocesses_and_limits(self):
        """
        stdout and stderr of the code and of the processes it starts are
        captured (never mixed into the protocol); past max_output they are
        cut and the cut counted.
        """
        reply = self.kernel.run(
            "import os, sys\nprint('py')\nos.system('echo sh; echo err >&2')\n"
            "print('e', file=sys.stderr)\nNone")
        self.assertEqual(reply["stdout"], "py\nsh\n")
        self.assertEqual(sorted(reply["stderr"].split()), ["e", "err"])
        self.assertIsNone(reply["result"])
        big = self.kernel.run("print('z' * 1000)", max_output=10)
        self.assertEqual((big["stdout"], big["stdout_cut"]), ("z" * 10, 991))
        after = self.kernel.run("print('fresh')")
        self.assertEqual((after["stdout"], after["stdout_cut"]), ("fresh\n", 0))

    def test_errors(self):
        """
        A syntax error, an exception and SystemExit come back as errors with
        a traceback naming the user's cell, not the kernel; the kernel lives on.
        """
        syntax = self.kernel.run("def (")
        self.assertEqual(syntax["error"]["name"], "SyntaxError")
        raised = self.kernel.run("x = 1\nraise ValueError('bad value')")
        self.assertEqual((raised["error"]["name"], raised["error"]["value"]), ("ValueError", "bad value"))
        self.assertIn('File "<cell>", line 2', raised["error"]["traceback"])
        self.assertNotIn("<string>", raised["error"]["traceback"])
        exited = self.kernel.run("raise SystemExit(4)")
        self.assertEqual(exited["error"]["name"], "SystemExit")
        self.assertEqual(self.kernel.run("x")["result"]["text/plain"], "1")

    def test_interrupt_keeps_state(self):
        """
        SIGINT during a run interrupts it (KeyboardInterrupt, ``interrupted``)
        and the namespace stays; SIGINT between runs is ignored.
        """
        self.kernel.run("n = 0\nimport time")
        self.kernel.send("while True:\n    n += 1\n    time.sleep(0.001)")
        timer = threading.Timer(0.5, os.kill, (self.kernel.process.pid, signal.SIGINT))
        timer.start()
        self.addCleanup(timer.cancel)
        reply = self.kernel.reply()
        self.assertTrue(reply["interrupted"])
        self.assertEqual(reply["error"]["name"], "KeyboardInterrupt")
        os.kill(self.kernel.process.pid, signal.SIGINT)
        self.assertEqual(self.kernel.run("n > 0")["result"]["text/plain"], "True")

    def test_stdin_is_not_the_protocol(self):
        """
        Code reading stdin gets end of file, not the kernel's requests.
        """
        reply = self.kernel.run("import sys\nsys.stdin.read()")
        self.assertEqual(reply["result"], {"text/plain": "''"})
        self.assertEqual(self.kernel.run("2 + 2")["result"]["text/plain"], "4")

    def test_html_repr(self):
        """
        A value with ``_repr_html_`` (as a pandas DataFrame has) comes back
        as text/plain and text/html.
        """
        reply = self.kernel.run(
            "class T:\n    def __repr__(self): return 'T()'\n"
            "    def _repr_html_(self): return '<b>T</b>'\nT()")
        self.assertEqual(reply["result"], {"text/plain": "T()", "text/html": "<b>T</b>"})


class LimitsTests(SynchronousTestCase):
    """
    sandbox_mcp.limits and the download path check.
    """

    def test_truncate(self):
        """
        Text past the limit is cut with a note of how much and the hint;
        shorter text is unchanged.
        """
        from sandbox_mcp.limits import note_cut, truncate

        self.assertEqual(truncate("abc", 3), "abc")
        self.assertEqual(truncate("abcdef", 2, "read less"),
                         "ab\n[... 4 more characters cut (of 6); read less]")
        self.assertEqual(note_cut("ab", 0), "ab")
        self.assertEqual(note_cut("ab", 7), "ab\n[... 7 more bytes cut]")

    def test_is_binary(self):
        """
        NUL bytes or invalid UTF-8 make data binary; a character cut at the
        end of a prefix does not.
        """
        from sandbox_mcp.limits import is_binary

        self.assertFalse(is_binary("héllo".encode()))
        self.assertTrue(is_binary(b"a\x00b"))
        self.assertTrue(is_binary(b"\xff\xfe"))
        self.assertTrue(is_binary("é".encode()[:1]))
        self.assertFalse(is_binary("é".encode()[:1], complete=False))

    def test_inside(self):
        """
        Download targets stay under the root: absolute paths, ``..`` and a
        symlink leading out are refused; a nested relative path is fine.
        """
        from mcp.server.mcpserver.exceptions import ToolError

        from sandbox_mcp.tools_files import _inside

        root = os.path.realpath(tempfile.mkdtemp(prefix="sandbox-mcp-root-"))
        self.addCleanup(shutil.rmtree, root, True)
        os.symlink("/etc", os.path.join(root, "link"))
        self.assertEqual(_inside(root, "a/b.txt"), os.path.join(root, "a", "b.txt"))
        for bad in ("/etc/passwd", "../x", "a/../../x", "link/passwd", "."):
            self.assertRaises(ToolError, _inside, root, bad)
        self.assertEqual(_inside(root, os.path.join(root, "f"), absolute_ok=True), os.path.join(root, "f"))
        self.assertRaises(ToolError, _inside, root, "/etc/hostname", "upload", True)
