"""
Tests for the agent's PID 1 (L{agent.init.run_as_init}): run for real as
PID 1 of a new pid namespace (``unshare --pid --fork``, root only), it
restarts the server whenever it dies, ignores stop signals sent from inside
the namespace, wakes a stopped server, and ends on a stop signal from
outside.  The restart spacing is checked with a fake clock.
"""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

from twisted.trial.unittest import SynchronousTestCase

from agent import init

from tests.dockerutil import missing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: PID 1 of the namespace: a server that sleeps, and notes SIGCONT.
INIT = textwrap.dedent(
    """
    import signal, sys, time
    sys.path.insert(0, {root!r})
    from agent import init

    back_to_root = init.leave_root() if {leave_root!r} else None

    def server():
        if back_to_root is not None:
            back_to_root()
        init.shield_from_stop_signals()
        signal.signal(signal.SIGCONT, lambda *_: open({marker!r}, "w").close())
        open({ready!r}, "w").close()
        while True:
            time.sleep(60)

    sys.exit(init.run_as_init(server))
    """
)


def children(pid):
    """
    The host pids of ``pid``'s children.
    """
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class NamespaceInitTests(SynchronousTestCase):
    #: Whether PID 1 leaves root first (init.leave_root, as under gVisor).
    leave_root = False

    def setUp(self):
        if os.geteuid() != 0:
            missing("unshare --pid needs root")
        script = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
        self.marker = self.mktemp()
        ready = self.mktemp()
        script.write(INIT.format(root=ROOT, marker=self.marker, ready=ready,
                                 leave_root=self.leave_root))
        script.close()
        self.addCleanup(os.unlink, script.name)
        self.unshare = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", sys.executable, script.name],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.addCleanup(self._stop)
        self.init = self.waitFor(lambda: (children(self.unshare.pid) or [None])[0], "PID 1")
        self.server = self.waitFor(lambda: (children(self.init) or [None])[0], "the server")
        self.waitFor(lambda: os.path.exists(ready), "the server's handlers")

    def _stop(self):
        # SIGKILL from outside does reach PID 1; the namespace ends with it.
        if self.unshare.poll() is None and getattr(self, "init", None):
            os.kill(self.init, signal.SIGKILL)
        if self.unshare.poll() is None:
            self.unshare.kill()
            self.unshare.wait()

    def waitFor(self, probe, what, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            time.sleep(0.02)
        self.fail(f"no {what} within {timeout} s")

    def insideNamespace(self, code):
        """
        Run Python ``code`` as a process of the namespace (nsenter).
        """
        subprocess.run(
            ["nsenter", "--target", str(self.init), "--pid", "--",
             sys.executable, "-c", code],
            check=True,
        )

    def test_serverRestarted(self):
        """
        A server killed with SIGKILL is started again.
        """
        os.kill(self.server, signal.SIGKILL)
        restarted = self.waitFor(
            lambda: [p for p in children(self.init) if p != self.server], "a new server"
        )
        self.assertEqual(len(restarted), 1)

    def test_insideStopSignalsIgnored(self):
        """
        SIGTERM, SIGINT, SIGHUP and SIGQUIT to PID 1 and the server from a
        process of the namespace change nothing.
        """
        self.insideNamespace(
            "import os\n"
            "for s in (15, 2, 1, 3):\n"
            "    os.kill(1, s)\n"
            "    os.kill(2, s)\n"
        )
        # PID 1 takes pending signals lowest number first, SIGCHLD (17)
        # after these: once it has woken a stopped server, it had taken
        # them all, and the server had run its handlers.
        os.kill(self.server, signal.SIGSTOP)
        self.waitFor(lambda: os.path.exists(self.marker), "SIGCONT")
        self.assertIsNone(self.unshare.poll())
        self.assertEqual(children(self.init), [self.server])

    def test_stoppedServerWoken(self):
        """
        A server stopped with SIGSTOP is continued by PID 1.
        """
        os.kill(self.server, signal.SIGSTOP)
        self.waitFor(lambda: os.path.exists(self.marker), "SIGCONT")
        self.waitFor(lambda: state(self.server) in ("S", "R"), "the server running again")

    def test_outsideSignalEnds(self):
        """
        SIGTERM from outside the namespace (the engine) ends PID 1 with
        status 0, and the namespace with it.
        """
        os.kill(self.init, signal.SIGTERM)
        self.assertEqual(self.unshare.wait(timeout=10), 0)


def status_fields(pid, *names):
    """
    The values of ``names`` in /proc/``pid``/status, stripped.
    """
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.rstrip("\n").split(":\t", 1) for line in f)
    return [fields[name].strip() for name in names]


