"""
The agent's process.spawn (stdin from the body, signals, ptys and resize)
and the stdin body of process.exec, over a real connection.
"""

import os
import time

from agent import wire
from agent.wire import FrameType

from .agent_helpers import pids_in_group, wait_until
from .test_agent import AgentTestCase

MiB = 1024 * 1024


class SpawnTestCase(AgentTestCase):
    def spawn(self, cmd, **params):
        """
        Start ``cmd``; (stream id, pid) once its EVENT arrived.
        """
        sid = self.client.request("process.spawn", dict(params, cmd=cmd))
        frame = self.client.recv_stream(sid)
        self.assertIs(frame.type, FrameType.EVENT, frame)
        return sid, frame.json()["pid"]

    def read_until(self, sid, needle, channel=wire.CHANNEL_STDOUT, timeout=10):
        """
        DATA of ``sid`` until ``needle`` shows up on ``channel``; the bytes.
        """
        seen = bytearray()
        deadline = time.monotonic() + timeout
        while needle not in seen:
            self.assertLess(time.monotonic(), deadline, seen)
            frame = self.client.recv_stream(sid)
            self.assertIs(frame.type, FrameType.DATA, frame)
            if frame.flags == channel:
                seen += frame.payload
        return bytes(seen)


class SpawnTests(SpawnTestCase):
    """
    process.spawn and process.signal.
    """

    def test_stdin_roundtrip(self):
        """
        DATA sent to a spawned ``cat`` comes back on stdout, line by line
        while it runs; END closes its stdin and it exits 0.
        """
        sid, pid = self.spawn(["cat"])
        self.assertGreater(pid, 1)
        for word in (b"one\n", b"two\n"):
            self.client.send(wire.data(sid, word))
            self.assertEqual(self.read_until(sid, word), word)
        self.client.send(wire.end(sid))
        reply = self.client.collect(sid)
        self.assertEqual(reply.result["exit_code"], 0)

    def test_large_stdin_backpressure(self):
        """
        20 MiB of stdin reach the child whole, within the window both ways.
        """
        sid, _ = self.spawn("sha256sum")
        block = os.urandom(MiB)
        credit = wire.SendWindow()
        for _ in range(20):
            for piece in wire.chunks(block):
                while not credit.take(len(piece)):
                    frame = self.client.recv_stream(sid)
                    self.assertIs(frame.type, FrameType.WINDOW, frame)
                    credit.grant(frame.window())
                self.client.send(wire.data(sid, piece))
        self.client.send(wire.end(sid))
        reply = self.client.collect(sid)
        import hashlib

        self.assertEqual(reply.stdout.split()[0].decode(), hashlib.sha256(block * 20).hexdigest())

    def test_signal(self):
        """
        process.signal TERMs the whole group by default; the exit code says
        so; an unknown pid or signal is a named error.
        """
        sid, pid = self.spawn("sleep 100 & sleep 100; wait")
        reply = self.client.call("process.signal", {"pid": pid, "signal": "TERM"})
        self.assertEqual(reply.result, {})
        self.assertEqual(self.client.collect(sid).result["exit_code"], 128 + 15)
        self.assertTrue(wait_until(lambda: not pids_in_group(pid)))
        self.assertError(self.client.call("process.signal", {"pid": pid}), "ESRCH")
        self.assertError(self.client.call("process.signal", {"pid": 1, "signal": "NOPE"}), "BAD_PARAMS")

    def test_several_at_once(self):
        """
        Three spawned processes run side by side; each answers its own stdin.
        """
        handles = [self.spawn(["cat"]) for _ in range(3)]
        self.assertEqual(len({pid for _, pid in handles}), 3)
        listed = {p["pid"] for p in self.client.call("process.list").result["processes"]}
        self.assertTrue({pid for _, pid in handles} <= listed)
        for i, (sid, _) in reversed(list(enumerate(handles))):
            self.client.send(wire.data(sid, f"n{i}\n".encode()))
            self.assertEqual(self.read_until(sid, f"n{i}\n".encode()), f"n{i}\n".encode())
        for sid, _ in handles:
            self.client.send(wire.end(sid))
            self.assertEqual(self.client.collect(sid).result["exit_code"], 0)

    def test_cancel_kills_group(self):
        """
        CANCEL kills the spawned process group and ends with CANCELLED.
        """
        sid, pid = self.spawn("sleep 100 & sleep 100")
        self.client.send(wire.cancel(sid))
        self.assertError(self.client.collect(sid), "CANCELLED")
        self.assertTrue(wait_until(lambda: not pids_in_group(pid)))

    def test_stdin_closed_by_child(self):
        """
        A child that stops reading stdin does not block the client: the body
        is consumed and dropped.
        """
        sid, _ = self.spawn("exec 0<&-; sleep 0.3; echo done")
        for _ in range(8):
            self.client.send(wire.data(sid, b"x" * (256 * 1024)))
        self.client.send(wire.end(sid))
        reply = self.client.collect(sid)
        self.assertEqual((reply.stdout, reply.result["exit_code"]), (b"done\n", 0))


