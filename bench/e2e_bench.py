"""
End-to-end encryption's cost, encrypted beside clear, in one run against a
real daemon (docs/security.md, docs/benchmarks.md):

- exec round trip (``true``) on an open session: p50/p99, clear and encrypted
- 100 MiB fs.write and fs.read: MB/s each way, clear and encrypted
- the agent server's RSS before any encrypted session and after one (the
  agent loads ``cryptography`` only then)
- the CPU cost of sealing (bench/e2e_cost.py) with the SDK's cryptography
  and with the image's, which a loaded machine distorts far less than the
  wall-clock numbers above

Both sessions talk to the same sandbox, alternating, so the machine's load
falls on both alike.  Goals (issue 22): RTT overhead <= 0.3 ms at the p50,
>= 150 MB/s encrypted each way.

Usage: ``.venv/bin/python bench/e2e_bench.py [--iterations N] [--rounds R]
[--image IMAGE] [--json PATH]`` (needs Docker and an image with
python3-cryptography, as ``make images`` builds them).
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sandbox import connect_sandbox  # noqa: E402
from tests import daemon as test_daemon  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stats import summary as _summary  # noqa: E402

MiB = 1 << 20
SIZE = 100 * MiB


def summary(samples):
    out = _summary(samples)
    del out["samples_ms"]
    return out


def agent_rss_kib(sandbox_id):
    """
    VmRSS (KiB) of each agent process of the sandbox's container, by role:
    ``init`` (PID 1), ``server`` (its child serving connections), and any
    other (the zygote).
    """
    container = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=sandboxd.id={sandbox_id}"],
        check=True, capture_output=True, text=True,
    ).stdout.split()[0]
    rows = subprocess.run(
        ["docker", "top", container, "-eo", "pid,ppid,rss,args"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()[1:]
    procs = []
    for row in rows:
        pid, ppid, rss, args = row.split(None, 3)
        if "agent" in args:
            procs.append((int(pid), int(ppid), int(rss), args))
    pids = {p[0] for p in procs}
    roles = {}
    init = [p for p in procs if p[1] not in pids]
    for pid, ppid, rss, args in procs:
        if p_is(init, pid):
            roles["init"] = rss
        elif init and ppid == init[0][0] and "server" not in roles:
            roles["server"] = rss
        else:
            roles.setdefault("other", []).append(rss)
    return roles


def p_is(procs, pid):
    return any(p[0] == pid for p in procs)


async def rtt(sbx, n):
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await sbx.process.exec_(["true"])
        samples.append(time.perf_counter() - start)
    return samples


async def transfer(sbx):
    block = os.urandom(MiB)

    async def blocks():
        for _ in range(SIZE // MiB):
            yield block

    start = time.perf_counter()
    await sbx.fs.write("/root/big.bin", blocks())
    write = time.perf_counter() - start
    start = time.perf_counter()
    got = 0
    async for chunk in sbx.fs.read_stream("/root/big.bin"):
        got += len(chunk)
    read = time.perf_counter() - start
    assert got == SIZE, got
    await sbx.fs.remove("/root/big.bin")
    return SIZE / write / 1e6, SIZE / read / 1e6


async def bench(daemon, n, rounds):
    status, info = daemon.request("POST", "/sandboxes", {"ttl": 600, "memory": "1g", "storage": "512m"})
    assert status == 201, info
    sid = info["id"]
    out = {"sandbox": sid}
    try:
        clear = await connect_sandbox(sid, endpoint=daemon.endpoint)
        for _ in range(20):
            await clear.process.exec_("true")
        out["agent_rss_kib_before_e2e"] = agent_rss_kib(sid)
        sealed = await connect_sandbox(sid, endpoint=daemon.endpoint, encrypted=True)
        await sealed.process.exec_("true")
        out["agent_rss_kib_after_handshake"] = agent_rss_kib(sid)
        for _ in range(20):
            await sealed.process.exec_("true")
        times = {"clear": [], "encrypted": []}
        speeds = {"clear": [], "encrypted": []}
        for _ in range(rounds):
            for name, sbx in (("clear", clear), ("encrypted", sealed)):
                times[name] += await rtt(sbx, n)
                speeds[name].append(await transfer(sbx))
        for name in times:
            out[f"{name}_exec_rtt"] = summary(times[name])
            out[f"{name}_write_100mib_MBps"] = round(max(w for w, _ in speeds[name]), 1)
            out[f"{name}_read_100mib_MBps"] = round(max(r for _, r in speeds[name]), 1)
        out["agent_rss_kib_after_transfers"] = agent_rss_kib(sid)
        out["rtt_overhead_p50_ms"] = round(
            out["encrypted_exec_rtt"]["p50_ms"] - out["clear_exec_rtt"]["p50_ms"], 3
        )
        await sealed.close()
        await clear.close()
    finally:
        daemon.request("DELETE", f"/sandboxes/{sid}")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=200, help="execs per round and mode")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--image", default=os.environ.get("SANDBOXD_TEST_IMAGE"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.image:
        test_daemon.TEST_IMAGE = args.image
    daemon = test_daemon.Daemon(min_base=1)
    daemon.start()
    try:
        out = asyncio.run(bench(daemon, args.iterations, args.rounds))
    finally:
        daemon.stop()
    import e2e_cost

    out["cpu_cost_sdk"] = e2e_cost.cost()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out["cpu_cost_agent_image"] = json.loads(subprocess.run(
        ["docker", "run", "--rm", "-v", f"{repo}:/repo:ro", "-w", "/repo", "--entrypoint",
         "python3", test_daemon.TEST_IMAGE, "bench/e2e_cost.py"],
        check=True, capture_output=True, text=True,
    ).stdout)
    out["load_1min"] = os.getloadavg()[0]
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
