"""
Request bodies through the path proxy reach the app as they are sent
(sandboxd/tunnels/streaming.py), with backpressure, over loopback.
"""

from twisted.internet import reactor, tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyChannel

from sandboxd.tunnels import TunnelResource
from sandboxd.tunnels.streaming import BodyStream, StreamingRequest
from tests.tunnelloop import BOUND, LoopbackTestCase, Reader, buffered, until


class CountingApp(Protocol):
    """
    A raw HTTP app: counts the body bytes of one request as they come and
    answers with the count once all are in (``early``: answers 413 at once
    without reading the body); ``stall``: reads nothing after the head.
    """

    def connectionMade(self):
        self.factory.apps.append(self)
        self.head = b""
        self.body = 0
        self.length = None

    def dataReceived(self, data):
        if self.length is None:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            self.head, _, data = self.head.partition(b"\r\n\r\n")
            for line in self.head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    self.length = int(line.split(b":")[1])
            if self.factory.early:
                self.transport.write(b"HTTP/1.1 413 Too Big\r\nContent-Length: 0\r\n\r\n")
                self.transport.loseConnection()
                return
            if self.factory.stall:
                self.transport.pauseProducing()
        self.body += len(data)
        if self.body >= self.length:
            answer = str(self.body).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(answer), answer))


class StreamingUploadTests(LoopbackTestCase):
    """
    Request bodies through the path proxy reach the app as they are sent
    (sandboxd/tunnels/streaming.py), with backpressure.
    """

    def setUp(self):
        LoopbackTestCase.setUp(self)
        self.app = Factory.forProtocol(CountingApp)
        self.app.apps = []
        self.app.early = self.app.stall = False
        self.app_port = self.listen(self.app)
        site = Site(TunnelResource(self.tunnels, {self.sandbox.id: self.sandbox}.get, reactor),
                    requestFactory=StreamingRequest)
        self.proxy_port = self.listen(site)

    def head(self, length, path="/upload"):
        return (f"POST /sandboxes/{self.sandbox.id}/ports/{self.app_port}{path} HTTP/1.1\r\n"
                f"Host: localhost\r\nContent-Length: {length}\r\n\r\n").encode()

    async def test_streamed(self):
        """
        The app has the first part of a body while the caller has not sent
        the rest; the answer comes once all is in.
        """
        size = 4 << 20
        reader = await self.connect(self.proxy_port, Reader(self.head(size), pause=False))
        reader.transport.write(b"a" * (1 << 20))
        await until(lambda: self.app.apps and self.app.apps[0].body >= 1 << 20,
                    "the app got the first MiB")
        self.assertEqual(reader.received, 0)
        reader.transport.write(b"b" * (size - (1 << 20)))
        await until(lambda: str(size).encode() in reader.head, "the answer")
        self.assertIn(b"HTTP/1.1 200", reader.head)

    async def test_backpressure(self):
        """
        An app that stops reading makes the daemon stop reading the
        caller: its channel's transport is paused, and what it holds for
        the body stays bounded.
        """
        self.app.stall = True
        reader = await self.connect(self.proxy_port, Reader(self.head(64 << 20), pause=False))
        await until(lambda: self.app.apps, "the app connected")
        piece = b"u" * (1 << 20)
        for _ in range(16):
            reader.transport.write(piece)

        def upstream():
            return [c for c in reactor.getWriters() + list(reactor.getReaders())
                    if isinstance(c, tcp.Client) and c.getPeer().port == self.app_port]

        def paused():
            streams = [c.producer for c in upstream() if isinstance(c.producer, BodyStream)]
            return streams and all(s._transport not in reactor.getReaders() for s in streams)

        await until(paused, "the daemon stopped reading the caller")
        for connection in upstream():
            self.assertLess(buffered(connection), BOUND)
        self.assertLess(self.app.apps[0].body, 1 << 20)

    async def test_answered_early(self):
        """
        An app that answers before reading the body: the caller gets the
        answer, the rest of its body is read and dropped, and the same
        connection serves the next request.
        """
        self.app.early = True
        size = 8 << 20
        reader = await self.connect(self.proxy_port, Reader(self.head(size), pause=False))
        for _ in range(size // (1 << 20)):
            reader.transport.write(b"x" * (1 << 20))
        await until(lambda: b"HTTP/1.1 413" in reader.head, "the early answer")
        self.app.early = False
        reader.transport.write(self.head(5, "/again") + b"hello")
        await until(lambda: reader.head.count(b"HTTP/1.1") == 2, "the second answer")
        self.assertIn(b"HTTP/1.1 200", reader.head.split(b"HTTP/1.1 413")[1])



class SignedBodyTests(SynchronousTestCase):
    """
    On a site whose ``signedBodies`` says a connection's bodies are signed
    (multi-tenancy over TCP, sandboxd/api/identity.py), a path-proxy body
    is not streamed: it is read whole first, so its hash can be checked.
    """

    def request(self, signed):
        channel = DummyChannel()
        channel.site = Site(Resource())  # (DummyChannel's site is shared)
        channel._path = b"/sandboxes/sbx-1/ports/8080/upload"
        channel._command, channel._version = b"POST", b"HTTP/1.1"
        if signed is not None:
            channel.site.signedBodies = lambda transport: signed
        request = StreamingRequest(channel)
        request.gotLength(1 << 20)
        return request

    def test_signed_not_streamed(self):
        """
        Signed: no body stream (the whole body is kept); unsigned or a site
        that does not say: the body streams.
        """
        self.assertIsNone(self.request(True).bodyStream)
        self.assertIsNotNone(self.request(False).bodyStream)
        self.assertIsNotNone(self.request(None).bodyStream)
