"""
The sandboxd side of the benchmarks: each scenario drives a running daemon
(tests.daemon.Daemon) through the Python SDK or raw HTTP over its Unix
socket and returns latency samples in seconds.
"""

import asyncio
import json
import os
import shlex
import time

from sandbox import Client, create_sandbox
from tests.daemon import Daemon, UnixHTTPConnection

from peers import EXPECTED, SNIPPET

#: The snippet as users write it: a string (run without a shell when it
#: needs none, agent/shellfree.py).
SNIPPET_COMMAND = f"python3 -c {shlex.quote(SNIPPET)}"

MiB = 1 << 20


def wait_warm(daemon, timeout=60):
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


def wait_at_rest(daemon, timeout=120):
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


def bench_warm_create(daemon, n):
    """
    POST /sandboxes over a kept-alive Unix socket connection, pool warm:
    (samples, pool hit rate).
    """
    samples, methods = [], []
    connection = UnixHTTPConnection(daemon.socket)
    try:
        for _ in range(n):
            wait_warm(daemon)
            start = time.perf_counter()
            connection.request("POST", "/sandboxes", body=b"{}",
                               headers={"Content-Type": "application/json"})
            body = json.loads(connection.getresponse().read())
            samples.append(time.perf_counter() - start)
            methods.append(body["method"])
            connection.request("DELETE", f"/sandboxes/{body['id']}")
            connection.getresponse().read()
    finally:
        connection.close()
    return samples, methods.count("warm") / len(methods)


async def bench_create_run_destroy(daemon, n, argv, expect):
    """
    create -> exec ``argv`` -> destroy through the SDK, waiting for a warm
    sandbox before each: (samples, pool hit rate).
    """
    samples, methods = [], []
    client = Client(daemon.endpoint)
    try:
        for _ in range(n):
            await asyncio.to_thread(wait_warm, daemon)
            start = time.perf_counter()
            sbx = await create_sandbox(client=client)
            result = await sbx.process.exec_(argv)
            await sbx.destroy()
            samples.append(time.perf_counter() - start)
            if result.stdout != expect:
                raise RuntimeError(f"{argv!r} printed {result.stdout!r}")
            methods.append(sbx.info["method"])
    finally:
        await client.close()
    return samples, methods.count("warm") / len(methods)


def bench_create_echo_destroy(daemon, n):
    return asyncio.run(bench_create_run_destroy(daemon, n, "echo hello", "hello\n"))


def bench_create_snippet_destroy(daemon, n):
    return asyncio.run(
        bench_create_run_destroy(daemon, n, SNIPPET_COMMAND, EXPECTED)
    )


async def _at_rest(daemon, n, argv, expect):
    client = Client(daemon.endpoint)
    rows = []
    try:
        for _ in range(n):
            await asyncio.to_thread(wait_at_rest, daemon)
            t0 = time.perf_counter()
            sbx = await create_sandbox(client=client)
            t1 = time.perf_counter()
            result = await sbx.process.exec_(argv)
            t2 = time.perf_counter()
            await sbx.destroy()
            t3 = time.perf_counter()
            if result.stdout != expect:
                raise RuntimeError(f"{argv!r} printed {result.stdout!r}")
            rows.append((t3 - t0, t1 - t0, t2 - t1, t3 - t2))
    finally:
        await client.close()
    return [list(column) for column in zip(*rows)]


def bench_at_rest(daemon, n, argv="echo hello", expect="hello\n"):
    """
    create -> ``argv`` -> destroy with the machine idle before each (no
    refill running): (totals, creates, first execs, destroys).
    """
    return asyncio.run(_at_rest(daemon, n, argv, expect))


def bench_snippet_at_rest(daemon, n):
    return bench_at_rest(daemon, n, SNIPPET_COMMAND, EXPECTED)


async def exec_rtt(sbx, n, argv="echo hello", expect="hello\n"):
    """
    ``n`` exec round trips on an open session, after a few to warm up.
    """
    for _ in range(5):
        await sbx.process.exec_(argv)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        result = await sbx.process.exec_(argv)
        samples.append(time.perf_counter() - start)
        if result.stdout != expect:
            raise RuntimeError(f"{argv!r} printed {result.stdout!r}")
    return samples


