"""
What a user would pick instead of sandboxd, timed on the same machine with
the same snippet: the docker CLI (``docker run --rm``, ``docker exec``,
``docker cp``) and the Python libraries llm-sandbox and epicbox, which run in
their own virtualenv (bench/.peers-venv, made by bench/setup-peers.sh) through
bench/peer_worker.py.

Every peer uses PEER_IMAGE, the Debian root filesystem our sandbox image is
built on (sandbox-base:latest is it plus the agent's files and an agent
entrypoint), so nothing is ever pulled.
"""

import json
import os
import shlex
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from stats import mbps, summary

HERE = os.path.dirname(os.path.abspath(__file__))
PEER_IMAGE = "sandbox-rootfs:bookworm"
PEERS_PYTHON = os.path.join(HERE, ".peers-venv", "bin", "python")
SNIPPET = "print(6 * 7)"
EXPECTED = "42\n"
LABEL = "sandboxd.bench=peer"
MiB = 1 << 20


def random_file(path, size):
    """
    Write ``size`` random bytes (whole MiB) to ``path``; return the path.
    """
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    return path


def timed_command(argv, n, expect=None):
    """
    Run ``argv`` ``n`` times; the wall-clock seconds of each run.
    """
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        done = subprocess.run(argv, check=True, capture_output=True, text=True)
        samples.append(time.perf_counter() - start)
        if expect is not None and done.stdout != expect:
            raise RuntimeError(f"{shlex.join(argv)} printed {done.stdout!r}")
    return samples


def docker_run_snippet(n):
    """
    ``docker run --rm IMAGE python3 -c SNIPPET``: a fresh container per
    snippet, the baseline every sandbox library builds on.
    """
    return summary(timed_command(
        ["docker", "run", "--rm", "--network", "none", "--label", LABEL,
         PEER_IMAGE, "python3", "-c", SNIPPET], n, EXPECTED,
    ))


def docker_run_echo(n):
    """
    ``docker run --rm IMAGE echo hello``: about the least a new container
    costs.
    """
    return summary(timed_command(
        ["docker", "run", "--rm", "--network", "none", "--label", LABEL,
         PEER_IMAGE, "echo", "hello"], n, "hello\n",
    ))


class LongContainer:
    """
    One ``sleep infinity`` container of PEER_IMAGE for docker exec and
    docker cp, removed on exit.
    """

    def __enter__(self):
        self.id = subprocess.run(
            ["docker", "run", "-d", "--rm", "--init", "--network", "none",
             "--label", LABEL, PEER_IMAGE, "sleep", "infinity"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        return self

    def __exit__(self, *exc_info):
        subprocess.run(["docker", "rm", "-f", self.id], capture_output=True)


def docker_exec(n):
    """
    ``docker exec C echo hello`` and ``docker exec C python3 -c SNIPPET`` on
    one running container.
    """
    with LongContainer() as c:
        timed_command(["docker", "exec", c.id, "echo", "hello"], 3)
        echo = timed_command(["docker", "exec", c.id, "echo", "hello"], n, "hello\n")
        snippet = timed_command(
            ["docker", "exec", c.id, "python3", "-c", SNIPPET], n, EXPECTED
        )
    return {"echo": summary(echo), "snippet": summary(snippet)}


def docker_cp(n, size=100 * MiB):
    """
    ``docker cp`` of a ``size`` file into and out of a running container,
    ``n`` times each way.
    """
    into, out = [], []
    with tempfile.TemporaryDirectory() as tmp, LongContainer() as c:
        src = random_file(os.path.join(tmp, "big.bin"), size)
        back = os.path.join(tmp, "back.bin")
        for _ in range(n):
            into += timed_command(["docker", "cp", src, f"{c.id}:/tmp/big.bin"], 1)
            out += timed_command(["docker", "cp", f"{c.id}:/tmp/big.bin", back], 1)
            if os.path.getsize(back) != size:
                raise RuntimeError("docker cp brought back a different size")
            os.remove(back)
    return with_rates({"write": summary(into), "read": summary(out)}, size)


def with_rates(pair, size):
    """
    Add MB/s at the median to a {"write", "read"} pair of summaries.
    """
    for stats in pair.values():
        stats["MBps_at_p50"] = mbps(stats["p50_ms"] / 1000, size)
    return pair


def peers_available():
    return os.access(PEERS_PYTHON, os.X_OK)


def library(scenario, n, **options):
    """
    Run one peer_worker scenario in the peers' venv; its parsed JSON output.
    """
    argv = [PEERS_PYTHON, os.path.join(HERE, "peer_worker.py"), scenario,
            "--iterations", str(n), "--image", PEER_IMAGE]
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"peer {scenario} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def llm_sandbox_snippet(n):
    return summary(library("llm-sandbox-snippet", n)["samples"])


def llm_sandbox_pooled_snippet(n):
    return summary(library("llm-sandbox-pooled-snippet", n)["samples"])


def llm_sandbox_exec(n):
    return summary(library("llm-sandbox-exec", n)["samples"])


def llm_sandbox_copy(n, size=100 * MiB):
    out = library("llm-sandbox-copy", n, size=size)
    return with_rates(
        {"write": summary(out["samples"]), "read": summary(out["read_samples"])},
        size,
    )


def epicbox_snippet(n):
    return summary(library("epicbox-snippet", n)["samples"])


def concurrent_docker_runs(n=100):
    """
    ``n`` ``docker run --rm IMAGE true`` at once (one thread each): each
    one's latency and how many failed.
    """
    argv = ["docker", "run", "--rm", "--network", "none", "--label", LABEL,
            PEER_IMAGE, "true"]

    def one(_):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True)
        return time.perf_counter() - start, done.returncode != 0

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    out = summary([t for t, _ in results])
    out["failed"] = sum(failed for _, failed in results)
    return out


def remove_leftovers():
    """
    Remove any container a peer left behind (ours carry the bench label).
    """
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={LABEL}"],
        capture_output=True, text=True,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
