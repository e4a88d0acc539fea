"""
Tests for the agent's Python zygote (agent/zygote.py, agent/zygote_process.py):
``python3 -c`` snippets forked off a waiting interpreter must behave as a
fresh interpreter does, and everything the zygote cannot take exactly so
must still run the usual way.  A real agent process on loopback.
"""

import os
import signal
import subprocess
import sys
import time
import types

from twisted.trial.unittest import SynchronousTestCase

from agent import zygote, zygote_process

from .agent_helpers import AGENT_PYTHON, AgentProcess, pids_in_group, wait_until
from .test_agent import AgentTestCase

#: Snippets whose every observable (output, errors, exit status) must not
#: tell a forked child from a fresh interpreter.
PROBES = [
    "import sys; print(sys.argv, __name__, __doc__, sorted(dir()))",
    "import sys; print(sys.flags, sys.path, sorted(sys.modules))",
    "import sys; s = sys.stdout; print(s.name, s.mode, s.encoding, s.errors, s.line_buffering, sys.stderr.line_buffering, sys.stdin.name)",
    "import os; print(os.getcwd(), os.environ.get('GREETING'))",
    "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)",
    "1 / 0",
    "print(",
    "raise SystemExit('bye')",
    "raise KeyboardInterrupt",
    "import atexit, threading; atexit.register(print, 'at exit'); threading.Thread(target=print, args=('thread',)).start()",
    "import sys; print(sys.stdin.read().upper())",
    # How it ends: exit statuses, finalizers, buffers, streams that fail.
    "raise SystemExit(300)",
    "raise SystemExit(2 ** 70)",
    "raise SystemExit(True)",
    "raise SystemExit([1])",
    "import atexit; atexit.register(print, 'at exit'); raise KeyboardInterrupt",
    "import atexit\nclass C:\n    def __call__(self): 1 / 0\n    def __repr__(self): return 'C'\n"
    "atexit.register(C()); print('after')",
    "class A:\n    def __del__(self): print('finalized', x)\nx = 5\na = A()",
    "class A:\n    def __del__(self): print('cycle finalized')\na = A(); a.me = a; del a",
    "import sys; sys.stdout.write('no newline')",
    "import io, sys; sys.stdout = io.StringIO(); print('swapped'); sys.__stdout__.write('orig')",
    "import sys; print('x'); sys.stdout = None",
    "import os; print('lost?'); os.close(1)",
    "import sys; print('x'); sys.stdout.close()",
    "import threading, time; threading.Thread(target=time.sleep, args=(60,), daemon=True).start()",
    "import ctypes; ctypes.CDLL(None).printf(b'c stdio %d\\n', 7)",
    "import json, decimal; print(json.dumps([1]), decimal.Decimal('1.1'))",
]


