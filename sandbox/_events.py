"""
The daemon's event stream (``GET /events``, Server-Sent Events) as an async
iterator: ``async for event in client.events(): ...``.

The iterator reconnects by itself when the connection drops or the daemon
drops a slow reader, sending ``Last-Event-ID`` so that no recorded event is
lost or repeated; a ``gap`` event says when the daemon no longer kept some.
"""

import asyncio
import contextlib
import json
from urllib.parse import urlencode

from sandbox._http import _parse_head
from sandbox._sse import SSEReader
from sandbox.errors import DaemonUnavailableError, ProtocolError, error_from_http

#: Seconds without a byte (the daemon sends a comment every 15 s) before the
#: connection is taken for dead and made again.
READ_TIMEOUT = 45.0
#: Seconds between reconnection attempts: the first, and the cap.
RETRY_FIRST, RETRY_MAX = 0.25, 5.0


class DaemonEvent:
    """
    One event: ``id`` (None for ``gap`` and ``dropped``, which the stream
    itself says), ``type``, ``sandbox_id``, ``identity``, ``timestamp`` (ISO
    8601 text) and ``data`` (a dict).
    """

    __slots__ = ("id", "type", "sandbox_id", "identity", "timestamp", "data")

    def __init__(self, id, type, sandbox_id=None, identity="", timestamp=None, data=None):
        self.id = id
        self.type = type
        self.sandbox_id = sandbox_id
        self.identity = identity
        self.timestamp = timestamp
        self.data = data or {}

    def __repr__(self):
        return f"DaemonEvent({self.id!r}, {self.type!r}, {self.sandbox_id!r}, {self.data!r})"

    @classmethod
    def from_message(cls, message):
        try:
            body = json.loads(message.data)
        except ValueError:
            raise ProtocolError("BAD_RESPONSE", "an event's data is not JSON") from None
        if message.id is None:
            return cls(None, message.event, data=body)
        return cls(body.get("id"), body.get("type", message.event), body.get("sandbox_id"),
                   body.get("identity", ""), body.get("timestamp"), body.get("data"))


async def stream_events(http, after=None, sandbox=None, types=(), reconnect=True):
    """
    Yield the daemon's events (DaemonEvent) through ``http`` (an
    HTTPClient): those after id ``after`` first (None: only new ones),
    filtered by ``sandbox`` and ``types`` (names or prefixes like
    ``"sandbox."``).  With ``reconnect``
    a lost connection is made again (the daemon restarting too); without,
    it ends the iteration.
    """
    query = {}
    if sandbox:
        query["sandbox"] = sandbox
    if types:
        query["type"] = ",".join(types)
    path = f"{http.endpoint.prefix}/events" + (f"?{urlencode(query)}" if query else "")
    last_id = None if after is None else str(after)
    delay = RETRY_FIRST
    while True:
        reader = SSEReader()
        try:
            async with contextlib.aclosing(_one_stream(http, path, last_id, reader)) as messages:
                async for message in messages:
                    delay = RETRY_FIRST
                    if message.event == "dropped":
                        break
                    yield DaemonEvent.from_message(message)
        except (DaemonUnavailableError, ConnectionError, asyncio.IncompleteReadError,
                TimeoutError):
            if not reconnect:
                raise
        finally:
            if reader.last_id is not None:
                last_id = reader.last_id
        if not reconnect:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX)


async def _one_stream(http, path, last_id, reader):
    """
    One connection's messages; returns when the daemon ends the stream.
    """
    connection = await http.connect()
    try:
        head = f"GET {path} HTTP/1.1\r\n{http._headers}Accept: text/event-stream\r\n"
        if last_id is not None:
            head += f"Last-Event-ID: {last_id}\r\n"
        connection.writer.write((head + "\r\n").encode("latin-1"))
        async with asyncio.timeout(READ_TIMEOUT):
            raw = await connection.reader.readuntil(b"\r\n\r\n")
        status, reason, _, headers = _parse_head(raw)
        if status != 200:
            length = min(int(headers.get("content-length", "0") or 0), 1 << 16)
            body = await connection.reader.readexactly(length)
            raise error_from_http(status, reason, headers, body)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        while True:
            async with asyncio.timeout(READ_TIMEOUT):
                data = await _next_piece(connection.reader, chunked)
            if not data:
                return
            for message in reader.feed(data):
                yield message
    finally:
        connection.close()


async def _next_piece(reader, chunked):
    """
    The next bytes of the body (b"" at its end).
    """
    if not chunked:
        return await reader.read(1 << 16)
    line = await reader.readuntil(b"\r\n")
    try:
        size = int(line.split(b";", 1)[0].strip(), 16)
    except ValueError:
        raise ProtocolError("BAD_RESPONSE", "bad chunk size") from None
    if size == 0:
        return b""
    chunk = await reader.readexactly(size + 2)
    return chunk[:-2]

