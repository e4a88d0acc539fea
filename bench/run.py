"""
sandboxd benchmarks side by side with the peers a user would pick instead.
Usage: ``make bench`` or ``.venv/bin/python bench/run.py [--quick] [options]``.

One run measures sandboxd (its own daemons on temporary sockets) and, on the
same machine with the same Debian image and snippet, ``docker run --rm``,
``docker exec``, ``docker cp``, llm-sandbox and epicbox (in bench/.peers-venv,
made by bench/setup-peers.sh). It writes the results as JSON
(docs/bench/results.json), the table as Markdown (docs/bench/table.md) and
the plots as PNG (docs/bench/*.png, drawn by bench/plots.py in the peers'
venv, which has matplotlib). Needs Docker and the images (``make images``).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import ours  # noqa: E402
import peers  # noqa: E402
from refill import sustained_from  # noqa: E402
from report import console_table, markdown_table, scenario  # noqa: E402
from runtimes import runtime_scenarios  # noqa: E402
from scaling import bench_scaling  # noqa: E402
from stats import summary  # noqa: E402
from tests.daemon import Daemon  # noqa: E402

MiB = 1 << 20


class Progress:
    """
    One line per phase with the time since the run began.
    """

    def __init__(self):
        self.start = time.monotonic()

    def __call__(self, what):
        print(f"[{time.monotonic() - self.start:6.0f} s] {what}", flush=True)


def run_ours(options, say):
    """
    Every single-daemon scenario on one daemon (pool of 2, the default).
    """
    n, out = options.iterations, {}
    daemon = Daemon(min_base=2)
    daemon.start(timeout=180)
    try:
        say(f"sandboxd: warm create x{n}")
        out["warm_create"], out["warm_create_hits"] = ours.bench_warm_create(daemon, n)
        say(f"sandboxd: create -> echo -> destroy x{n}")
        out["ced"], out["ced_hits"] = ours.bench_create_echo_destroy(daemon, n)
        say(f"sandboxd: create -> python snippet -> destroy x{n}")
        out["csd"], out["csd_hits"] = ours.bench_create_snippet_destroy(daemon, n)
        say(f"sandboxd: exec round trips x{2 * n}")
        out["exec_echo"], out["exec_snippet"], out["exec_snippet_string"] = ours.bench_exec(
            daemon, 2 * n)
        rest = max(10, n // 10)
        say(f"sandboxd: create -> echo -> destroy at rest x{rest}")
        out["at_rest"] = ours.bench_at_rest(daemon, rest)
        say(f"sandboxd: create -> python snippet -> destroy at rest x{rest}")
        out["snippet_at_rest"] = ours.bench_snippet_at_rest(daemon, rest)
        say(f"sandboxd: 100 MiB write/read x{options.transfer_iterations}")
        out["write"], out["read"] = ours.bench_transfer(daemon, options.transfer_iterations)
        daemon.waitReady(120)
        say(f"sandboxd: 5 creates/s for {options.sustained_seconds} s")
        out["sustained"], out["sustained_hits"], out["sustained_at"] = ours.bench_sustained(
            daemon, 5.0, options.sustained_seconds
        )
        ours.wait_at_rest(daemon)
        say(f"sandboxd: 5 creates/s arriving for {options.open_loop_seconds} s (open loop)")
        out["open"], out["open_hits"], out["open_at"] = ours.bench_sustained(
            daemon, 5.0, options.open_loop_seconds, open_loop=True
        )
        ours.wait_at_rest(daemon)
        say("sandboxd: 100 concurrent creates")
        out["burst"], out["burst_warm"] = ours.bench_concurrent_creates(daemon, 100)
    finally:
        daemon.stop(timeout=180)
    return out


#: The warm floor and ceiling a user expecting a minute of 5 creates/s would
#: configure here: the pool refills about 4 sandboxes a second on two vCPUs
#: (docs/pool.md), so a 300-create minute needs about 300 - 4 x 60 = 60 in
#: stock at its start.
SIZED_FLOOR, SIZED_CEILING = 60, 64


def run_peers(options, say):
    n, p, t = options.iterations, options.peer_iterations, options.transfer_iterations
    out = {}
    say(f"docker run --rm: echo x{max(10, p // 2)}, python snippet x{p}")
    out["docker_run_echo"] = peers.docker_run_echo(max(10, p // 2))
    out["docker_run_snippet"] = peers.docker_run_snippet(p)
    say(f"docker exec: echo x{n}, python snippet x{n}")
    out["docker_exec"] = peers.docker_exec(n)
    say(f"docker cp 100 MiB in/out x{t}")
    out["docker_cp"] = peers.docker_cp(t)
    say("100 concurrent docker run")
    out["docker_burst"] = peers.concurrent_docker_runs(100)
    if not peers.peers_available():
        say("no bench/.peers-venv (bash bench/setup-peers.sh): skipping llm-sandbox, epicbox")
        return out
    say(f"epicbox: snippet x{p}")
    out["epicbox_snippet"] = peers.epicbox_snippet(p)
    say(f"llm-sandbox: snippet x{p}, pooled snippet x{p}, exec x{n}, 100 MiB copy x{t}")
    out["llm_snippet"] = peers.llm_sandbox_snippet(p)
    out["llm_pooled_snippet"] = peers.llm_sandbox_pooled_snippet(p)
    out["llm_exec"] = peers.llm_sandbox_exec(n)
    out["llm_copy"] = peers.llm_sandbox_copy(t)
    return out


def assemble(o, p):
    """
    The scenarios in table order: ours against each peer.
    """
    get = p.get
    exec_peer = get("docker_exec", {})
    cp, llm_copy = get("docker_cp", {}), get("llm_copy", {})
    rest_total, rest_create, rest_exec, rest_destroy = o["at_rest"]
    return [
        scenario("warm_create", "warm create (POST /sandboxes, Unix socket)",
                 summary(o["warm_create"]),
                 {"docker run --rm echo": get("docker_run_echo")},
                 pool_hit_rate=o["warm_create_hits"]),
        scenario("create_snippet_destroy",
                 "create -> python3 -c 'print(6 * 7)' -> destroy (SDK), back to back",
                 summary(o["csd"]),
                 {"docker run --rm python3 -c": get("docker_run_snippet"),
                  "llm-sandbox open/run/close": get("llm_snippet"),
                  "llm-sandbox pooled open/run/close": get("llm_pooled_snippet"),
                  "epicbox.run": get("epicbox_snippet")},
                 pool_hit_rate=o["csd_hits"]),
        scenario("at_rest_create_snippet_destroy",
                 "  same, pool at rest before each (no refill running)",
                 summary(o["snippet_at_rest"][0]),
                 {"docker run --rm python3 -c": get("docker_run_snippet"),
                  "llm-sandbox open/run/close": get("llm_snippet"),
                  "llm-sandbox pooled open/run/close": get("llm_pooled_snippet"),
                  "epicbox.run": get("epicbox_snippet")}),
        scenario("create_echo_destroy", "create -> echo hello -> destroy (SDK)",
                 summary(o["ced"]),
                 {"docker run --rm echo": get("docker_run_echo")},
                 pool_hit_rate=o["ced_hits"]),
        scenario("at_rest_create_echo_destroy",
                 "  same, pool at rest before each", summary(rest_total), {}),
        scenario("at_rest_create", "    of which create (with its session, one round trip)",
                 summary(rest_create), {}),
        scenario("at_rest_first_exec", "    of which first exec", summary(rest_exec), {}),
        scenario("at_rest_destroy", "    of which destroy", summary(rest_destroy), {}),
        scenario("exec_rtt", "exec echo hello, open session (SDK)",
                 summary(o["exec_echo"]),
                 {"docker exec": exec_peer.get("echo"),
                  "llm-sandbox execute_command": get("llm_exec")}),
        scenario("exec_snippet", "exec python3 -c snippet, open session (SDK)",
                 summary(o["exec_snippet"]),
                 {"docker exec": exec_peer.get("snippet")}),
        scenario("exec_snippet_string", "  same, given as a string (no shell needed)",
                 summary(o["exec_snippet_string"]),
                 {"docker exec": exec_peer.get("snippet")}),
        scenario("write_100mib", "100 MiB write (fs.write)", summary(o["write"]),
                 {"docker cp in": cp.get("write"),
                  "llm-sandbox copy_to_runtime": llm_copy.get("write")},
                 size=100 * MiB),
        scenario("read_100mib", "100 MiB read (fs.read_stream)", summary(o["read"]),
                 {"docker cp out": cp.get("read"),
                  "llm-sandbox copy_from_runtime": llm_copy.get("read")},
                 size=100 * MiB),
        scenario("concurrent_100_creates", "100 concurrent creates (each one's latency)",
                 summary(o["burst"]),
                 {"100 concurrent docker run --rm echo": get("docker_burst")},
                 warm=o["burst_warm"]),
        sustained("sustained_5_per_s",
                  "5 creates/s, closed loop (each destroyed right after)", o, "sustained"),
        sustained("sized_pool_5_per_s",
                  f"5 creates/s, closed loop, pool.min_base = {SIZED_FLOOR}"
                  f" (max_warm {SIZED_CEILING})", o, "sized"),
        sustained("open_loop_5_per_s",
                  "5 creates/s, open loop (arrivals on schedule)", o, "open"),
    ]


def sustained(key, title, o, run):
    """
    A sustained-rate scenario from run ``run`` of ``o``: latencies, hit
    rate, and each create's warm flag and start offset.
    """
    hits = o[f"{run}_hits"]
    return scenario(key, title, summary(o[run]), {},
                    pool_hit_rate=round(sum(hits) / len(hits), 4),
                    warm_flags=hits, offsets_s=o[f"{run}_at"])


def machine():
    def first(path, key):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(":", 1)[1].strip()
        except OSError:
            return None

    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": first("/proc/cpuinfo", "model name"),
        "memory": first("/proc/meminfo", "MemTotal"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker": docker,
    }


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--iterations", type=int, default=200,
                        help="iterations of the cheap scenarios (default 200)")
    parser.add_argument("--peer-iterations", type=int, default=100,
                        help="iterations of each new-container peer (docker run,"
                             " llm-sandbox, epicbox: 0.2-0.5 s each; default 100)")
    parser.add_argument("--transfer-iterations", type=int, default=10,
                        help="iterations of each 100 MiB transfer (default 10)")
    parser.add_argument("--sustained-seconds", type=int, default=60,
                        help="length of the closed-loop 5 creates/s run (default 60)")
    parser.add_argument("--open-loop-seconds", type=int, default=15,
                        help="length of the open-loop 5 creates/s run (default 15)")
    parser.add_argument("--levels", default="10,100,200",
                        help="live sandbox counts of the scaling run")
    parser.add_argument("--scaling-probes", type=int, default=100,
                        help="exec round trips per scaling level (half as many creates)")
    parser.add_argument("--idle-seconds", type=int, default=30)
    parser.add_argument("--runtimes", default="docker,docker+gvisor",
                        help="runtimes compared side by side on the same image"
                             " (default docker,docker+gvisor; '' skips)")
    parser.add_argument("--runtime-iterations", type=int, default=50,
                        help="warm creates and exec round trips per runtime (default 50)")
    parser.add_argument("--quick", action="store_true",
                        help="small counts everywhere (for development; noisy)")
    parser.add_argument("--out", default=os.path.join(HERE, "..", "docs", "bench"),
                        help="where results.json, table.md and the plots go")
    parser.add_argument("--no-plots", action="store_true")
    options = parser.parse_args(argv)
    if options.quick:
        options.iterations, options.peer_iterations = 20, 5
        options.transfer_iterations, options.sustained_seconds = 2, 10
        options.open_loop_seconds = 5
        options.levels, options.scaling_probes, options.idle_seconds = "5,10", 20, 5
        options.runtime_iterations = 10
    options.levels = [int(x) for x in options.levels.split(",")]
    return options


def main(argv=None):
    options = parse(argv)
    say = Progress()
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        o = run_ours(options, say)
        o["sized"], o["sized_hits"], o["sized_at"] = sustained_from(
            SIZED_FLOOR, SIZED_CEILING, options.sustained_seconds, say
        )
        say(f"sandboxd: idle pool of 20 for {options.idle_seconds} s")
        idle_cpu = ours.bench_idle_pool_cpu(20, options.idle_seconds)
        say(f"sandboxd: scaling to {options.levels} live sandboxes")
        scaling = bench_scaling(options.levels, options.scaling_probes)
        runtimes = [r for r in options.runtimes.split(",") if r]
        by_runtime = runtime_scenarios(
            runtimes, options.runtime_iterations, max(5, options.peer_iterations // 5), say
        )
        p = run_peers(options, say)
    finally:
        peers.remove_leftovers()
    results = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - say.start),
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": machine(),
        "scenarios": assemble(o, p) + by_runtime,
        "idle_pool_20_cpu_share": round(idle_cpu, 4),
        "scaling": scaling,
    }
    os.makedirs(options.out, exist_ok=True)
    path = os.path.join(options.out, "results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(options.out, "table.md"), "w") as f:
        f.write(markdown_table(results))
    print(console_table(results))
    print(f"results written to {path}")
    if not options.no_plots and peers.peers_available():
        subprocess.run([peers.PEERS_PYTHON, os.path.join(HERE, "plots.py"), path,
                        options.out], check=True)
    say("done")


if __name__ == "__main__":
    main()
