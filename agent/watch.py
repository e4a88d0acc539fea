"""
fs.watch: stream create / modify / delete / move events of a directory
(optionally its whole tree) until cancelled, through inotify (ctypes).

EVENT frames carry no credit, so the watch stops reading its inotify
descriptor while the connection cannot write: the kernel's queue then
fills and overflows, and the client gets one "overflow" event instead of
the agent buffering without bound.
"""

import asyncio
import errno
import os
import stat
import struct

from . import params as p
from .errors import RequestError, from_oserror

WATCH_SPEC = {
    "path": (p.path, p.REQUIRED),
    "recursive": (p.boolean, False),
}

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

MASK = (
    IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
    | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK
)
_KINDS = (
    (IN_CREATE, "create"),
    (IN_MODIFY, "modify"),
    (IN_DELETE, "delete"),
    (IN_MOVED_FROM, "move_from"),
    (IN_MOVED_TO, "move_to"),
)
_EVENT = struct.Struct("iIII")
#: Events per EVENT frame.
BATCH = 500
#: Directories one recursive watch may watch.
MAX_WATCHES = 8192

_libc = None


def _inotify():
    global _libc
    if _libc is None:
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.inotify_init1
        except (OSError, AttributeError):
            raise RequestError("ENOSYS", "inotify is not available here")
        libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        _libc = libc
    return _libc


def _check(result, path):
    if result < 0:
        import ctypes

        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number), path)
    return result


class _Watch:
    """
    One inotify instance and the directories it watches.
    """

    def __init__(self, loop, stream, root, recursive):
        self.loop = loop
        self.stream = stream
        self.root = root
        self.recursive = recursive
        self.libc = _inotify()
        self.fd = _check(self.libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), root)
        self.dirs = {}  # wd -> path
        self.reading = False
        self.done = loop.create_future()
        self.pending = []

    def add(self, path, report=False):
        """
        Watch ``path`` (and, when recursive, its subdirectories); with
        ``report``, queue "create" events for what is already there (made
        before the watch could see it).
        """
        stack = [path]
        while stack:
            directory = stack.pop()
            if len(self.dirs) >= MAX_WATCHES:
                self.pending.append({"type": "overflow", "path": directory, "is_dir": True})
                return
            try:
                wd = _check(
                    self.libc.inotify_add_watch(self.fd, os.fsencode(directory), MASK),
                    directory,
                )
            except OSError:
                if directory == self.root:
                    raise
                continue  # vanished or unreadable meanwhile
            self.dirs[wd] = directory
            if not self.recursive:
                continue
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                is_dir = entry.is_dir(follow_symlinks=False)
                if report:
                    self.pending.append({"type": "create", "path": entry.path, "is_dir": is_dir})
                if is_dir:
                    stack.append(entry.path)

    def start(self):
        self.loop.add_reader(self.fd, self.on_readable)
        self.reading = True

    def close(self):
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def resume(self):
        if self.fd is not None and not self.reading:
            self.start()
            self.on_readable()

    def on_readable(self):
        if not self.stream.conn.transport or self.stream.conn.paused:
            # Stop reading until the connection drains; the kernel queues.
            if self.reading:
                self.loop.remove_reader(self.fd)
                self.reading = False
            self.stream.on_writable(self.resume)
            return
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            self.parse(data)
        self.flush()

    def parse(self, data):
        offset = 0
        pending = self.pending
        while offset + _EVENT.size <= len(data):
            wd, mask, cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                pending.append({"type": "overflow", "path": self.root, "is_dir": True})
                continue
            directory = self.dirs.get(wd)
            if directory is None:
                continue
            if mask & IN_IGNORED:
                del self.dirs[wd]
                if directory == self.root and not self.done.done():
                    self.done.set_result("deleted")
                continue
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                if directory == self.root and not self.done.done():
                    self.done.set_result("deleted" if mask & IN_DELETE_SELF else "moved")
                continue
            path = os.path.join(directory, os.fsdecode(raw)) if raw else directory
            is_dir = bool(mask & IN_ISDIR)
            for bit, kind in _KINDS:
                if mask & bit:
                    event = {"type": kind, "path": _text(path), "is_dir": is_dir}
                    if bit in (IN_MOVED_FROM, IN_MOVED_TO):
                        event["cookie"] = cookie
                    elif (
                        bit == IN_MODIFY
                        and pending
                        and pending[-1] == event
                    ):
                        break  # coalesce a run of writes to one file
                    pending.append(event)
                    if is_dir and self.recursive and bit in (IN_CREATE, IN_MOVED_TO):
                        self.add(path, report=True)
                    break

    def flush(self):
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), BATCH):
            self.stream.send_event({"events": pending[start : start + BATCH]})


def _text(path):
    try:
        path.encode()
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


async def watch(agent, stream, args):
    """
    Send ``EVENT {"ready": true}`` once watching, then ``EVENT {"events":
    [...]}`` as things change, until CANCEL (or the directory goes).
    """
    path = agent.resolve(args["path"])
    try:
        st = os.stat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
    except OSError as e:
        raise from_oserror(e, path)
    loop = asyncio.get_running_loop()
    watcher = None
    try:
        watcher = _Watch(loop, stream, path, args["recursive"])
        watcher.add(path)
        stream.send_event({"ready": True, "path": path, "watches": len(watcher.dirs)})
        watcher.start()
        reason = await watcher.done
        watcher.on_readable()
        return {"reason": reason}
    except OSError as e:
        raise from_oserror(e, e.filename or path)
    finally:
        if watcher is not None:
            watcher.close()
