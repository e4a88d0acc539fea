"""
Helpers of the code interpreter and MCP server tests: a shared daemon with a
``python`` profile on sandbox-python:latest (matplotlib and pandas inside),
and a check that PNG bytes decode.
"""

import struct
import zlib

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
