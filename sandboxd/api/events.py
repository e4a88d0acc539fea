"""
``GET /events``: the daemon's events as a Server-Sent Events stream
(docs/events.md).

Each event is written as::

    id: 42
    event: sandbox.created
    data: {"id": 42, "type": "sandbox.created", ...}

The stream starts with a bare ``id:`` line: the point it starts from, so a
client that reconnects before any event came misses nothing.  A client that
reconnects with ``Last-Event-ID: 42`` (or asks ``?after=42``)
first gets every kept event after 42 from the store, then new ones as they
are recorded; if some of the events it missed are no longer kept, a ``gap``
event (no ``id:``) says which.  ``?sandbox=`` and ``?type=`` filter.

The stream is a push producer registered with the connection: while the
client does not read, the transport pauses it.  A paused replay simply
waits (the store holds the events); a paused live stream buffers at most
``max_buffered`` events, then sends a final ``dropped`` event and closes,
so a slow subscriber costs a bounded amount of memory and never slows the
reactor.  A comment line every ``keepalive`` seconds keeps proxies from
closing an idle stream.
"""

import json
from collections import deque

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from sandboxd.api.errors import invalid_field
from sandboxd.api.requests import event_json
from sandboxd.eventfeed import EventFilter, IEventSubscriber

#: Seconds between keep-alive comments.
KEEPALIVE = 15.0
#: Live events held for a paused subscriber before it is dropped.
MAX_BUFFERED = 1000
#: Kept events read from the store per reactor turn during a replay.
REPLAY_PAGE = 200
#: Seconds a dropped subscriber gets to read its final event before its
#: connection is aborted.
DROP_GRACE = 30.0
#: Streams open at once; more are refused (503 AT_CAPACITY): each may hold
#: MAX_BUFFERED events while its client is slow.
MAX_SUBSCRIBERS = 256
#: Longest ``?type=`` or ``?sandbox=`` value taken.
_MAX_FILTER = 256


