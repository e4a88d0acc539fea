"""
Port tunnels against the container's bridge address, in one run: requests/s
(``wrk``, keep-alive connections) and p50/p90 latency (one client, one
kept-alive connection, requests one after another) of a small GET to the
web app of tests/tunnel_app.py inside a sandbox, reached

- directly at the container's bridge address,
- through a dedicated host port (127.0.0.1),
- through the path proxy on the daemon's TCP listener (127.0.0.1).

Everything stays on loopback and the Docker bridge.

    .venv/bin/python bench/tunnels.py [--seconds 5] [--connections 8] [--requests 400]
"""

import argparse
import http.client
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), HERE]

from stats import summary  # noqa: E402

from tests.daemon import Daemon  # noqa: E402
from tests.dockerutil import require_docker  # noqa: E402
from tests.tunnelutil import APP_PORT, start_app, wait_until_serving  # noqa: E402

#: What each request asks for: 64 bytes with a Content-Length.
PATH = "/bytes?n=64"
_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")
_TOTAL = re.compile(r"([0-9]+) requests in")


def latencies(host, port, path, n):
    """
    ``n`` GETs one after another on one kept-alive connection: seconds each.
    """
    connection = http.client.HTTPConnection(host, port, timeout=30)
    times = []
    try:
        for _ in range(n + 20):
            start = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - start
            if response.status != 200 or len(body) != 64:
                raise RuntimeError(f"{host}:{port}{path}: {response.status} {body[:100]!r}")
            times.append(elapsed)
    finally:
        connection.close()
    return times[20:]


def cpu_seconds(pid):
    """
    User plus system CPU time a process has used so far.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(url, seconds, connections, pid):
    """
    Requests/s that ``wrk`` reaches on ``url``, and the CPU seconds process
    ``pid`` (the daemon) spent per request meanwhile.
    """
    before = cpu_seconds(pid)
    done = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", url],
        capture_output=True, text=True, check=True,
    )
    spent = cpu_seconds(pid) - before
    match = _RATE.search(done.stdout)
    total = _TOTAL.search(done.stdout)
    if match is None or total is None or "Non-2xx" in done.stdout or "Socket errors" in done.stdout:
        raise RuntimeError(f"wrk on {url}:\n{done.stdout}")
    return float(match.group(1)), spent / int(total.group(1))


def container_address(daemon, sandbox_id):
    [summary_] = daemon.containers(sandbox_id)
    inspected = require_docker().api.inspect_container(summary_["Id"])
    networks = inspected["NetworkSettings"]["Networks"]
    return next(n["IPAddress"] for n in networks.values() if n["IPAddress"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk run per way")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--requests", type=int, default=400, help="latency samples per way")
    options = parser.parse_args(argv)
    daemon = Daemon(min_base=1)
    daemon.start(timeout=180)
    try:
        status, box = daemon.request("POST", "/sandboxes", {"ttl": 600})
        sandbox_id = box["id"]
        start_app(daemon, sandbox_id)
        wait_until_serving(daemon, sandbox_id)
        status, tunnel = daemon.request(
            "POST", f"/sandboxes/{sandbox_id}/ports/{APP_PORT}/expose", {"timeout": 30})
        ways = [
            ("direct (bridge address)", container_address(daemon, sandbox_id), APP_PORT, PATH),
            ("dedicated host port", "127.0.0.1", tunnel["host_port"], PATH),
            ("path proxy (daemon TCP)", "127.0.0.1", daemon.port,
             f"/sandboxes/{sandbox_id}/ports/{APP_PORT}{PATH}"),
        ]
        results = {}
        for label, host, port, path in ways:
            stats = summary(latencies(host, port, path, options.requests))
            rate, cpu = throughput(f"http://{host}:{port}{path}", options.seconds,
                                   options.connections, daemon.process.pid)
            results[label] = (stats, rate, cpu)
        direct_stats, direct_rate, _ = results[ways[0][0]]
        print(f"{'way':26s} {'req/s':>8s} {'of direct':>9s} {'p50 ms':>7s} {'p90 ms':>7s}"
              f" {'p50 added':>9s} {'daemon CPU/req':>14s}")
        for label, (stats, rate, cpu) in results.items():
            print(f"{label:26s} {rate:8.0f} {rate / direct_rate:9.0%} {stats['p50_ms']:7.3f}"
                  f" {stats['p90_ms']:7.3f} {stats['p50_ms'] - direct_stats['p50_ms']:9.3f}"
                  f" {cpu * 1e6:11.0f} us", flush=True)
        daemon.request("DELETE", f"/sandboxes/{sandbox_id}")
    finally:
        daemon.stop(timeout=120)


if __name__ == "__main__":
    main()
