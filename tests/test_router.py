"""
The router's logic: placement (pure), the node directory (fake etcd on a
Clock), cursors and configuration; then the Router resource on a real
loopback socket in front of fake nodes (small HTTP servers on loopback)
whose records sit in a fake etcd: placement and forwarding by id, merged
lists and event streams, and a lost or silent node answering
SANDBOX_UNAVAILABLE instead of hanging.
"""

import json

from treq.client import HTTPClient
from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock, deferLater
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from sandboxd.router import tap
from sandboxd.router.app import Router
from sandboxd.router.config import RouterConfigError, parse_router_config
from sandboxd.router.directory import Node, NodeDirectory
from sandboxd.router.events import CursorError, format_cursor, parse_cursor
from sandboxd.router.forward import Forwarder
from sandboxd.router.metrics import RouterMetrics
from sandboxd.router.placement import PlacementError, rank
from tests.etcdutil import free_port
from tests.fakeetcd import FakeEtcd


def node(node_id, free=10, warm=0, load=0.0, templates=(), identities=None):
    return Node(node_id, f"http://127.0.0.1:1/{node_id}", max_sandboxes=10, free=free,
                warm={"default": warm}, load=load, templates=tuple(templates),
                identities=identities or {})


class PlacementTests(SynchronousTestCase):
    """The placement rule (docs/deploy.md "Placement")."""

    def ids(self, *args, **kwargs):
        return [n.node_id for n in rank(*args, **kwargs)]

    def test_warm_first_then_free(self):
        """A node with a warm sandbox of the profile wins over more free capacity."""
        nodes = [node("a", free=9), node("b", free=2, warm=1), node("c", free=5)]
        self.assertEqual(self.ids(nodes, "default"), ["b", "a", "c"])
        self.assertEqual(self.ids(nodes, "python"), ["a", "c", "b"])

    def test_ties(self):
        """Equal warmth and free capacity: lower load, then the node id."""
        nodes = [node("b", load=1.0), node("c"), node("a", load=1.0)]
        self.assertEqual(self.ids(nodes, "default"), ["c", "a", "b"])

    def test_full_nodes_skipped(self):
        """A node without free capacity is no candidate; none at all is AT_CAPACITY."""
        self.assertEqual(self.ids([node("a", free=0, warm=3), node("b")], "default"), ["b"])
        with self.assertRaises(PlacementError) as raised:
            rank([node("a", free=0)], "default")
        self.assertEqual((raised.exception.status, raised.exception.code), (503, "AT_CAPACITY"))

    def test_templates_stay_on_their_node(self):
        """From a template only the nodes holding it; none is TEMPLATE_NOT_FOUND."""
        nodes = [node("a", warm=1), node("b", templates=["tpl-00000001"])]
        self.assertEqual(self.ids(nodes, "default", "tpl-00000001"), ["b"])
        with self.assertRaises(PlacementError) as raised:
            rank(nodes, "default", "tpl-00000002")
        self.assertEqual(raised.exception.code, "TEMPLATE_NOT_FOUND")

    def test_quota_over_the_cluster(self):
        """An identity at its signed max_concurrent over all nodes is refused (429)."""
        with self.assertRaises(PlacementError) as raised:
            rank([node("a")], "default", identity="alice", max_concurrent=3, counted=3)
        self.assertEqual((raised.exception.status, raised.exception.code),
                         (429, "QUOTA_EXCEEDED"))
        self.assertEqual(self.ids([node("a")], "default", identity="alice", max_concurrent=3,
                                  counted=2), ["a"])

    def test_no_nodes(self):
        """No live node: CLUSTER_UNAVAILABLE."""
        with self.assertRaises(PlacementError) as raised:
            rank([], "default")
        self.assertEqual(raised.exception.code, "CLUSTER_UNAVAILABLE")


def record(node_id, endpoint="http://127.0.0.1:1", **extra):
    body = {"node_id": node_id, "endpoint": endpoint,
            "capacity": {"max_sandboxes": 10, "free": 10}, "warm": {"default": 1},
            "load": 0.1, "identities": {}, "templates": []}
    body.update(extra)
    return json.dumps(body).encode()


class _Observer:
    def __init__(self):
        self.seen = []

    def nodeJoined(self, node):
        self.seen.append(("joined", node.node_id))

    def nodeLost(self, node_id):
        self.seen.append(("lost", node_id))


