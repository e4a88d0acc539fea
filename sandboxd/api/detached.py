"""
The streams of a WebSocket session whose client dropped, kept until it
comes back (``?resume=<token>``), the sandbox's ttl runs out, or the sandbox
goes.

While detached, the session keeps what the agent sends, in order, up to
``limit`` bytes.  Output is acknowledged to the agent as it arrives, so the
sandbox's processes run on instead of blocking on a full pipe; output beyond
the limit is dropped and counted, and the client is told how much with an
``EVENT {"dropped_bytes": n}`` on the stream, where the gap is.  Credit the
daemon granted for output the client then receives is taken back from the
client's own WINDOW frames (``owed``), so the agent's window stays true.
What the session sent before it dropped is in its ``log``
(sandboxd.api.sentlog), for what was lost in flight.
"""

from zope.interface import implementer

from agent import wire
from sandboxd.protocols.agent import IStreamHandler

_FT = wire.FrameType

#: Bytes of output kept for a detached session.
RESUME_BUFFER = 4 * 1024 * 1024


@implementer(IStreamHandler)
class DetachedSession:
    """
    A session's streams with no client: ``to_agent``/``to_client`` map
    client stream ids to agent stream ids and back, as in SandboxSession.
    """

    def __init__(self, token, connection, to_agent, to_client, owed, log, limit=None):
        self.token = token
        #: The session's SentLog.
        self.log = log
        self.connection = connection
        self.to_agent = to_agent
        self.to_client = to_client
        self.owed = owed
        self._limit = RESUME_BUFFER if limit is None else limit
        self._size = 0
        #: Encoded frames for the client, or ("dropped", client_stream) marks.
        self._kept = []
        self._dropped = {}
        self.expiry = None
        for stream in to_client:
            connection.reassign(stream, self)

    def frameReceived(self, frame):
        client_stream = self.to_client.get(frame.stream)
        if client_stream is None:
            return
        if frame.type is _FT.DATA and self.connection.connected:
            self.connection.send(wire.window(frame.stream, len(frame.payload)))
        if frame.type in wire.FINAL_TYPES:
            self._forget(frame.stream)
        if frame.type in (_FT.DATA, _FT.EVENT) and self._size + len(frame.payload) > self._limit:
            if client_stream not in self._dropped:
                self._dropped[client_stream] = 0
                self._kept.append(("dropped", client_stream))
            self._dropped[client_stream] += len(frame.payload)
            return
        if frame.type is _FT.DATA:
            self.owed[client_stream] = self.owed.get(client_stream, 0) + len(frame.payload)
        self._size += len(frame.payload)
        self._kept.append(wire.encode(frame.type, client_stream, frame.payload, frame.flags))

    def agentLost(self, stream, lost):
        client_stream = self.to_client.get(stream)
        self._forget(stream)
        if client_stream is not None:
            self._kept.append(wire.error(client_stream, lost.code, lost.message))

    def _forget(self, stream):
        client_stream = self.to_client.pop(stream, None)
        if client_stream is not None:
            self.to_agent.pop(client_stream, None)
            self.owed.pop(client_stream, None)
        self.connection.closeStream(stream)

    def kept(self):
        """
        What the client missed, in order, as encoded frames.
        """
        for item in self._kept:
            if isinstance(item, tuple):
                client_stream = item[1]
                yield wire.event(
                    client_stream, {"dropped_bytes": self._dropped[client_stream]}
                )
            else:
                yield item

    def discard(self):
        """
        Nobody came back: cancel what still runs on the agent.
        """
        if self.expiry is not None and self.expiry.active():
            self.expiry.cancel()
        for stream in list(self.to_client):
            self._forget(stream)
            if self.connection.connected:
                self.connection.send(wire.cancel(stream))
