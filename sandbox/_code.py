"""
``sbx.code``: a code interpreter in the sandbox.  Each named context is a
persistent Python interpreter (sandbox/_kernel.py, started with
``process.spawn``): variables, imports and open files survive between
``run`` calls, like a notebook kernel.  A context lives as long as the
session that started it (``Sandbox.close`` ends it).
"""

import asyncio
import base64
import json
import os
from dataclasses import dataclass, field

from sandbox.errors import InvalidRequestError, SandboxError, SandboxTimeoutError

#: The kernel's source, sent as ``python3 -u -c SOURCE``.
KERNEL_SOURCE = open(os.path.join(os.path.dirname(__file__), "_kernel.py"), encoding="utf-8").read()

#: Bytes of stdout, and of stderr, a run returns at most (the rest is counted).
DEFAULT_MAX_OUTPUT = 64 * 1024

#: Seconds a run interrupted on timeout has to stop before its kernel is killed.
INTERRUPT_GRACE = 5.0


@dataclass(frozen=True)
class CodeResult:
    """
    The outcome of ``sbx.code.run``: ``stdout``/``stderr`` (text, at most
    ``max_output`` bytes each; ``stdout_cut``/``stderr_cut`` count what was
    left out), ``result`` (the last expression's value as ``{"text/plain",
    "text/html"?}``, or None), ``error`` (``{"name", "value", "traceback"}``
    or None), ``images`` (``[(mime, bytes)]``: matplotlib figures) and
    ``timed_out`` (the run was interrupted on timeout; the context keeps its
    state).
    """

    context: str
    stdout: str
    stderr: str
    result: dict = None
    error: dict = None
    images: list = field(default_factory=list, repr=False)
    timed_out: bool = False
    stdout_cut: int = 0
    stderr_cut: int = 0

    @property
    def ok(self):
        return self.error is None

    @property
    def text(self):
        """
        The last expression's ``repr`` (None if there was none).
        """
        return (self.result or {}).get("text/plain")

    @property
    def html(self):
        """
        The last expression's HTML (a pandas DataFrame's table), or None.
        """
        return (self.result or {}).get("text/html")


class CodeInterpreter:
    """
    Named interpreter contexts in one sandbox (``sbx.code``).
    """

    def __init__(self, process):
        self._process = process
        self._contexts = {}

    def contexts(self):
        """
        The names of the running contexts.
        """
        return sorted(self._contexts)

    async def run(self, code, context="default", timeout=None, max_output=DEFAULT_MAX_OUTPUT):
        """
        Run Python ``code`` in ``context`` (started on first use) and return
        a CodeResult.  After ``timeout`` seconds the code is interrupted
        (KeyboardInterrupt in it) and the context keeps its state; one that
        does not stop within INTERRUPT_GRACE seconds is killed
        (SandboxTimeoutError ``INTERPRETER_KILLED``; the next run starts
        afresh).  Runs in one context take turns.
        """
        if not isinstance(code, str):
            raise TypeError("code must be a string")
        if not isinstance(context, str) or not context:
            raise InvalidRequestError("INVALID_CONTEXT", "context must be a non-empty string")
        kernel = self._contexts.get(context)
        if kernel is None or kernel.exited:
            kernel = self._contexts[context] = _Kernel(context)
        async with kernel.lock:
            try:
                reply = await kernel.run(self._process, code, timeout, max_output)
            except SandboxError as e:
                if e.code in ("INTERPRETER_EXITED", "INTERPRETER_KILLED"):
                    self._contexts.pop(context, None)
                raise
        return _result(context, reply)

    async def reset(self, context="default"):
        """
        End ``context`` (its state is lost); the next run starts a new one.
        """
        kernel = self._contexts.pop(context, None)
        if kernel is not None:
            await kernel.stop()

    async def close(self):
        """
        End every context.
        """
        for name in list(self._contexts):
            await self.reset(name)


class _Kernel:
    """
    One interpreter process: its spawn handle and the reader task that turns
    its stdout into JSON replies on a queue (so waiting for a reply can be
    given up without losing the stream).
    """

    def __init__(self, name):
        self.name = name
        self.lock = asyncio.Lock()
        self.proc = None
        self.replies = asyncio.Queue()
        self.reader = None
        self.exited = False
        self.log = bytearray()
        self.serial = 0

    async def start(self, process):
        self.proc = await process.spawn(["python3", "-u", "-c", KERNEL_SOURCE], env={"MPLBACKEND": "Agg"})
        self.reader = asyncio.get_running_loop().create_task(self.read())
        ready = await self.replies.get()
        if ready is None or not ready.get("ready"):
            raise self.lost("the interpreter did not start")

    async def read(self):
        buffer = bytearray()
        try:
            async for event in self.proc:
                if event.channel != "stdout":
                    self.log += event.raw[: max(0, 4096 - len(self.log))]
                    continue
                buffer += event.raw
                while b"\n" in buffer:
                    line, _, rest = bytes(buffer).partition(b"\n")
                    buffer[:] = rest
                    try:
                        self.replies.put_nowait(json.loads(line))
                    except ValueError:
                        self.log += line[: max(0, 4096 - len(self.log))]
        except SandboxError:
            pass
        finally:
            self.exited = True
            self.replies.put_nowait(None)

    def lost(self, what):
        detail = self.log.decode("utf-8", "replace").strip()
        message = f"{what} (context {self.name!r}; its state is lost)"
        return SandboxError("INTERPRETER_EXITED", message + (f": {detail}" if detail else ""))

    async def run(self, process, code, timeout, max_output):
        if self.proc is None:
            await self.start(process)
        self.serial += 1
        request = {"id": self.serial, "code": code, "max_output": int(max_output)}
        await self.proc.write(json.dumps(request).encode() + b"\n")
        timed_out = False
        try:
            reply = await asyncio.wait_for(self.next_reply(), timeout)
        except asyncio.TimeoutError:
            timed_out = True
            await self.proc.signal("INT", group=False)
            try:
                reply = await asyncio.wait_for(self.next_reply(), INTERRUPT_GRACE)
            except asyncio.TimeoutError:
                await self.stop()
                raise SandboxTimeoutError(
                    "INTERPRETER_KILLED",
                    f"the code ran past {timeout} s and did not stop when interrupted: "
                    f"context {self.name!r} was killed (its state is lost)",
                ) from None
        reply["timed_out"] = timed_out
        return reply

    async def next_reply(self):
        while True:
            reply = await self.replies.get()
            if reply is None:
                self.replies.put_nowait(None)
                raise self.lost("the interpreter exited")
            if reply.get("id") in (self.serial, None):
                return reply

    async def stop(self):
        self.exited = True
        if self.proc is not None and not self.proc.done:
            try:
                await self.proc.kill()
            except SandboxError:
                pass
        if self.reader is not None:
            self.reader.cancel()


def _result(context, reply):
    images = []
    for image in reply.get("images") or ():
        try:
            images.append((image["mime"], base64.b64decode(image["data"])))
        except (KeyError, ValueError, TypeError):
            continue
    return CodeResult(
        context,
        reply.get("stdout", ""),
        reply.get("stderr", ""),
        reply.get("result"),
        reply.get("error"),
        images,
        bool(reply.get("timed_out")),
        int(reply.get("stdout_cut", 0)),
        int(reply.get("stderr_cut", 0)),
    )
