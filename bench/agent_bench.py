"""
Agent benchmarks through the Python SDK and a real daemon, beside
``docker exec`` and ``docker cp`` on the same image, in one run:

- exec round trip (``true``) on an open session: p50/p99
- 100 MiB fs.write and fs.read: MB/s each way
- 100 MiB fs.upload and fs.download (tar): MB/s each way
- 20 concurrent 0.5 s execs on one session: wall time

Usage: ``.venv/bin/python bench/agent_bench.py [--iterations N] [--json PATH]``
(needs Docker and the sandbox-base image).
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sandbox import create_sandbox  # noqa: E402
from tests.daemon import Daemon  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stats import summary as _summary  # noqa: E402

IMAGE = "sandbox-base:latest"


def summary(samples):
    out = _summary(samples)
    del out["samples_ms"]
    return out

MiB = 1 << 20
SIZE = 100 * MiB


def mbps(seconds, size=SIZE):
    return round(size / seconds / 1e6, 1)


async def bench_sdk(daemon, n):
    out = {}
    async with await create_sandbox(
        endpoint=daemon.endpoint, memory="1g", storage="512m"
    ) as sbx:
        for _ in range(20):
            await sbx.process.exec_("true")
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            await sbx.process.exec_(["true"])
            samples.append(time.perf_counter() - start)
        out["exec_rtt"] = summary(samples)

        block = os.urandom(MiB)

        async def blocks():
            for _ in range(SIZE // MiB):
                yield block

        start = time.perf_counter()
        await sbx.fs.write("/root/big.bin", blocks())
        out["write_100mib_MBps"] = mbps(time.perf_counter() - start)
        start = time.perf_counter()
        got = 0
        async for chunk in sbx.fs.read_stream("/root/big.bin"):
            got += len(chunk)
        out["read_100mib_MBps"] = mbps(time.perf_counter() - start)
        assert got == SIZE, got

        async def tar_source():
            info = tarfile.TarInfo("up.bin")
            info.size = SIZE
            yield info.tobuf(format=tarfile.GNU_FORMAT)
            async for b in blocks():
                yield b
            yield bytes(1024)

        await sbx.fs.remove("/root/big.bin")
        start = time.perf_counter()
        await sbx.fs.upload("/root", tar_source())
        out["upload_100mib_MBps"] = mbps(time.perf_counter() - start)
        start = time.perf_counter()
        got = 0
        async for chunk in sbx.fs.download("/root/up.bin"):
            got += len(chunk)
        out["download_100mib_MBps"] = mbps(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(sbx.process.exec_("sleep 0.5") for _ in range(20)))
        out["concurrent_20x_sleep0.5_s"] = round(time.perf_counter() - start, 3)
        await sbx.destroy()
    return out


def bench_docker(n):
    out = {}
    name = f"agent-bench-{os.getpid()}"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--entrypoint", "sleep", IMAGE, "600"],
        check=True, capture_output=True,
    )
    try:
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            subprocess.run(["docker", "exec", name, "true"], check=True, capture_output=True)
            samples.append(time.perf_counter() - start)
        out["docker_exec_rtt"] = summary(samples)
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "big.bin")
            with open(src, "wb") as f:
                for _ in range(SIZE // MiB):
                    f.write(os.urandom(MiB))
            start = time.perf_counter()
            subprocess.run(["docker", "cp", src, f"{name}:/tmp/big.bin"], check=True, capture_output=True)
            out["docker_cp_in_100mib_MBps"] = mbps(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(["docker", "cp", f"{name}:/tmp/big.bin", os.path.join(tmp, "back.bin")],
                           check=True, capture_output=True)
            out["docker_cp_out_100mib_MBps"] = mbps(time.perf_counter() - start)
        start = time.perf_counter()
        procs = [subprocess.Popen(["docker", "exec", name, "sleep", "0.5"]) for _ in range(20)]
        for proc in procs:
            proc.wait()
        out["docker_concurrent_20x_sleep0.5_s"] = round(time.perf_counter() - start, 3)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    daemon = Daemon(min_base=1)
    daemon.start()
    try:
        results = asyncio.run(bench_sdk(daemon, args.iterations))
    finally:
        daemon.stop()
    results.update(bench_docker(max(20, args.iterations // 10)))
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