class DirectoryTests(SynchronousTestCase):
    """The router's cached view of the node records."""

    def setUp(self):
        self.clock = Clock()
        self.etcd = FakeEtcd(self.clock)
        self.directory = NodeDirectory(self.etcd, self.clock, "/s/", 1.0)
        self.observer = _Observer()
        self.directory.observe(self.observer)

    def test_join_and_lose(self):
        """
        A record appearing is a join; its lease expiring is a loss, told
        once, on the next read.
        """
        lease = self.successResultOf(self.etcd.grant(3))
        self.etcd.put("/s/nodes/n1", record("n1"), lease)
        self.directory.start()
        self.assertEqual(self.observer.seen, [("joined", "n1")])
        self.clock.advance(2)
        self.assertIn("n1", self.directory.nodes)
        self.clock.advance(2)
        self.clock.advance(1)
        self.assertEqual(self.observer.seen, [("joined", "n1"), ("lost", "n1")])
        self.assertEqual((self.directory.nodes, self.directory.lost), ({}, 1))

    def test_bad_records_ignored(self):
        """Not JSON, not a record, or filed under another node's key: ignored."""
        self.etcd.put("/s/nodes/n1", b"{not json")
        self.etcd.put("/s/nodes/n2", b'{"node_id": "n2"}')
        self.etcd.put("/s/nodes/n3", record("n4"))
        self.etcd.put("/s/nodes/n5", record("n5"))
        self.directory.start()
        self.assertEqual(list(self.directory.nodes), ["n5"])

    def test_etcd_down_keeps_view(self):
        """An unreachable etcd keeps the last view and marks the directory unhealthy."""
        self.etcd.put("/s/nodes/n1", record("n1"))
        self.directory.start()
        self.etcd.down = True
        self.clock.advance(1)
        self.assertEqual((list(self.directory.nodes), self.directory.healthy), (["n1"], False))
        self.etcd.down = False
        self.clock.advance(1)
        self.assertTrue(self.directory.healthy)

    def test_reserve(self):
        """A placement lowers the cached free count, warm count and adds to the identity."""
        self.etcd.put("/s/nodes/n1", record("n1"))
        self.directory.start()
        self.directory.reserve("n1", "default", "alice")
        found = self.directory.get("n1")
        self.assertEqual((found.free, found.warm["default"]), (9, 0))
        self.assertEqual(self.directory.counted("alice"), 1)
        self.clock.advance(1)
        self.assertEqual(self.directory.get("n1").free, 10)


class CursorAndConfigTests(SynchronousTestCase):
    """The merged stream's cursors and the router's configuration file."""

    def test_cursor(self):
        """node:id pairs round-trip; a plain number applies to every node."""
        self.assertEqual(parse_cursor("n1:4,n2:17"), {"n1": 4, "n2": 17})
        self.assertEqual(format_cursor({"n2": 17, "n1": 4}), "n1:4,n2:17")
        self.assertEqual(parse_cursor("0"), {"*": 0})
        self.assertEqual(parse_cursor(""), {})
        for bad in ("n1:x", "N1:3", "n1=3", "n1:3;n2:4"):
            with self.assertRaises(CursorError):
                parse_cursor(bad)

    def test_config(self):
        """Defaults, durations, and a named error for each bad key."""
        config = parse_router_config('etcd = ["http://10.0.0.2:2379"]\npoll = "250ms"\n')
        self.assertEqual((config.etcd, config.poll, config.prefix),
                         (("http://10.0.0.2:2379",), 0.25, "/sandboxd/"))
        for text, key in (("colour = 1", "colour"), ("etcd = []", "etcd"),
                          ('etcd = ["10.0.0.2:2379"]', "etcd"), ('poll = "soon"', "poll"),
                          ('prefix = "x"', "prefix"), ('poll = "0s"', "poll")):
            with self.assertRaises(RouterConfigError) as raised:
                parse_router_config(text, "router.toml")
            self.assertIn(f"router.toml: {key}:", str(raised.exception))


