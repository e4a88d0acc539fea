"""
runc beside gVisor on the same image: warm create, cold create (boot and
agent) and exec round trip of sandboxd on each runtime, with ``docker run
--runtime`` as the peer.
"""

import asyncio
import json
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


async def _exec(daemon, n):
    sbx = await create_sandbox(endpoint=daemon.endpoint)
    try:
        return await exec_rtt(sbx, n)
    finally:
        await sbx.destroy()


def bench_runtime(runtime, n, cold_n, docker_n):
    """
    The three measures on a daemon whose default profile uses ``runtime``,
    and ``docker run --rm --runtime`` on the same OCI runtime.
    """
    daemon = Daemon(min_base=2, runtime=runtime)
    daemon.start(timeout=180)
    try:
        warm, _ = bench_warm_create(daemon, n)
        rtt = asyncio.run(_exec(daemon, n))
        daemon.waitReady(120)
        cold = bench_cold_create(daemon, cold_n)
    finally:
        daemon.stop()
    docker_run = timed_command(
        ["docker", "run", "--rm", "--runtime", OCI_RUNTIMES[runtime], "--network", "none",
         "--label", LABEL, PEER_IMAGE, "echo", "hello"], docker_n, "hello\n",
    )
    return {"warm_create": summary(warm), "cold_create": summary(cold),
            "exec_rtt": summary(rtt), "docker_run": summary(docker_run)}


def runtime_scenarios(runtimes, n, docker_n, say):
    """
    Result rows (report.scenario) for each runtime in ``runtimes``.
    """
    rows = []
    for runtime in runtimes:
        cold_n = max(5, n // 5)
        say(f"{runtime}: warm create x{n}, exec x{n}, cold create x{cold_n},"
            f" docker run --runtime {OCI_RUNTIMES[runtime]} x{docker_n}")
        m = bench_runtime(runtime, n, cold_n, docker_n)
        peer = {f"docker run --runtime {OCI_RUNTIMES[runtime]}": m["docker_run"]}
        rows += [
            scenario(f"{runtime}_warm_create", f"{runtime}: warm create", m["warm_create"], peer),
            scenario(f"{runtime}_cold_create", f"{runtime}: cold create (boot + agent)",
                     m["cold_create"], peer),
            scenario(f"{runtime}_exec_rtt", f"{runtime}: exec round trip", m["exec_rtt"], {}),
        ]
    return rows
