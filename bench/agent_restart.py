"""
How long a sandbox is out of service when its own code kills the agent's
server (``kill -9 -1``): from the command to the first ``echo`` on the same
session that answers again (PID 1 restarts the server, the daemon's link
reconnects, the session held the request).  On runc and gVisor, in one run,
beside what a user would do instead: ``docker run`` a new container.

    .venv/bin/python bench/agent_restart.py [--iterations 20]
"""

import argparse
import asyncio
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), HERE]

from peers import docker_run_echo  # noqa: E402
from stats import summary  # noqa: E402

from sandbox import create_sandbox  # noqa: E402
from sandbox.errors import SandboxError  # noqa: E402
from tests.daemon import Daemon  # noqa: E402

RUNTIMES = ("docker", "docker+gvisor")


async def outages(daemon, n):
    """
    Seconds from each ``kill -9 -1`` to the next answered ``echo``.
    """
    sbx = await create_sandbox(endpoint=daemon.endpoint, ttl=600)
    samples = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            try:
                await sbx.process.exec_("kill -9 -1")
            except SandboxError:
                pass
            result = await sbx.process.exec_("echo alive")
            assert result.stdout == "alive\n", result
            samples.append(time.perf_counter() - start)
    finally:
        await sbx.destroy()
    return samples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20)
    options = parser.parse_args(argv)
    baseline = docker_run_echo(options.iterations)
    print(f"{'docker run echo':15s} a new container instead:   p50 {baseline['p50_ms']:7.1f} ms"
          f"  p99 {baseline['p99_ms']:7.1f} ms", flush=True)
    for runtime in RUNTIMES:
        daemon = Daemon(min_base=1, runtime=runtime)
        daemon.start(timeout=180)
        try:
            stats = summary(asyncio.run(outages(daemon, options.iterations)))
        finally:
            daemon.stop(timeout=120)
        print(f"{runtime:15s} kill -9 -1 -> echo answers: p50 {stats['p50_ms']:7.1f} ms"
              f"  p99 {stats['p99_ms']:7.1f} ms  (n={options.iterations});"
              f" docker run / this: {baseline['p50_ms'] / stats['p50_ms']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
