"""
Helpers for the tunnel tests over real sockets on loopback, with no engine:
the "sandbox" is a server of this process on 127.0.0.1.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from sandboxd.config import LimitsConfig, TunnelsConfig
from sandboxd.sandbox import Sandbox, State
from sandboxd.store import Store
from sandboxd.tunnels import TunnelResource, Tunnels

CHUNK = b"x" * 65536
#: The most a relay may hold for one direction while its reader is stopped.
BOUND = 1 << 20


async def until(predicate, what, timeout=30.0):
    """
    Wait for a condition (polling the reactor), failing after ``timeout``.
    """
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what}: not true within {timeout} s")
        await deferLater(reactor, 0.01, lambda: None)


def buffered(transport):
    """
    Bytes a Twisted TCP transport holds, not yet written to its socket.
    """
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


@implementer(IPushProducer)
class Firehose:
    """
    Writes CHUNKs to ``consumer`` for as long as it is not paused.
    """

    def __init__(self, consumer):
        self.consumer = consumer
        self.paused = False
        self.stopped = False
        self.sent = 0
        self.pauses = 0

    def start(self):
        self.consumer.registerProducer(self, True)
        self._pump()

    def _pump(self):
        if self.paused or self.stopped:
            return
        self.consumer.write(CHUNK)
        self.sent += len(CHUNK)
        reactor.callLater(0, self._pump)

    def pauseProducing(self):
        self.paused = True
        self.pauses += 1

    def resumeProducing(self):
        self.paused = False
        self._pump()

    def stopProducing(self):
        self.stopped = True


class FirehoseServer(Protocol):
    """
    Streams forever once connected (``after`` set: once it has received
    that many request-head bytes ending in a blank line, answering 101).
    """

    def connectionMade(self):
        self.factory.connections.append(self)
        self.received = b""
        self.hose = Firehose(self.transport)
        if not self.factory.upgrade:
            self.hose.start()

    def dataReceived(self, data):
        self.received += data
        if self.factory.upgrade and b"\r\n\r\n" in self.received and self.hose.sent == 0:
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: firehose\r\n"
                b"Connection: Upgrade\r\n\r\n")
            self.hose.start()

    def connectionLost(self, reason):
        self.hose.stopProducing()


class FirehoseResource(Resource):
    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.hoses = []

    def render_GET(self, request):
        hose = Firehose(request)
        self.hoses.append(hose)
        request.notifyFinish().addErrback(lambda f: hose.stopProducing())
        hose.start()
        return NOT_DONE_YET


class Reader(Protocol):
    """
    A client that stops reading at once (until ``resume``), counting what
    it gets.
    """

    def __init__(self, send=b"", pause=True):
        self.send = send
        self.pause = pause
        self.received = 0
        self.head = b""
        self.lost = Deferred()

    def connectionMade(self):
        if self.send:
            self.transport.write(self.send)
        if self.pause:
            self.transport.pauseProducing()

    def dataReceived(self, data):
        if len(self.head) < 2000:
            self.head += data[:2000]
        self.received += len(data)

    def resume(self):
        self.transport.resumeProducing()

    def connectionLost(self, reason):
        self.lost.callback(None)


def loopback_sandbox(agent_port=1):
    return Sandbox(
        id="sbx-100p0000", profile="default", image="i", runtime="docker", memory=1,
        cpu=1.0, storage=1, secret="s", state=State.RUNNING,
        endpoint=f"tcp:127.0.0.1:{agent_port}",
    )


class LoopbackTestCase(TestCase):
    limits = LimitsConfig(max_tunnels=2, max_connections_per_tunnel=3)

    def setUp(self):
        self.store = Store(self.mktemp())
        self.addCleanup(self.store.close)
        self.tunnels = Tunnels(reactor, self.store, self.limits,
                               TunnelsConfig(connect_timeout=2.0, expose_timeout=2.0))
        self.sandbox = loopback_sandbox()
        self.addCleanup(self.tunnels.closeAll, self.sandbox, "test over")

    def listen(self, factory):
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def firehose(self, upgrade=False):
        factory = Factory.forProtocol(FirehoseServer)
        factory.connections = []
        factory.upgrade = upgrade
        return factory, self.listen(factory)

    async def connect(self, port, protocol):
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        client = await connectProtocol(endpoint, protocol)
        self.addCleanup(lambda: client.transport.abortConnection())
        return client

    def proxySite(self):
        site = Site(TunnelResource(self.tunnels, {self.sandbox.id: self.sandbox}.get, reactor))
        return self.listen(site)
