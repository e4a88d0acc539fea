"""
The code interpreter and the MCP server, in one short run against a test
daemon with a ``python`` profile (sandbox-python:latest): the first
``sbx.code.run`` of a context (it starts the interpreter), then round trips
of small runs in it; and through ``sandbox-mcp`` on stdio with the mcp
client, round trips of ``sandbox_exec`` (``true``) and ``sandbox_run_code``
(``1 + 1``).

    .venv/bin/python bench/code_mcp.py [--iterations 50]
"""

import argparse
import asyncio
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), HERE]

from stats import summary  # noqa: E402

from mcp import Client, StdioServerParameters  # noqa: E402
from sandbox import create_sandbox  # noqa: E402
from tests.daemon import Daemon  # noqa: E402


def show(label, samples):
    stats = summary(samples)
    print(f"{label:42s} p50 {stats['p50_ms']:7.2f} ms  p90 {stats['p90_ms']:7.2f} ms  n {stats['n']}")


async def sdk(daemon, n):
    async with create_sandbox(profile="python", endpoint=daemon.endpoint) as sbx:
        started = time.perf_counter()
        await sbx.code.run("x = 0")
        show("sbx.code.run, first (starts the kernel)", [time.perf_counter() - started])
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            result = await sbx.code.run("x += 1\nx")
            samples.append(time.perf_counter() - started)
        assert result.text == str(n), result
        show("sbx.code.run, next ones", samples)


async def mcp(daemon, n):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "sandbox_mcp"],
        env={"SANDBOX_ENDPOINT": daemon.endpoint, "PYTHONPATH": os.path.join(HERE, "..")},
    )
    async with Client(params) as client:
        import json

        created = await client.call_tool("sandbox_create", {"profile": "python"})
        sid = json.loads(created.content[0].text)["id"]
        for tool, args in (("sandbox_exec", {"command": "true"}), ("sandbox_run_code", {"code": "1 + 1"})):
            await client.call_tool(tool, dict(args, sandbox_id=sid))
            samples = []
            for _ in range(n):
                started = time.perf_counter()
                result = await client.call_tool(tool, dict(args, sandbox_id=sid))
                samples.append(time.perf_counter() - started)
                assert not result.is_error, result
            show(f"MCP stdio {tool}", samples)
        await client.call_tool("sandbox_destroy", {"sandbox_id": sid})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=50)
    options = parser.parse_args()
    daemon = Daemon(
        min_base=1,
        extra_config='[pool.base.python]\nimage = "sandbox-python:latest"\nmemory = "512m"\n',
    )
    daemon.start()
    try:
        asyncio.run(sdk(daemon, options.iterations))
        asyncio.run(mcp(daemon, options.iterations))
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
