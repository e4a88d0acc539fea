"""
``sbx.fs``: files in the sandbox (``fs.*`` methods of docs/protocol.md).

Transfers are streamed in CHUNK_SIZE pieces under the per-stream windows:
neither ``read_stream`` nor ``write`` from an iterable or a file holds more
than a window of the file in memory.
"""

import posixpath
from contextlib import aclosing
from dataclasses import dataclass

from agent import wire
from agent.wire import FrameType
from sandbox._stream import frame_json
from sandbox.errors import PathNotFoundError

CHUNK_SIZE = wire.CHUNK_SIZE


@dataclass(frozen=True)
class FileInfo:
    """
    A directory entry or ``stat`` result.  ``type`` is "file", "dir",
    "symlink" or "other"; ``mode`` the permission bits; ``mtime`` seconds
    since the epoch.
    """

    name: str
    path: str
    type: str
    size: int
    mode: int
    mtime: float

    @property
    def is_file(self):
        return self.type == "file"

    @property
    def is_dir(self):
        return self.type == "dir"

    @property
    def is_symlink(self):
        return self.type == "symlink"

    @classmethod
    def from_json(cls, obj, directory=None):
        name = obj.get("name", "")
        path = obj.get("path")
        if path is None:
            path = posixpath.join(directory, name) if directory is not None else name
        return cls(
            name,
            path,
            obj.get("type", "other"),
            int(obj.get("size", 0)),
            int(obj.get("mode", 0)),
            float(obj.get("mtime", 0.0)),
        )


