"""
fs.read, fs.write, fs.list and fs.stat.

Content moves in chunks of at most wire.CHUNK_SIZE, within the stream's
window: a file is never held in memory whole.  Reads and writes of more than
INLINE_LIMIT bytes run in the agent's I/O threads; small ones are one short
syscall on the event loop.
"""

import asyncio
import errno
import math
import os
import stat

from . import params as p
from . import wire
from .errors import RequestError, from_oserror
from .wire import CHUNK_SIZE, HEADER, HEADER_SIZE, FrameType, ProtocolError

INLINE_LIMIT = 64 * 1024
LIST_BATCH = 500
_IOV_MAX = 1024

READ_SPEC = {
    "path": (p.path, p.REQUIRED),
    "offset": (p.count, 0),
    "length": (p.count, None),
}
WRITE_SPEC = {
    "path": (p.path, p.REQUIRED),
    "mode": (p.file_mode, 0o644),
    "append": (p.boolean, False),
}
PATH_SPEC = {"path": (p.path, p.REQUIRED)}
LIST_SPEC = {"path": (p.path, p.REQUIRED), "depth": (p.positive, 1)}


class _OpenFile:
    """
    A descriptor whose closing waits for a blocking call still running on it
    in a thread (so a cancelled request never frees a number still in use).
    """

    def __init__(self, fd, executor):
        self.fd = fd
        self._executor = executor
        self._busy = None

    async def call(self, function, *args):
        self._busy = self._executor.submit(function, *args)
        result = await asyncio.wrap_future(self._busy)
        self._busy = None
        return result

    def close(self):
        fd, self.fd = self.fd, None
        if fd is None:
            return
        if self._busy is None:
            os.close(fd)
        else:
            self._busy.add_done_callback(lambda _: _close_quietly(fd))


async def read(agent, stream, args):
    path = agent.resolve(args["path"])
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise from_oserror(e, path)
    file = _OpenFile(fd, agent.executor)
    try:
        st = os.fstat(fd)
        _require_regular(st, path)
        inline = st.st_size <= INLINE_LIMIT
        position = args["offset"]
        # Up to the size at open; a size of 0 (/proc and the like): to EOF.
        end = st.st_size or None
        if args["length"] is not None:
            end = min(end or math.inf, position + args["length"])
        sent = 0
        while end is None or position < end:
            if not stream.writable():
                await stream.wait_writable()
            size = min(CHUNK_SIZE, stream.send_window.credit)
            if end is not None:
                size = min(size, end - position)
            frame = bytearray(HEADER_SIZE + size)
            body = [memoryview(frame)[HEADER_SIZE:]]
            if inline:
                got = os.preadv(fd, body, position)
            else:
                got = await file.call(os.preadv, fd, body, position)
            if not got:
                break
            stream.send_window.take(got)
            HEADER.pack_into(frame, 0, got + HEADER_SIZE - 4, FrameType.DATA, 0, stream.id)
            stream.conn.write(frame if got == size else memoryview(frame)[: HEADER_SIZE + got])
            position += got
            sent += got
    except OSError as e:
        raise from_oserror(e, path)
    finally:
        file.close()
    return {"size": sent}


async def write(agent, stream, args):
    path = agent.resolve(args["path"])
    temp = None
    try:
        target = os.path.realpath(path) if os.path.islink(path) else path
        st = _stat_or_none(target)
        if st is not None:
            _require_regular(st, path)
        if args["append"]:
            fd = _open_append(target, st, args["mode"])
        else:
            fd, temp = _open_temp(target, st, args["mode"])
    except OSError as e:
        raise from_oserror(e, path)
    file = _OpenFile(fd, agent.executor)
    size = 0
    try:
        while (chunks := await stream.inbox.get()) is not None:
            count = sum(map(len, chunks))
            if count <= INLINE_LIMIT:
                _write_all(fd, chunks)
            else:
                await file.call(_write_all, fd, chunks)
            size += count
            stream.consumed(count)
        file.close()
        if temp is not None:
            os.replace(temp, target)
            temp = None
    except OSError as e:
        raise from_oserror(e, path)
    finally:
        file.close()
        if temp is not None:
            _unlink_quietly(temp)
    return {"size": size}