async def _exec(daemon, n):
    sbx = await create_sandbox(endpoint=daemon.endpoint)
    try:
        echo = await exec_rtt(sbx, n)
        snippet = await exec_rtt(sbx, n, ["python3", "-c", SNIPPET], EXPECTED)
        string = await exec_rtt(sbx, n, SNIPPET_COMMAND, EXPECTED)
    finally:
        await sbx.destroy()
    return echo, snippet, string


def bench_exec(daemon, n):
    """
    Exec round trips on one open session: (``echo hello`` samples, python
    snippet samples as an argv, the same as a string).
    """
    return asyncio.run(_exec(daemon, n))


async def _transfer(daemon, n, size):
    writes, reads = [], []
    block = os.urandom(MiB)

    async def blocks():
        for _ in range(size // MiB):
            yield block

    sbx = await create_sandbox(endpoint=daemon.endpoint, memory="1g", storage="512m")
    try:
        for _ in range(n):
            start = time.perf_counter()
            await sbx.fs.write("/root/big.bin", blocks())
            writes.append(time.perf_counter() - start)
            start = time.perf_counter()
            got = 0
            async for chunk in sbx.fs.read_stream("/root/big.bin"):
                got += len(chunk)
            reads.append(time.perf_counter() - start)
            if got != size:
                raise RuntimeError(f"read {got} of {size} bytes")
    finally:
        await sbx.destroy()
    return writes, reads


def bench_transfer(daemon, n, size=100 * MiB):
    """
    ``size`` bytes through fs.write then fs.read_stream, ``n`` times:
    (write samples, read samples).
    """
    return asyncio.run(_transfer(daemon, n, size))


async def _concurrent(daemon, n):
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


def bench_concurrent_creates(daemon, n=100):
    """
    ``n`` creates at once through the SDK's client; every one must succeed:
    (samples, how many were warm).
    """
    return asyncio.run(_concurrent(daemon, n))


async def _sustained(daemon, rate, seconds, open_loop):
    client = Client(daemon.endpoint)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(at):
        t = time.perf_counter()
        info = await client.create()
        took = time.perf_counter() - t
        await client.destroy(info["id"])
        return took, info["method"] == "warm", at

    results, tasks = [], []
    try:
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            at = round(loop.time() - start, 3)
            if open_loop:
                tasks.append(asyncio.ensure_future(one(at)))
            else:
                results.append(await one(at))
        results += await asyncio.gather(*tasks)
    finally:
        await client.close()
    return [list(column) for column in zip(*results)]


def bench_sustained(daemon, rate=5.0, seconds=60, open_loop=False):
    """
    Creates (each destroyed right after) at a steady ``rate`` per second:
    (create latencies, per-create warm flags, seconds into the run of each).

    Closed loop (the default): each create waits for the one before, so a
    slow one (a pool miss) delays the next and the run takes longer than
    ``seconds``. Open loop: creates arrive on schedule whatever the earlier
    ones take, as independent callers' would.
    """
    return asyncio.run(_sustained(daemon, rate, seconds, open_loop))


def cpu_seconds(pid):
    """
    User + system CPU seconds a process has used so far.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _field(path, name):
    with open(path) as f:
        for line in f:
            if line.startswith(name):
                return int(line.split()[1]) * 1024
    return 0


def rss_bytes(pid):
    """
    Resident set size of a process (VmRSS), in bytes: shared pages (the
    Python binary, libc) count in full in every process.
    """
    return _field(f"/proc/{pid}/status", "VmRSS:")


def pss_bytes(pid):
    """
    Proportional set size (Pss), in bytes: each shared page split among the
    processes sharing it, so these add up to the memory really used.
    """
    return _field(f"/proc/{pid}/smaps_rollup", "Pss:")


def bench_idle_pool_cpu(warm=20, seconds=30):
    """
    The daemon's CPU share (of one core) while it keeps ``warm`` sandboxes
    idle (health checks included), after the pool has filled.
    """
    daemon = Daemon(
        min_base=warm, pool_config=f"max_warm = {warm}\ntotal_warm = {warm}\n"
    )
    daemon.start(timeout=300)
    try:
        before = cpu_seconds(daemon.process.pid)
        time.sleep(seconds)
        return (cpu_seconds(daemon.process.pid) - before) / seconds
    finally:
        daemon.stop(timeout=180)