class ZygoteTests(AgentTestCase):
    """
    process.exec of ``AGENT_PYTHON -c ...`` through the shared agent.
    """

    def snippet(self, code, *args, **params):
        return self.exec([AGENT_PYTHON, "-c", code, *args], **params)

    def parent_of(self, **params):
        reply = self.snippet("import os; print(os.getppid())", **params)
        return int(reply.stdout)

    def fresh(self, code, *args, stdin="", env=None):
        """
        The same snippet run by a fresh interpreter, as the agent would.
        """
        return subprocess.run(
            [AGENT_PYTHON, "-c", code, *args], cwd=self.tmp, env=self.agent_env(env),
            input=stdin.encode(), capture_output=True,
        )

    def agent_env(self, extra=None):
        with open(f"/proc/{self.agent.pid}/environ", "rb") as f:
            pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
        env = {k.decode(): v.decode() for k, v in pairs if not k.startswith(b"SANDBOX_AGENT_")}
        env.update(extra or {})
        return env

    def test_snippets_are_forked(self):
        """
        A ``python3 -c`` snippet is a child of the zygote, not of the agent.
        """
        parent = self.parent_of()
        self.assertNotEqual(parent, self.agent.pid)
        self.assertEqual(self.parent_of(), parent)

    def test_same_as_a_fresh_interpreter(self):
        """
        Output, errors and exit status of every probe match a fresh run's.
        """
        for code in PROBES:
            reply = self.snippet(code, "arg one", "-x", cwd=self.tmp, stdin="some input",
                                 env={"GREETING": "hi"})
            fresh = self.fresh(code, "arg one", "-x", stdin="some input", env={"GREETING": "hi"})
            self.assertEqual(
                (reply.stdout, reply.stderr, reply.result["exit_code"]),
                (fresh.stdout, fresh.stderr,
                 fresh.returncode if fresh.returncode >= 0 else 128 - fresh.returncode),
                code,
            )

    def test_streams_follow_their_files(self):
        """
        The standard streams match a fresh interpreter's whatever the files
        behind them: stdin from /dev/null (no stdin given) or from a pipe.
        """
        code = ("import sys; print([(s.seekable(), s.isatty(), s.line_buffering, s.buffer.raw.name)"
                " for s in (sys.stdin, sys.stdout, sys.stderr)])")
        for stdin in (None, "input"):
            params = {} if stdin is None else {"stdin": stdin}
            reply = self.snippet(code, cwd=self.tmp, **params)
            fresh = subprocess.run(
                [AGENT_PYTHON, "-c", code], cwd=self.tmp, env=self.agent_env(),
                capture_output=True, **({"stdin": subprocess.DEVNULL} if stdin is None
                                        else {"input": stdin.encode()}),
            )
            self.assertEqual((reply.stdout, reply.stderr), (fresh.stdout, fresh.stderr), stdin)

    def test_only_standard_descriptors(self):
        """
        The child holds stdin, stdout and stderr and nothing of the zygote's.
        """
        reply = self.snippet("import os; print(sorted(os.listdir('/proc/self/fd')))")
        # 3 is the listing's own descriptor.
        self.assertEqual(reply.stdout, b"['0', '1', '2', '3']\n")

    def test_no_secret_in_the_zygote(self):
        """
        The zygote was started without the agent's secret: not in its
        environment, its command line or its memory-mapped environment.
        """
        zygote_pid = self.parent_of()
        for name in ("environ", "cmdline"):
            with open(f"/proc/{zygote_pid}/{name}", "rb") as f:
                self.assertNotIn(self.agent.secret.encode(), f.read())

    def test_own_session_and_timeout(self):
        """
        A snippet leads a session of its own; its timeout kills its group,
        children included, and says so.
        """
        reply = self.snippet(
            "import os, subprocess, time; print(os.getpid(), os.getsid(0), flush=True);"
            "subprocess.Popen(['sleep', '100']); time.sleep(100)",
            timeout=0.5,
        )
        pid, sid = map(int, reply.stdout.split())
        self.assertEqual(pid, sid)
        self.assertEqual(reply.result, {"exit_code": 137, "timed_out": True, "truncated": False})
        self.assertTrue(wait_until(lambda: not pids_in_group(pid)), pids_in_group(pid))

    def test_start_up_environment_differs(self):
        """
        A snippet whose PYTHON* or locale variables differ from the zygote's
        starts an interpreter of its own, which sees them.
        """
        self.assertEqual(self.parent_of(env={"PYTHONSAFEPATH": "1"}), self.agent.pid)
        reply = self.snippet("import sys; print(sys.flags.safe_path)", env={"PYTHONSAFEPATH": "1"})
        self.assertEqual(reply.stdout, b"True\n")
        self.assertEqual(self.parent_of(env={"LC_ALL": "C"}), self.agent.pid)

    def test_other_commands_are_spawned(self):
        """
        Interpreter options, other programs and a missing cwd go the usual way.
        """
        reply = self.exec([AGENT_PYTHON, "-S", "-c", "import os; print(os.getppid())"])
        self.assertEqual(int(reply.stdout), self.agent.pid)
        reply = self.exec(["sh", "-c", "echo $PPID"])
        self.assertEqual(int(reply.stdout), self.agent.pid)
        error = self.assertError(self.snippet("print(1)", cwd=self.path("nope")), "ENOENT")
        self.assertEqual(error["path"], self.path("nope"))