async def list_dir(agent, stream, args):
    path = agent.resolve(args["path"])
    try:
        entries = await asyncio.wrap_future(
            agent.executor.submit(_scan, path, args["depth"])
        )
    except OSError as e:
        raise from_oserror(e, path)
    for start in range(0, len(entries), LIST_BATCH):
        if not stream.writable():
            await stream.wait_writable()
        _send_entries(stream, entries[start : start + LIST_BATCH])
    return {"count": len(entries)}


def stat_path(agent, args):
    """
    fs.stat, answered on the spot: one lstat.
    """
    path = agent.resolve(args["path"])
    try:
        st = os.lstat(path)
    except OSError as e:
        raise from_oserror(e, path)
    name = os.path.basename(path.rstrip("/")) or "/"
    return dict(_describe(name, st), path=path)


# Helpers.


def _require_regular(st, path):
    if stat.S_ISDIR(st.st_mode):
        raise from_oserror(IsADirectoryError(errno.EISDIR, "Is a directory"), path)
    if not stat.S_ISREG(st.st_mode):
        raise RequestError("EINVAL", f"not a regular file: {path}", path=path)


def _stat_or_none(path):
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _open_append(target, st, mode):
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
    if st is None:
        os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
    return fd


def _open_temp(target, st, mode):
    """
    A new file beside ``target`` that will be renamed over it; (fd, its path).
    """
    directory, name = os.path.split(target)
    temp = os.path.join(directory, f".{name[:100]}.{os.urandom(4).hex()}.part")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if st is None:
            os.fchmod(fd, mode)
        else:  # a replaced file keeps its permissions and, if possible, owner
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(fd, st.st_uid, st.st_gid)
                except OSError:
                    pass
    except OSError:
        os.close(fd)
        _unlink_quietly(temp)
        raise
    return fd, temp


def _write_all(fd, chunks):
    """
    Write every chunk, resuming after short writes.
    """
    views = [memoryview(chunk) for chunk in chunks]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while written:
            if written >= len(views[0]):
                written -= len(views.pop(0))
            else:
                views[0] = views[0][written:]
                written = 0


def _close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _scan(path, depth=1):
    """
    The entries of a directory and, down to ``depth`` levels, of its
    subdirectories (symlinks are not followed), sorted by path (runs in a
    thread).  Subdirectories that cannot be read are listed, not entered.
    """
    found = []
    _scan_into(path, depth, found, top=True)
    found.sort(key=lambda item: item[0])
    return [entry for _, entry in found]


def _scan_into(path, depth, found, top=False):
    try:
        it = os.scandir(path)
    except OSError:
        if top:
            raise
        return
    subdirs = []
    with it:
        for entry in it:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we listed
            described = _describe(entry.name, st)
            described["path"] = _text(entry.path)
            found.append((entry.path.split("/"), described))
            if depth > 1 and stat.S_ISDIR(st.st_mode):
                subdirs.append(entry.path)
    for subdir in subdirs:
        _scan_into(subdir, depth - 1, found)


def _describe(name, st):
    return {
        "name": _text(name),
        "type": _kind(st.st_mode),
        "size": st.st_size,
        "mode": stat.S_IMODE(st.st_mode),
        "mtime": st.st_mtime,
    }


def _kind(mode):
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _text(name):
    """
    ``name`` as valid UTF-8 text (undecodable bytes become U+FFFD).
    """
    try:
        name.encode()
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _send_entries(stream, entries):
    """
    One EVENT for ``entries``, split in two if it would be too large.
    """
    try:
        frame = wire.event(stream.id, {"entries": entries})
    except ProtocolError:
        if len(entries) < 2:
            raise
        half = len(entries) // 2
        _send_entries(stream, entries[:half])
        _send_entries(stream, entries[half:])
        return
    stream.conn.write(frame)
