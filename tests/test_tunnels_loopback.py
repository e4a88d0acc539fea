"""
Tunnels over real sockets on loopback, with no engine: the "sandbox" is a
server of this process on 127.0.0.1.  Pins down backpressure (a reader
that stops reading pauses the sandbox's writer, and what the daemon holds
meanwhile stays bounded: asserted on producer state and buffer sizes, not
on timing) through a dedicated host port, through the path proxy's HTTP
relay and through its Upgrade relay; and the registry's limits, events,
store rows, closing and re-binding after a restart.
"""

import json

from twisted.internet import error, reactor, tcp
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer
from zope.interface.verify import verifyObject
from twisted.internet.interfaces import IPushProducer

from sandboxd.api.errors import ApiError
from sandboxd.config import LimitsConfig, TunnelsConfig
from sandboxd.lifecycle import ISandboxObserver, Transition
from sandboxd.sandbox import Sandbox, State
from sandboxd.store import Store
from sandboxd.tunnels import TunnelResource, Tunnels
from sandboxd.tunnels.streaming import BodyStream, StreamingRequest

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
        cpu=1.0, storage=1, secret="s", state=State.RUNNING, host="127.0.0.1",
        port=agent_port,
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


class BackpressureTests(LoopbackTestCase):
    async def test_host_port(self):
        """
        Through a dedicated host port, a caller that stops reading pauses
        the sandbox's writer, with at most BOUND bytes held by the daemon
        and the sandbox-side socket no longer read; when the caller reads
        again, the writer resumes.
        """
        app, app_port = self.firehose()
        tunnel, _ = await self.tunnels.expose(self.sandbox, app_port)
        reader = await self.connect(tunnel.host_port, Reader())
        await until(lambda: tunnel.factory.live, "a relay open")
        inbound = next(iter(tunnel.factory.live))
        # The caller's socket is full: the relay stops reading the sandbox...
        await until(lambda: inbound.transport.producerPaused, "the relay paused its producer")
        self.assertNotIn(inbound.peer.transport, reactor.getReaders())
        # ...whose socket then fills: the app's writer pauses.
        await until(lambda: app.connections[0].hose.paused, "the sandbox's writer paused")
        self.assertTrue(inbound.transport.producerPaused)
        self.assertLess(buffered(inbound.transport), BOUND)
        self.assertLess(buffered(inbound.peer.transport), BOUND)
        reader.resume()
        await until(lambda: reader.received > 4 * BOUND, "the stream flowed again")

    async def test_path_proxy_http(self):
        """
        Through the path proxy, a caller that stops reading a response body
        pauses the sandbox app's writer; the daemon's side holds at most
        BOUND bytes for it.
        """
        resource = FirehoseResource()
        app_port = self.listen(Site(resource))
        proxy_port = self.proxySite()
        request = (f"GET /sandboxes/{self.sandbox.id}/ports/{app_port}/stream HTTP/1.1\r\n"
                   "Host: localhost\r\n\r\n").encode()
        reader = await self.connect(proxy_port, Reader(request))
        await until(lambda: resource.hoses and resource.hoses[0].paused,
                    "the app's writer paused")
        channels = [c for c in reactor.getWriters() + reactor.getReaders()
                    if getattr(c, "getHost", None) and c.getHost().port == proxy_port]
        for channel in channels:
            self.assertLess(buffered(channel), BOUND)
        reader.resume()
        await until(lambda: reader.received > 4 * BOUND, "the body flowed again")
        self.assertIn(b"HTTP/1.1 200", reader.head)

    async def test_path_proxy_upgrade(self):
        """
        After an Upgrade answered 101, the path proxy relays raw bytes with
        the same backpressure: a stopped reader pauses the app's writer.
        """
        app, app_port = self.firehose(upgrade=True)
        proxy_port = self.proxySite()
        request = (f"GET /sandboxes/{self.sandbox.id}/ports/{app_port}/ws HTTP/1.1\r\n"
                   "Host: localhost\r\nConnection: Upgrade\r\nUpgrade: firehose\r\n\r\n").encode()
        reader = await self.connect(proxy_port, Reader(request))
        await until(lambda: app.connections and app.connections[0].hose.paused,
                    "the app's writer paused")
        head = app.connections[0].received
        self.assertIn(b"GET /ws HTTP/1.1\r\n", head)
        self.assertIn(b"X-Forwarded-Prefix: /sandboxes/sbx-100p0000/ports/", head)
        reader.resume()
        await until(lambda: reader.received > 4 * BOUND, "the stream flowed again")
        self.assertTrue(reader.head.startswith(b"HTTP/1.1 101 Switching Protocols"))


class Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class RegistryTests(LoopbackTestCase):
    def echo(self):
        return self.listen(Factory.forProtocol(Echo))

    async def roundTrip(self, host_port):
        reader = await self.connect(host_port, Reader(b"hello", pause=False))
        await until(lambda: reader.received == 5, "the echo")
        reader.transport.loseConnection()
        return reader.head

    def events(self, type):
        return [e for e in self.store.events(0, 1000) if e.type == type]

    async def test_expose_close(self):
        """
        expose binds a host port relaying to the sandbox's port (recorded
        in the store, a tunnel.opened event); exposing it again gives the
        same one; close stops it (row gone, tunnel.closed).
        """
        port = self.echo()
        tunnel, new = await self.tunnels.expose(self.sandbox, port)
        self.assertTrue(new)
        self.assertEqual(await self.roundTrip(tunnel.host_port), b"hello")
        again, new = await self.tunnels.expose(self.sandbox, port)
        self.assertIs(again, tunnel)
        self.assertFalse(new)
        self.assertEqual([(r.port, r.host_port) for r in self.store.tunnels(self.sandbox.id)],
                         [(port, tunnel.host_port)])
        self.assertEqual(self.events("tunnel.opened")[0].data["host_port"], tunnel.host_port)
        self.assertEqual(self.tunnels.describe(self.sandbox.id)[0]["port"], port)
        self.assertTrue(self.tunnels.close(self.sandbox, port))
        self.assertFalse(self.tunnels.close(self.sandbox, port))
        self.assertEqual(self.store.tunnels(), [])
        self.assertEqual(self.events("tunnel.closed")[0].data["reason"], "DELETE")
        with self.assertRaises(error.ConnectionRefusedError):
            await self.connect(tunnel.host_port, Reader())

    async def test_limits(self):
        """
        A third tunnel with max_tunnels 2 is a 429 TOO_MANY_TUNNELS; the
        agent's port is a 403; a port nobody listens on is a 504
        PORT_NOT_READY after the timeout.
        """
        await self.tunnels.expose(self.sandbox, self.echo())
        await self.tunnels.expose(self.sandbox, self.echo())
        with self.assertRaises(ApiError) as caught:
            await self.tunnels.expose(self.sandbox, self.echo())
        self.assertEqual((caught.exception.status, caught.exception.code),
                         (429, "TOO_MANY_TUNNELS"))
        self.tunnels.closeAll(self.sandbox, "next")
        with self.assertRaises(ApiError) as caught:
            await self.tunnels.expose(self.sandbox, self.sandbox.port)
        self.assertEqual(caught.exception.code, "PORT_RESERVED")
        closed = self.echo()
        await self.tunnels.expose(self.sandbox, closed)
        self.tunnels.closeAll(self.sandbox, "next")
        nobody = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
        nobody_port = nobody.getHost().port
        await nobody.stopListening()
        with self.assertRaises(ApiError) as caught:
            await self.tunnels.expose(self.sandbox, nobody_port, timeout=0.3)
        self.assertEqual((caught.exception.status, caught.exception.code),
                         (504, "PORT_NOT_READY"))

    async def test_connection_limit(self):
        """
        With max_connections_per_tunnel 3, a fourth open connection is
        closed at once and counted as refused.
        """
        tunnel, _ = await self.tunnels.expose(self.sandbox, self.echo())
        for _ in range(3):
            await self.connect(tunnel.host_port, Reader(pause=False))
        await until(lambda: len(tunnel.factory.live) == 3, "three relays open")
        fourth = await self.connect(tunnel.host_port, Reader(pause=False))
        await fourth.lost
        self.assertEqual(tunnel.toJSON()["refused"], 1)

    def test_observer(self):
        """
        The registry is a lifecycle observer.
        """
        self.assertTrue(verifyObject(ISandboxObserver, self.tunnels))

    async def test_sandbox_ends(self):
        """
        A transition to destroying closes every tunnel of the sandbox and
        cuts their open connections, with the transition's reason.
        """
        tunnel, _ = await self.tunnels.expose(self.sandbox, self.echo())
        reader = await self.connect(tunnel.host_port, Reader(pause=False))
        await until(lambda: tunnel.factory.live, "a relay open")
        self.tunnels.sandboxChanged(
            Transition(self.sandbox, State.RUNNING, State.DESTROYING, "DELETE"))
        await reader.lost
        self.assertEqual(self.tunnels.ports(self.sandbox.id), [])
        self.assertEqual(self.store.tunnels(), [])
        self.assertEqual(self.events("tunnel.closed")[0].data["reason"], "DELETE")

    async def test_restart(self):
        """
        After a restart (a new registry over the same store), an adopted
        sandbox's tunnels are bound again on the same host ports; one whose
        host port is taken is forgotten with a tunnel.closed event saying
        why.
        """
        kept, _ = await self.tunnels.expose(self.sandbox, self.echo())
        lost, _ = await self.tunnels.expose(self.sandbox, self.echo())
        kept_port, lost_port = kept.host_port, lost.host_port
        # The old process goes: its ports close, its rows stay.
        await kept.close()
        await lost.close()
        squatter = reactor.listenTCP(lost_port, Factory.forProtocol(Echo), interface="127.0.0.1")
        self.addCleanup(squatter.stopListening)
        restarted = Tunnels(reactor, self.store, self.limits,
                            TunnelsConfig(connect_timeout=2.0, expose_timeout=2.0))
        self.addCleanup(restarted.closeAll, self.sandbox, "test over")
        restarted.sandboxChanged(Transition(self.sandbox, None, State.DISCONNECTED))
        [tunnel] = restarted.ports(self.sandbox.id)
        self.assertEqual((tunnel.port, tunnel.host_port), (kept.port, kept_port))
        self.assertEqual(await self.roundTrip(kept_port), b"hello")
        [why] = [e for e in self.events("tunnel.closed") if e.data["host_port"] == lost_port]
        self.assertIn("not re-bound after a restart", why.data["reason"])
        self.assertEqual([r.host_port for r in self.store.tunnels()], [kept_port])


