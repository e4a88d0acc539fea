"""
sandboxd benchmarks, side by side with docker run / docker exec on the same
image, in one run.  Usage: ``make bench`` or ``.venv/bin/python bench/run.py
[--iterations N] [--json PATH]``.

It starts its own daemon (twistd -n sandboxd) on a temporary socket, so it
needs Docker and the sandbox-base image (``make images``), nothing else.
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sandbox import create_sandbox  # noqa: E402
from tests.daemon import Daemon, UnixHTTPConnection  # noqa: E402

IMAGE = "sandbox-base:latest"


def summary(samples):
    """
    p50/p90/p99/max in milliseconds of a list of seconds.
    """
    ordered = sorted(samples)

    def pick(q):
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(pick(0.90), 3),
        "p99_ms": round(pick(0.99), 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def wait_warm(daemon, timeout=30):
    """
    Block until the default pool holds a ready sandbox.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, health = daemon.request("GET", "/health")
        if health["pool"]["default"]["ready"] >= 1:
            return
        time.sleep(0.01)
    raise RuntimeError("the warm pool did not refill")


def bench_warm_create(daemon, n):
    """
    POST /sandboxes over a kept-alive Unix socket connection, pool warm.
    """
    samples, methods = [], []
    connection = UnixHTTPConnection(daemon.socket)
    for _ in range(n):
        wait_warm(daemon)
        start = time.perf_counter()
        connection.request("POST", "/sandboxes", body=b"{}",
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = json.loads(response.read())
        samples.append(time.perf_counter() - start)
        methods.append(body["method"])
        connection.request("DELETE", f"/sandboxes/{body['id']}")
        connection.getresponse().read()
    connection.close()
    return samples, methods.count("warm") / len(methods)


async def bench_create_echo_destroy(daemon, n):
    samples, methods = [], []
    for _ in range(n):
        await asyncio.to_thread(wait_warm, daemon)
        start = time.perf_counter()
        sbx = await create_sandbox(endpoint=daemon.endpoint)
        result = await sbx.process.exec_("echo hello")
        await sbx.destroy()
        samples.append(time.perf_counter() - start)
        assert result.stdout == "hello\n", result
        methods.append(sbx.info["method"])
    return samples, methods.count("warm") / len(methods)


def bench_cold_create(daemon, n):
    """
    POST /sandboxes with a memory size unlike the profile's, so that every
    create boots a container and connects its agent (then DELETE).
    """
    samples, methods = [], []
    connection = UnixHTTPConnection(daemon.socket, timeout=120)
    for _ in range(n):
        start = time.perf_counter()
        connection.request("POST", "/sandboxes", body=b'{"memory": "300m"}',
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = json.loads(response.read())
        samples.append(time.perf_counter() - start)
        methods.append(body["method"])
        connection.request("DELETE", f"/sandboxes/{body['id']}")
        connection.getresponse().read()
    connection.close()
    assert set(methods) == {"cold"}, methods
    return samples


def bench_runtime(runtime, n, cold_n):
    """
    Warm create, cold create and exec round trip on a daemon whose default
    profile uses ``runtime`` (same image): their summaries.
    """
    daemon = Daemon(min_base=2, runtime=runtime)
    daemon.start(timeout=180)
    try:
        warm, _ = bench_warm_create(daemon, n)
        rtt, _ = asyncio.run(bench_exec_rtt(daemon, n))
        daemon.waitReady(120)
        cold = bench_cold_create(daemon, cold_n)
    finally:
        daemon.stop()
    return {"warm_create": summary(warm), "cold_create": summary(cold), "exec_rtt": summary(rtt)}


def wait_at_rest(daemon, timeout=60):
    """
    Block until the default pool is full and boots nothing.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pool = daemon.request("GET", "/health")[1]["pool"]["default"]
        if pool["starting"] == 0 and pool["ready"] >= pool["target"]:
            return
        time.sleep(0.05)
    raise RuntimeError("the warm pool did not come to rest")


async def bench_at_rest(daemon, n):
    """
    create -> echo -> destroy with the machine idle before each (no refill
    running): (totals, creates, first execs, destroys).
    """
    from sandbox import Client

    client = Client(daemon.endpoint)
    rows = []
    try:
        for _ in range(n):
            await asyncio.to_thread(wait_at_rest, daemon)
            t0 = time.perf_counter()
            sbx = await create_sandbox(client=client)
            t1 = time.perf_counter()
            await sbx.process.exec_("echo hello")
            t2 = time.perf_counter()
            await sbx.destroy()
            t3 = time.perf_counter()
            rows.append((t3 - t0, t1 - t0, t2 - t1, t3 - t2))
    finally:
        await client.close()
    return [list(column) for column in zip(*rows)]


async def bench_exec_rtt(daemon, n):
    sbx = await create_sandbox(endpoint=daemon.endpoint)
    try:
        for _ in range(20):
            await sbx.process.exec_("echo hello")
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            result = await sbx.process.exec_("echo hello")
            samples.append(time.perf_counter() - start)
            assert result.exit_code == 0
        return samples, sbx.id
    finally:
        await sbx.destroy()


async def bench_concurrent_creates(daemon, n=100):
    """
    ``n`` creates at once through the SDK's client; every one must succeed.
    """
    from sandbox import Client

    client = Client(daemon.endpoint)

    async def one():
        start = time.perf_counter()
        info = await client.create()
        return time.perf_counter() - start, info

    try:
        results = await asyncio.gather(*(one() for _ in range(n)))
        await asyncio.gather(*(client.destroy(info["id"]) for _, info in results))
    finally:
        await client.close()
    methods = [info["method"] for _, info in results]
    return [t for t, _ in results], methods.count("warm")


async def bench_sustained(daemon, rate=5.0, seconds=60):
    """
    Creates (each destroyed right after) at a steady ``rate`` per second;
    returns (create latencies, pool hit rate).
    """
    from sandbox import Client

    client = Client(daemon.endpoint)
    samples, warm = [], 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            t = time.perf_counter()
            info = await client.create()
            samples.append(time.perf_counter() - t)
            warm += info["method"] == "warm"
            await client.destroy(info["id"])
    finally:
        await client.close()
    return samples, warm / len(samples)


def cpu_seconds(pid):
    """
    User + system CPU seconds a process has used so far.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_idle_pool_cpu(warm=20, seconds=30):
    """
    The daemon's CPU share while it keeps ``warm`` sandboxes idle (health
    checks included), after the pool has filled.
    """
    daemon = Daemon(
        min_base=warm, pool_config=f"max_warm = {warm}\ntotal_warm = {warm}\n"
    )
    daemon.start(timeout=180)
    try:
        before = cpu_seconds(daemon.process.pid)
        time.sleep(seconds)
        return (cpu_seconds(daemon.process.pid) - before) / seconds
    finally:
        daemon.stop()


def timed_command(argv, n):
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return samples


def bench_docker_run(n, oci_runtime="runc"):
    return timed_command(
        ["docker", "run", "--rm", "--runtime", oci_runtime, "--network", "none",
         "--entrypoint", "echo", IMAGE, "hello"], n,
    )


def bench_docker_exec(n):
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", "--network", "none", "--entrypoint",
         "sleep", IMAGE, "infinity"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    try:
        timed_command(["docker", "exec", container, "echo", "hello"], 3)
        return timed_command(["docker", "exec", container, "echo", "hello"], n)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def table(rows):
    lines = [
        f"{'scenario':44} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}  vs peer (p50)"
    ]
    for name, stats, ratio in rows:
        lines.append(
            f"{name:44} {stats['n']:5d} {stats['p50_ms']:9.2f} {stats['p99_ms']:9.2f}"
            f" {stats['max_ms']:9.2f}  {ratio}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--iterations", type=int, default=200,
                        help="iterations of the cheap scenarios (default 200)")
    parser.add_argument("--docker-iterations", type=int, default=30,
                        help="iterations of docker run (default 30; ~0.3 s each)")
    parser.add_argument("--sustained-seconds", type=int, default=60,
                        help="length of the 5 creates/s run (default 60)")
    parser.add_argument("--runtime-iterations", type=int, default=50,
                        help="iterations per runtime of the runc/gVisor comparison (default 50)")
    parser.add_argument("--runtimes", default="docker,docker+gvisor",
                        help="runtimes compared side by side (default docker,docker+gvisor;"
                        " '' skips the comparison)")
    parser.add_argument("--only-runtimes", action="store_true",
                        help="run only the runtime comparison")
    parser.add_argument("--json", default="bench/results/latest.json")
    options = parser.parse_args(argv)
    n = options.iterations
    runtimes = [r for r in options.runtimes.split(",") if r]
    if options.only_runtimes:
        return compare_runtimes(runtimes, options)

    daemon = Daemon(min_base=2)
    daemon.start()
    try:
        warm, warm_hits = bench_warm_create(daemon, n)
        ced, ced_hits = asyncio.run(bench_create_echo_destroy(daemon, n))
        rtt, _ = asyncio.run(bench_exec_rtt(daemon, n * 2))
        rest_total, rest_create, rest_exec, rest_destroy = asyncio.run(
            bench_at_rest(daemon, max(20, n // 5))
        )
        daemon.waitReady(120)
        sustained, sustained_hits = asyncio.run(
            bench_sustained(daemon, 5.0, options.sustained_seconds)
        )
        burst, burst_warm = asyncio.run(bench_concurrent_creates(daemon, 100))
    finally:
        daemon.stop()
    idle_cpu = bench_idle_pool_cpu(20, 30)
    docker_run = bench_docker_run(options.docker_iterations)
    docker_exec = bench_docker_exec(n)

    results = {
        "warm_create": summary(warm),
        "create_echo_destroy": summary(ced),
        "exec_rtt": summary(rtt),
        "docker_run": summary(docker_run),
        "docker_exec": summary(docker_exec),
    }
    results["at_rest_create_echo_destroy"] = summary(rest_total)
    results["at_rest_create"] = summary(rest_create)
    results["at_rest_first_exec"] = summary(rest_exec)
    results["at_rest_destroy"] = summary(rest_destroy)
    results["concurrent_100_creates"] = summary(burst)
    results["concurrent_100_creates"]["warm"] = burst_warm
    results["sustained_5_per_s"] = summary(sustained)
    results["sustained_5_per_s"]["pool_hit_rate"] = sustained_hits
    results["idle_pool_20_cpu_share"] = round(idle_cpu, 4)
    results["warm_create"]["pool_hit_rate"] = warm_hits
    results["create_echo_destroy"]["pool_hit_rate"] = ced_hits

    def ratio(ours, peer, label):
        return f"{results[peer]['p50_ms'] / results[ours]['p50_ms']:.0f}x faster than {label}"

    rows = [
        ("warm create (POST /sandboxes, unix socket)", results["warm_create"],
         ratio("warm_create", "docker_run", "docker run")),
        ("create -> echo -> destroy (SDK, pool refilling)", results["create_echo_destroy"],
         ratio("create_echo_destroy", "docker_run", "docker run")),
        ("  same, pool at rest before each", results["at_rest_create_echo_destroy"],
         ratio("at_rest_create_echo_destroy", "docker_run", "docker run")),
        ("    of which create (POST + WebSocket)", results["at_rest_create"], ""),
        ("    of which first exec", results["at_rest_first_exec"], ""),
        ("    of which destroy", results["at_rest_destroy"], ""),
        ("exec round trip, open session (SDK)", results["exec_rtt"],
         ratio("exec_rtt", "docker_exec", "docker exec")),
        ("100 concurrent creates (all succeed)", results["concurrent_100_creates"],
         f"{burst_warm} of 100 warm"),
        (f"5 creates/s for {options.sustained_seconds} s", results["sustained_5_per_s"],
         f"pool hit rate {sustained_hits:.1%}"),
        ("docker run --rm IMAGE echo hello", results["docker_run"], ""),
        ("docker exec CONTAINER echo hello", results["docker_exec"], ""),
    ]
    print(table(rows))
    print(f"pool hit rate: warm create {warm_hits:.0%}, create-echo-destroy {ced_hits:.0%}")
    print(f"idle pool of 20: daemon CPU {idle_cpu:.2%} of one core")
    if runtimes:
        results["runtimes"] = compare_runtimes(runtimes, options, write=False)
    results["machine"] = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    os.makedirs(os.path.dirname(options.json) or ".", exist_ok=True)
    with open(options.json, "w") as f:
        json.dump(results, f, indent=2)
    print(f"results written to {options.json}")


#: docker run's --runtime for each of our runtime names.
OCI_RUNTIMES = {"docker": "runc", "docker+gvisor": "runsc"}


def compare_runtimes(runtimes, options, write=True):
    """
    Cold create, warm create and exec round trip on each runtime, beside
    ``docker run`` on the same OCI runtime; print a table, return the
    results (written to --json when ``write``).
    """
    n, cold_n = options.runtime_iterations, max(5, options.runtime_iterations // 5)
    results = {}
    rows = []
    for runtime in runtimes:
        measured = bench_runtime(runtime, n, cold_n)
        measured["docker_run"] = summary(
            bench_docker_run(max(5, options.docker_iterations // 3), OCI_RUNTIMES[runtime])
        )
        results[runtime] = measured
        peer = measured["docker_run"]["p50_ms"]
        rows += [
            (f"{runtime}: warm create", measured["warm_create"],
             f"{peer / measured['warm_create']['p50_ms']:.0f}x faster than docker run"),
            (f"{runtime}: cold create (boot + agent)", measured["cold_create"],
             f"{peer / measured['cold_create']['p50_ms']:.1f}x docker run"),
            (f"{runtime}: exec round trip", measured["exec_rtt"], ""),
            (f"{runtime}: docker run --runtime {OCI_RUNTIMES[runtime]}",
             measured["docker_run"], ""),
        ]
    print(table(rows))
    if write:
        os.makedirs(os.path.dirname(options.json) or ".", exist_ok=True)
        with open(options.json, "w") as f:
            json.dump({"runtimes": results}, f, indent=2)
        print(f"results written to {options.json}")
    return results


if __name__ == "__main__":
    main()
