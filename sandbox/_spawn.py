"""
Spawned processes (``process.spawn`` of docs/protocol.md): a handle that
writes stdin, closes it, signals, resizes a pty, streams output and waits.
"""

from agent import wire
from agent.wire import FrameType
from sandbox._process import ExecHandle
from sandbox._stream import frame_json
from sandbox.errors import ProtocolError, SandboxError

CHUNK_SIZE = wire.CHUNK_SIZE


class ProcessExitedError(SandboxError):
    """
    ``PROCESS_EXITED``: stdin was written after the process ended.
    """


async def send_body(stream, data):
    """
    Send ``data`` (bytes-like or str) as DATA within the agent's credit,
    without consuming the stream's incoming frames.  False if the stream
    ended first.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    view = memoryview(data).cast("B")
    while view:
        if stream.finished:
            return False
        credit = stream.send_window.credit
        if credit <= 0:
            await stream._wait()
            continue
        n = min(len(view), credit, CHUNK_SIZE)
        stream.send_window.take(n)
        await stream.session.send(wire.data(stream.id, view[:n]))
        view = view[n:]
    return True


async def start(session, params):
    """
    Open a process.spawn stream; the SpawnedProcess once the agent says
    it started (or the typed error when it could not).
    """
    stream = await session.open("process.spawn", params)
    try:
        frame = await stream.next()
        if frame.type is not FrameType.EVENT or "pid" not in frame_json(frame):
            raise ProtocolError("UNEXPECTED_FRAME", f"process.spawn began with {frame.type.name}")
    except BaseException:
        stream.abandon()
        raise
    return SpawnedProcess(stream, int(frame_json(frame)["pid"]), "pty" in params)


class SpawnedProcess(ExecHandle):
    """
    A process started by ``spawn`` or ``pty``.  Besides what an ExecHandle
    does (``async for event in proc``, ``wait``, ``exit_code``, ``cancel``):
    ``pid``, ``write``, ``close_stdin``, ``signal``, ``kill`` and, with a
    pty, ``resize``.

    Unread output waits in a bounded buffer (the stream's window, 4 MiB):
    past it the agent stops reading the process's output, which then
    blocks, until the caller reads.  ``wait`` drains and drops what is left.
    """

    def __init__(self, stream, pid, has_pty):
        super().__init__(stream)
        self.pid = pid
        self.has_pty = has_pty
        self._stdin_closed = False

    def __repr__(self):
        return f"<SpawnedProcess pid={self.pid}{' pty' if self.has_pty else ''}>"

    async def write(self, data):
        """
        Write bytes (or str as UTF-8) to the process's stdin (the terminal,
        with a pty).  Waits while the agent's credit is spent, so a process
        that does not read slows the writer down.
        """
        if self._stdin_closed:
            raise ProcessExitedError("STDIN_CLOSED", "stdin of the process is closed")
        if not await send_body(self._stream, data):
            raise ProcessExitedError("PROCESS_EXITED", f"process {self.pid} has exited")

    async def close_stdin(self):
        """
        Close the process's stdin (it reads end of file).
        """
        if self._stdin_closed or self._stream.finished:
            return
        self._stdin_closed = True
        await self._stream.session.send(wire.end(self._stream.id))

    async def signal(self, signal="TERM", group=True):
        """
        Send ``signal`` (a name like "TERM"/"SIGINT", or a number) to the
        process's group (``group=False``: the process alone).
        """
        if not isinstance(signal, str):
            signal = int(signal)
        await self._stream.session.call(
            "process.signal", {"pid": self.pid, "signal": signal, "group": bool(group)}
        )

    async def kill(self):
        """
        SIGKILL the process group.
        """
        await self.signal("KILL")

    async def resize(self, cols, rows):
        """
        Set the terminal size of a pty process (it gets SIGWINCH).
        """
        await self._stream.session.call(
            "process.resize", {"pid": self.pid, "cols": int(cols), "rows": int(rows)}
        )
