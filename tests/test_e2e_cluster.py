"""
Many hosts on one machine: a real etcd, three sandboxd nodes (own sockets,
data dirs and node ids, one shared dockerd) joined to it, and two
``sandboxd-router`` processes in front.  Creates through the routers spread
over the nodes by the placement rule; exec, file transfer, the tunnels' path
proxy and the merged event stream work through a router; a node killed with
SIGKILL answers SANDBOX_UNAVAILABLE at once, is reported lost (``node.lost``)
within its lease time and gets no new creates; restarted, it rejoins and the
sandboxes it adopted are reachable through the routers again.
"""

import asyncio
import collections
import concurrent.futures
import http.client
import json
import shutil
import sys
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from sandbox import Client, connect_sandbox, create_sandbox
from tests.clusterutil import Etcd, Router, cluster_node

#: Creates of the spreading test (as the issue asks; each is a real
#: container on this loaded 2-vCPU machine).
CREATES = 60
#: The nodes' lease; a killed node must be reported lost within it (plus the
#: routers' poll and some slack for a loaded machine).  Not shorter: a live
#: node whose renewal comes late on a loaded machine is taken for lost, and
#: its creates in flight fail (a loaded CI run saw the spreading step end
#: with one sandbox more than it made, before the router refused to send a
#: create to a second node after the first may have made it).
LEASE = 6.0
POLL = 0.5


def _node_of(sandbox_id):
    return sandbox_id.split("-")[1]


