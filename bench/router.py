"""
What the router adds, in one run: a real etcd, one sandboxd node joined to
it and one ``sandboxd-router`` in front, both on loopback TCP.  Each
measurement alternates direct (the node's TCP listener) and through the
router, so both see the same machine load:

- warm create: ``POST /sandboxes`` on a kept-alive connection, the pool
  at rest before each one (full, no boot under way; then ``DELETE``, not
  timed);
- exec: ``sandbox.process.exec_("true")`` on an open session (the SDK's
  WebSocket, relayed byte for byte by the router);
- get: ``GET /sandboxes/{id}`` on a kept-alive connection (the forwarding
  cost alone).

    .venv/bin/python bench/router.py [--creates 40] [--execs 300] [--gets 500]

Prints p50/p90/p99 per path and the p50 the router adds (goal: <= 1 ms).
"""

import argparse
import asyncio
import http.client
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), HERE]

from stats import summary  # noqa: E402

from sandbox import Client, connect_sandbox  # noqa: E402
from tests.clusterutil import Etcd, Router, cluster_node  # noqa: E402


class Keepalive:
    """One kept-alive HTTP connection: (status, JSON) per request."""

    def __init__(self, port):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        self.connection.request(method, path, body=data,
                                headers={"content-type": "application/json"})
        response = self.connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None


def wait_at_rest(node, timeout=60):
    """
    Until the node's default pool is full and boots nothing: a create then
    competes with no refill and no container removal for the CPUs, so the
    router's own cost is what differs between the two paths.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, health = node.request("GET", "/health")
        pool = health["pool"]["default"]
        if pool["starting"] == 0 and pool["ready"] >= max(pool["target"], 1):
            return
        time.sleep(0.05)
    raise RuntimeError("the pool did not come to rest")


def bench_creates(node, ports, n):
    clients = {name: Keepalive(port) for name, port in ports.items()}
    times = {name: [] for name in ports}
    for index in range(n):
        for name, client in clients.items():
            wait_at_rest(node)
            start = time.perf_counter()
            status, sandbox = client.call("POST", "/sandboxes", {"ttl": 60})
            elapsed = time.perf_counter() - start
            if status != 201 or sandbox.get("method") != "warm":
                raise RuntimeError(f"{name}: {status} {sandbox}")
            times[name].append(elapsed)
            client.call("DELETE", f"/sandboxes/{sandbox['id']}")
    return times


def bench_gets(ports, sandbox_id, n):
    clients = {name: Keepalive(port) for name, port in ports.items()}
    times = {name: [] for name in ports}
    for index in range(n + 20):
        for name, client in clients.items():
            start = time.perf_counter()
            status, _ = client.call("GET", f"/sandboxes/{sandbox_id}")
            elapsed = time.perf_counter() - start
            if status != 200:
                raise RuntimeError(f"{name}: GET {status}")
            if index >= 20:
                times[name].append(elapsed)
    return times


async def bench_execs(urls, sandbox_id, n):
    times = {name: [] for name in urls}
    sessions = {}
    clients = []
    try:
        for name, url in urls.items():
            client = Client(url)
            clients.append(client)
            sessions[name] = await connect_sandbox(sandbox_id, client=client)
        for index in range(n + 20):
            for name, sandbox in sessions.items():
                start = time.perf_counter()
                result = await sandbox.process.exec_("true")
                elapsed = time.perf_counter() - start
                if result.exit_code != 0:
                    raise RuntimeError(f"{name}: exit {result.exit_code}")
                if index >= 20:
                    times[name].append(elapsed)
    finally:
        for sandbox in sessions.values():
            await sandbox.close()
        for client in clients:
            await client.close()
    return times


def report(title, times):
    direct, routed = summary(times["direct"]), summary(times["router"])
    print(f"{title}:")
    for name, s in (("direct", direct), ("router", routed)):
        print(f"  {name:7} n={s['n']:4} p50 {s['p50_ms']:8.3f} ms  p90 {s['p90_ms']:8.3f} ms"
              f"  p99 {s['p99_ms']:8.3f} ms")
    added = round(routed["p50_ms"] - direct["p50_ms"], 3)
    print(f"  added by the router at p50: {added:.3f} ms")
    return {"direct": {k: v for k, v in direct.items() if k != "samples_ms"},
            "router": {k: v for k, v in routed.items() if k != "samples_ms"},
            "added_p50_ms": added}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=40)
    parser.add_argument("--execs", type=int, default=300)
    parser.add_argument("--gets", type=int, default=500)
    parser.add_argument("--json", help="write the summaries to this file")
    options = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="sandboxd-bench-router-")
    etcd = Etcd(directory)
    node = cluster_node("n1", etcd.url, lease_ttl="6s", refresh="2s", max_sandboxes=100,
                        min_base=2)
    router = None
    try:
        node.start()
        router = Router(directory, etcd.url, "router", "1s")
        router.wait_nodes({"n1"})
        ports = {"direct": node.port, "router": router.port}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        print(f"load average before: {os.getloadavg()}")
        results = {"create": report("warm create (POST /sandboxes)",
                                    bench_creates(node, ports, options.creates))}
        status, sandbox = node.request("POST", "/sandboxes", {"ttl": 600})
        results["get"] = report("GET /sandboxes/{id}", bench_gets(ports, sandbox["id"],
                                                                   options.gets))
        results["exec"] = report("exec 'true' on an open session",
                                 asyncio.run(bench_execs(urls, sandbox["id"], options.execs)))
        print(f"load average after: {os.getloadavg()}")
        if options.json:
            with open(options.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        if router is not None:
            router.stop()
        node.stop()
        etcd.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
