"""
One request on a session (L{sandbox._session.Session}): its frames in
order, both flow-control windows, and its end.
"""

import asyncio
import collections

from agent import wire
from agent.wire import FrameType
from sandbox.errors import ProtocolError, error_from_payload

_DATA = FrameType.DATA
_ERROR = FrameType.ERROR
_RESULT = FrameType.RESULT


def frame_json(frame):
    """
    A frame's JSON payload; a malformed one is the daemon's ProtocolError.
    """
    try:
        return frame.json()
    except wire.ProtocolError as e:
        raise ProtocolError(e.code, f"the daemon sent {e.message}") from None


def _fresh(error):
    """
    A new instance of a session failure (one exception object per raise).
    """
    return type(error)(error.code, error.message, error.status, error.details)


class Stream:
    """
    One request on a session, from its REQUEST to its RESULT or ERROR.
    """

    __slots__ = (
        "id",
        "session",
        "recv_window",
        "send_window",
        "finished",
        "_frames",
        "_waiters",
        "_failure",
    )

    def __init__(self, session, stream_id):
        self.id = stream_id
        self.session = session
        self.recv_window = wire.ReceiveWindow()
        self.send_window = wire.SendWindow()
        self.finished = False  # the agent closed the stream, or we gave up
        self._frames = collections.deque()
        self._waiters = []
        self._failure = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        self.abandon()

    def _deliver(self, frame):
        self._frames.append(frame)
        if self._waiters:
            self._wake()

    def _fail(self, failure):
        if self._failure is None:
            self._failure = failure
        self.finished = True
        self._wake()

    def _wake(self):
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self):
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    async def next(self):
        """
        The next DATA, EVENT, END or RESULT frame; an ERROR frame or a lost
        session raises its typed exception.
        """
        frames = self._frames
        while not frames:
            if self._failure is not None:
                raise _fresh(self._failure)
            if self.finished:
                raise ProtocolError("STREAM_CLOSED", f"stream {self.id} is closed")
            await self._wait()
        frame = frames.popleft()
        if frame.type is _ERROR:
            raise error_from_payload(frame_json(frame))
        return frame

    async def result(self):
        """
        Skip to the RESULT and return its JSON (DATA is discarded).
        """
        while True:
            frame = await self.next()
            if frame.type is _RESULT:
                return frame_json(frame)
            if frame.type is _DATA:
                await self.consumed(len(frame.payload))

    async def consumed(self, n):
        """
        The caller used ``n`` bytes of DATA: grant credit back when due.
        """
        grant = self.recv_window.consumed(n)
        if grant and not self.finished:
            await self.session.send(wire.window(self.id, grant))

    async def send_data(self, chunk, channel=wire.CHANNEL_BODY):
        """
        Send ``chunk`` as DATA within the agent's credit, waiting for WINDOW
        frames as needed.  An early ERROR from the agent raises here.
        """
        view = memoryview(chunk).cast("B")
        while view:
            if self.finished:
                await self._raise_final()
            credit = self.send_window.credit
            if credit <= 0:
                await self._wait()
                continue
            n = min(len(view), credit, wire.CHUNK_SIZE)
            self.send_window.take(n)
            await self.session.send(wire.data(self.id, view[:n], channel))
            view = view[n:]

    async def end(self):
        """
        No more DATA from us.
        """
        if self.finished:
            await self._raise_final()
        await self.session.send(wire.end(self.id))

    async def _raise_final(self):
        while True:
            frame = await self.next()
            if frame.type is _RESULT:
                raise ProtocolError(
                    "UNEXPECTED_FRAME", f"stream {self.id} ended before its body was sent"
                )

    def abandon(self):
        """
        The caller gives up before the end: CANCEL the request and forget it.
        """
        if self.finished:
            return
        self.finished = True
        self.session._forget(self)
        self.session.send_soon(wire.cancel(self.id))