class _Events:
    """Reads a router's merged SSE stream in the background of a test."""

    def __init__(self, router, last_event_id=None):
        self.connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=60)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.connection.request("GET", "/events", headers=headers)
        self.response = self.connection.getresponse()
        self.last_id = None

    def until(self, predicate, timeout=30):
        """Events (dicts) read until one satisfies ``predicate``; fail after ``timeout``."""
        self.connection.sock.settimeout(timeout)
        seen, fields = [], {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.response.readline()
            if not line:
                raise AssertionError(f"the stream ended; saw {seen}")
            line = line.decode().rstrip("\r\n")
            if line:
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
                continue
            if "id" in fields:
                self.last_id = fields["id"]
            if "data" in fields:
                event = json.loads(fields["data"])
                seen.append(event)
                if predicate(event):
                    return seen
            fields = {}
        raise AssertionError(f"no matching event in {timeout} s; saw {seen}")

    def close(self):
        self.connection.close()


class ClusterTests(SynchronousTestCase):
    """
    One cluster, one test of three steps (starting three nodes is the slow
    part; trial has no per-class set-up).
    """

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sandboxd-cluster-")
        self.passed, self.nodes = False, {}
        self.addCleanup(self.remove_dir_unless_failed)
        self.etcd = Etcd(self.dir)
        self.addCleanup(self.etcd.stop)
        for node_id in ("n1", "n2", "n3"):
            self.nodes[node_id] = node = cluster_node(node_id, self.etcd.url,
                                                      lease_ttl=f"{LEASE}s")
            node.spawn()
            self.addCleanup(node.stop)
        for node in self.nodes.values():
            node.start()
        self.routers = []
        for index in (1, 2):
            router = Router(self.dir, self.etcd.url, f"router{index}", f"{POLL}s")
            self.addCleanup(router.stop)
            self.routers.append(router)
        for router in self.routers:
            router.wait_nodes({"n1", "n2", "n3"})

    def test_cluster(self):
        """
        The three steps below, in order, on one cluster: creates spread,
        everything works through a router, a node lost and back.
        """
        self.spread()
        self.through_a_router()
        self.node_lost_and_back()
        self.passed = True

    def remove_dir_unless_failed(self):
        """
        Remove the cluster's directory, or keep it (etcd's and the routers'
        logs; the nodes' are in their own directories) when the test failed.
        """
        if self.passed:
            shutil.rmtree(self.dir, True)
            return
        node_logs = " ".join(node.log for node in self.nodes.values())
        sys.stderr.write(f"test_cluster failed: logs kept in {self.dir} and {node_logs}\n")

    def create(self, router, **body):
        status, sandbox = router.request("POST", "/sandboxes", {"ttl": 300, **body}, timeout=60)
        self.assertEqual(status, 201, sandbox)
        return sandbox

    def spread(self):
        """
        CREATES creates, alternating between the two routers, six at a
        time, all succeed and land on every node, evenly (the rule prefers
        warm nodes then the most free capacity, and each router counts its
        own placements until the next read); the merged list of either
        router shows all of them; deleting through the other router works.
        """
        def one(index):
            return self.create(self.routers[index % 2], labels={"batch": "spread"})["id"]

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            ids = list(pool.map(one, range(CREATES)))
        counts = collections.Counter(_node_of(i) for i in ids)
        self.assertEqual(set(counts), {"n1", "n2", "n3"}, counts)
        self.assertLessEqual(max(counts.values()) - min(counts.values()), CREATES // 3, counts)
        status, listed = self.routers[1].request("GET", "/sandboxes?label=batch:spread")
        self.assertEqual((status, sorted(s["id"] for s in listed)), (200, sorted(ids)))
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(
                lambda i: self.routers[1].request("DELETE", f"/sandboxes/{i}")[0], ids))
        self.assertEqual(set(statuses), {204})

    def through_a_router(self):
        """
        Through a router, with the SDK: exec, a 1 MiB file written and read
        back, an HTTP server in the sandbox reached by the path proxy; the
        other router's merged event stream carries the sandbox's
        sandbox.created with a node:id cursor.
        """
        events = _Events(self.routers[1])
        self.addCleanup(events.close)
        payload = bytes(range(256)) * 4096

        async def go():
            async with Client(self.routers[0].url) as client:
                async with await create_sandbox(client=client, ttl=120) as sandbox:
                    result = await sandbox.process.exec_("echo via-router; hostname")
                    await sandbox.fs.write("/tmp/blob", payload)
                    back = await sandbox.fs.read("/tmp/blob")
                    await sandbox.process.spawn(
                        "cd /tmp && printf tunnelled > index.html && "
                        "exec python3 -m http.server 8000 --bind 0.0.0.0")
                    body = None
                    for _ in range(100):
                        status, body = await asyncio.to_thread(
                            self._get, f"/sandboxes/{sandbox.id}/ports/8000/index.html")
                        if status == 200:
                            break
                        await asyncio.sleep(0.1)
                    return sandbox.id, result, back, body

        sandbox_id, result, back, body = asyncio.run(go())
        self.assertEqual((result.exit_code, result.stdout.split()[0]), (0, "via-router"))
        self.assertEqual(back, payload)
        self.assertEqual(body, b"tunnelled")
        events.until(lambda e: e.get("type") == "sandbox.created"
                            and e.get("sandbox_id") == sandbox_id)
        self.assertIn(f"{_node_of(sandbox_id)}:", events.last_id)

    def _get(self, path):
        connection = http.client.HTTPConnection("127.0.0.1", self.routers[0].port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def node_lost_and_back(self):
        """
        kill -9 of n3: its sandbox answers 503 SANDBOX_UNAVAILABLE through
        both routers at once (no hang); the merged stream reports node.lost
        within the lease time (plus the poll); new creates all go to n1 and
        n2.  Restarted, n3 rejoins, adopts its sandbox, which answers again
        through the routers and runs a command.
        """
        router = self.routers[0]
        victim = None
        for _ in range(12):
            sandbox = self.create(router, labels={"batch": "loss"})
            if _node_of(sandbox["id"]) == "n3":
                victim = sandbox["id"]
                break
        self.assertIsNotNone(victim, "no create landed on n3")
        events = _Events(self.routers[1])
        self.addCleanup(events.close)
        self.nodes["n3"].kill()
        for each in self.routers:
            status, body = each.request("GET", f"/sandboxes/{victim}", timeout=10)
            self.assertEqual((status, body["error"]["code"]), (503, "SANDBOX_UNAVAILABLE"))
        events.until(lambda e: e.get("type") == "node.lost"
                     and e["data"] == {"node_id": "n3"}, timeout=LEASE + POLL + 5)
        for each in self.routers:
            each.wait_nodes({"n1", "n2"}, timeout=10)
        placed = {_node_of(self.create(self.routers[i % 2])["id"]) for i in range(6)}
        self.assertEqual(placed - {"n1", "n2"}, set())
        status, body = router.request("GET", f"/sandboxes/{victim}", timeout=10)
        self.assertEqual((status, body["error"]["code"]), (503, "SANDBOX_UNAVAILABLE"))

        self.nodes["n3"].spawn()
        self.nodes["n3"].start()
        for each in self.routers:
            each.wait_nodes({"n1", "n2", "n3"})
        status, body = router.request("GET", f"/sandboxes/{victim}")
        self.assertEqual((status, body["id"]), (200, victim))

        async def run():
            async with Client(self.routers[1].url) as client:
                async with await connect_sandbox(victim, client=client) as sandbox:
                    return await sandbox.process.exec_("echo back")
        result = asyncio.run(run())
        self.assertEqual(result.stdout.strip(), "back")
