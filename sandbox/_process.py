"""
``sbx.process``: run commands in the sandbox (``process.exec`` and
``process.stream`` of docs/protocol.md).
"""

import asyncio
import codecs
from dataclasses import dataclass, field

from agent import wire
from agent.wire import FrameType
from sandbox._stream import frame_json
from sandbox.errors import RequestCancelledError, SandboxError

_CHANNELS = {wire.CHANNEL_STDOUT: "stdout", wire.CHANNEL_STDERR: "stderr"}


@dataclass(frozen=True)
class ExecResult:
    """
    The outcome of ``exec_``: output decoded as UTF-8 (invalid bytes
    replaced), the raw bytes, the exit status (``128 + signal`` when killed),
    whether the timeout killed it and whether output beyond ``max_output`` was
    dropped.
    """

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool = False
    truncated: bool = False
    stdout_bytes: bytes = field(default=b"", repr=False)
    stderr_bytes: bytes = field(default=b"", repr=False)

    @property
    def ok(self):
        return self.exit_code == 0 and not self.timed_out


class OutputEvent:
    """
    A chunk of output of a streamed command: ``channel`` is "stdout" or
    "stderr", ``raw`` the bytes, ``data`` the text (UTF-8, decoded across
    chunk boundaries, invalid bytes replaced).
    """

    __slots__ = ("channel", "data", "raw")

    def __init__(self, channel, data, raw):
        self.channel = channel
        self.data = data
        self.raw = raw

    def __repr__(self):
        return f"OutputEvent({self.channel!r}, {self.data!r})"


def command_params(cmd, cwd=None, env=None, timeout=None, stdin=None, max_output=None):
    """
    The REQUEST params of process.exec / process.stream, checked.  ``stdin``
    is sent as the body: ``stdin_stream`` is set when it is given.
    """
    if isinstance(cmd, (list, tuple)):
        if not cmd or not all(isinstance(a, str) for a in cmd):
            raise TypeError("cmd must be a string or a non-empty list of strings")
        cmd = list(cmd)
    elif not isinstance(cmd, str):
        raise TypeError("cmd must be a string or a non-empty list of strings")
    params = {"cmd": cmd}
    if cwd is not None:
        params["cwd"] = str(cwd)
    if env:
        params["env"] = {str(k): str(v) for k, v in env.items()}
    if timeout is not None:
        params["timeout"] = timeout
    if stdin is not None:
        params["stdin_stream"] = True
    if max_output is not None:
        params["max_output"] = int(max_output)
    return params


class Process:
    """
    Running commands; every call may run concurrently with others.
    """

    def __init__(self, session):
        self._session = session

    async def exec_(self, cmd, cwd=None, env=None, timeout=None, stdin=None, max_output=None):
        """
        Run ``cmd`` (a string for ``/bin/sh -c``, or an argv list) to
        completion and return an ExecResult.  ``timeout`` (seconds) is
        enforced by the agent, which kills the process group.  ``stdin``:
        str, bytes, a file object or a (sync or async) iterable of bytes,
        streamed to the process while it runs, then closed.
        """
        params = command_params(cmd, cwd, env, timeout, stdin, max_output)
        stream = await self._session.open("process.exec", params)
        out = []
        err = []
        async with stream, _feeding(stream, stdin):
            while True:
                frame = await stream.next()
                kind = frame.type
                if kind is FrameType.DATA:
                    payload = frame.payload
                    if frame.flags == wire.CHANNEL_STDERR:
                        err.append(payload)
                    else:
                        out.append(payload)
                    await stream.consumed(len(payload))
                elif kind is FrameType.RESULT:
                    result = frame_json(frame)
                    break
        stdout = b"".join(out)
        stderr = b"".join(err)
        return ExecResult(
            stdout.decode("utf-8", "replace"),
            stderr.decode("utf-8", "replace"),
            int(result.get("exit_code", -1)),
            bool(result.get("timed_out", False)),
            bool(result.get("truncated", False)),
            stdout,
            stderr,
        )

    exec = exec_

    async def stream_exec(self, cmd, cwd=None, env=None, timeout=None, stdin=None):
        """
        Start ``cmd`` and return an ExecHandle streaming its output.
        """
        params = command_params(cmd, cwd, env, timeout, stdin)
        stream = await self._session.open("process.stream", params)
        handle = ExecHandle(stream)
        if stdin is not None:
            handle._feeder = _feed(stream, stdin)
        return handle

    async def spawn(self, cmd, cwd=None, env=None, timeout=None):
        """
        Start ``cmd`` and return a SpawnedProcess at once: write its stdin,
        close it, signal it, read its output, wait for it.  Several may run
        at once.  It is killed when the session ends.
        """
        from sandbox import _spawn

        params = command_params(cmd, cwd, env, timeout)
        return await _spawn.start(self._session, params)

    async def list(self):
        """
        The processes the agent runs now (from any session):
        ``[{"pid": n, "pty": bool}]``.
        """
        return (await self._session.call("process.list"))["processes"]

    async def signal(self, pid, signal="TERM", group=True):
        """
        Signal a process the agent runs, by pid (NotFoundError ``ESRCH`` if
        there is none).
        """
        if not isinstance(signal, str):
            signal = int(signal)
        await self._session.call(
            "process.signal", {"pid": int(pid), "signal": signal, "group": bool(group)}
        )

    async def pty(self, cmd=None, cols=80, rows=24, cwd=None, env=None):
        """
        Start ``cmd`` (default: an interactive bash) on a terminal of
        ``cols`` x ``rows``; a SpawnedProcess whose output (stdout and
        stderr together, as the terminal shows them) comes as "stdout"
        events, whose ``write`` types into the terminal and whose
        ``resize`` changes its size.
        """
        from sandbox import _spawn

        params = command_params(cmd or ["/bin/bash", "-i"], cwd, env)
        params["pty"] = {"cols": int(cols), "rows": int(rows)}
        return await _spawn.start(self._session, params)


