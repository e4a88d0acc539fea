"""
Byte relays between a caller and a port inside a sandbox, in the style of
Twisted's ``twisted.protocols.portforward``: the accepted side is paused
until the sandbox side connects, then each transport is registered as the
other's streaming producer, so a slow reader on one side stops the daemon
reading from the other (the buffers in between stay bounded by the
transports' own high-water marks).

- L{Pipe}: one end of a relay; what it receives its peer writes.
- L{join}: wire two connected pipes together, producers both ways.
- L{Inbound} / L{HostPortFactory}: a dedicated host port's accepted
  connections, each relayed to the sandbox's port.
- L{take_over}: turn an HTTP request's connection into one end of a relay
  (the path proxy's WebSocket and other ``Upgrade`` requests).
"""

from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper

#: Seconds to wait for the sandbox's port to accept a connection.
CONNECT_TIMEOUT = 5.0


class Pipe(Protocol):
    """
    One end of a relay.  Bytes it receives are written to its peer's
    transport; when either end goes, the other is closed after what it
    holds is written.
    """

    peer = None

    def dataReceived(self, data):
        if self.peer is not None:
            self.peer.transport.write(data)

    def connectionLost(self, reason):
        peer, self.peer = self.peer, None
        if peer is not None:
            peer.peer = None
            peer.transport.loseConnection()


def join(one, other):
    """
    Relay between two connected pipes: each transport becomes the other's
    streaming producer, so a full write buffer on one side pauses reading
    on the other.
    """
    one.peer, other.peer = other, one
    one.transport.registerProducer(other.transport, True)
    other.transport.registerProducer(one.transport, True)


class _PipeFactory(Factory):
    protocol = Pipe
    noisy = False


def connect_sandbox(reactor, address, port, timeout=CONNECT_TIMEOUT):
    """
    Connect a L{Pipe} to ``address:port``; a Deferred firing with it (or
    failing with the connection error, ``TimeoutError`` after ``timeout``
    seconds).
    """
    endpoint = TCP4ClientEndpoint(reactor, address, port, timeout=timeout)
    return endpoint.connect(_PipeFactory())


class Inbound(Pipe):
    """
    A connection accepted on a dedicated host port: it reads nothing until
    its sandbox-side connection is made, then relays both ways.
    """

    log = Logger()
    _connecting = None

    def connectionMade(self):
        self.transport.pauseProducing()
        self.factory.opened(self)
        self._connecting = self.factory.connect()
        self._connecting.addCallbacks(self._connected, self._failed)

    def _connected(self, outbound):
        self._connecting = None
        if self.transport.disconnecting or not self.transport.connected:
            outbound.transport.loseConnection()
            return
        join(self, outbound)
        self.transport.resumeProducing()

    def _failed(self, failure):
        self._connecting = None
        if failure.check(CancelledError):
            return
        self.log.info(
            "tunnel {tunnel}: the sandbox's port refused a relayed connection: {why}",
            tunnel=self.factory.name, why=failure.getErrorMessage(),
        )
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            connecting.cancel()
        Pipe.connectionLost(self, reason)
        self.factory.closed(self)


class HostPortFactory(ServerFactory):
    """
    The listening side of one dedicated host port: relays each accepted
    connection to ``address:port`` in the sandbox, at most
    ``max_connections`` at once (one more is closed at once and counted in
    ``refused``).
    """

    protocol = Inbound
    noisy = False
    log = Logger()

    def __init__(self, reactor, name, address, port, max_connections,
                 connect_timeout=CONNECT_TIMEOUT):
        self._reactor = reactor
        self.name = name
        self.address = address
        self.port = port
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.live = set()
        self.accepted = 0
        self.refused = 0

    def buildProtocol(self, addr):
        if len(self.live) >= self.max_connections:
            self.refused += 1
            self.log.info(
                "tunnel {tunnel}: connection from {peer} refused"
                " ({n} open: limits.max_connections_per_tunnel)",
                tunnel=self.name, peer=addr, n=len(self.live),
            )
            return None
        return ServerFactory.buildProtocol(self, addr)

    def connect(self):
        return connect_sandbox(self._reactor, self.address, self.port, self.connect_timeout)

    def opened(self, inbound):
        self.accepted += 1
        self.live.add(inbound)

    def closed(self, inbound):
        self.live.discard(inbound)

    def closeAll(self):
        """
        Cut every open relay (both ends, without waiting for buffers).
        """
        for inbound in list(self.live):
            peer = inbound.peer
            inbound.transport.abortConnection()
            if peer is not None:
                peer.transport.abortConnection()


def take_over(request, outbound):
    """
    Make the connection that carried ``request`` (an HTTP request the
    sandbox's app is answering on ``outbound``) one end of a relay to
    ``outbound``: from now on its bytes go both ways unparsed.  Return the
    new pipe on the caller's side.

    Twisted Web hands the transport over as autobahn's WebSocketResource
    does: the channel lets go of it, our pipe becomes its protocol, and
    reading (paused while the request was served) resumes.
    """
    channel = request.channel
    channel.setTimeout(None)
    transport, channel.transport = channel.transport, None
    caller = Pipe()
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = caller
    elif isinstance(getattr(transport, "protocol", None), ProtocolWrapper):
        transport.protocol.wrappedProtocol = caller
    else:
        transport.protocol = caller
    transport.unregisterProducer()
    caller.makeConnection(transport)
    join(caller, outbound)
    transport.resumeProducing()
    return caller
