"""
A 100 MiB upload and download through each SDK's streams, side by side in one
run against one daemon: MB/s per SDK (Python, TypeScript, Go), with each
runner's peak resident memory (bounded: the transfers stream within the
4 MiB window, nothing holds the file).

    .venv/bin/python bench/sdks.py [--mib 100] [--rounds 1] [--endpoint unix:///...]

Without --endpoint it starts a daemon (tests/daemon.py) on a temporary socket.
Each round runs the three runners in turn (tests/conformance/*_runner*, the
Go one as its compiled test binary's TestBench; peak RSS is the runner
process's, from getrusage): the upload writes a generated pattern
to /root in a fresh sandbox sized for it, the download reads it back.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)

from tests.daemon import Daemon  # noqa: E402

CONFORMANCE = os.path.join(ROOT, "tests", "conformance")


def build_go(out):
    """
    Compile the Go SDK's test binary (so its run, not the compiler, is measured).
    """
    subprocess.run(["go", "test", "-c", "-o", out, "."], cwd=os.path.join(ROOT, "sdk", "go"), check=True,
                   env={**os.environ, "GOFLAGS": "-mod=vendor", "GOPROXY": "off"})
    return out


def commands(endpoint, mib, go_binary):
    """
    (sdk, argv, cwd, extra env) for each runner's bench.
    """
    return [
        ("python", [sys.executable, os.path.join(CONFORMANCE, "python_runner.py"), "bench",
                    "--endpoint", endpoint, "--mib", str(mib)], ROOT, {}),
        ("typescript", ["node", os.path.join(CONFORMANCE, "typescript_runner.mjs"), "bench",
                        "--endpoint", endpoint, "--mib", str(mib)], ROOT, {}),
        ("go", [go_binary, "-test.count=1", "-test.v", "-test.run", "TestBench"], os.path.join(ROOT, "sdk", "go"),
         {"SANDBOX_CONFORMANCE_ENDPOINT": endpoint, "SANDBOX_BENCH_MIB": str(mib)}),
    ]


#: Runs a command and prints its peak RSS (KiB) last: a fresh process per
#: runner, so RUSAGE_CHILDREN is that runner's alone.
_MEASURED = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
             "print('maxrss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "sys.exit(done.returncode)")


def run_one(argv, cwd, env):
    """
    The runner's JSON line, plus its peak RSS in MiB.
    """
    done = subprocess.run([sys.executable, "-c", _MEASURED, *argv], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    result = json.loads(lines[-1])
    rss = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("maxrss ")]
    result["peak_rss_mib"] = round(int(rss[-1]) / 1024, 1)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--endpoint")
    args = parser.parse_args(argv)
    daemon = None
    endpoint = args.endpoint
    tmp = tempfile.mkdtemp(prefix="sdk-bench-")
    go_binary = build_go(os.path.join(tmp, "sdk.test"))
    if endpoint is None:
        daemon = Daemon(min_base=1)
        daemon.start()
        endpoint = daemon.endpoint
    try:
        results = []
        for _ in range(args.rounds):
            for sdk, cmd, cwd, env in commands(endpoint, args.mib, go_binary):
                result = run_one(cmd, cwd, env)
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n| SDK | MiB | upload MB/s | download MB/s | peak RSS MiB |\n|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['sdk']} | {r['mib']} | {r['upload_mb_s']} | {r['download_mb_s']} | {r['peak_rss_mib']} |")


if __name__ == "__main__":
    main()