class ProxyErrorTests(LoopbackTestCase):
    async def request(self, path, method="GET"):
        proxy_port = self.proxySite()
        reader = await self.connect(proxy_port, Reader(
            f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode(),
            pause=False))
        await reader.lost
        return reader.head

    async def test_not_listening(self):
        """
        A port nobody listens on is a 502 PORT_NOT_LISTENING naming it.
        """
        nobody = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
        port = nobody.getHost().port
        await nobody.stopListening()
        head = await self.request(f"/sandboxes/{self.sandbox.id}/ports/{port}/")
        self.assertIn(b"HTTP/1.1 502", head)
        body = json.loads(head.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(body["error"]["code"], "PORT_NOT_LISTENING")
        self.assertIn(str(port), body["error"]["message"])

    async def test_bad_and_reserved_ports(self):
        """
        Malformed ports are 400, the agent's port 403 (whatever follows it),
        an unknown sandbox 404, a port with no slash a 308 to the slash.
        """
        sid = self.sandbox.id
        for path, status in ((f"/sandboxes/{sid}/ports/0x50/", b"400"),
                             (f"/sandboxes/{sid}/ports/+80/", b"400"),
                             (f"/sandboxes/{sid}/ports/08080/a", b"400"),
                             (f"/sandboxes/{sid}/ports/1/", b"403"),
                             (f"/sandboxes/{sid}/ports/1/../../x", b"403"),
                             ("/sandboxes/sbx-nothere/ports/80/", b"404"),
                             (f"/sandboxes/{sid}/ports/8080", b"308")):
            head = await self.request(path)
            self.assertIn(b"HTTP/1.1 " + status, head, path)


class HeadersResource(Resource):
    """
    Answers every request with the URI and headers it received, as JSON.
    """

    isLeaf = True

    def render(self, request):
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({
            "uri": request.uri.decode(),
            "headers": {k.decode().lower(): [v.decode() for v in vs]
                        for k, vs in request.requestHeaders.getAllRawHeaders()},
        }).encode()


class IngressTests(LoopbackTestCase):
    """
    ``[tunnels] auth = "token"``: the path proxy over TCP wants the tunnel's
    token or a signed URL, and the credential never reaches the app.
    """

    def setUp(self):
        LoopbackTestCase.setUp(self)
        self.tunnels = Tunnels(reactor, self.store, self.limits,
                               TunnelsConfig(connect_timeout=2.0, auth="token"),
                               ingress_key=b"k" * 32)
        self.addCleanup(self.tunnels.closeAll, self.sandbox, "test over")
        self.app_port = self.listen(Site(HeadersResource()))
        self.proxy_port = self.proxySite()
        self.prefix = f"/sandboxes/{self.sandbox.id}/ports/{self.app_port}"

    async def get(self, path, headers=""):
        reader = await self.connect(self.proxy_port, Reader(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n"
            .encode(), pause=False))
        await reader.lost
        head, _, body = reader.head.partition(b"\r\n\r\n")
        return head.decode(), body

    async def test_refused_without_token(self):
        """
        No credential, a wrong token, a wrong cookie: 401
        TUNNEL_UNAUTHORIZED.
        """
        for headers in ("", "X-Sandbox-Tunnel-Token: nope\r\n", "Cookie: sbx_tunnel=nope\r\n"):
            head, body = await self.get(f"{self.prefix}/", headers)
            self.assertIn("HTTP/1.1 401", head, headers)
            self.assertEqual(json.loads(body)["error"]["code"], "TUNNEL_UNAUTHORIZED")
        head, _ = await self.get(f"{self.prefix}/?sbx_token=nope")
        self.assertIn("HTTP/1.1 401", head)

    async def test_header(self):
        """
        The token in the header lets the request through; the app does not
        see it.
        """
        token = self.tunnels.ingress.token(self.sandbox.id, self.app_port)
        head, body = await self.get(f"{self.prefix}/x", f"X-Sandbox-Tunnel-Token: {token}\r\n")
        self.assertIn("HTTP/1.1 200", head)
        self.assertNotIn("x-sandbox-tunnel-token", json.loads(body)["headers"])
        other = self.tunnels.ingress.token(self.sandbox.id, self.app_port + 1)
        head, _ = await self.get(f"{self.prefix}/x", f"X-Sandbox-Tunnel-Token: {other}\r\n")
        self.assertIn("HTTP/1.1 401", head)

    async def test_query_becomes_cookie(self):
        """
        ``?sbx_token=`` is answered with a redirect to the URL without it
        that sets a cookie scoped to the prefix; that cookie lets requests
        through, and the app sees the other cookies only.
        """
        token = self.tunnels.ingress.token(self.sandbox.id, self.app_port)
        head, _ = await self.get(f"{self.prefix}/page?a=1&sbx_token={token}")
        self.assertIn("HTTP/1.1 303", head)
        self.assertIn(f"Location: {self.prefix}/page?a=1", head)
        self.assertIn(f"Set-Cookie: sbx_tunnel={token}; Path={self.prefix}/; HttpOnly", head)
        head, body = await self.get(f"{self.prefix}/page?a=1",
                                    f"Cookie: theirs=1; sbx_tunnel={token}\r\n")
        self.assertIn("HTTP/1.1 200", head)
        seen = json.loads(body)
        self.assertEqual(seen["headers"]["cookie"], ["theirs=1"])
        self.assertEqual(seen["uri"], "/page?a=1")

    async def test_signed_url(self):
        """
        A signed URL is turned into a cookie expiring with it; once expired
        (or tampered with) it is a 401.
        """
        ingress = self.tunnels.ingress
        until = int(reactor.seconds()) + 60
        query = ingress.signedQuery(self.sandbox.id, self.app_port, until)
        head, _ = await self.get(f"{self.prefix}/?{query}")
        self.assertIn("HTTP/1.1 303", head)
        cookie = head.split("Set-Cookie: sbx_tunnel=")[1].split(";")[0]
        self.assertIn("Max-Age=", head)
        head, _ = await self.get(f"{self.prefix}/", f"Cookie: sbx_tunnel={cookie}\r\n")
        self.assertIn("HTTP/1.1 200", head)
        past = int(reactor.seconds()) - 1
        for bad in (ingress.signedQuery(self.sandbox.id, self.app_port, past),
                    query.replace(str(until), str(until + 1000))):
            head, _ = await self.get(f"{self.prefix}/?{bad}")
            self.assertIn("HTTP/1.1 401", head, bad)


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
