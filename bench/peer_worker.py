"""
The Python-library peers, run by bench/.peers-venv/bin/python (never the
project's venv): ``peer_worker.py SCENARIO --iterations N --image IMAGE``
times N iterations and prints one JSON object ``{"samples": [seconds...]}``
on stdout (plus scenario-specific keys).

Scenarios:

- ``llm-sandbox-snippet``: ``SandboxSession(...)`` open -> ``run(SNIPPET)``
  -> close, per iteration.
- ``llm-sandbox-pooled-snippet``: the same through llm-sandbox's own
  container pool (``create_pool_manager`` with 2 containers kept warm,
  ``PooledSandboxSession`` open -> ``run(SNIPPET)`` -> close, which hands
  the container back for the next session).
- ``llm-sandbox-exec``: ``execute_command("echo hello")`` on one open session.
- ``llm-sandbox-copy``: ``copy_to_runtime`` / ``copy_from_runtime`` of
  100 MiB (``samples`` are the writes, ``read_samples`` the reads).
- ``epicbox-snippet``: ``epicbox.run(profile, "python3 -c SNIPPET")``, which
  creates, starts, waits for and removes one container.

Both libraries are pointed at a local image so they never pull: epicbox
creates its containers with docker-py's ``containers.create`` (which does not
pull) and llm-sandbox only pulls when ``images.get`` fails. llm-sandbox is
told to skip its environment set-up (which would make a venv and upgrade pip
over the network) and to run ``python3`` (the Debian image has no
``python``). Its container runs ``sleep infinity`` under docker's init so the
session's ``container.stop()`` returns at once instead of after docker's 10 s
stop timeout (``sleep`` as PID 1 ignores SIGTERM).
"""

import argparse
import json
import os
import shlex
import sys
import tempfile
import time

from peers import EXPECTED, LABEL, SNIPPET, random_file  # standard library only

MiB = 1 << 20


#: How llm-sandbox's containers run (see the module docstring).
LLM_RUNTIME = {
    "entrypoint": ["sleep", "infinity"],
    "init": True,
    "network_disabled": True,
    "labels": dict([LABEL.split("=", 1)]),
}


def llm_session(image):
    from llm_sandbox import SandboxSession

    session = SandboxSession(
        lang="python",
        image=image,
        skip_environment_setup=True,
        keep_template=True,
        runtime_configs=LLM_RUNTIME,
    )
    session.language_handler.config.execution_commands = ["python3 {file}"]
    return session


def llm_pooled_snippet(image, n, warm=2):
    """
    The one-snippet task through llm-sandbox's pool of ``warm`` containers,
    after as many untimed tasks (the pool's containers made and set up).
    """
    from llm_sandbox.pool import PoolConfig, PooledSandboxSession, create_pool_manager

    # A pooled session runs Python from the virtualenv its pool's set-up
    # would make (/sandbox/.sandbox-venv, pip upgraded over the network);
    # the container makes that path a link to the image's python3 instead.
    venv = "/sandbox/.sandbox-venv/bin"
    runtime = dict(LLM_RUNTIME, entrypoint=[
        "sh", "-c", f"mkdir -p {venv} && ln -s /usr/bin/python3 {venv}/python && exec sleep infinity"])
    pool = create_pool_manager(
        backend="docker", config=PoolConfig(max_pool_size=warm, min_pool_size=warm),
        lang="python", image=image, runtime_configs=runtime,
        skip_environment_setup=True, keep_template=True,
    )
    samples = []
    try:
        for i in range(warm + n):
            start = time.perf_counter()
            with PooledSandboxSession(pool_manager=pool) as session:
                result = session.run(SNIPPET)
            if i >= warm:
                samples.append(time.perf_counter() - start)
            if result.stdout != EXPECTED:
                raise RuntimeError(f"llm-sandbox (pooled) ran {SNIPPET!r}: {result!r}")
    finally:
        pool.close()
    return {"samples": samples}


def llm_snippet(image, n):
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        with llm_session(image) as session:
            result = session.run(SNIPPET)
        samples.append(time.perf_counter() - start)
        if result.stdout != EXPECTED:
            raise RuntimeError(f"llm-sandbox ran {SNIPPET!r}: {result!r}")
    return {"samples": samples}


def llm_exec(image, n):
    samples = []
    with llm_session(image) as session:
        for _ in range(3):
            session.execute_command("echo hello")
        for _ in range(n):
            start = time.perf_counter()
            result = session.execute_command("echo hello")
            samples.append(time.perf_counter() - start)
            if result.stdout != "hello\n":
                raise RuntimeError(f"llm-sandbox echo: {result!r}")
    return {"samples": samples}


def llm_copy(image, n, size):
    writes, reads = [], []
    with tempfile.TemporaryDirectory() as tmp, llm_session(image) as session:
        src = random_file(os.path.join(tmp, "big.bin"), size)
        back = os.path.join(tmp, "back")
        for i in range(n):
            start = time.perf_counter()
            session.copy_to_runtime(src, "/tmp/big.bin")
            writes.append(time.perf_counter() - start)
            start = time.perf_counter()
            session.copy_from_runtime("/tmp/big.bin", back)
            reads.append(time.perf_counter() - start)
            got = os.path.getsize(back) if os.path.isfile(back) else sum(
                os.path.getsize(os.path.join(root, name))
                for root, _, names in os.walk(back) for name in names
            )
            if got != size:
                raise RuntimeError(f"llm-sandbox copied back {got} bytes")
            if os.path.isdir(back):
                import shutil

                shutil.rmtree(back)
            else:
                os.remove(back)
    return {"samples": writes, "read_samples": reads}


def epicbox_snippet(image, n):
    import epicbox

    epicbox.configure(profiles=[epicbox.Profile("python", image)])
    command = "python3 -c " + shlex.quote(SNIPPET)
    limits = {"cputime": 5, "realtime": 30, "memory": 256}
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        result = epicbox.run("python", command, limits=limits)
        samples.append(time.perf_counter() - start)
        if result["stdout"] != EXPECTED.encode() or result["exit_code"] != 0:
            raise RuntimeError(f"epicbox ran {SNIPPET!r}: {result!r}")
    return {"samples": samples}


def quiet_logs():
    """
    epicbox logs every step through structlog at INFO; keep stdout for our
    JSON and stderr for errors.
    """
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("scenario", choices=[
        "llm-sandbox-snippet", "llm-sandbox-pooled-snippet", "llm-sandbox-exec",
        "llm-sandbox-copy",
        "epicbox-snippet",
    ])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--image", default="sandbox-base:latest")
    parser.add_argument("--size", type=int, default=100 * MiB)
    options = parser.parse_args(argv)
    quiet_logs()
    n, image = options.iterations, options.image
    if options.scenario == "llm-sandbox-snippet":
        out = llm_snippet(image, n)
    elif options.scenario == "llm-sandbox-pooled-snippet":
        out = llm_pooled_snippet(image, n)
    elif options.scenario == "llm-sandbox-exec":
        out = llm_exec(image, n)
    elif options.scenario == "llm-sandbox-copy":
        out = llm_copy(image, n, options.size)
    else:
        out = epicbox_snippet(image, n)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
