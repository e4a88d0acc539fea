"""
What one sandbox costs the machine in CPU, engine operation by engine
operation: the ceiling on how many sandboxes per second the warm pool can
boot (and destroy) on this machine, whatever sandboxd does.

For ``--count`` containers made with sandboxd's own container settings
(hardening, limits, the sandbox bridge) it times create, start (``--parallel``
at once), inspect, kill and remove through the Engine API, and reads the CPU
that dockerd, containerd and the whole machine (every process and the
kernel: runc, the shims, the agent starting, network set-up) used meanwhile.
Variants: the image's agent, or ``sleep`` in its place (``--sleeper``: the
agent's own start-up cost is the difference), on the bridge or with no network
(``--no-network``: the bridge's share).

    .venv/bin/python bench/engine_cost.py [--count 16] [--parallel 3] [--sleeper] [--no-network]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sandboxd.runtimes._container import container_config  # noqa: E402
from sandboxd.runtimes.docker import ICC_OPTION  # noqa: E402
from sandboxd.runtimes.interface import SandboxSpec  # noqa: E402
from tests.daemon import UnixHTTPConnection  # noqa: E402

NETWORK = "sandboxd-engine-cost"
OWNER = "/bench/engine-cost"


def engine(method, path, body=None):
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    connection = UnixHTTPConnection(host.removeprefix("unix://"), timeout=120)
    try:
        connection.request(method, path, json.dumps(body) if body is not None else None,
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
    return json.loads(data) if data else None


def cpu_ticks():
    """
    CPU ticks so far of dockerd, containerd and the whole machine (busy).
    """
    ticks = {}
    for name in ("dockerd", "containerd"):
        pids = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout.split()
        total = 0
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        ticks[name] = total
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    ticks["machine"] = sum(values) - values[3] - values[4]  # all but idle and iowait
    return ticks


def measure(name, count, operation, settle=0.5):
    """
    Run ``operation()``; print and return wall and CPU per container (ms).
    """
    hz = os.sysconf("SC_CLK_TCK")
    before, start = cpu_ticks(), time.monotonic()
    operation()
    wall = time.monotonic() - start
    time.sleep(settle)  # let the work the operation set off finish
    after = cpu_ticks()
    row = {"wall_ms": wall / count * 1000}
    row.update({k: (after[k] - before[k]) * 1000 / hz / count for k in after})
    print(f"  {name:10s} " + "  ".join(f"{k} {v:6.1f}" for k, v in row.items()), flush=True)
    return row


def container_body(i, sleeper, no_network):
    spec = SandboxSpec(
        sandbox_id=f"sbx-cost{i:04d}", image="sandbox-base:latest", runtime="docker",
        memory=512 << 20, cpu=1.0, storage=500 << 20, secret="0" * 64,
        profile="default", owner=OWNER,
    )
    body = container_config(spec, NETWORK, 7070)
    if sleeper:
        body["Entrypoint"] = ["sleep", "3600"]
    if no_network:
        body["HostConfig"]["NetworkMode"] = "none"
        body["NetworkingConfig"] = {}
    return body


def run(count, parallel, sleeper, no_network):
    subprocess.run(["docker", "network", "create", "-o", f"{ICC_OPTION}=false", NETWORK],
                   capture_output=True)
    ids = []
    try:
        print(f"per container ({count}, {parallel} starts at once, ms of CPU;"
              f" {'sleep' if sleeper else 'agent'}, {'no network' if no_network else 'bridge'}):")
        rows = {"create": measure("create", count, lambda: ids.extend(
            engine("POST", "/containers/create", container_body(i, sleeper, no_network))["Id"]
            for i in range(count)))}
        with ThreadPoolExecutor(parallel) as pool:
            rows["start"] = measure("start", count, lambda: list(pool.map(
                lambda cid: engine("POST", f"/containers/{cid}/start"), ids)), settle=2)
        rows["inspect"] = measure("inspect", count, lambda: [
            engine("GET", f"/containers/{cid}/json") for cid in ids])
        rows["kill"] = measure("kill", count, lambda: [
            engine("POST", f"/containers/{cid}/kill") for cid in ids], settle=1)
        rows["remove"] = measure("remove", count, lambda: [
            engine("DELETE", f"/containers/{cid}?force=1&v=1") for cid in ids])
        ids.clear()
        total = sum(r["machine"] for r in rows.values())
        print(f"  one sandbox's life costs the machine {total:.0f} ms of CPU: at most"
              f" {1000 * os.cpu_count() / total:.1f} per second on {os.cpu_count()} CPUs"
              " with nothing else running")
        return rows
    finally:
        for cid in ids:
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
        subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=3)
    parser.add_argument("--sleeper", action="store_true", help="sleep instead of the agent")
    parser.add_argument("--no-network", action="store_true", help="NetworkMode none")
    options = parser.parse_args(argv)
    run(options.count, options.parallel, options.sleeper, options.no_network)


if __name__ == "__main__":
    main()
