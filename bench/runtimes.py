"""
runc beside gVisor beside QEMU on the same image: warm create, cold create
(boot and agent), exec round trip and host memory per sandbox of sandboxd
on each runtime, with ``docker run --runtime`` as the peer of the container
runtimes.

``python bench/runtimes.py [--runtimes docker,docker+gvisor,qemu] [-n N]``
prints the rows as JSON (what docs/runtimes.md and docs/benchmarks.md cite).
"""

import asyncio
import json
import os
import sys
import time

from ours import bench_warm_create, exec_rtt
from peers import LABEL, PEER_IMAGE, timed_command
from report import scenario
from stats import summary
from tests.daemon import Daemon, UnixHTTPConnection

from sandbox import create_sandbox

#: docker run's --runtime for each of our runtime names.
OCI_RUNTIMES = {"docker": "runc", "docker+gvisor": "runsc"}


def bench_cold_create(daemon, n):
    """
    POST /sandboxes with a memory size unlike the profile's, so that every
    create boots a container and connects its agent (then DELETE).
    """
    samples = []
    connection = UnixHTTPConnection(daemon.socket, timeout=120)
    try:
        for _ in range(n):
            start = time.perf_counter()
            connection.request("POST", "/sandboxes", body=b'{"memory": "300m"}',
                               headers={"Content-Type": "application/json"})
            body = json.loads(connection.getresponse().read())
            samples.append(time.perf_counter() - start)
            if body.get("method") != "cold":
                raise RuntimeError(f"expected a cold create, got {body}")
            connection.request("DELETE", f"/sandboxes/{body['id']}")
            connection.getresponse().read()
    finally:
        connection.close()
    return samples


def sandbox_rss(daemon, sandbox_id):
    """
    Resident memory on the host of everything that runs the sandbox: the
    processes in its container's cgroup (the agent and its children under
    runc; gVisor's Sentry and gofer under runsc), or the QEMU process of a
    VM (guest RAM it touched and QEMU's own).
    """
    vm = os.path.join(daemon.data_dir, "vm", sandbox_id, "vm.json")
    if os.path.exists(vm):
        with open(vm) as f:
            pids = [json.load(f)["pid"]]
    else:
        (container,) = daemon.containers(sandbox_id)
        pids = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    if container["Id"] in f.read():
                        pids.append(int(pid))
            except OSError:
                pass
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f
                              if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


async def _exec(daemon, n):
    sbx = await create_sandbox(endpoint=daemon.endpoint)
    try:
        rtt = await exec_rtt(sbx, n)
        return rtt, sandbox_rss(daemon, sbx.id)
    finally:
        await sbx.destroy()


def bench_runtime(runtime, n, cold_n, docker_n):
    """
    The three measures on a daemon whose default profile uses ``runtime``,
    and ``docker run --rm --runtime`` on the same OCI runtime.
    """
    if runtime == "qemu":
        # TCG: one VM boots at a time on two vCPUs.
        daemon = Daemon(min_base=1, runtime=runtime, pool_config="total_warm = 1\n",
                        ready_timeout=300)
    else:
        daemon = Daemon(min_base=2, runtime=runtime)
    daemon.start()
    try:
        warm, _ = bench_warm_create(daemon, n)
        rtt, rss = asyncio.run(_exec(daemon, n))
        daemon.waitReady(300)
        cold = bench_cold_create(daemon, cold_n)
    finally:
        daemon.stop()
    result = {"warm_create": summary(warm), "cold_create": summary(cold),
              "exec_rtt": summary(rtt), "rss_bytes": rss}
    if runtime in OCI_RUNTIMES:
        result["docker_run"] = summary(timed_command(
            ["docker", "run", "--rm", "--runtime", OCI_RUNTIMES[runtime], "--network", "none",
             "--label", LABEL, PEER_IMAGE, "echo", "hello"], docker_n, "hello\n",
        ))
    return result


def runtime_scenarios(runtimes, n, docker_n, say):
    """
    Result rows (report.scenario) for each runtime in ``runtimes``.
    """
    rows = []
    for runtime in runtimes:
        cold_n = max(5, n // 5)
        say(f"{runtime}: warm create x{n}, exec x{n}, cold create x{cold_n},"
            f" docker run x{docker_n if runtime in OCI_RUNTIMES else 0}")
        m = bench_runtime(runtime, n, cold_n, docker_n)
        peer = ({f"docker run --runtime {OCI_RUNTIMES[runtime]}": m["docker_run"]}
                if "docker_run" in m else {})
        rows += [
            scenario(f"{runtime}_warm_create", f"{runtime}: warm create", m["warm_create"], peer),
            scenario(f"{runtime}_cold_create", f"{runtime}: cold create (boot + agent)",
                     m["cold_create"], peer),
            scenario(f"{runtime}_exec_rtt", f"{runtime}: exec round trip", m["exec_rtt"], {}),
        ]
    return rows


def main():
    import argparse

    parser = argparse.ArgumentParser(description="sandboxd on each runtime, one run")
    parser.add_argument("--runtimes", default="docker,docker+gvisor,qemu")
    parser.add_argument("-n", type=int, default=10, help="warm creates and execs per runtime")
    parser.add_argument("--cold", type=int, default=3, help="cold creates per runtime")
    parser.add_argument("--docker-runs", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for runtime in args.runtimes.split(","):
        print(f"{runtime}...", file=sys.stderr, flush=True)
        results[runtime] = bench_runtime(runtime, args.n, args.cold, args.docker_runs)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