class PtyTests(SpawnTestCase):
    """
    process.spawn with a pty, and process.resize.
    """

    def test_size_and_resize(self):
        """
        The child sees its terminal size, then the new size after a resize;
        input is echoed by the terminal; it is the session leader with a
        controlling tty.
        """
        sid, pid = self.spawn(
            "stty size; tty >/dev/null && echo is-a-tty; read x; stty size; echo got-$x",
            pty={"cols": 100, "rows": 30},
        )
        self.assertIn(b"30 100", self.read_until(sid, b"is-a-tty"))
        self.assertEqual(self.client.call("process.resize", {"pid": pid, "cols": 120, "rows": 40}).result, {})
        self.client.send(wire.data(sid, b"hello\r"))
        out = self.read_until(sid, b"got-hello")
        self.assertIn(b"40 120", out)
        self.assertEqual(self.client.collect(sid).result["exit_code"], 0)

    def test_term_and_errors(self):
        """
        A pty gets the TERM of its env; resizing a process without a pty is
        ENOTTY; a bad size is BAD_PARAMS.
        """
        sid, _ = self.spawn("echo $TERM", pty={}, env={"TERM": "vt100"})
        self.assertIn(b"vt100", self.client.collect(sid).stdout)
        sid, pid = self.spawn(["cat"])
        self.assertError(self.client.call("process.resize", {"pid": pid, "cols": 1, "rows": 1}), "ENOTTY")
        self.assertError(self.client.call("process.resize", {"pid": pid, "cols": 0, "rows": 1}), "BAD_PARAMS")
        self.client.send(wire.cancel(sid))
        self.assertError(self.client.call("process.spawn", {"cmd": "true", "pty": {"cols": 0}}), "BAD_PARAMS")


class ExecStdinTests(AgentTestCase):
    """
    process.exec and process.stream with ``stdin_stream``.
    """

    def test_exec_stdin_body(self):
        """
        10 MiB of binary stdin sent as the body reach ``wc -c`` whole.
        """
        sid = self.client.request("process.exec", {"cmd": "wc -c", "stdin_stream": True})
        credit = wire.SendWindow()
        block = bytes(range(256)) * 4096
        for _ in range(10):
            for piece in wire.chunks(block):
                while not credit.take(len(piece)):
                    frame = self.client.recv_stream(sid)
                    self.assertIs(frame.type, FrameType.WINDOW, frame)
                    credit.grant(frame.window())
                self.client.send(wire.data(sid, piece))
        self.client.send(wire.end(sid))
        reply = self.client.collect(sid)
        self.assertEqual(reply.stdout.strip(), str(10 * MiB).encode())

    def test_both_stdins(self):
        """
        ``stdin`` text and ``stdin_stream`` together are BAD_PARAMS.
        """
        reply = self.client.call("process.exec", {"cmd": "cat", "stdin": "x", "stdin_stream": True})
        self.assertError(reply, "BAD_PARAMS")

    def test_data_without_stdin_stream(self):
        """
        Without ``stdin_stream`` the request takes no DATA.
        """
        sid = self.client.request("process.exec", {"cmd": "sleep 5"})
        self.client.send(wire.data(sid, b"x"))
        self.assertError(self.client.collect(sid), "UNEXPECTED_FRAME")


def _pids_running(marker):
    """
    Live processes whose command line holds ``marker``.
    """
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(name))
    return found


class EscapeTests(AgentTestCase):
    """
    Killing a command's whole tree.
    """

    def test_timeout_kills_setsid_descendants(self):
        """
        A descendant that started its own session (left the process group)
        but is still in the tree dies on timeout too.
        """
        marker = f"{os.getpid() % 1000 + 1000}.{int(time.time()) % 1000}"
        reply = self.exec(f"setsid sleep {marker} & sleep {marker}; wait", timeout=0.5)
        self.assertTrue(reply.result["timed_out"])
        self.assertTrue(wait_until(lambda: not _pids_running(f"sleep\0{marker}")), _pids_running(marker))
