"""
fs.upload and fs.download: tar streams in and out of the sandbox.

The tar work runs in a thread of its own (never the event loop, never the
agent's I/O threads that fs.read shares); bytes cross between the thread
and the stream through small bridges that keep the protocol's windows: an
upload's credit is granted back only as the thread consumes the archive,
and a download's thread blocks until the client has granted credit for
what it produced.  Neither side holds more than a window of the archive.
"""

import asyncio
import errno
import os
import queue
import stat

from . import params as p
from .errors import RequestError, from_oserror
from .wire import CHUNK_SIZE

UPLOAD_SPEC = {"path": (p.path, p.REQUIRED)}
DOWNLOAD_SPEC = {"path": (p.path, p.REQUIRED)}
UNSAFE = "UNSAFE_PATH"


class _Cancelled(Exception):
    """
    The request ended while the thread was still working.
    """


class _BodyReader:
    """
    A file object for the tar thread over the request's body.
    """

    def __init__(self, loop, stream):
        self._loop = loop
        self._stream = stream
        self._queue = queue.SimpleQueue()
        self._view = memoryview(b"")
        self._eof = False

    # The event loop's side.

    def put(self, chunk):
        self._queue.put(chunk)

    def stop(self, error=None):
        self._queue.put(error)

    # The thread's side.

    def read(self, size=-1):
        while not self._view:
            if self._eof:
                return b""
            item = self._queue.get()
            if item is None:
                self._eof = True
                return b""
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            self._view = memoryview(item)
        if size is None or size < 0:
            size = len(self._view)
        out = bytes(self._view[:size])
        self._view = self._view[size:]
        self._loop.call_soon_threadsafe(self._stream.consumed, len(out))
        return out


async def upload(agent, stream, args):
    """
    Extract the tar (optionally gzip/bz2/xz compressed) of the body under
    ``path``, made if missing.
    """
    dest = agent.resolve(args["path"])
    try:
        os.makedirs(dest, exist_ok=True)
        dest = os.path.realpath(dest)
        if not os.path.isdir(dest):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", dest)
    except OSError as e:
        raise from_oserror(e, e.filename or dest)
    loop = asyncio.get_running_loop()
    reader = _BodyReader(loop, stream)
    extract = loop.run_in_executor(None, _extract, reader, dest)
    try:
        while True:
            # The thread may fail (an unsafe member) before the body ends.
            get = asyncio.ensure_future(stream.inbox.get())
            await asyncio.wait({get, extract}, return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                get.cancel()
                return await extract
            chunks = get.result()
            if chunks is None:
                break
            for chunk in chunks:
                reader.put(chunk)
        reader.stop()
        return await extract
    finally:
        if not extract.done():
            reader.stop(_Cancelled())
        # Let the thread finish before the stream goes (it holds files open).
        await asyncio.shield(asyncio.wait([extract]))
        if extract.done() and not extract.cancelled():
            extract.exception()


def _extract(reader, dest):
    import tarfile

    counts = {"files": 0, "dirs": 0, "symlinks": 0, "hardlinks": 0, "bytes": 0}
    links = []
    try:
        with tarfile.open(fileobj=reader, mode="r|*", bufsize=CHUNK_SIZE) as tar:
            for member in tar:
                _extract_member(tar, member, dest, counts, links)
        # A symlink made early may have been retargeted by a later one: every
        # link must still resolve inside the target at the end.
        for link, name in links:
            if not _inside(os.path.realpath(link), dest):
                os.unlink(link)
                raise RequestError(UNSAFE, f"symlink escapes the target: {name}", path=name)
        # Drain the rest (tar's zero blocks), so the client's END is awaited.
        while reader.read(CHUNK_SIZE):
            pass
    except _Cancelled:
        raise RequestError("CANCELLED", "cancelled")
    except tarfile.TarError as e:
        raise RequestError("BAD_ARCHIVE", f"not a valid tar stream: {e}", path=dest)
    except OSError as e:
        raise from_oserror(e, e.filename or dest)
    return counts


def _inside(path, dest):
    return path == dest or path.startswith(dest.rstrip("/") + "/")


def _safe_parts(name, what="path"):
    """
    The components of an archive name; UNSAFE_PATH if absolute or with "..".
    """
    if name.startswith("/"):
        raise RequestError(UNSAFE, f"absolute {what} in the archive: {name}", path=name)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise RequestError(UNSAFE, f"'..' in an archive {what}: {name}", path=name)
    return parts


def _make_parents(dest, parts, name):
    """
    Make the directories of ``parts`` under ``dest``; refuse to go through
    a symlink leading out of it.  The real path of the last one.
    """
    current = dest
    for part in parts:
        current = os.path.join(current, part)
        try:
            os.mkdir(current, 0o755)
            continue
        except FileExistsError:
            pass
        real = os.path.realpath(current)
        if not _inside(real, dest):
            raise RequestError(UNSAFE, f"{name} would be written outside the target", path=name)
        if not os.path.isdir(real):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", current)
    return os.path.realpath(current)


def _clear(target):
    """
    Remove what is at ``target`` unless it is a real directory.
    """
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(target)


def _extract_member(tar, member, dest, counts, links):
    name = member.name
    parts = _safe_parts(name)
    if not parts:
        return  # "./": the target itself
    if not (member.isdir() or member.isreg() or member.issym() or member.islnk()):
        raise RequestError(UNSAFE, f"device files, fifos and the like are refused: {name}", path=name)
    parent = _make_parents(dest, parts[:-1], name)
    target = os.path.join(parent, parts[-1])
    mode = member.mode & 0o7777
    if member.isdir():
        try:
            os.mkdir(target, mode or 0o755)
        except FileExistsError:
            if not os.path.isdir(target) or os.path.islink(target):
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", target)
        os.chmod(target, mode or 0o755)
        counts["dirs"] += 1
    elif member.isreg():
        _clear(target)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            source = tar.extractfile(member)
            while block := source.read(CHUNK_SIZE):
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)
        counts["files"] += 1
        counts["bytes"] += member.size
    elif member.issym():
        linkname = member.linkname
        if linkname.startswith("/"):
            raise RequestError(UNSAFE, f"absolute symlink in the archive: {name} -> {linkname}", path=name)
        if not _inside(os.path.realpath(os.path.join(parent, linkname)), dest):
            raise RequestError(UNSAFE, f"symlink escapes the target: {name} -> {linkname}", path=name)
        _clear(target)
        os.symlink(linkname, target)
        links.append((target, name))
        counts["symlinks"] += 1
    else:  # a hard link to an earlier member
        try:
            source_parts = _safe_parts(member.linkname, "hard link")
        except RequestError as e:
            raise RequestError(UNSAFE, f"{e.message} (member {name})", path=name)
        source = os.path.join(dest, *source_parts)
        real = os.path.realpath(source)
        if not source_parts or not _inside(real, dest) or os.path.isdir(real):
            raise RequestError(UNSAFE, f"hard link escapes the target: {name} -> {member.linkname}", path=name)
        _clear(target)
        os.link(real, target)
        counts["hardlinks"] += 1


