"""
The etcd client (sandboxd/cluster/etcd.py) against a real etcd started by the
test, and the node's membership record (sandboxd/cluster/membership.py)
against the fake and the real one.
"""

import json

from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from sandboxd.cluster.etcd import EtcdClient, EtcdError, IEtcd, prefix_end
from sandboxd.cluster.membership import Membership, describe_node, node_key
from sandboxd.config import parse_config
from tests.etcdutil import free_port, start_etcd
from tests.fakeetcd import FakeEtcd


class PrefixTests(SynchronousTestCase):
    """The range end of a prefix query."""

    def test_prefix_end(self):
        """The last byte is incremented; trailing 0xff bytes are dropped first."""
        self.assertEqual(prefix_end("/sandboxd/"), b"/sandboxd0")
        self.assertEqual(prefix_end(b"a\xff"), b"b")
        self.assertEqual(prefix_end(b"\xff"), b"\0")


class FakeEtcdTests(SynchronousTestCase):
    """The fake keeps the interface the real client has."""

    def test_interface(self):
        """Both provide IEtcd."""
        verifyObject(IEtcd, FakeEtcd(Clock()))
        verifyObject(IEtcd, EtcdClient(["http://127.0.0.1:1"], Clock()))


class _Manager:
    """Just what describe_node reads from a SandboxManager."""

    class pools:
        @staticmethod
        def status():
            return {"default": {"ready": 2}, "python": {"ready": 0}}

    def __init__(self, sandboxes):
        self._sandboxes = sandboxes

    def list(self):
        return self._sandboxes

    @property
    def count(self):
        return len(self._sandboxes)


class _Sandbox:
    def __init__(self, identity, memory=1 << 29, cpu=1.0):
        self.identity, self.memory, self.cpu = identity, memory, cpu


class DescribeTests(SynchronousTestCase):
    """What a node publishes about itself."""

    def test_record(self):
        """
        The record carries the node id and endpoint, capacity left under
        max_sandboxes and the total memory/CPU caps, warm counts per
        profile, load and sandboxes per identity.
        """
        config = parse_config(
            "[server]\nnode_id = 'n1'\n[limits]\nmax_sandboxes = 5\nmax_total_cpu = 4.0\n"
            "[cluster]\netcd = ['http://127.0.0.1:2379']\nadvertise = 'http://10.0.0.5:7522'\n",
            environ={})
        manager = _Manager([_Sandbox("alice"), _Sandbox("alice"), _Sandbox("")])
        record = describe_node(config, manager, load=lambda: (0.5, 0, 0))
        self.assertEqual(record["node_id"], "n1")
        self.assertEqual(record["endpoint"], "http://10.0.0.5:7522")
        self.assertEqual(record["capacity"], {"max_sandboxes": 5, "sandboxes": 3, "free": 2,
                                              "memory_free": None, "cpu_free": 1.0})
        self.assertEqual(record["warm"], {"default": 2, "python": 0})
        self.assertEqual(record["identities"], {"alice": 2})
        self.assertEqual(record["load"], 0.5)


class MembershipTests(SynchronousTestCase):
    """The record lives under a lease the node refreshes (fake etcd, Clock)."""

    def setUp(self):
        self.clock = Clock()
        self.etcd = FakeEtcd(self.clock)
        self.count = 0

        def describe():
            self.count += 1
            return {"node_id": "n1", "beat": self.count}
        self.membership = Membership(self.etcd, self.clock, "/s/nodes/n1", describe, 6, 2)

    def test_registers_and_refreshes(self):
        """
        On start the record appears under a lease; every interval it is
        rewritten (new contents) and the lease kept alive, so it outlives
        the lease time.
        """
        self.membership.startService()
        self.assertEqual(json.loads(self.etcd.data["/s/nodes/n1"])["beat"], 1)
        for _ in range(10):
            self.clock.advance(2)
        self.assertEqual(json.loads(self.etcd.data["/s/nodes/n1"])["beat"], 11)
        self.assertEqual(list(self.etcd.leases), [self.membership.lease])

    def test_silent_node_vanishes(self):
        """A node that stops refreshing loses its record after the lease time."""
        self.membership.startService()
        self.membership._loop.stop()  # as a killed process would
        self.clock.advance(5.9)
        self.assertIn("/s/nodes/n1", self.etcd.data)
        self.clock.advance(0.2)
        self.successResultOf(self.etcd.range_prefix("/s/"))
        self.assertNotIn("/s/nodes/n1", self.etcd.data)

    def test_etcd_outage_then_new_lease(self):
        """
        While etcd does not answer the beats fail (counted, not raised);
        when it is back and the old lease has expired, the node takes a new
        lease and registers again.
        """
        self.membership.startService()
        first = self.membership.lease
        self.etcd.down = True
        for _ in range(5):
            self.clock.advance(2)
        self.assertEqual(self.membership.failures, 5)
        self.etcd.down = False
        self.clock.advance(2)
        self.assertNotEqual(self.membership.lease, first)
        self.assertIn("/s/nodes/n1", self.etcd.data)

    def test_stop_leaves(self):
        """Stopping revokes the lease: the record goes at once."""
        self.membership.startService()
        self.successResultOf(self.membership.stopService())
        self.assertNotIn("/s/nodes/n1", self.etcd.data)
        self.assertEqual(self.etcd.leases, {})