class ExecHandle:
    """
    A running command: ``async for event in handle`` yields OutputEvents in
    the order the agent sent them; ``await handle.exit_code()`` waits for the
    end; ``await handle.cancel()`` kills it.  Output is granted back to the
    agent as it is consumed, so a slow reader slows the command down instead
    of buffering without bound.
    """

    def __init__(self, stream):
        self._stream = stream
        self._feeder = None
        self._lock = asyncio.Lock()
        self._grant = 0
        self._result = None
        self._error = None
        self._cancelling = False
        self._decoders = {}
        #: Output bytes the daemon had to drop while the session was
        #: away (it keeps a bounded amount for a resume).
        self.dropped_bytes = 0

    @property
    def done(self):
        return self._result is not None or self._error is not None

    def __aiter__(self):
        return self

    async def __anext__(self):
        event = await self._next_event()
        if event is None:
            raise StopAsyncIteration
        return event

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        if not self.done:
            await self.cancel()
        if self._feeder is not None:
            self._feeder.cancel()

    async def _next_event(self):
        async with self._lock:
            stream = self._stream
            if self._grant:
                grant, self._grant = self._grant, 0
                await stream.consumed(grant)
            while not self.done:
                try:
                    frame = await stream.next()
                except RequestCancelledError as e:
                    self._error = e
                    if self._cancelling:
                        return None
                    raise
                except SandboxError as e:
                    self._error = e
                    raise
                except BaseException:
                    stream.abandon()
                    self._error = RequestCancelledError(
                        "CANCELLED", "the command was cancelled"
                    )
                    raise
                if frame.type is FrameType.DATA:
                    raw = frame.payload
                    self._grant = len(raw)
                    channel = _CHANNELS.get(frame.flags, "stdout")
                    decoder = self._decoders.get(channel)
                    if decoder is None:
                        decoder = codecs.getincrementaldecoder("utf-8")("replace")
                        self._decoders[channel] = decoder
                    return OutputEvent(channel, decoder.decode(raw), raw)
                if frame.type is FrameType.RESULT:
                    self._result = frame_json(frame)
                elif frame.type is FrameType.EVENT:
                    self.dropped_bytes += frame_json(frame).get("dropped_bytes", 0)
            return None

    async def wait(self):
        """
        Drain the remaining output; return the RESULT ``{"exit_code",
        "timed_out", "truncated"}``.
        """
        while await self._next_event() is not None:
            pass
        if self._result is None:
            raise self._error
        return self._result

    async def exit_code(self):
        """
        The command's exit status (``128 + signal`` when killed), after the
        remaining output has been drained.  RequestCancelledError if cancelled.
        """
        return int((await self.wait()).get("exit_code", -1))

    async def cancel(self):
        """
        Kill the command (its whole process group) and wait until the agent
        confirms.  Iteration then ends; ``exit_code`` raises
        RequestCancelledError unless the command had already finished.
        """
        if self.done:
            return
        self._cancelling = True
        if not self._stream.finished:
            await self._stream.session.send(wire.cancel(self._stream.id))
        try:
            while await self._next_event() is not None:
                pass
        except SandboxError:
            pass


def _feed(stream, stdin):
    """
    A task sending ``stdin`` as the body of ``stream``, then END.
    """
    from sandbox._fs import _chunks
    from sandbox._spawn import send_body

    async def feed():
        try:
            async for chunk in _chunks(stdin):
                if not await send_body(stream, chunk):
                    return
            if not stream.finished:
                await stream.session.send(wire.end(stream.id))
        except SandboxError:
            pass  # the stream's own reader reports the failure

    return asyncio.get_running_loop().create_task(feed())


class _feeding:
    """
    ``async with _feeding(stream, stdin)``: feed stdin in the background
    while the body reads the output; stop feeding on the way out.
    """

    def __init__(self, stream, stdin):
        self._stream = stream
        self._stdin = stdin
        self._task = None

    async def __aenter__(self):
        if self._stdin is not None:
            self._task = _feed(self._stream, self._stdin)

    async def __aexit__(self, *exc_info):
        if self._task is not None and not self._task.done():
            self._task.cancel()
