"""
How fast the warm pool refills, and the hit rate a given stock gives under
a sustained rate (docs/pool.md).

    .venv/bin/python bench/refill.py flush [--warm 16]
        a pool of WARM at rest is flushed (every warm sandbox replaced):
        sandboxes booted per second until it is full again, twice;
    .venv/bin/python bench/refill.py sustained --floor 32 [--max-warm 64] [--seconds 60]
        5 creates/s, each destroyed right after (closed loop), starting
        from a pool whose floor is FLOOR: the hit rate and when misses began.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), HERE]

import ours  # noqa: E402
from tests.daemon import Daemon  # noqa: E402


def flush(warm):
    daemon = Daemon(min_base=warm, pool_config=f"total_warm = {warm}\nmax_warm = {warm}\n")
    daemon.start(timeout=300)
    try:
        ours.wait_at_rest(daemon, timeout=300)
        for _ in range(2):
            start = time.monotonic()
            status, body = daemon.request("POST", "/pools/default/flush")
            if status != 200:
                raise RuntimeError(f"flush: {status} {body}")
            time.sleep(0.2)
            ours.wait_at_rest(daemon, timeout=300)
            took = time.monotonic() - start
            print(f"{warm} sandboxes replaced in {took:.2f} s: {warm / took:.2f} per second")
    finally:
        daemon.stop(timeout=180)


def sustained_from(floor, max_warm, seconds, say=print):
    """
    5 creates/s for ``seconds`` (closed loop) from a pool whose floor is
    ``floor``: (latencies, per-create warm flags, seconds into the run).
    """
    daemon = Daemon(min_base=floor, pool_config=f"max_warm = {max(floor, max_warm)}\n")
    daemon.start(timeout=300)
    try:
        ours.wait_at_rest(daemon, timeout=300)
        say(f"sandboxd: 5 creates/s for {seconds} s, pool floor {floor}")
        return ours.bench_sustained(daemon, 5.0, seconds)
    finally:
        daemon.stop(timeout=180)


def sustained(floor, max_warm, seconds):
    _, warm, offsets = sustained_from(floor, max_warm, seconds)
    misses = [at for at, hit in zip(offsets, warm) if not hit]
    print(f"floor {floor}: {len(warm)} creates in {offsets[-1]:.1f} s, hit rate"
          f" {sum(warm) / len(warm):.1%}"
          + (f", first miss at {misses[0]:.1f} s" if misses else ""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    one = modes.add_parser("flush")
    one.add_argument("--warm", type=int, default=16)
    two = modes.add_parser("sustained")
    two.add_argument("--floor", type=int, required=True)
    two.add_argument("--max-warm", type=int, default=32)
    two.add_argument("--seconds", type=int, default=60)
    options = parser.parse_args(argv)
    if options.mode == "flush":
        flush(options.warm)
    else:
        sustained(options.floor, options.max_warm, options.seconds)


if __name__ == "__main__":
    main()