class _BodyWriter:
    """
    A file object for the tar thread that sends what it is given as DATA,
    blocking the thread until the client's credit allows.
    """

    def __init__(self, loop, stream):
        self._loop = loop
        self._stream = stream
        self.sent = 0
        self.cancelled = False
        self._pending = None

    def write(self, data):
        if self.cancelled:
            raise _Cancelled()
        self._pending = asyncio.run_coroutine_threadsafe(self._send(bytes(data)), self._loop)
        try:
            self._pending.result()
        except BaseException:
            raise _Cancelled()
        return len(data)

    async def _send(self, data):
        stream = self._stream
        view = memoryview(data)
        while view:
            if not stream.writable():
                await stream.wait_writable()
            n = min(len(view), stream.send_window.credit, CHUNK_SIZE)
            stream.send_window.take(n)
            stream.send_data(view[:n])
            view = view[n:]
        self.sent += len(data)

    def cancel(self):
        self.cancelled = True
        if self._pending is not None:
            self._pending.cancel()


async def download(agent, stream, args):
    """
    Send a tar of ``path`` (a file, or a directory with everything under
    it; symlinks are stored, not followed) as the body.
    """
    path = agent.resolve(args["path"])
    try:
        os.lstat(path)
    except OSError as e:
        raise from_oserror(e, path)
    loop = asyncio.get_running_loop()
    writer = _BodyWriter(loop, stream)
    build = loop.run_in_executor(None, _archive, writer, path)
    try:
        await asyncio.shield(build)
    finally:
        if not build.done():
            writer.cancel()
            await asyncio.shield(asyncio.wait([build]))
            build.exception()
    return {"size": writer.sent}


def _archive(writer, path):
    import tarfile

    name = os.path.basename(path.rstrip("/")) or "."
    try:
        with tarfile.open(fileobj=writer, mode="w|", bufsize=CHUNK_SIZE, format=tarfile.PAX_FORMAT) as tar:
            tar.copybufsize = CHUNK_SIZE
            tar.add(path, arcname=name)
    except _Cancelled:
        raise RequestError("CANCELLED", "cancelled")
    except OSError as e:
        raise from_oserror(e, e.filename or path)
