"""
How sandboxd's figures grow with the number of live sandboxes: a fresh
daemon is grown to each level (0, then 10, 100, 200 live sandboxes by
default, each with a small memory limit), and at every level the bench
records

- the daemon's RSS, each agent's RSS (the sandbox's PID 1) and the RSS of
  each sandbox's containerd shim (the host's own per-container cost), and
  the same as PSS (shared pages split between their users, so they add up);
- exec round trip on an open session (``probes`` times), warm create and
  create -> python snippet -> destroy (a quarter as many), ``GET /sandboxes``
  (half as many), and ``docker exec`` into one of the same containers (the
  peer, at the same load).
"""

import asyncio
import json
import os
import subprocess
import time

from sandbox import Client, connect_sandbox
from tests.daemon import NO_RATE_LIMIT, Daemon

from ours import (
    bench_create_snippet_destroy, bench_warm_create, exec_rtt, pss_bytes,
    rss_bytes, wait_at_rest,
)
from peers import timed_command
from stats import summary

LIVE_MEMORY = "64m"
# Live sandboxes must outlive the run: with no ttl a sandbox is destroyed
# when its last session closes (the exec probe's) or after idle_timeout.
LIVE_TTL = 3600
MB = 1e6


def scaling_daemon(most):
    """
    A daemon allowed ``most`` live sandboxes (plus room for the probes).
    """
    return Daemon(
        min_base=2, limits_config=f"{NO_RATE_LIMIT}\nmax_sandboxes = {most + 20}"
    )