class OwnUidInitTests(NamespaceInitTests):
    """
    The same, with PID 1 holding the four capabilities gVisor's sandboxes
    get (it has them all here): it moves to a uid of its own, and the
    processes of the namespace, root without capabilities as every command
    is, cannot signal it.
    """

    leave_root = True

    def test_credentials(self):
        """
        PID 1 runs as INIT_UID with CAP_KILL, CAP_SETGID, CAP_SETUID and
        CAP_SETPCAP only; its server as root with no capability, none to
        gain, and no new privileges.
        """
        uid = str(init.INIT_UID)
        self.assertEqual(
            status_fields(self.init, "Uid", "Gid", "CapEff", "CapPrm", "Groups"),
            ["\t".join([uid] * 4), "\t".join([uid] * 4), "00000000000001e0",
             "00000000000001e0", ""],
        )
        self.assertEqual(
            status_fields(self.server, "Uid", "CapEff", "CapPrm", "CapBnd", "NoNewPrivs"),
            ["0\t0\t0\t0", "0" * 16, "0" * 16, "0" * 16, "1"],
        )

    def test_rootCannotSignalInit(self):
        """
        A process of the namespace that is root without capabilities (as
        every command is) gets EPERM for any signal to PID 1, SIGKILL
        included; PID 1 and its server live on.
        """
        self.insideNamespace(
            f"import os, sys\nsys.path.insert(0, {ROOT!r})\n"
            "from agent import init\n"
            "init.drop_privileges()\n"
            "for s in (9, 19, 15):\n"
            "    try:\n"
            "        os.kill(1, s)\n"
            "    except PermissionError:\n"
            "        continue\n"
            "    raise SystemExit(f'signal {s} reached PID 1')\n"
        )
        self.assertIsNone(self.unshare.poll())
        self.assertEqual(children(self.init), [self.server])
        self.assertEqual(state(self.init), "S")


class LeaveRootTests(SynchronousTestCase):
    def test_withoutTheCapabilities(self):
        """
        A PID 1 that lacks any of the four (runc, a VM's agent) stays root:
        leave_root returns None and changes nothing.
        """
        status = self.mktemp()
        for held in ("0000000000000000", "00000000000001c0", "00000000000000e0"):
            with open(status, "w") as f:
                f.write(f"Name:\tpython3\nCapEff:\t{held}\n")
            self.assertIsNone(init.leave_root(status=status))
        self.assertIsNone(init.leave_root(status=self.mktemp()))
        self.assertEqual(os.getuid(), os.geteuid())


class RestartSpacingTests(SynchronousTestCase):
    def test_backoff(self):
        """
        A server that lived a quarter of a second or more is restarted at
        once; one that keeps dying at start waits 0.1 s, doubling, at most
        2 s.
        """
        now, slept = [0.0], []

        def sleep(seconds):
            slept.append(seconds)
            now[0] += seconds

        restarts = init._Restarts(sleep, lambda: now[0])
        now[0] = 2.0
        restarts.wait()
        self.assertEqual(slept, [])
        for _ in range(8):
            restarts.wait()
        self.assertEqual(slept, [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])
        now[0] += 0.25
        restarts.wait()
        self.assertEqual(len(slept), 8)
