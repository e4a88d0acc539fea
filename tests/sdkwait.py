"""
Waiting on a sandbox's processes through the SDK, instead of sleeping and
hoping a call got there first.
"""

import asyncio
import time


async def processes(sbx, command):
    """
    The pids of the sandbox's processes whose command line is exactly
    ``command`` (pgrep in argv form: no shell whose own line would match).
    """
    found = await sbx.process.exec_(["pgrep", "-f", f"^{command}$"])
    return [int(pid) for pid in found.stdout.split()]


async def until_running(sbx, command, count=1, timeout=30.0):
    """
    Return once at least ``count`` processes run ``command``; fail the test
    with AssertionError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while len(await processes(sbx, command)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{command!r} not running {count} times after {timeout} s")
        await asyncio.sleep(0.05)


async def until_gone(sbx, command, timeout=30.0):
    """
    Return once no process runs ``command``; AssertionError after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while await processes(sbx, command):
        if time.monotonic() > deadline:
            raise AssertionError(f"{command!r} still running after {timeout} s")
        await asyncio.sleep(0.05)
