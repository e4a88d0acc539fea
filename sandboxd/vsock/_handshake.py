"""
A client connection that speaks a short line-based preamble before the
stream it carries: Firecracker's hybrid vsock (``CONNECT port`` / ``OK n``)
and the virtio-serial resynchronisation (``SANDBOXD-SYNC`` /
``SANDBOXD-SYNCED``).

L{PreambleEndpoint} wraps a Unix-socket client endpoint; its C{connect}
fires with the caller's protocol only once the preamble succeeded, with the
transport already handed over (bytes after the reply line go to that
protocol), or fails with a L{HandshakeFailed} naming what went wrong and
the connection closed.
"""

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

#: Seconds a peer may take to answer the preamble.
HANDSHAKE_TIMEOUT = 10.0


class HandshakeFailed(ConnectionError):
    """
    The peer did not complete the stream's preamble; the message says how.
    """


class _Preamble(Protocol):
    """
    Writes the request, reads until the reply the L{Dialogue} accepts, then
    hands the transport to the wrapped protocol and relays to it.
    """

    def __init__(self, dialogue, factory, addr, done, clock, timeout):
        self._dialogue = dialogue
        self._factory = factory
        self._addr = addr
        self._done = done
        self._clock = clock
        self._timeout = timeout
        self._buffer = b""
        self._timer = None
        self.wrapped = None

    def connectionMade(self):
        self._timer = self._clock.callLater(
            self._timeout, self._fail,
            HandshakeFailed(f"{self._dialogue.name}: no answer within {self._timeout:g}s"),
        )
        self.transport.write(self._dialogue.request())

    def dataReceived(self, data):
        if self.wrapped is not None:
            self.wrapped.dataReceived(data)
            return
        if self._done is None:
            return
        try:
            rest = self._dialogue.feed(data)
        except HandshakeFailed as e:
            self._fail(e)
            return
        if rest is None:
            return
        self._cancelTimer()
        try:
            self.wrapped = self._factory.buildProtocol(self._addr)
        except Exception as e:
            self._fail(e)
            return
        done, self._done = self._done, None
        wrapped = self.wrapped
        wrapped.makeConnection(self.transport)
        if rest:
            wrapped.dataReceived(rest)
        done.callback(wrapped)

    def connectionLost(self, reason):
        self._cancelTimer()
        if self.wrapped is not None:
            self.wrapped.connectionLost(reason)
        elif self._done is not None:
            done, self._done = self._done, None
            done.errback(HandshakeFailed(self._dialogue.closed(reason.value)))

    def _fail(self, error):
        self._cancelTimer()
        if self._done is not None:
            done, self._done = self._done, None
            self.transport.abortConnection()
            done.errback(error)

    def _cancelTimer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class _PreambleFactory(Factory):
    noisy = False  # one per connection attempt: no start/stop log lines
    def __init__(self, dialogue, factory, done, clock, timeout):
        self._dialogue = dialogue
        self._factory = factory
        self._done = done
        self._clock = clock
        self._timeout = timeout

    def buildProtocol(self, addr):
        return _Preamble(self._dialogue, self._factory, addr, self._done,
                         self._clock, self._timeout)


@implementer(IStreamClientEndpoint)
class PreambleEndpoint:
    """
    C{inner} (an IStreamClientEndpoint) with a preamble: C{new_dialogue()}
    makes the L{Dialogue} of each connection.
    """

    def __init__(self, inner, new_dialogue, clock, timeout=HANDSHAKE_TIMEOUT):
        self._inner = inner
        self._new_dialogue = new_dialogue
        self._clock = clock
        self._timeout = timeout

    def connect(self, factory):
        done = Deferred()
        preamble = _PreambleFactory(
            self._new_dialogue(), factory, done, self._clock, self._timeout
        )
        connecting = self._inner.connect(preamble)

        def failed(failure):
            if not done.called:
                done.errback(failure)

        connecting.addErrback(failed)
        return done