def containers(daemon):
    """
    {sandbox id: (container id, PID 1 on the host)} of this daemon's
    running containers, warm ones included.
    """
    owner = os.path.abspath(os.path.join(daemon.dir, "data"))
    ids = subprocess.run(
        ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=sandboxd.owner={owner}"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    if not ids:
        return {}
    lines = subprocess.run(
        ["docker", "inspect", "--format",
         '{{index .Config.Labels "sandboxd.id"}} {{.Id}} {{.State.Pid}}', *ids],
        capture_output=True, text=True,
    ).stdout.split("\n")
    out = {}
    for line in lines:
        if line.strip():
            sid, cid, pid = line.split()
            out[sid] = (cid, int(pid))
    return out


def parent(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def process_tree():
    """
    {pid: [child pids]} of every process on the host.
    """
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                children.setdefault(parent(name), []).append(int(name))
            except (OSError, ValueError, IndexError):
                continue
    return children


def tree_pss(pid, children):
    """
    PSS of ``pid`` and every process below it: a sandbox's agent (init and
    server) and its Python zygote, idle.
    """
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += pss_bytes(current)
        stack.extend(children.get(current, ()))
    return total


def memory(daemon, live_ids):
    """
    Daemon RSS, and per live sandbox the agent's and its shim's RSS and
    PSS, and the PSS of all the sandbox's processes (MB).
    """
    found = containers(daemon)
    children = process_tree()
    agents, shims, agents_pss, shims_pss, sandboxes_pss = [], [], [], [], []
    for sid in live_ids:
        if sid not in found:
            continue
        pid = found[sid][1]
        try:
            shim = parent(pid)
            agents.append(rss_bytes(pid) / MB)
            shims.append(rss_bytes(shim) / MB)
            agents_pss.append(pss_bytes(pid) / MB)
            shims_pss.append(pss_bytes(shim) / MB)
            sandboxes_pss.append(tree_pss(pid, children) / MB)
        except OSError:
            continue

    def stats(values):
        if not values:
            return None
        return {
            "n": len(values),
            "mean_mb": round(sum(values) / len(values), 2),
            "max_mb": round(max(values), 2),
            "total_mb": round(sum(values), 1),
        }

    return {
        "daemon_rss_mb": round(rss_bytes(daemon.process.pid) / MB, 1),
        "daemon_pss_mb": round(pss_bytes(daemon.process.pid) / MB, 1),
        "agent_rss": stats(agents),
        "shim_rss": stats(shims),
        "agent_pss": stats(agents_pss),
        "shim_pss": stats(shims_pss),
        "sandbox_pss": stats(sandboxes_pss),
    }


async def grow(client, live, target, concurrency=16):
    """
    Create live sandboxes (cold, LIVE_MEMORY each, kept LIVE_TTL) until ``live`` holds
    ``target``: the create latencies.
    """
    gate = asyncio.Semaphore(concurrency)
    samples = []

    async def one():
        async with gate:
            start = time.perf_counter()
            info = await client.create(
                memory=LIVE_MEMORY, ttl=LIVE_TTL, labels={"bench": "live"}
            )
            samples.append(time.perf_counter() - start)
            live.append(info["id"])

    await asyncio.gather(*(one() for _ in range(target - len(live))))
    return samples


async def shrink(client, live, concurrency=16):
    gate = asyncio.Semaphore(concurrency)

    async def one(sid):
        async with gate:
            await client.destroy(sid)

    await asyncio.gather(*(one(sid) for sid in live), return_exceptions=True)
    live.clear()


def list_latency(daemon, n):
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        status, body = daemon.request("GET", "/sandboxes")
        samples.append(time.perf_counter() - start)
        if status != 200:
            raise RuntimeError(f"GET /sandboxes: {status} {body}")
    return samples


async def _level(daemon, client, live, level, probes, docker_probes):
    grown = await grow(client, live, level)
    await asyncio.to_thread(wait_at_rest, daemon)
    row = {"live": level}
    if grown:
        row["grow_create"] = summary(grown)
    row.update(memory(daemon, live))
    probe = await connect_sandbox(live[0], client=client)
    try:
        row["exec_rtt"] = summary(await exec_rtt(probe, probes))
    finally:
        await probe.close()
    creates = max(10, probes // 4)
    row["warm_create"] = summary(
        (await asyncio.to_thread(bench_warm_create, daemon, creates))[0]
    )
    row["create_snippet_destroy"] = summary(
        (await asyncio.to_thread(bench_create_snippet_destroy, daemon, creates))[0]
    )
    row["list_sandboxes"] = summary(list_latency(daemon, probes // 2))
    container = containers(daemon)[live[0]][0]
    row["docker_exec"] = summary(await asyncio.to_thread(
        timed_command, ["docker", "exec", container, "echo", "hello"], docker_probes
    ))
    return row


async def _scaling(daemon, levels, probes, docker_probes):
    client = Client(daemon.endpoint)
    live, rows = [], []
    try:
        for level in [1, *levels]:
            rows.append(await _level(daemon, client, live, level, probes, docker_probes))
            report(rows[-1])
    finally:
        await shrink(client, live)
        await client.close()
    return rows


def report(row):
    agent = row["agent_rss"] or {}
    print(
        f"  {row['live']:4d} live: daemon {row['daemon_rss_mb']} MB, agent"
        f" {agent.get('mean_mb')} MB, exec p50 {row['exec_rtt']['p50_ms']} ms,"
        f" warm create p50 {row['warm_create']['p50_ms']} ms", flush=True,
    )


def bench_scaling(levels=(10, 100, 200), probes=100, docker_probes=20):
    """
    One row per level (the first is a single live sandbox, the probe).
    """
    daemon = scaling_daemon(max(levels))
    daemon.start(timeout=180)
    try:
        return asyncio.run(_scaling(daemon, levels, probes, docker_probes))
    finally:
        daemon.stop(timeout=180)
        sweep(daemon)


def sweep(daemon):
    """
    Remove any container this daemon left behind.
    """
    ids = list(cid for cid, _ in containers(daemon).values())
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


if __name__ == "__main__":
    print(json.dumps(bench_scaling((3, 6), probes=20, docker_probes=3), indent=1)[:3000])