class ZygoteLossTests(AgentTestCase):
    """
    A sandbox's code can kill the zygote: commands go on.  An agent of its
    own, since the zygote is not the shared agent's to lose.
    """

    def setUp(self):
        self.agent = AgentProcess()
        self.addCleanup(self.agent.stop)
        self.client = self.connect()
        self.tmp = self.agent.cwd

    def test_killed_zygote(self):
        """
        Killing the zygote ends its running snippets as killed; later ones
        start the usual way, and after RESTART_DELAY forked off a new zygote.
        """
        first = int(self.exec([AGENT_PYTHON, "-c", "import os; print(os.getppid())"]).stdout)
        reply = self.exec([
            AGENT_PYTHON, "-c",
            "import os, signal, time; os.kill(os.getppid(), signal.SIGKILL); time.sleep(30)",
        ], timeout=20)
        self.assertEqual(reply.result["exit_code"], 128 + signal.SIGKILL)
        self.assertFalse(reply.result["timed_out"])
        probe = [AGENT_PYTHON, "-c", "import os; print(os.getppid())"]
        self.assertEqual(int(self.exec(probe).stdout), self.agent.pid)
        time.sleep(zygote.RESTART_DELAY + 0.2)
        self.exec(probe)  # starts the new zygote (this one runs the usual way)
        self.assertTrue(wait_until(
            lambda: int(self.exec(probe).stdout) not in (first, self.agent.pid)
        ))

    def test_zygote_off(self):
        """
        SANDBOX_AGENT_ZYGOTE=0: every snippet starts an interpreter.
        """
        agent = AgentProcess(SANDBOX_AGENT_ZYGOTE="0")
        self.addCleanup(agent.stop)
        client = agent.connect()
        self.addCleanup(client.close)
        reply = client.call("process.exec", {"cmd": [AGENT_PYTHON, "-c", "import os; print(os.getppid())"]})
        self.assertEqual(int(reply.stdout), agent.pid)


class ZygoteMessageTests(SynchronousTestCase):
    """
    What the zygote sends is parsed as untrusted: sandbox code can replace it.
    """

    def test_parse(self):
        """
        Only ASCII messages of the three kinds pass; pids must be a child's.
        """
        self.assertEqual(zygote._parse(b"pid 42"), ("pid", "42"))
        self.assertEqual(zygote._parse(b"exit 42 9"), ("exit", "42 9"))
        for bad in (b"spawn 1", b"", b"\xff\xfe", b"pid\xc3\xa9 1"):
            self.assertRaises(ValueError, zygote._parse, bad)
        self.assertEqual(zygote._pid("42"), 42)
        for bad in ("1", "0", "-5", "x", ""):
            self.assertRaises(ValueError, zygote._pid, bad)

    def test_only_the_same_interpreter(self):
        """
        A link to the interpreter from another directory (a virtualenv's
        ``python``) and a relative path are not the zygote's interpreter.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        os.symlink(AGENT_PYTHON, os.path.join(directory, "python"))
        z = zygote.Zygote(loop=None, env={}, cwd=directory, devnull=None,
                          interpreter=AGENT_PYTHON)
        self.assertTrue(z._same_interpreter(AGENT_PYTHON, ""))
        self.assertTrue(z._same_interpreter(
            os.path.basename(AGENT_PYTHON), os.path.dirname(AGENT_PYTHON)))
        self.assertFalse(z._same_interpreter("python", directory))
        self.assertFalse(z._same_interpreter(os.path.join(directory, "python"), ""))
        self.assertFalse(z._same_interpreter("./python", directory))
        self.assertFalse(z._same_interpreter("no-such-python", directory))


class ZygoteEndTests(SynchronousTestCase):
    """
    How a forked child ends: without the interpreter's teardown, unless
    native code of the snippet's own may need the C exit().
    """

    def test_native_code_loaded(self):
        """
        ctypes, or an extension module from outside the standard library's
        directory, sends the child through the interpreter's finalization;
        the standard library's extensions and pure Python modules do not.
        """
        def module(name, path):
            m = types.ModuleType(name)
            if path is not None:
                m.__file__ = path
            return m

        suffix = zygote_process._EXTENSION_SUFFIXES[0]
        stdlib = module("_json", zygote_process._STDLIB_EXTENSIONS + "_json" + suffix)
        plain = {"_json": stdlib, "sys": sys, "pure": module("pure", "/srv/pure.py"),
                 "builtin": module("builtin", None)}
        cases = [
            (plain, False),
            ({**plain, "_ctypes": module("_ctypes", None)}, True),
            ({**plain, "fast": module("fast", "/usr/lib/python3/dist-packages/fast" + suffix)}, True),
            ({**plain, "lib": module("lib", "/opt/lib/lib-dynload/x.so")}, True),
        ]
        for modules, native in cases:
            self.patch(sys, "modules", modules)
            self.assertEqual(zygote_process._native_code_loaded(), native, sorted(modules))
