"""
Tunnels over real sockets on loopback, with no engine (tests/tunnelloop.py).
Pins down backpressure (a reader that stops reading pauses the sandbox's
writer, and what the daemon holds meanwhile stays bounded: asserted on
producer state and buffer sizes, not on timing) through a dedicated host
port, through the path proxy's HTTP relay and through its Upgrade relay;
the registry's limits, events, store rows, closing and re-binding after a
restart; and the path proxy's named errors.
"""

import json

from twisted.internet import error, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from sandboxd.api.errors import ApiError
from sandboxd.config import TunnelsConfig
from sandboxd.lifecycle import ISandboxObserver, Transition
from sandboxd.sandbox import State
from sandboxd.tunnels import Tunnels
from tests.tunnelloop import (
    BOUND,
    FirehoseResource,
    LoopbackTestCase,
    Reader,
    buffered,
    until,
)


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
            await self.tunnels.expose(self.sandbox, next(iter(self.sandbox.reserved_ports)))
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