def encode_event(event):
    """
    The bytes of one event on the stream.
    """
    data = json.dumps(event_json(event), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


def encode_control(kind, data):
    """
    The bytes of a stream event that is not a recorded one (``gap``,
    ``dropped``): no ``id:``, so a client's Last-Event-ID is unchanged.
    """
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _last_value(request, name):
    values = request.args.get(name.encode(), [])
    if not values:
        return None
    text = values[-1].decode("utf-8", "replace")
    if len(text) > _MAX_FILTER:
        raise invalid_field(name, f"longer than {_MAX_FILTER} characters")
    return text


def _parse_id(text, name):
    text = text.strip()
    if not text.isdigit() or len(text) > 18:
        raise invalid_field(name, f"{text[:40]!r} is not an event id (a whole number >= 0)")
    return int(text)


def parse_stream_request(request):
    """
    ``(after, EventFilter)`` from a ``GET /events`` request: ``after`` is
    the ``Last-Event-ID`` header, else ``?after=``, else None (new events
    only).  Raise ApiError for a malformed value.
    """
    header = request.getHeader(b"last-event-id")
    if header is not None and header.strip():
        after = _parse_id(header, "Last-Event-ID")
    else:
        query = _last_value(request, "after")
        after = None if query is None else _parse_id(query, "after")
    sandbox = _last_value(request, "sandbox") or None
    types = []
    for value in request.args.get(b"type", []):
        for name in value.decode("utf-8", "replace").split(","):
            if len(name) > _MAX_FILTER:
                raise invalid_field("type", f"longer than {_MAX_FILTER} characters")
            if name.strip():
                types.append(name.strip())
    return after, EventFilter(sandbox, types)


@implementer(IPushProducer, IEventSubscriber)
class EventStream:
    """
    One client's SSE stream over ``feed`` (an IEventFeed).
    """

    log = Logger()

    def __init__(self, request, feed, clock, after, wanted,
                 keepalive=None, max_buffered=None):
        self._request = request
        self._feed = feed
        self._clock = clock
        self._after = after
        self._wanted = wanted
        self._keepalive = KEEPALIVE if keepalive is None else keepalive
        self._max_buffered = MAX_BUFFERED if max_buffered is None else max_buffered
        self._cursor = 0
        self._replaying = True
        self._paused = False
        self._done = False
        self._buffer = deque()
        self._pending = None
        self._abort = None
        self._ping = None
        self.sent = 0

    # Life of the stream

    def start(self):
        request = self._request
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Accel-Buffering", b"no")
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(self._closed)
        self._write(b": sandboxd events\n\n")
        self._cursor = self._startingPoint()
        # An id with no data sets the client's Last-Event-ID without an
        # event: a reconnect before any event continues from here exactly.
        self._write(f"id: {self._cursor}\n\n".encode())
        self._feed.subscribe(self)
        self._ping = LoopingCall(self._keepAlive)
        self._ping.clock = self._clock
        self._ping.start(self._keepalive, now=False)
        self._replay()

    def _startingPoint(self):
        """
        The id after which to send events, saying ``gap`` first if the
        client's id cannot be continued exactly.
        """
        oldest, newest = self._feed.bounds()
        newest = newest or 0
        after = self._after
        if after is None:
            return newest
        if after > newest:
            self._write(encode_control("gap", {
                "after": after, "next": newest + 1,
                "message": f"event {after} is newer than this daemon's newest ({newest}):"
                           " events from another log; continuing from here",
            }))
            return newest
        if oldest is not None and after < oldest - 1:
            self._write(encode_control("gap", {
                "after": after, "next": oldest,
                "message": f"events {after + 1} to {oldest - 1} are no longer kept",
            }))
        return after

    def _closed(self, _):
        self._done = True
        self._feed.unsubscribe(self)
        if self._ping is not None and self._ping.running:
            self._ping.stop()
        for call in (self._pending, self._abort):
            if call is not None and call.active():
                call.cancel()
        self._buffer.clear()

    # Sending

    def _write(self, data):
        self._request.write(data)

    def _send(self, event):
        self._cursor = event.id
        if self._wanted(event):
            self._write(encode_event(event))
            self.sent += 1

    def _replay(self):
        """
        Send kept events from the store until caught up (then go live), a
        page per reactor turn, stopping while paused.
        """
        self._pending = None
        while not self._paused and not self._done:
            page = self._feed.replay(self._cursor, REPLAY_PAGE)
            for event in page:
                self._send(event)
            if len(page) < REPLAY_PAGE:
                # Caught up: every later event reaches ``deliver``.
                self._replaying = False
                return
            if not self._paused:
                self._pending = self._clock.callLater(0, self._replay)
            return

    def deliver(self, event):
        if self._done or self._replaying or event.id <= self._cursor:
            # While replaying, the store has it and the replay gets to it.
            return
        if not self._paused:
            self._send(event)
            return
        if not self._wanted(event):
            self._cursor = event.id
            return
        self._buffer.append(event)
        if len(self._buffer) > self._max_buffered:
            self._drop()

    def _keepAlive(self):
        if not self._paused and not self._done:
            self._write(b": keep-alive\n\n")

    def _drop(self):
        """
        The client reads too slowly: say so, end the stream, and abort the
        connection if it has not read that much ``DROP_GRACE`` seconds on.
        """
        delivered = self._cursor
        self.log.warn("dropping a slow event subscriber after event {id}", id=delivered)
        self._buffer.clear()
        self._write(encode_control("dropped", {
            "last_id": delivered,
            "message": f"more than {self._max_buffered} events waited for this client;"
                       f" reconnect with Last-Event-ID: {delivered}",
        }))
        transport = self._request.channel.transport
        self._feed.unsubscribe(self)
        self._replaying = True  # deliver nothing more
        self._request.unregisterProducer()
        self._request.finish()
        transport.loseConnection()
        self._abort = self._clock.callLater(
            DROP_GRACE, getattr(transport, "abortConnection", transport.loseConnection))

    # IPushProducer

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        if self._done or not self._paused:
            return
        self._paused = False
        while self._buffer and not self._paused:
            self._send(self._buffer.popleft())
        if self._replaying and self._pending is None and not self._paused:
            self._replay()

    def stopProducing(self):
        self._closed(None)


class EventStreamResource(Resource):
    """
    The resource ``GET /events`` hands the request to, once its query is
    checked.
    """

    isLeaf = True

    def __init__(self, feed, clock, after, wanted):
        super().__init__()
        self._feed = feed
        self._clock = clock
        self._after = after
        self._wanted = wanted

    def render_GET(self, request):
        EventStream(request, self._feed, self._clock, self._after, self._wanted).start()
        return NOT_DONE_YET

    def render_HEAD(self, request):
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        return b""
