"""
The benchmark's plots, drawn from its results file with matplotlib (which
lives in bench/.peers-venv, not in the project's dependencies):

    bench/.peers-venv/bin/python bench/plots.py docs/bench/results.json docs/bench

writes latency.png (each scenario's latency distribution beside its peers'),
snippet.png (the one-snippet task, p50 with p90/p99), scaling-memory.png and
scaling-latency.png (how the figures grow with live sandboxes) and
sustained.png (5 creates/s over time, hits and misses, closed and open loop).
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

OURS = "sandboxd"
DISTRIBUTIONS = [
    "warm_create", "create_snippet_destroy", "exec_rtt",
    "write_100mib", "read_100mib", "concurrent_100_creates",
]


def log_axis(axis):
    """
    A log axis labelled 0.5, 1, 10, 100 ... without minor tick labels.
    """
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def ecdf(ax, samples, label, **style):
    ordered = sorted(samples)
    n = len(ordered)
    ax.step(ordered, [(i + 1) / n for i in range(n)], where="post",
            label=f"{label} (n={n})", **style)


def latency(results, out):
    rows = {r["key"]: r for r in results["scenarios"]}
    keys = [k for k in DISTRIBUTIONS if k in rows]
    cols = 2
    fig, axes = plt.subplots((len(keys) + 1) // cols, cols, figsize=(12, 3.6 * ((len(keys) + 1) // cols)))
    for ax, key in zip(axes.flat, keys):
        row = rows[key]
        ecdf(ax, row["ours"]["samples_ms"], OURS, linewidth=2.2, color="black")
        for name, stats in row["peers"].items():
            ecdf(ax, stats["samples_ms"], name)
        ax.set_xscale("log")
        log_axis(ax.xaxis)
        ax.set_title(row["label"].strip(), fontsize=10)
        ax.set_xlabel("latency, ms (log)")
        ax.set_ylabel("fraction of runs")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle("Latency distributions (empirical CDF): left is faster")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latency.png"), dpi=90)
    plt.close(fig)


def snippet(results, out):
    row = next(r for r in results["scenarios"] if r["key"] == "create_snippet_destroy")
    entries = [(OURS, row["ours"])] + list(row["peers"].items())
    fig, ax = plt.subplots(figsize=(9, 0.7 * len(entries) + 1.2))
    for i, (name, stats) in enumerate(entries):
        ax.barh(i, stats["p50_ms"], color="black" if name == OURS else "tab:blue")
        ax.plot([stats["p90_ms"], stats["p99_ms"]], [i, i], color="tab:red", marker="|")
        ax.text(stats["p50_ms"] * 1.08, i + 0.25, f"{stats['p50_ms']:.1f} ms", fontsize=8)
    ax.set_yticks(range(len(entries)), [name for name, _ in entries])
    ax.invert_yaxis()
    ax.set_xscale("log")
    log_axis(ax.xaxis)
    ax.set_xlabel("ms (log): bar p50, red p90 to p99")
    ax.set_title("New sandbox, run python3 -c 'print(6 * 7)', get rid of it")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "snippet.png"), dpi=90)
    plt.close(fig)


def memory_panel(ax, live, rows, field, series, ylabel, title):
    """
    One line per (row key, label) of ``series``: its ``field`` at each level.
    """
    for key, label in series:
        ax.plot(live, [(r.get(key) or {}).get(field, 0) for r in rows], "o-", label=label)
    ax.set_xlabel("live sandboxes")
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def scaling_memory(results, out):
    rows = results["scaling"]
    live = [r["live"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    left.plot(live, [r["daemon_rss_mb"] for r in rows], "o-", label="daemon RSS")
    per_sandbox = [(key, f"{label} (mean per sandbox)") for key, label in (
        ("agent_rss", "agent RSS"), ("agent_pss", "agent PSS"),
        ("shim_rss", "containerd shim RSS"), ("shim_pss", "containerd shim PSS"))]
    memory_panel(left, live, rows, "mean_mb", per_sandbox, "MB", "Per process")
    right.plot(live, [r.get("daemon_pss_mb", r["daemon_rss_mb"]) for r in rows], "o-",
               label="daemon")
    memory_panel(right, live, rows, "total_mb",
                 [("sandbox_pss", "all sandbox processes (agent, zygote)"),
                  ("shim_pss", "all shims")],
                 "MB (PSS: shared pages split)", "Totals")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Memory as live sandboxes grow")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "scaling-memory.png"), dpi=90)
    plt.close(fig)


def scaling_latency(results, out):
    rows = results["scaling"]
    live = [r["live"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    series = [
        ("exec_rtt", "exec round trip"), ("warm_create", "warm create"),
        ("create_snippet_destroy", "create -> snippet -> destroy"),
        ("list_sandboxes", "GET /sandboxes"), ("docker_exec", "docker exec (peer)"),
    ]
    for key, label in series:
        line, = ax.plot(live, [r[key]["p50_ms"] for r in rows], "o-", label=f"{label} p50")
        ax.plot(live, [r[key]["p99_ms"] for r in rows], "--", color=line.get_color(),
                alpha=0.6, label=f"{label} p99")
    ax.set_yscale("log")
    log_axis(ax.yaxis)
    ax.set_xlabel("live sandboxes")
    ax.set_ylabel("ms (log)")
    ax.set_title("Latency as live sandboxes grow")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "scaling-latency.png"), dpi=90)
    plt.close(fig)


def sustained(results, out):
    rows = [r for r in results["scenarios"]
            if r["key"] in ("sustained_5_per_s", "sized_pool_5_per_s", "open_loop_5_per_s")
            and "warm_flags" in r]
    if not rows:
        return
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 3.2 * len(rows)), squeeze=False)
    for ax, row in zip(axes.flat, rows):
        sustained_panel(ax, row)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "sustained.png"), dpi=90)
    plt.close(fig)


def sustained_panel(ax, row):
    samples, flags = row["ours"]["samples_ms"], row["warm_flags"]
    t = row.get("offsets_s") or [i / 5.0 for i in range(len(samples))]
    for warm, color, label in ((True, "tab:green", "warm (pool hit)"), (False, "tab:red", "cold (miss)")):
        points = [(x, y) for x, y, f in zip(t, samples, flags) if f == warm]
        if points:
            ax.scatter(*zip(*points), s=8, color=color, label=f"{label}: {len(points)}")
    ax.set_yscale("log")
    log_axis(ax.yaxis)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("create latency, ms (log)")
    ax.set_title(f"{row['label']}: pool hit rate {row['pool_hit_rate']:.1%}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def main(argv):
    path, out = argv[1], argv[2]
    with open(path) as f:
        results = json.load(f)
    os.makedirs(out, exist_ok=True)
    for draw in (latency, snippet, scaling_memory, scaling_latency, sustained):
        draw(results, out)
    print(f"plots written to {out}")


if __name__ == "__main__":
    main(sys.argv)
