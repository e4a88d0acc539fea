"""
The CPU one task costs, apart from the machine's load: create -> a command
-> destroy with the pool at rest before each (as bench/ours.py's "at rest"
rows), and the CPU time each party spends on each of the three steps:

- the client: the Python SDK's process (``time.process_time``);
- the daemon: every thread of the ``twistd`` process (``/proc/PID/task/*/schedstat``,
  nanoseconds);
- the sandbox: the container's cgroup (``cpuacct.usage``, or ``cpu.stat``
  under cgroup v2), for the command (the agent, its zygote, the command).

CPU time is what a busy machine inflates least, so this tells where a task's
time goes even when wall-clock runs cannot.  Run on a quiet machine for the
numbers in docs/benchmarks.md:

    .venv/bin/python bench/task_cost.py [--iterations 40]
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), HERE]

from ours import SNIPPET_COMMAND, wait_at_rest  # noqa: E402
from peers import EXPECTED  # noqa: E402

from sandbox import Client, create_sandbox  # noqa: E402
from tests.daemon import Daemon  # noqa: E402

COMMANDS = [("echo hello", "hello\n"), (SNIPPET_COMMAND, EXPECTED)]


def process_cpu(pid):
    """
    CPU seconds all threads of ``pid`` have run.
    """
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def container_cpu_reader(container_id):
    """
    A function giving the CPU seconds of the container's cgroup so far.
    """
    v1 = f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage"
    if os.path.exists(v1):
        return lambda: int(open(v1).read()) / 1e9
    for v2 in (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat",
               f"/sys/fs/cgroup/docker/{container_id}/cpu.stat"):
        if os.path.exists(v2):
            def read(path=v2):
                with open(path) as f:
                    usage = dict(line.split() for line in f)
                return int(usage["usage_usec"]) / 1e6
            return read
    raise RuntimeError(f"no CPU accounting found for container {container_id}")


def container_of(sandbox_id):
    found = subprocess.run(
        ["docker", "ps", "-q", "--no-trunc", "-f", f"label=sandboxd.id={sandbox_id}"],
        capture_output=True, text=True, check=True).stdout.split()
    if len(found) != 1:
        raise RuntimeError(f"{len(found)} containers for {sandbox_id}")
    return found[0]


async def measure(daemon, n, command, expect):
    """
    Per task: (client create, exec, destroy, daemon create, exec, destroy,
    sandbox exec) CPU seconds.
    """
    client = Client(daemon.endpoint)
    pid = daemon.process.pid
    rows = []
    try:
        for _ in range(n):
            await asyncio.to_thread(wait_at_rest, daemon)
            c0, d0 = time.process_time(), process_cpu(pid)
            sbx = await create_sandbox(client=client)
            c1, d1 = time.process_time(), process_cpu(pid)
            # Between the steps, outside what is counted for either.
            sandbox_cpu = container_cpu_reader(
                await asyncio.to_thread(container_of, sbx.id))
            s1 = sandbox_cpu()
            c1b, d1b = time.process_time(), process_cpu(pid)
            result = await sbx.process.exec_(command)
            c2, d2, s2 = time.process_time(), process_cpu(pid), sandbox_cpu()
            await sbx.destroy()
            c3, d3 = time.process_time(), process_cpu(pid)
            if result.stdout != expect:
                raise RuntimeError(f"{command!r} printed {result.stdout!r}")
            rows.append((c1 - c0, c2 - c1b, c3 - c2, d1 - d0, d2 - d1b, d3 - d2, s2 - s1))
    finally:
        await client.close()
    return rows


def report(command, rows):
    mean = [statistics.mean(column) * 1e3 for column in zip(*rows)]
    client, daemon, sandbox = mean[0:3], mean[3:6], mean[6]
    print(f"{command}  (mean ms of CPU over {len(rows)} tasks)")
    print(f"  {'':8s} {'create':>7s} {'exec':>7s} {'destroy':>7s} {'total':>7s}")
    print(f"  {'client':8s} " + " ".join(f"{x:7.2f}" for x in client) + f" {sum(client):7.2f}")
    print(f"  {'daemon':8s} " + " ".join(f"{x:7.2f}" for x in daemon) + f" {sum(daemon):7.2f}")
    print(f"  {'sandbox':8s} {'':7s} {sandbox:7.2f} {'':7s} {sandbox:7.2f}")
    print(f"  all: {sum(client) + sum(daemon) + sandbox:.2f} ms of CPU per task")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args(argv)
    daemon = Daemon()
    daemon.start()
    try:
        wait_at_rest(daemon)
        for command, expect in COMMANDS:
            asyncio.run(measure(daemon, 2, command, expect))  # first uses: imports
            report(command, asyncio.run(measure(daemon, args.iterations, command, expect)))
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
