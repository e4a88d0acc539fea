"""
Helpers of process.py: feeding a child's stdin, terminal sizes, finding a
process's descendants.
"""

import fcntl
import os
import struct
import termios


class _StdinFeeder:
    """
    Writes the ``stdin`` parameter to the child without blocking, then closes.
    """

    def __init__(self, loop, fd, data):
        self._loop = loop
        self._fd = fd
        self._view = memoryview(data)
        self._writing = False
        os.set_blocking(fd, False)
        self._write()

    def _write(self):
        try:
            while self._view:
                self._view = self._view[os.write(self._fd, self._view) :]
        except BlockingIOError:
            if not self._writing:
                self._loop.add_writer(self._fd, self._write)
                self._writing = True
            return
        except OSError:
            pass  # the child closed its stdin: the rest is not wanted
        self.close()

    def close(self):
        if self._fd is None:
            return
        if self._writing:
            self._loop.remove_writer(self._fd)
        os.close(self._fd)
        self._fd = None


async def _pump_stdin(loop, stream, fd):
    """
    Write the request's body to the child's stdin as it arrives, granting
    credit back only once written (so a child that does not read slows the
    client down); close stdin at END.  Once the child stops reading (EPIPE,
    EIO) the rest is consumed and dropped.
    """
    inbox = stream.inbox
    broken = False
    try:
        os.set_blocking(fd, False)
        while (chunks := await inbox.get()) is not None:
            count = 0
            for chunk in chunks:
                count += len(chunk)
                view = memoryview(chunk)
                while view and not broken:
                    try:
                        view = view[os.write(fd, view) :]
                    except BlockingIOError:
                        await _writable(loop, fd)
                    except OSError:
                        broken = True
            stream.consumed(count)
    finally:
        os.close(fd)


async def _writable(loop, fd):
    waiter = loop.create_future()
    loop.add_writer(fd, lambda: waiter.done() or waiter.set_result(None))
    try:
        await waiter
    finally:
        loop.remove_writer(fd)


def _descendants(root):
    """
    The pids below ``root`` in the process tree (children, theirs, ...).
    """
    children = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    found = []
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def _set_size(fd, cols, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_terminal():
    """
    In the child, after setsid: make the pty on stdin the controlling terminal.
    """
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
