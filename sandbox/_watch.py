"""
``sbx.fs.watch``: filesystem events of a directory in the sandbox
(``fs.watch`` of docs/protocol.md).
"""

import collections
from dataclasses import dataclass

from agent import wire
from agent.wire import FrameType
from sandbox._stream import frame_json
from sandbox.errors import ProtocolError, SandboxError


@dataclass(frozen=True)
class WatchEvent:
    """
    One change: ``type`` is "create", "modify", "delete", "move_from",
    "move_to" or "overflow" (events were lost: rescan); ``path`` absolute;
    ``cookie`` pairs a move_from with its move_to.
    """

    type: str
    path: str
    is_dir: bool = False
    cookie: int = None


class Watcher:
    """
    ``async for event in watcher`` yields WatchEvents until ``close()`` (or
    the directory is deleted or moved: then ``reason`` says which).  Use
    ``async with`` to close on exit.
    """

    def __init__(self, stream, path):
        self._stream = stream
        self.path = path
        self.reason = None
        self._events = collections.deque()
        self._ended = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._events:
            if self._ended:
                raise StopAsyncIteration
            frame = await self._stream.next()
            if frame.type is FrameType.EVENT:
                for e in frame_json(frame).get("events", ()):
                    self._events.append(
                        WatchEvent(e.get("type", "?"), e.get("path", ""), bool(e.get("is_dir")), e.get("cookie"))
                    )
            elif frame.type is FrameType.RESULT:
                self.reason = frame_json(frame).get("reason")
                self._ended = True
        return self._events.popleft()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    async def close(self):
        """
        Stop watching (CANCEL); iteration ends.
        """
        self._ended = True
        self._events.clear()
        stream = self._stream
        if stream.finished:
            return
        stream.finished = True
        stream.session._forget(stream)
        try:
            await stream.session.send(wire.cancel(stream.id))
        except SandboxError:
            pass  # the session is gone: so is the watch


class WatchOpening:
    """
    What ``fs.watch`` returns: await it for the Watcher, or ``async with``
    it directly.
    """

    def __init__(self, coroutine):
        self._coroutine = coroutine
        self._watcher = None

    def __await__(self):
        return self._coroutine.__await__()

    async def __aenter__(self):
        self._watcher = await self._coroutine
        return self._watcher

    async def __aexit__(self, *exc_info):
        await self._watcher.close()


async def open_watch(session, path, recursive):
    params = {"path": str(path)}
    if recursive:
        params["recursive"] = True
    stream = await session.open("fs.watch", params)
    try:
        frame = await stream.next()
        if frame.type is not FrameType.EVENT or not frame_json(frame).get("ready"):
            raise ProtocolError("UNEXPECTED_FRAME", f"fs.watch began with {frame.type.name}")
    except BaseException:
        stream.abandon()
        raise
    return Watcher(stream, frame_json(frame).get("path", str(path)))