class RealEtcdTests(TestCase):
    """The client against a real etcd 3.4 (Debian's etcd-server)."""

    timeout = 60

    async def test_lease_put_range_expire(self):
        """
        A key put under a 2 s lease (etcd's shortest) is listed by prefix (and only keys under
        the prefix are); keepalive answers the TTL; without keepalives the
        key is gone after the lease, and keepalive then answers 0.
        """
        url = await start_etcd(self)
        etcd = EtcdClient([url], reactor)
        self.addCleanup(etcd.close)
        lease = await etcd.grant(2)
        await etcd.put("/t/nodes/a", b'{"x": 1}', lease)
        await etcd.put("/t0", b"outside")
        await etcd.put("/t/nodes/b", b"kept")
        self.assertEqual(await etcd.range_prefix("/t/"),
                         {"/t/nodes/a": b'{"x": 1}', "/t/nodes/b": b"kept"})
        self.assertEqual(await etcd.keepalive(lease), 2)
        until = reactor.seconds() + 10
        while "/t/nodes/a" in await etcd.range_prefix("/t/"):
            self.assertLess(reactor.seconds(), until, "the lease never expired")
            await deferLaterSeconds(0.2)
        self.assertEqual(await etcd.keepalive(lease), 0)
        await etcd.delete("/t/nodes/b")
        self.assertEqual(await etcd.range_prefix("/t/"), {})

    async def test_failover_and_errors(self):
        """
        With a dead endpoint listed first the client uses the next one; a
        put under an unknown lease is a named EtcdError; no endpoint at all
        answering is an EtcdError too.
        """
        url = await start_etcd(self)
        etcd = EtcdClient([f"http://127.0.0.1:{free_port()}", url], reactor)
        self.addCleanup(etcd.close)
        await etcd.put("/k", b"v")
        self.assertEqual(await etcd.range_prefix("/k"), {"/k": b"v"})
        with self.assertRaises(EtcdError) as raised:
            await etcd.put("/k", b"v", lease=12345)
        self.assertIn("lease not found", str(raised.exception))
        dead = EtcdClient([f"http://127.0.0.1:{free_port()}"], reactor, timeout=2)
        self.addCleanup(dead.close)
        with self.assertRaises(EtcdError):
            await dead.range_prefix("/")

    async def test_membership_real(self):
        """A Membership registers against the real etcd and leaves on stop."""
        url = await start_etcd(self)
        etcd = EtcdClient([url], reactor)
        self.addCleanup(etcd.close)
        membership = Membership(etcd, reactor, node_key("/c/", "n1"),
                                lambda: {"node_id": "n1"}, 5, 1)
        membership.startService()
        until = reactor.seconds() + 10
        while not await etcd.range_prefix("/c/nodes/"):
            self.assertLess(reactor.seconds(), until)
            await deferLaterSeconds(0.1)
        self.assertEqual(json.loads((await etcd.range_prefix("/c/nodes/"))["/c/nodes/n1"]),
                         {"node_id": "n1"})
        await membership.stopService()
        self.assertEqual(await etcd.range_prefix("/c/nodes/"), {})


def deferLaterSeconds(seconds):
    """A Deferred that fires after ``seconds`` (polling a condition, bounded)."""
    return deferLater(reactor, seconds, lambda: None)
