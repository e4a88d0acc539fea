"""
``GET /events`` at the router: every live node's event stream merged into
one, with per-node cursors.

The router subscribes to ``GET /events`` on each node (the caller's headers,
signature included, pass through) and re-emits each event as it comes.  Its
``id:`` is a composite cursor naming the last event seen from every node,
``n1:42,n2:7``; a client that reconnects with that ``Last-Event-ID`` gets
each node's stream resumed after its own cursor, so nothing recorded while
it was away is lost, whichever node recorded it.  A plain number (``0``:
everything kept) applies to every node.  (``?after=`` is refused: the
query is signed, so the router cannot rewrite it per node.)

A node that joins is subscribed to (from the cursor the client holds for
it, if any: a node that comes back replays what it recorded meanwhile).  A
node the directory reports lost ends its part of the stream with a
``node.lost`` event ``{"type": "node.lost", "data": {"node_id": ...}}`` (no
``id:`` of its own).  A node stream that ends while the node is still live
(a restart inside the lease time) is re-subscribed after ``RETRY`` seconds.
"""

import json
import re

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from sandboxd.router.forward import NodeUnreachable, forwarded_headers
from sandboxd.sandbox import iso_time

#: Seconds before a node stream that ended is opened again.
RETRY = 1.0
#: Seconds between keep-alive comments.
KEEPALIVE = 15.0
#: Longest SSE line taken from a node (a bigger one ends that node's stream).
MAX_LINE = 1 << 20
_CURSOR = re.compile(r"([a-z0-9]{1,16}):(\d{1,18})")


class CursorError(ValueError):
    """A Last-Event-ID that is not a router cursor."""


def parse_cursor(text):
    """
    ``{node_id: event id}`` from ``n1:42,n2:7``; a plain number (what a
    client of a single node sends, ``0`` for everything kept) applies to
    every node, under the key ``"*"``.  CursorError if malformed.
    """
    cursors = {}
    if text.strip().isdigit() and len(text.strip()) <= 18:
        return {"*": int(text.strip())}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _CURSOR.fullmatch(part)
        if match is None:
            raise CursorError(f"Last-Event-ID {text[:80]!r} is not a router cursor "
                              "(node:id pairs separated by commas)")
        cursors[match[1]] = int(match[2])
    return cursors


def format_cursor(cursors):
    return ",".join(f"{node}:{cursors[node]}" for node in sorted(cursors) if node != "*")


class _NodeStream:
    """Parses one node's SSE body into events for the merged stream."""

    def __init__(self, merged, node_id):
        self.merged = merged
        self.node_id = node_id
        self.transport = None
        self._buffer = b""
        self._fields = {}

    def makeConnection(self, transport):
        self.transport = transport

    def dataReceived(self, data):
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._line(line.rstrip(b"\r").decode("utf-8", "replace"))
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
            self.transport.stopProducing()

    def _line(self, line):
        if not line:
            fields, self._fields = self._fields, {}
            if fields:
                self.merged.nodeEvent(self.node_id, fields)
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        self._fields[name] = value[1:] if value.startswith(" ") else value

    def connectionLost(self, reason):
        self.merged.nodeStreamEnded(self, self.node_id)


class MergedEventStream:
    """
    One caller's merged stream: writes SSE to ``request`` from every node
    in ``directory``, through ``forwarder``, starting after ``cursors``.
    """

    log = Logger()

    def __init__(self, request, directory, forwarder, clock, cursors):
        self._request = request
        self._directory = directory
        self._forwarder = forwarder
        self._clock = clock
        self.cursors = dict(cursors)
        self._streams = {}
        self._headers = forwarded_headers(request)
        self._headers.removeHeader(b"last-event-id")
        self._closed = False
        self._retries = set()
        self._ping = LoopingCall(self._write, b": keep-alive\n\n")
        self._ping.clock = clock

    def start(self):
        request = self._request
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        self._write(b": sandboxd-router events\n\n")
        self._write(f"id: {format_cursor(self.cursors)}\n\n".encode())
        self._directory.observe(self)
        for node in list(self._directory.nodes.values()):
            self._subscribe(node)
        self._ping.start(KEEPALIVE, now=False)
        request.notifyFinish().addBoth(self._finished)

    def _write(self, data):
        if not self._closed:
            self._request.write(data)

    def _finished(self, _):
        self._closed = True
        self._directory.unobserve(self)
        if self._ping.running:
            self._ping.stop()
        for stream in list(self._streams.values()):
            if stream.transport is not None:
                stream.transport.stopProducing()
        self._streams.clear()
        for call in list(self._retries):
            if call.active():
                call.cancel()
        self._retries.clear()

    def _subscribe(self, node):
        if self._closed or node.node_id in self._streams:
            return
        headers = Headers(dict(self._headers.getAllRawHeaders()))
        cursor = self.cursors.get(node.node_id, self.cursors.get("*"))
        if cursor is not None:
            headers.setRawHeaders(b"last-event-id", [str(cursor).encode()])
        stream = _NodeStream(self, node.node_id)
        self._streams[node.node_id] = stream
        answer = self._forwarder.request(node, b"GET", self._request.uri, headers)

        def opened(response):
            if self._closed or self._streams.get(node.node_id) is not stream:
                response.deliverBody(_Discard())
                return
            if response.code != 200:
                self.log.info("node {node} refused the event stream: HTTP {code}",
                              node=node.node_id, code=response.code)
                response.deliverBody(_Discard())
                self._streams.pop(node.node_id, None)
                return
            response.deliverBody(stream)

        def failed(failure):
            failure.trap(NodeUnreachable)
            self.nodeStreamEnded(stream, node.node_id)

        answer.addCallbacks(opened, failed).addErrback(
            lambda f: self.log.failure("subscribing to {node}", f, node=node.node_id))

    def nodeEvent(self, node_id, fields):
        event_id = fields.get("id")
        if event_id is not None and event_id.isdigit():
            self.cursors[node_id] = int(event_id)
        if "data" not in fields:
            if event_id is not None:
                self._write(f"id: {format_cursor(self.cursors)}\n\n".encode())
            return
        lines = []
        if event_id is not None:
            lines.append(f"id: {format_cursor(self.cursors)}")
        if "event" in fields:
            lines.append(f"event: {fields['event']}")
        lines.append(f"data: {fields['data']}")
        self._write(("\n".join(lines) + "\n\n").encode())

    def nodeStreamEnded(self, stream, node_id):
        if self._streams.get(node_id) is not stream:
            return
        del self._streams[node_id]
        if not self._closed:
            call = self._clock.callLater(RETRY, self._retry, node_id)
            self._retries.add(call)

    def _retry(self, node_id):
        self._retries = {c for c in self._retries if c.active()}
        node = self._directory.get(node_id)
        if node is not None:
            self._subscribe(node)

    # The directory's observer

    def nodeJoined(self, node):
        self._subscribe(node)

    def nodeLost(self, node_id):
        stream = self._streams.pop(node_id, None)
        if stream is not None and stream.transport is not None:
            stream.transport.stopProducing()
        event = {"id": None, "type": "node.lost", "sandbox_id": None, "identity": "",
                 "timestamp": iso_time(self._clock.seconds()), "data": {"node_id": node_id}}
        self._write(f"event: node.lost\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
                    .encode())


class _Discard:
    def makeConnection(self, transport):
        pass

    def dataReceived(self, data):
        pass

    def connectionLost(self, reason):
        pass
