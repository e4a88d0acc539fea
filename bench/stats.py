"""
Summaries of latency samples and ratios between them, shared by the bench
scripts (standard library only: plots.py imports it from the peers' venv).
"""

import math
import statistics


def percentile(ordered, q):
    """
    The nearest-rank ``q`` quantile (0 < q <= 1) of a sorted list.
    """
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def summary(samples):
    """
    n, p50/p90/p99/max in milliseconds of a list of seconds, and the samples
    themselves in ms (for the plots).
    """
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(percentile(ordered, 0.90) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "samples_ms": [round(s * 1000, 3) for s in samples],
    }


def ratio(ours, peer):
    """
    How many times faster ``ours`` is than ``peer`` at the median (two
    summaries); None when either is missing.
    """
    if not ours or not peer or not ours.get("p50_ms"):
        return None
    return round(peer["p50_ms"] / ours["p50_ms"], 1)


def mbps(seconds, size):
    """
    Throughput in MB/s (10^6 bytes) of ``size`` bytes in ``seconds``.
    """
    return round(size / seconds / 1e6, 1)
