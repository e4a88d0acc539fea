"""
Helpers of the code interpreter and MCP server tests: a shared daemon with a
``python`` profile on sandbox-python:latest (matplotlib and pandas inside),
a check that PNG bytes decode, and McpTestCase, which runs the ``mcp``
package's client against ``sandbox-mcp``.

The client is asyncio (anyio): each test runs it with ``asyncio.run`` in the
test method of a SynchronousTestCase.  Nothing here needs the reactor (the
daemon and the MCP server are subprocesses), and a fresh event loop per test
keeps the client's tasks away from trial's reactor.
"""

import asyncio
import json
import os
import shutil
import struct
import sys
import tempfile
import zlib

from mcp import Client, StdioServerParameters
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import shared_daemon
from tests.dockerutil import require_image

PYTHON_IMAGE = "sandbox-python:latest"


def python_daemon():
    """
    The shared daemon of these tests: its default profile as every test
    daemon's, plus ``python`` on PYTHON_IMAGE (one warm sandbox each).
    """
    image = require_image(PYTHON_IMAGE)
    return shared_daemon(
        "python",
        min_base=1,
        extra_config=f'[pool.base.python]\nimage = "{image}"\nmemory = "512m"\n',
    )


def decode_png(data):
    """
    Decode PNG ``data`` far enough to trust it: signature, every chunk's
    CRC, the header, and IDAT inflating to exactly the rows the header
    promises.  Return (width, height); raise ValueError otherwise.
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG signature")
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"bad CRC in chunk {kind!r}")
        chunks.append((kind, body))
        pos += 12 + length
    if chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise ValueError("no IHDR first or IEND last")
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    if len(raw) != height * (1 + (width * channels * depth + 7) // 8):
        raise ValueError("IDAT does not hold the header's rows")
    return width, height


def text(result):
    """
    The text of a tool result's first content block.
    """
    return result.content[0].text


class McpTestCase(SynchronousTestCase):
    """
    ``session(body)``: start ``python -m sandbox_mcp`` on stdio against the
    shared daemon, connect the mcp client, ``await body(client)``.
    """

    def setUp(self):
        self.daemon = python_daemon()
        self.downloads = tempfile.mkdtemp(prefix="sandbox-mcp-dl-")
        self.addCleanup(shutil.rmtree, self.downloads, True)

    def params(self, *args):
        env = {"SANDBOX_ENDPOINT": self.daemon.endpoint, "PYTHONPATH": os.getcwd()}
        return StdioServerParameters(
            command=sys.executable,
            args=["-m", "sandbox_mcp", "--download-dir", self.downloads, *args],
            env=env,
            cwd=self.downloads,
        )

    def session(self, body, *args):
        async def run():
            async with Client(self.params(*args)) as client:
                return await asyncio.wait_for(body(client), 240)

        return asyncio.run(run())

    def call(self, client, name, **arguments):
        return client.call_tool(name, arguments)

    async def ok(self, client, name, **arguments):
        """
        Call a tool that must succeed; its text.
        """
        result = await client.call_tool(name, arguments)
        self.assertFalse(result.is_error, f"{name}: {text(result)}")
        return text(result)

    async def error(self, client, name, **arguments):
        """
        Call a tool that must answer a tool error; its text.
        """
        result = await client.call_tool(name, arguments)
        self.assertTrue(result.is_error, f"{name} should have failed: {text(result)}")
        return text(result)

    async def create(self, client, **arguments):
        return json.loads(await self.ok(client, "sandbox_create", **arguments))["id"]
