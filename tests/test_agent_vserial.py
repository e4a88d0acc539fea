"""
The agent serving a virtio-serial port (``--listen vserial:PATH``),
against a pseudo-terminal in raw mode standing in for the port's character
device: the daemon speaks first (SYNC), the agent answers and says HELLO,
and a new SYNC after a half-read frame starts a fresh, authenticated
session.  (The real port, under QEMU, is driven by tests/test_qemu.py.)
"""

import collections
import os
import pty
import select
import subprocess
import tty

from twisted.trial.unittest import SynchronousTestCase

from agent import wire
from agent.wire import FrameType
from tests.agent_helpers import AGENT_PYTHON, REPO, Client
from tests.dockerutil import missing


class _FdSocket:
    """
    sendall/recv over a file descriptor, with a timeout.
    """

    def __init__(self, fd, timeout=30):
        self.fd = fd
        self.timeout = timeout

    def sendall(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def recv(self, n):
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            raise TimeoutError("no answer from the agent")
        return os.read(self.fd, n)


def read_until(fdsock, marker):
    """
    Bytes read up to and including ``marker``; (before, after).
    """
    buffer = b""
    while marker not in buffer:
        buffer += fdsock.recv(65536)
    before, _, after = buffer.partition(marker)
    return before, after


class SerialClient(Client):
    """
    The agent test client over the pty master, after a resync.
    """

    def __init__(self, fdsock, leftover):
        self.sock = fdsock
        self.framer = wire.Framer()
        self.queued = collections.defaultdict(collections.deque)
        self.closed = False
        self._next_stream = 1
        for frame in self.framer.feed(leftover):
            self.queued[frame.stream].append(frame)
        self.hello = self.recv_stream(0)
        self.nonce = self.hello.json()["nonce"]


class VirtioSerialAgentTests(SynchronousTestCase):
    def setUp(self):
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        os.close(slave)
        self.secret = wire.new_secret()
        env = dict(os.environ, SANDBOX_AGENT_SECRET=self.secret, PYTHONPATH=REPO,
                   SANDBOX_AGENT_CWD=os.path.abspath(self.mktemp()))
        os.makedirs(env["SANDBOX_AGENT_CWD"])
        self.agent = subprocess.Popen(
            [AGENT_PYTHON, "-m", "agent", "--listen", f"vserial:{self.path}"],
            cwd=REPO, env=env, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        line = self.agent.stderr.readline().decode()
        self.assertIn(f"listening on vserial:{self.path}", line)
        self.addCleanup(self._stop)
        self.port = _FdSocket(self.master)

    def _stop(self):
        self.agent.kill()
        self.agent.wait()
        self.agent.stderr.close()
        os.close(self.master)

    def sync(self, nonce, prefix=b""):
        self.port.sendall(prefix + b"\nSANDBOXD-SYNC " + nonce + b"\n")
        _, after = read_until(self.port, b"SANDBOXD-SYNCED " + nonce + b"\n")
        return SerialClient(self.port, after)

    def test_speaksOnlyAfterSync(self):
        """
        Opening the port the agent says only its RESET line (for a daemon
        still connected to a server before it); until the daemon's SYNC
        line it says nothing more (bytes before it are ignored); after it
        the agent answers with the same nonce, says HELLO, takes AUTH with
        the secret and serves a request.
        """
        self.assertEqual(b"\nSANDBOXD-RESET\n", self.port.recv(100))
        self.port.sendall(b"stale bytes of an earlier connection\x00\x01")
        self.assertEqual([], select.select([self.master], [], [], 0.5)[0])
        client = self.sync(b"0123456789abcdef" * 2)
        self.assertEqual(wire.VERSION, client.hello.json()["version"])
        client.authenticate(self.secret)
        reply = client.call("process.exec", {"cmd": ["echo", "over the port"]})
        self.assertEqual(b"over the port\n", reply.stdout, [(f, f.payload) for f in reply.frames])

    def test_resyncAfterHalfFrame(self):
        """
        A daemon that reconnects while the agent holds half a frame of the
        old connection (here: part of a header) still gets its answer: the
        SYNC read as a header is a protocol error, the agent drops that
        session and finds the SYNC line in what it last read; the new
        session has a fresh nonce and authenticates.
        """
        first = self.sync(b"a" * 32)
        first.authenticate(self.secret)
        half = wire.request(1, "process.exec", {"cmd": ["true"]})[:5]
        second = self.sync(b"b" * 32, prefix=half)
        self.assertNotEqual(first.nonce, second.nonce)
        second.authenticate(self.secret)
        reply = second.call("process.exec", {"cmd": ["echo", "again"]})
        self.assertEqual(b"again\n", reply.stdout)

    def test_oldSessionStreamsEnd(self):
        """
        A long command of the old session does not outlive the resync: it
        is listed while that session lives, and gone in the new one (its
        stream was cancelled, its process killed).
        """
        first = self.sync(b"c" * 32)
        first.authenticate(self.secret)
        sid = first.request("process.spawn", {"cmd": ["sleep", "60"]})
        self.assertIs(FrameType.EVENT, first.recv_stream(sid).type)  # {"pid"}: started
        self.assertEqual(1, len(first.call("process.list").result["processes"]))
        second = self.sync(b"d" * 32, prefix=b"\x00")
        second.authenticate(self.secret)
        for _ in range(100):
            processes = second.call("process.list").result["processes"]
            if not processes:
                break
            select.select([], [], [], 0.05)
        self.assertEqual([], processes)

    def test_badListen(self):
        """
        A --listen the agent cannot serve stops it at once with exit code 2
        and says why.
        """
        for value in ("vserial:relative", "udp:5", "tcp:99999"):
            done = subprocess.run(
                [AGENT_PYTHON, "-m", "agent", "--listen", value], cwd=REPO,
                env=dict(os.environ, SANDBOX_AGENT_SECRET=self.secret, PYTHONPATH=REPO),
                capture_output=True, timeout=30,
            )
            self.assertEqual(2, done.returncode)
            self.assertIn("--listen", done.stderr.decode())


class DropPrivilegesTests(SynchronousTestCase):
    def test_noCapabilitiesLeft(self):
        """
        drop_privileges (what a VM's agent does, SANDBOX_AGENT_DROP_CAPABILITIES=1)
        leaves a root process no capability in any set and no-new-privileges
        set, as Docker leaves a sandbox's container; a file of mode 000 is
        then unreadable even for root.
        """
        if os.getuid() != 0:
            missing("needs root, as the VM's init is")
        secret = os.path.abspath(self.mktemp())
        with open(secret, "w") as f:
            f.write("x")
        os.chmod(secret, 0)
        code = (
            "from agent.init import drop_privileges\n"
            "drop_privileges()\n"
            "status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
            "print([status[k].strip() for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd',"
            " 'CapAmb', 'NoNewPrivs')])\n"
            f"try:\n    open({secret!r}).read()\nexcept PermissionError:\n    print('EACCES')\n"
        )
        done = subprocess.run([AGENT_PYTHON, "-c", code], cwd=REPO, capture_output=True,
                              text=True, timeout=30)
        self.assertEqual(0, done.returncode, done.stderr)
        self.assertEqual(f"{['0000000000000000'] * 5 + ['1']}\nEACCES\n", done.stdout)


class SerialLinkTests(SynchronousTestCase):
    def test_hostLeavesMidFrame(self):
        """
        The host side going away (a read gives 0 bytes) ends the session as
        a closed connection would: its protocol, holding half a frame, is
        told the connection was lost, and no second session starts without
        a new SYNC.  (A socketpair stands in for the port: its end of file
        is the device's "host not connected".)
        """
        import asyncio
        import socket

        from agent.vserial import SerialLink

        async def scenario():
            loop = asyncio.get_running_loop()
            guest, host = socket.socketpair()
            host.setblocking(False)
            events = []

            class Session(asyncio.Protocol):
                def connection_made(self, transport):
                    events.append("made")
                    transport.write(b"HELLO")

                def data_received(self, data):
                    events.append(data)

                def connection_lost(self, exc):
                    events.append("lost")

            link = SerialLink(loop, "/dev/fake", Session, poll_interval=0.01,
                              fd=guest.detach())
            host.sendall(b"stale\nSANDBOXD-SYNC " + b"ab" * 16 + b"\nhalf a fr")
            received = b""
            while not received.endswith(b"HELLO"):
                received += await asyncio.wait_for(loop.sock_recv(host, 100), 5)
            host.shutdown(socket.SHUT_WR)  # the host leaves
            for _ in range(100):
                if "lost" in events:
                    break
                await asyncio.sleep(0.01)
            link.close()
            host.close()
            return received, events, link.sessions

        received, events, sessions = asyncio.run(scenario())
        self.assertEqual(
            b"\nSANDBOXD-RESET\nSANDBOXD-SYNCED " + b"ab" * 16 + b"\nHELLO", received)
        self.assertEqual(["made", b"half a fr", "lost"], events)
        self.assertEqual(1, sessions)
