"""
Test helpers for the guest agent: run it as a subprocess on loopback and
talk to it with a small blocking client.
"""

import atexit
import collections
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from agent import wire
from agent.wire import FrameType

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: The interpreter that runs the agent (e.g. Debian's /usr/bin/python3).
AGENT_PYTHON = os.environ.get("AGENT_TEST_PYTHON") or sys.executable


class AgentProcess:
    """
    ``python3 -m agent`` listening on 127.0.0.1 with a free port and a
    temporary default working directory.
    """

    def __init__(self, prefix=(), **env):
        self.secret = wire.new_secret()
        self.cwd = tempfile.mkdtemp(prefix="agent-test-")
        environ = dict(os.environ)
        environ.update(
            SANDBOX_AGENT_SECRET=self.secret,
            SANDBOX_AGENT_HOST="127.0.0.1",
            SANDBOX_AGENT_PORT="0",
            SANDBOX_AGENT_CWD=self.cwd,
            PYTHONPATH=REPO,
        )
        environ.update(env)
        self.process = subprocess.Popen(
            [*prefix, AGENT_PYTHON, "-m", "agent"],
            cwd=REPO,
            env=environ,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        line = self.process.stderr.readline().decode()
        if "listening on" not in line:
            self.process.kill()
            raise RuntimeError(f"agent did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self.pid = self.process.pid

    def connect(self, authenticate=True):
        client = Client(self.port)
        if authenticate:
            client.authenticate(self.secret)
        return client

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stderr.close()
        subprocess.run(["rm", "-rf", self.cwd])


_shared = None


def shared_agent():
    """
    One agent for the whole test run (stopped at exit).
    """
    global _shared
    if _shared is None or _shared.process.poll() is not None:
        _shared = AgentProcess()
        atexit.register(_shared.stop)
    return _shared


class Reply:
    """
    Everything one stream received: DATA per channel, EVENTs, the final frame.
    """

    def __init__(self):
        self.channels = collections.defaultdict(bytearray)
        self.events = []
        self.frames = []
        self.final = None

    @property
    def stdout(self):
        return bytes(self.channels[wire.CHANNEL_STDOUT])

    @property
    def stderr(self):
        return bytes(self.channels[wire.CHANNEL_STDERR])

    @property
    def body(self):
        return bytes(self.channels[wire.CHANNEL_BODY])

    @property
    def result(self):
        assert self.final.type is FrameType.RESULT, self.final.json()
        return self.final.json()

    @property
    def error(self):
        assert self.final.type is FrameType.ERROR, self.final
        return self.final.json()


class Client:
    """
    A blocking agent client that keeps other streams' frames for later.
    """

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.framer = wire.Framer()
        self.queued = collections.defaultdict(collections.deque)
        self.closed = False
        self._next_stream = 1
        self.hello = self.recv_stream(0)
        self.nonce = self.hello.json()["nonce"]

    def authenticate(self, secret):
        self.send(wire.auth(secret, self.nonce))
        ready = self.recv_stream(0)
        assert ready.type is FrameType.READY, ready.json()
        return ready.json()

    def new_stream(self):
        sid = self._next_stream
        self._next_stream += 1
        return sid

    def send(self, *frames):
        self.sock.sendall(b"".join(frames))

    def _read_frames(self):
        data = self.sock.recv(1 << 20)
        if not data:
            self.closed = True
            raise ConnectionError("connection closed")
        for frame in self.framer.feed(data):
            self.queued[frame.stream].append(frame)

    def recv_stream(self, sid):
        """
        The next frame on stream ``sid``.
        """
        while not self.queued[sid]:
            self._read_frames()
        return self.queued[sid].popleft()

    def wait_closed(self):
        """
        Read until the agent closes the connection; the frames received.
        """
        frames = []
        try:
            while True:
                self._read_frames()
        except (ConnectionError, OSError):
            pass
        for queue in self.queued.values():
            frames.extend(queue)
        return frames

    def request(self, method, params=None, sid=None):
        sid = sid or self.new_stream()
        self.send(wire.request(sid, method, params or {}))
        return sid

    def collect(self, sid, grant=True):
        """
        Read stream ``sid`` to its end, granting window as DATA arrives.
        """
        reply = Reply()
        window = wire.ReceiveWindow()
        while True:
            frame = self.recv_stream(sid)
            reply.frames.append(frame)
            if frame.type is FrameType.DATA:
                window.received(len(frame.payload))
                reply.channels[frame.flags] += frame.payload
                increment = window.consumed(len(frame.payload))
                if grant and increment:
                    self.send(wire.window(sid, increment))
            elif frame.type is FrameType.EVENT:
                reply.events.append(frame.json())
            elif frame.type in wire.FINAL_TYPES:
                reply.final = frame
                return reply

    def call(self, method, params=None):
        return self.collect(self.request(method, params))

    def upload(self, path, chunks, **params):
        """
        fs.write ``chunks`` to ``path`` within the agent's window; the Reply.
        """
        sid = self.request("fs.write", dict(params, path=path))
        credit = wire.SendWindow()
        windows = []
        for chunk in chunks:
            for piece in wire.chunks(chunk):
                while not credit.take(len(piece)):
                    frame = self.recv_stream(sid)
                    if frame.type is not FrameType.WINDOW:
                        self.queued[sid].appendleft(frame)
                        return self.collect(sid)
                    windows.append(frame)
                    credit.grant(frame.window())
                self.send(wire.data(sid, piece))
        self.send(wire.end(sid))
        reply = self.collect(sid)
        reply.frames[:0] = windows
        return reply

    def close(self):
        self.sock.close()


def pids_in_group(pgid):
    """
    The live (non-zombie) processes whose process group is ``pgid``.
    """
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(name))
    return found


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
