"""
One open stream of a connection: its credit both ways, its inbound body and
the frames its request sends.
"""

import asyncio
import collections

from . import wire
from .wire import Code, ProtocolError


class Stream:
    """
    The agent's side of one request.

    The handler sends DATA within ``send_window`` and only while the
    connection is writable (``writable()``; ``on_writable`` and
    ``wait_writable`` wake it when a WINDOW arrives or the transport drains).
    Streams that take a body (fs.write) get an ``inbox``.
    """

    __slots__ = ("id", "conn", "send_window", "inbox", "task", "final", "_wakers")

    def __init__(self, conn, stream_id):
        self.id = stream_id
        self.conn = conn
        self.send_window = wire.SendWindow()
        self.inbox = None
        self.task = None
        #: The frame that ends the stream when its task is cancelled (None: silence).
        self.final = None
        self._wakers = []

    # Sending.

    def writable(self):
        return self.send_window.credit > 0 and not self.conn.paused

    def on_writable(self, callback):
        """
        Call ``callback()`` once, at the next WINDOW or transport resume.
        """
        self._wakers.append(callback)

    async def wait_writable(self):
        while not self.writable():
            waiter = asyncio.get_running_loop().create_future()
            self.on_writable(lambda: waiter.done() or waiter.set_result(None))
            await waiter

    def wake(self):
        wakers, self._wakers = self._wakers, []
        for callback in wakers:
            callback()

    def send_data(self, chunk, channel=wire.CHANNEL_BODY):
        """
        Send one DATA frame whose credit the caller has already taken.
        """
        self.conn.write(wire.data(self.id, chunk, channel))

    def send_event(self, obj):
        self.conn.write(wire.event(self.id, obj))

    # Receiving.

    def open_inbox(self):
        self.inbox = Inbox(self)

    def grant(self, increment):
        self.send_window.grant(increment)
        self.wake()

    def consumed(self, n):
        """
        ``n`` body bytes are on disk: grant credit back (batched).
        """
        increment = self.inbox.window.consumed(n)
        if increment:
            self.conn.write(wire.window(self.id, increment))

    # Ending.

    def cancel(self, final=None):
        """
        Stop the request; its task ends with ``final`` (a frame) or silently.
        """
        if self.task is None or self.task.done() or self.task.cancelling():
            return
        self.final = final
        self.task.cancel()


class Inbox:
    """
    The body a client sends on a stream: DATA chunks within the window, then END.
    """

    __slots__ = ("stream", "window", "chunks", "ended", "_waiter")

    def __init__(self, stream):
        self.stream = stream
        self.window = wire.ReceiveWindow()
        self.chunks = collections.deque()
        self.ended = False
        self._waiter = None

    def feed(self, frame):
        """
        Queue a DATA frame; ProtocolError when it breaks the protocol.
        """
        if self.ended:
            raise ProtocolError(Code.UNEXPECTED_FRAME, "DATA after END", frame.stream)
        if frame.flags != wire.CHANNEL_BODY:
            raise ProtocolError(
                Code.BAD_FLAGS, "a body is sent on channel 0", frame.stream
            )
        self.window.received(len(frame.payload), frame.stream)
        if frame.payload:
            self.chunks.append(frame.payload)
            self._wake()

    def end(self):
        self.ended = True
        self._wake()

    def _wake(self):
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self):
        """
        All chunks queued so far (waiting for at least one), or None after END.
        """
        while not self.chunks:
            if self.ended:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        chunks = list(self.chunks)
        self.chunks.clear()
        return chunks
