"""
``sbx fs``: files in a sandbox, streamed between it and stdin/stdout.
"""

import asyncio
import dataclasses
import sys

from sbx import _format
from sbx._common import print_json, session

CHUNK_SIZE = 256 * 1024


async def _to_stdout(chunks):
    """
    Copy an async iterator of bytes to stdout as it arrives.
    """
    stdout = sys.stdout.buffer
    async for chunk in chunks:
        stdout.write(chunk)
    stdout.flush()


async def cmd_fs_read(client, args):
    async with session(client, args) as sbx:
        await _to_stdout(sbx.fs.read_stream(args.path))
    return 0


async def stdin_chunks():
    stdin = sys.stdin.buffer
    while True:
        block = await asyncio.to_thread(stdin.read, CHUNK_SIZE)
        if not block:
            return
        yield block


async def cmd_fs_write(client, args):
    async with session(client, args) as sbx:
        await sbx.fs.write(args.path, stdin_chunks(), mode=args.mode, append=args.append)
    return 0


async def cmd_fs_upload(client, args):
    async with session(client, args) as sbx:
        counts = await sbx.fs.upload(args.path, stdin_chunks())
    sys.stderr.write(
        f"{counts.get('files', 0)} files, {counts.get('dirs', 0)} directories, "
        f"{counts.get('bytes', 0)} bytes\n"
    )
    return 0


async def cmd_fs_download(client, args):
    async with session(client, args) as sbx:
        await _to_stdout(sbx.fs.download(args.path))
    return 0


async def cmd_fs_ls(client, args):
    async with session(client, args) as sbx:
        entries = await sbx.fs.list(args.path, depth=args.depth)
    if args.json:
        print_json([dataclasses.asdict(e) for e in entries])
        return 0
    rows = [
        (
            _format.file_mode(e.type, e.mode),
            e.size,
            _format.mtime(e.mtime),
            _relative(e.path, args.path, e.name) + ("/" if e.is_dir else ""),
        )
        for e in entries
    ]
    print(_format.table(("MODE", "SIZE", "MODIFIED", "NAME"), rows))
    return 0


def _relative(path, top, name):
    """
    ``path`` relative to the listed directory ``top`` (its name at depth 1).
    """
    prefix = top.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else name
