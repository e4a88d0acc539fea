"""
The benchmark's result rows and their tables: one scenario is sandboxd's
summary beside each peer's, with the ratio of the peer's p50 to ours.
"""

from stats import mbps, ratio


def scenario(key, label, ours, peers, size=None, **extra):
    """
    One result row: ``ours`` and ``peers`` ({name: summary or None}) are
    summaries from stats.summary; peers that did not run are left out.
    """
    peers = {name: stats for name, stats in peers.items() if stats}
    row = {
        "key": key,
        "label": label,
        "ours": ours,
        "peers": peers,
        "ratio_p50": {name: ratio(ours, stats) for name, stats in peers.items()},
    }
    if size:
        row["size_bytes"] = size
        row["ours"]["MBps_at_p50"] = mbps(ours["p50_ms"] / 1000, size)
    row.update(extra)
    return row


def _note(row):
    notes = []
    if "pool_hit_rate" in row:
        notes.append(f"pool hit rate {row['pool_hit_rate']:.1%}")
    if "warm" in row:
        notes.append(f"{row['warm']} of {row['ours']['n']} warm")
    if "MBps_at_p50" in row["ours"]:
        notes.append(f"{row['ours']['MBps_at_p50']} MB/s")
    return ", ".join(notes)


def _peer_note(stats):
    notes = []
    if "MBps_at_p50" in stats:
        notes.append(f"{stats['MBps_at_p50']} MB/s")
    if stats.get("failed"):
        notes.append(f"{stats['failed']} failed")
    return ", ".join(notes)


def _cells(stats):
    return [f"{stats[k]:.2f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")]


def console_table(results):
    lines = [f"{'scenario':58} {'n':>4} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9}"
             f" {'max ms':>9}  notes"]
    for row in results["scenarios"]:
        lines.append(f"{row['label']:58} {row['ours']['n']:4d} "
                     + " ".join(f"{c:>9}" for c in _cells(row["ours"]))
                     + f"  {_note(row)}")
        for name, stats in row["peers"].items():
            x = row["ratio_p50"][name]
            lines.append(f"{'  peer: ' + name:58} {stats['n']:4d} "
                         + " ".join(f"{c:>9}" for c in _cells(stats))
                         + f"  peer/ours at p50: {x}x {_peer_note(stats)}")
    lines.append(f"idle pool of 20: daemon CPU {results['idle_pool_20_cpu_share']:.2%} of one core")
    lines.append(scaling_console(results["scaling"]))
    return "\n".join(lines)


def scaling_console(rows):
    lines = [f"{'live':>5} {'daemon MB':>10} {'agent MB':>9} {'agent PSS':>9} {'shim MB':>8}"
             f" {'exec p50':>9} {'exec p99':>9} {'warm p50':>9} {'snippet p50':>12}"
             f" {'list p50':>9} {'docker exec p50':>16}"]
    for r in rows:
        lines.append(
            f"{r['live']:5d} {r['daemon_rss_mb']:10.1f} {_mean(r['agent_rss']):>9}"
            f" {_mean(r.get('agent_pss')):>9} {_mean(r['shim_rss']):>8} {r['exec_rtt']['p50_ms']:9.2f}"
            f" {r['exec_rtt']['p99_ms']:9.2f} {r['warm_create']['p50_ms']:9.2f}"
            f" {r['create_snippet_destroy']['p50_ms']:12.2f}"
            f" {r['list_sandboxes']['p50_ms']:9.2f} {r['docker_exec']['p50_ms']:16.2f}"
        )
    return "\n".join(lines)


def _mean(stats):
    return f"{stats['mean_mb']:.1f}" if stats else "-"


def markdown_table(results):
    """
    The tables of docs/benchmarks.md, generated (docs/bench/table.md).
    """
    out = [
        "| scenario | n | p50 ms | p90 ms | p99 ms | max ms | peer p50 / ours p50 | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in results["scenarios"]:
        label = row["label"].strip()
        depth = len(row["label"]) - len(row["label"].lstrip())
        label = "&nbsp;" * depth + label
        out.append(f"| **{label}** | {row['ours']['n']} | " + " | ".join(_cells(row["ours"]))
                   + f" | | {_note(row)} |")
        for name, stats in row["peers"].items():
            out.append(f"| &nbsp;&nbsp;{name} | {stats['n']} | " + " | ".join(_cells(stats))
                       + f" | **{row['ratio_p50'][name]}x** | {_peer_note(stats)} |")
    out += [
        "",
        f"Idle pool of 20 warm sandboxes: the daemon uses"
        f" {results['idle_pool_20_cpu_share']:.2%} of one core.",
        "",
        "| live sandboxes | daemon RSS MB | agent PID 1 RSS MB (mean / max) | agent PID 1 PSS MB (mean)"
        " | sandbox processes PSS MB (mean) | shim RSS / PSS MB (mean)"
        " | all sandboxes + shims PSS MB"
        " | exec p50 / p99 ms | warm create p50 / p99 ms | create-snippet-destroy p50 ms"
        " | GET /sandboxes p50 ms | docker exec p50 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["scaling"]:
        agent = r["agent_rss"] or {}
        own = "sandbox_pss" if r.get("sandbox_pss") else "agent_pss"
        total = sum((r.get(k) or {}).get("total_mb", 0) for k in (own, "shim_pss"))
        out.append(
            f"| {r['live']} | {r['daemon_rss_mb']:.1f} | {agent.get('mean_mb', '-')} /"
            f" {agent.get('max_mb', '-')} | {_mean(r.get('agent_pss'))} |"
            f" {_mean(r.get('sandbox_pss'))} |"
            f" {_mean(r['shim_rss'])} / {_mean(r.get('shim_pss'))} | {total:.0f} |"
            f" {r['exec_rtt']['p50_ms']:.2f} / {r['exec_rtt']['p99_ms']:.2f} |"
            f" {r['warm_create']['p50_ms']:.2f} / {r['warm_create']['p99_ms']:.2f} |"
            f" {r['create_snippet_destroy']['p50_ms']:.2f} |"
            f" {r['list_sandboxes']['p50_ms']:.2f} | {r['docker_exec']['p50_ms']:.2f} |"
        )
    return "\n".join(out) + "\n"
