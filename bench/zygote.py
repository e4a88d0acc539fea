"""
The agent's Python zygote against a fresh interpreter, in one run: exec
round trips on an open session of ``python3 -c SNIPPET`` (forked off the
zygote) and of ``/usr/bin/env python3 -c SNIPPET`` (which the zygote does not
take: a fresh interpreter, plus the ``env`` exec), with ``echo`` for scale.
The pool is at rest before each series.

    .venv/bin/python bench/zygote.py [--iterations 150]
"""

import argparse
import asyncio
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), HERE]

from ours import exec_rtt, wait_at_rest  # noqa: E402
from peers import EXPECTED, SNIPPET  # noqa: E402
from stats import summary  # noqa: E402

from sandbox import create_sandbox  # noqa: E402
from tests.daemon import Daemon  # noqa: E402

SERIES = [
    ("fresh interpreter (/usr/bin/env python3 -c)", ["/usr/bin/env", "python3", "-c", SNIPPET],
     EXPECTED),
    ("zygote (python3 -c)", ["python3", "-c", SNIPPET], EXPECTED),
    ("echo", ["echo", "hello"], "hello\n"),
]


async def compare(daemon, n):
    sbx = await create_sandbox(endpoint=daemon.endpoint)
    try:
        for label, argv, expect in SERIES:
            await asyncio.to_thread(wait_at_rest, daemon)
            stats = summary(await exec_rtt(sbx, n, argv, expect))
            print(f"{label:45s} p50 {stats['p50_ms']:6.2f} ms  p90 {stats['p90_ms']:6.2f} ms"
                  f"  p99 {stats['p99_ms']:6.2f} ms", flush=True)
    finally:
        await sbx.destroy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=150)
    options = parser.parse_args(argv)
    daemon = Daemon(min_base=1)
    daemon.start(timeout=180)
    try:
        asyncio.run(compare(daemon, options.iterations))
    finally:
        daemon.stop(timeout=120)


if __name__ == "__main__":
    main()