class FakeNode(Resource):
    """A node's API, as little as the router tests need."""

    isLeaf = True

    def __init__(self, node_id):
        super().__init__()
        self.node_id = node_id
        self.seen = []
        self.hanging = []
        self.streams = []
        #: Creates read, then the connection dropped (no answer).
        self.drop_creates = False

    def render(self, request):
        body = request.content.read()
        self.seen.append((request.method, request.uri, body,
                          request.getHeader(b"x-sandbox-signature"),
                          request.getHeader(b"last-event-id")))
        path = request.path
        request.setHeader(b"content-type", b"application/json")
        if path == b"/sandboxes" and request.method == b"POST" and self.drop_creates:
            request.transport.abortConnection()
            return NOT_DONE_YET
        if path == b"/sandboxes" and request.method == b"POST":
            request.setResponseCode(201)
            return json.dumps({"id": f"sbx-{self.node_id}-0000000{len(self.seen)}",
                               "created": "2026-01-01T00:00:0%dZ" % len(self.seen)}).encode()
        if path == b"/sandboxes":
            return json.dumps([{"id": f"sbx-{self.node_id}-00000001",
                                "created": f"2026-01-01T00:00:0{self.node_id[-1]}Z"}]).encode()
        if path.endswith(b"/hang"):
            self.hanging.append(request)
            return NOT_DONE_YET
        if path == b"/events":
            request.setHeader(b"content-type", b"text/event-stream")
            request.write(b": node\n\nid: 5\n\n")
            self.streams.append(request)
            return NOT_DONE_YET
        return json.dumps({"node": self.node_id, "path": path.decode()}).encode()

    def event(self, event_id, kind):
        for request in self.streams:
            data = json.dumps({"id": event_id, "type": kind, "sandbox_id": None})
            request.write(f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n".encode())


class RouterTests(TestCase):
    """The Router resource over real loopback sockets, nodes faked."""

    timeout = 30

    async def setUp(self):
        self.etcd = FakeEtcd(Clock())
        self.nodes = {}
        for node_id, warm in (("n1", 0), ("n2", 1)):
            fake = FakeNode(node_id)
            port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(fake))
            self.addCleanup(port.stopListening)
            self.nodes[node_id] = fake
            await self.etcd.put(f"/sandboxd/nodes/{node_id}", record(
                node_id, f"http://127.0.0.1:{port.getHost().port}", warm={"default": warm}))
        # n3 is registered but nothing listens at its endpoint.
        await self.etcd.put("/sandboxd/nodes/n3", record("n3", f"http://127.0.0.1:{free_port()}",
                                                         warm={"default": 0},
                                                         capacity={"free": 0}))
        self.directory = NodeDirectory(self.etcd, reactor, "/sandboxd/", 3600)
        await self.directory.start()
        self.addCleanup(self.directory.stop)
        self.forwarder = Forwarder(reactor, connect_timeout=2)
        self.addCleanup(self.forwarder.close)
        self.directory.observe(self.forwarder)
        self.metrics = RouterMetrics(self.directory)
        router = Router(self.directory, self.forwarder, self.metrics, reactor)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(router))
        self.addCleanup(port.stopListening)
        self.url = f"http://127.0.0.1:{port.getHost().port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    async def call(self, method, path, body=None, headers=None):
        response = await self.http.request(method, self.url + path, data=body,
                                           headers=headers or {})
        raw = await response.content()
        return response.code, json.loads(raw) if raw else None

    async def test_create_placed_and_forwarded(self):
        """
        POST /sandboxes goes to the warm node (n2) with the body and the
        signature header untouched; the next create, n2's warm sandbox
        counted as taken, goes to n1 (more free); placements are counted.
        """
        body = b'{"profile": "default", "ttl": 60}'
        status, created = await self.call("POST", "/sandboxes", body,
                                          {"X-Sandbox-Signature": "sig"})
        self.assertEqual((status, created["id"][:7]), (201, "sbx-n2-"))
        self.assertEqual(self.nodes["n2"].seen[-1][2:4], (body, b"sig"))
        status, created = await self.call("POST", "/sandboxes", b"{}")
        self.assertEqual((status, created["id"][:7]), (201, "sbx-n1-"))
        text = self.metrics.render().decode()
        self.assertIn('sandboxd_router_placements_total{node="n2",warm="yes"} 1.0', text)

    async def test_create_not_sent_twice(self):
        """
        A node that read a create and dropped the connection may have made
        the sandbox: 503 CLUSTER_UNAVAILABLE, and no other node is asked
        (it would make a second one).
        """
        self.nodes["n2"].drop_creates = True
        status, body = await self.call("POST", "/sandboxes", b"{}")
        self.assertEqual((status, body["error"]["code"]), (503, "CLUSTER_UNAVAILABLE"))
        self.assertIn("may have made the sandbox", body["error"]["message"])
        self.assertEqual([s for s in self.nodes["n1"].seen if s[0] == b"POST"], [])

    async def test_create_skips_refusing_node(self):
        """
        A node that refuses the connection never got the create: the next
        node in rank takes it.
        """
        await self.etcd.put("/sandboxd/nodes/n3", record(
            "n3", f"http://127.0.0.1:{free_port()}", warm={"default": 5}))
        await self.directory.refresh()
        status, created = await self.call("POST", "/sandboxes", b"{}")
        self.assertEqual((status, created["id"][:7]), (201, "sbx-n2-"))

    async def test_quota_across_nodes(self):
        """
        A signed create whose identity already holds its
        X-Sandbox-Max-Concurrent over the nodes (as published) is refused
        429 QUOTA_EXCEEDED by the router, no node asked; under the quota it
        is forwarded with the signature headers untouched.
        """
        self.directory.get("n1").identities["alice"] = 1
        self.directory.get("n2").identities["alice"] = 1
        signed = {"X-Sandbox-Signature": "sig", "X-Sandbox-Identity": "alice",
                  "X-Sandbox-Max-Concurrent": "2"}
        before = len(self.nodes["n1"].seen) + len(self.nodes["n2"].seen)
        status, body = await self.call("POST", "/sandboxes", b"{}", signed)
        self.assertEqual((status, body["error"]["code"]), (429, "QUOTA_EXCEEDED"))
        self.assertEqual(len(self.nodes["n1"].seen) + len(self.nodes["n2"].seen), before)
        signed["X-Sandbox-Max-Concurrent"] = "3"
        status, body = await self.call("POST", "/sandboxes", b"{}", signed)
        self.assertEqual(status, 201)
        self.assertEqual(self.directory.counted("alice"), 3)

    async def test_forward_by_id(self):
        """A sandbox route reaches the node in its id, path and query kept."""
        status, body = await self.call("GET", "/sandboxes/sbx-n1-0000abcd/stats?x=1")
        self.assertEqual((status, body), (200, {"node": "n1",
                                                "path": "/sandboxes/sbx-n1-0000abcd/stats"}))
        self.assertEqual(self.nodes["n1"].seen[-1][1], b"/sandboxes/sbx-n1-0000abcd/stats?x=1")

    async def test_unavailable(self):
        """
        A node not in the directory, and a registered node that refuses
        connections, both answer 503 SANDBOX_UNAVAILABLE; an id with no
        node is 404 SANDBOX_NOT_FOUND.
        """
        for path in ("/sandboxes/sbx-n9-00000000", "/sandboxes/sbx-n3-00000000/files"):
            status, body = await self.call("GET", path)
            self.assertEqual((status, body["error"]["code"]), (503, "SANDBOX_UNAVAILABLE"))
        status, body = await self.call("GET", "/sandboxes/sbx-0000abcd")
        self.assertEqual((status, body["error"]["code"]), (404, "SANDBOX_NOT_FOUND"))

    async def test_lost_node_fails_waiting_requests(self):
        """
        A request a node holds without answering is answered 503
        SANDBOX_UNAVAILABLE as soon as the directory reports the node lost.
        """
        answer = Deferred.fromCoroutine(self.call("GET", "/sandboxes/sbx-n1-00000000/hang"))
        while not self.nodes["n1"].hanging:
            await deferLater(reactor, 0.01, lambda: None)
        await self.etcd.delete("/sandboxd/nodes/n1")
        await self.directory.refresh()
        status, body = await answer
        self.assertEqual((status, body["error"]["code"]), (503, "SANDBOX_UNAVAILABLE"))
        for request in self.nodes["n1"].hanging:
            if not request.finished:
                request.finish()

    async def test_merged_list(self):
        """
        GET /sandboxes merges every live node's list, oldest first; the
        silent node is named in X-Sandbox-Unavailable.
        """
        response = await self.http.get(self.url + "/sandboxes?label=a:b")
        listed = json.loads(await response.content())
        self.assertEqual([s["id"] for s in listed], ["sbx-n1-00000001", "sbx-n2-00000001"])
        self.assertEqual(response.headers.getRawHeaders(b"x-sandbox-unavailable"), [b"n3"])
        self.assertEqual(self.nodes["n2"].seen[-1][1], b"/sandboxes?label=a:b")

    async def test_merged_events(self):
        """
        GET /events subscribes to every node with its own cursor from the
        composite Last-Event-ID (n1 after 3; n2, not named, new events
        only), re-emits their events with a composite id, and says
        node.lost when a node goes.
        """
        await self.etcd.delete("/sandboxd/nodes/n3")
        await self.directory.refresh()
        response = await self.http.get(self.url + "/events",
                                       headers={"Last-Event-ID": "n1:3"})
        self.assertEqual(response.code, 200)
        received = []
        done = Deferred()

        class Collect:
            def makeConnection(self, transport):
                self.transport = transport

            def dataReceived(self, data):
                received.append(data)
                if b"node.lost" in b"".join(received) and not done.called:
                    done.callback(None)

            def connectionLost(self, reason):
                if not done.called:
                    done.callback(None)
        collect = Collect()
        response.deliverBody(collect)
        while len(self.nodes["n1"].streams) + len(self.nodes["n2"].streams) < 2:
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(self.nodes["n1"].seen[-1][4], b"3")
        self.assertIsNone(self.nodes["n2"].seen[-1][4])

        async def relayed(line):
            # The two nodes' streams are separate connections: wait for each
            # step to come through, so the composite ids have one order.
            for _ in range(1000):
                if line in b"".join(received):
                    return
                await deferLater(reactor, 0.01, lambda: None)
            self.fail(f"{line!r} not relayed: {b''.join(received)!r}")

        await relayed(b"id: n1:5,n2:5\n")
        self.nodes["n1"].event(6, "sandbox.created")
        await relayed(b"id: n1:6,n2:5\n")
        self.nodes["n2"].event(9, "sandbox.destroyed")
        await relayed(b"id: n1:6,n2:9\n")
        await self.etcd.delete("/sandboxd/nodes/n2")
        await self.directory.refresh()
        await done
        text = b"".join(received).decode()
        self.assertIn('id: n1:6,n2:5\nevent: sandbox.created\n', text)
        self.assertIn('id: n1:6,n2:9\nevent: sandbox.destroyed\n', text)
        self.assertIn('event: node.lost\ndata: {"id":null,"type":"node.lost"', text)
        self.assertIn('"data":{"node_id":"n2"}', text)
        # The caller leaves: the router ends its node streams.
        collect.transport.stopProducing()
        while not all(r._disconnected for r in self.nodes["n1"].streams):
            await deferLater(reactor, 0.01, lambda: None)
        for request in self.nodes["n2"].streams:
            if not (request.finished or request._disconnected):
                request.finish()

    async def test_after_refused(self):
        """?after= cannot be rewritten per node (the query is signed): 400 INVALID_FIELD."""
        status, body = await self.call("GET", "/events?after=3")
        self.assertEqual((status, body["error"]["code"]), (400, "INVALID_FIELD"))
        status, body = await self.call("GET", "/events", headers={"Last-Event-ID": "n1:x"})
        self.assertEqual((status, body["error"]["code"]), (400, "INVALID_FIELD"))

    async def test_router_routes(self):
        """/health, /nodes and /metrics are the router's own; an unknown route is 404."""
        status, health = await self.call("GET", "/health")
        self.assertEqual((status, sorted(health["nodes"]), health["etcd"]),
                         (200, ["n1", "n2", "n3"], "ok"))
        status, nodes = await self.call("GET", "/nodes")
        self.assertEqual([n["node_id"] for n in nodes], ["n1", "n2", "n3"])
        status, body = await self.call("GET", "/nope")
        self.assertEqual((status, body["error"]["code"]), (404, "NOT_FOUND"))
        response = await self.http.get(self.url + "/metrics")
        text = (await response.content()).decode()
        self.assertIn("sandboxd_router_nodes 3.0", text)
        self.assertIn('sandboxd_router_node_warm{node="n2",profile="default"} 1.0', text)


class PluginTests(SynchronousTestCase):
    """``twistd sandboxd-router`` finds the plugin, its options and its wiring."""

    def test_discovered(self):
        """The plugin is an IServiceMaker named sandboxd-router, wired to sandboxd.router.tap."""
        found = [p for p in getPlugins(IServiceMaker) if p.tapname == "sandboxd-router"]
        self.assertEqual(len(found), 1)
        self.assertIs(found[0].options, tap.Options)

    def test_options(self):
        """--config is required; a bad file is a UsageError naming the key."""
        with self.assertRaises(usage.UsageError):
            tap.Options().parseOptions([])
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('poll = "never"\n')
        with self.assertRaises(usage.UsageError) as raised:
            tap.Options().parseOptions(["--config", path])
        self.assertIn("poll", str(raised.exception))

    def test_service(self):
        """makeService builds the directory reader and the listener, nothing started."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('listen = "tcp:0:interface=127.0.0.1"\n')
        options = tap.Options()
        options.parseOptions(["--config", path])
        service = tap.makeService(options, Clock())
        kinds = sorted(type(s).__name__ for s in service)
        self.assertEqual(kinds, ["DirectoryService", "StreamServerEndpointService"])
