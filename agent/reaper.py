"""
Waits for the agent's child processes without a thread per child.

Each child gets a pidfd watched by the event loop (Linux 5.3+).  Where
pidfd_open is missing (other systems, old kernels, some gVisor releases) a
SIGCHLD handler polls the watched pids instead.
"""

import os
import signal


class Reaper:
    """
    ``watch(pid, callback)`` calls ``callback(wait_status)`` once ``pid`` has
    exited and been reaped.
    """

    def __init__(self, loop, use_pidfd=None):
        self._loop = loop
        self._use_pidfd = hasattr(os, "pidfd_open") if use_pidfd is None else use_pidfd
        self._polled = {}
        self._sigchld = False

    def watch(self, pid, callback):
        if self._use_pidfd:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                self._use_pidfd = False
            else:
                self._loop.add_reader(pidfd, self._on_pidfd, pid, pidfd, callback)
                return
        self._polled[pid] = callback
        if not self._sigchld:
            self._loop.add_signal_handler(signal.SIGCHLD, self._poll)
            self._sigchld = True
        self._poll()

    def _on_pidfd(self, pid, pidfd, callback):
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        callback(_reap(pid, 0))

    def _poll(self):
        for pid, callback in list(self._polled.items()):
            status = _reap(pid, os.WNOHANG)
            if status is not None:
                del self._polled[pid]
                callback(status)

    def close(self):
        if self._sigchld:
            self._loop.remove_signal_handler(signal.SIGCHLD)
            self._sigchld = False


def _reap(pid, flags):
    """
    The wait status of ``pid``, None while it runs (with WNOHANG).
    """
    try:
        reaped, status = os.waitpid(pid, flags)
    except ChildProcessError:
        return 0  # someone else reaped it; nothing more to learn
    return status if reaped else None


def exit_code(status):
    """
    The exit status, or 128 + n when signal n killed the process.
    """
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