class Filesystem:
    """
    File operations; every call may run concurrently with others.
    """

    def __init__(self, session):
        self._session = session

    async def write(self, path, data, mode=None, append=False):
        """
        Create or replace (``append=True``: extend) the file at ``path``.

        ``data``: str (UTF-8), bytes-like, a file object opened for reading
        (sync or async ``read``), or a sync/async iterable of bytes or str.
        ``mode`` sets the permission bits of a new file.  Returns the number
        of bytes written.  A failed or cancelled write leaves an existing file
        as it was.
        """
        params = {"path": str(path)}
        if mode is not None:
            params["mode"] = int(mode)
        if append:
            params["append"] = True
        stream = await self._session.open("fs.write", params)
        async with stream:
            result = await send_then_result(stream, data)
        return result.get("size")

    async def read(self, path, offset=0, length=None):
        """
        The content of the file at ``path`` (or ``length`` bytes from
        ``offset``) as bytes.
        """
        parts = [chunk async for chunk in self.read_stream(path, offset, length)]
        return b"".join(parts)

    async def read_text(self, path, encoding="utf-8", errors="strict"):
        """
        The content of the file at ``path`` decoded as text.
        """
        return (await self.read(path)).decode(encoding, errors)

    async def read_stream(self, path, offset=0, length=None):
        """
        Async iterator of the file's chunks (bytes, at most CHUNK_SIZE each).
        Credit is granted back as chunks are taken, so the agent never runs
        more than a window ahead.  Stopping early cancels the read (wrap in
        ``contextlib.aclosing`` to cancel at once rather than at collection).
        """
        params = {"path": str(path)}
        if offset:
            params["offset"] = int(offset)
        if length is not None:
            params["length"] = int(length)
        stream = await self._session.open("fs.read", params)
        async with aclosing(_body(stream)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def list(self, path, depth=1):
        """
        The entries of the directory at ``path`` as FileInfo, sorted by path;
        with ``depth`` > 1 also those of its subdirectories down to that many
        levels (symlinks are not followed).
        """
        params = {"path": str(path)}
        if depth != 1:
            params["depth"] = int(depth)
        stream = await self._session.open("fs.list", params)
        entries = []
        async with stream:
            while True:
                frame = await stream.next()
                if frame.type is FrameType.EVENT:
                    for entry in frame_json(frame).get("entries", ()):
                        entries.append(FileInfo.from_json(entry, str(path)))
                elif frame.type is FrameType.RESULT:
                    return entries

    async def stat(self, path):
        """
        FileInfo of ``path`` (symlinks are not followed).
        """
        result = await self._session.call("fs.stat", {"path": str(path)})
        return FileInfo.from_json(result, posixpath.dirname(str(path)))

    async def upload(self, path, tar):
        """
        Extract a tar archive (plain, gzip, bz2 or xz) under the directory
        ``path`` (made if missing).  ``tar``: bytes, a file object or a
        sync/async iterable of bytes, streamed within the window whatever
        its size.  Returns ``{"files", "dirs", "symlinks", "hardlinks",
        "bytes"}``.  Absolute names, "..", links leading out of ``path``
        and device files raise FileError ``UNSAFE_PATH``.
        """
        stream = await self._session.open("fs.upload", {"path": str(path)})
        async with stream:
            return await send_then_result(stream, tar)

    async def download(self, path):
        """
        Async iterator of the chunks of a tar of ``path`` (a file, or a
        directory and everything under it; symlinks stored as links), whose
        members are named from the base name of ``path``.  As with
        ``read_stream``, credit is granted as chunks are taken.
        """
        stream = await self._session.open("fs.download", {"path": str(path)})
        async with aclosing(_body(stream)) as chunks:
            async for chunk in chunks:
                yield chunk

    def watch(self, path, recursive=False):
        """
        Watch the directory ``path`` (``recursive``: its whole tree, new
        subdirectories included).  ``async with sbx.fs.watch(p) as w:
        async for event in w: ...``, or ``w = await sbx.fs.watch(p)`` then
        ``await w.close()``.  Events are WatchEvents; the watch is in place
        once this returns.
        """
        from sandbox._watch import WatchOpening, open_watch

        return WatchOpening(open_watch(self._session, path, recursive))

    async def exists(self, path):
        """
        Whether ``path`` exists (a dangling symlink does).
        """
        try:
            await self.stat(path)
        except PathNotFoundError:
            return False
        return True

    async def mkdir(self, path, parents=False, mode=None):
        """
        Make the directory ``path`` (``parents=True``: with its parents, and
        an existing directory is fine); return its absolute path.
        """
        params = {"path": str(path)}
        if parents:
            params["parents"] = True
        if mode is not None:
            params["mode"] = int(mode)
        return (await self._session.call("fs.mkdir", params))["path"]

    async def remove(self, path, recursive=False):
        """
        Remove a file, a symlink, an empty directory, or with
        ``recursive=True`` a whole tree.
        """
        params = {"path": str(path)}
        if recursive:
            params["recursive"] = True
        await self._session.call("fs.remove", params)

    async def rename(self, src, dst, overwrite=True):
        """
        Move ``src`` to ``dst`` (across filesystems too); with
        ``overwrite=False`` an existing ``dst`` raises FileError EEXIST.
        """
        params = {"src": str(src), "dst": str(dst)}
        if not overwrite:
            params["overwrite"] = False
        await self._session.call("fs.rename", params)


async def send_then_result(stream, data):
    """
    Send ``data`` as the body of ``stream`` then END, while watching for
    the stream's end: an ERROR, or the session's loss, raises at once even
    when the data source is slow to produce.  The RESULT's JSON.
    """
    import asyncio

    from sandbox._spawn import send_body

    async def pump():
        async for chunk in _chunks(data):
            if not await send_body(stream, chunk):
                return
        if not stream.finished:
            await stream.session.send(wire.end(stream.id))

    result = asyncio.ensure_future(stream.result())
    sending = asyncio.ensure_future(pump())
    try:
        await asyncio.wait({result, sending}, return_when=asyncio.FIRST_COMPLETED)
        if sending.done():
            sending.result()  # a failing data source raises here
        return await result
    finally:
        for task in (sending, result):
            if not task.done():
                task.cancel()
        if sending.done() and not sending.cancelled():
            sending.exception()  # retrieved: the stream's error is the one raised


async def _body(stream):
    """
    The DATA chunks of ``stream`` until its RESULT, granting credit back as
    each chunk is taken.
    """
    async with stream:
        while True:
            frame = await stream.next()
            if frame.type is FrameType.DATA:
                payload = frame.payload
                if payload:
                    yield payload
                await stream.consumed(len(payload))
            elif frame.type is FrameType.RESULT:
                return


def _encode(item):
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return item
    raise TypeError(f"cannot write {type(item).__name__}: expected bytes or str")


async def _chunks(data):
    """
    ``data`` as a sequence of bytes-like pieces, small pieces coalesced up to
    CHUNK_SIZE, never more than about two chunks held at once.
    """
    if isinstance(data, (str, bytes, bytearray, memoryview)):
        buffer = _encode(data)
        if not len(buffer):
            return
        for piece in wire.chunks(buffer):
            yield piece
        return
    if hasattr(data, "read"):
        items = _read_file(data)
    elif hasattr(data, "__aiter__"):
        items = data
    elif hasattr(data, "__iter__"):
        items = _aiter(data)
    else:
        raise TypeError(
            f"cannot write {type(data).__name__}: expected str, bytes, a file "
            "object or an iterable of bytes"
        )
    pending = bytearray()
    async for item in items:
        item = _encode(item)
        if not pending and len(item) >= CHUNK_SIZE:
            yield item
            continue
        pending += item
        if len(pending) >= CHUNK_SIZE:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


async def _aiter(iterable):
    for item in iterable:
        yield item


async def _read_file(file):
    read = file.read
    while True:
        block = read(CHUNK_SIZE)
        if hasattr(block, "__await__"):
            block = await block
        if not block:
            return
        yield block
