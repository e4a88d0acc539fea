"""
The agent's side of the Python zygote (agent/zygote_process.py): start it,
decide which commands it may run, hand them over, and report their exits.

A command goes to the zygote only when a fresh interpreter would behave
the same: it is ``python3 -c CODE [ARGS...]`` naming the zygote's own
interpreter (same file, same directory, so not a virtualenv's), without a
terminal, in an existing directory, with the same start-up environment
(every ``PYTHON*`` and locale variable, and ``HOME``) as the zygote.
Everything else, and everything while the zygote is down, is spawned as
before.
"""

import marshal
import os
import select
import shutil
import signal
import socket
import subprocess
import sys

#: Seconds to wait for the zygote to fork.
SPAWN_TIMEOUT = 2.0
#: Seconds before a zygote that died is started again.
RESTART_DELAY = 1.0
#: Variables read while the interpreter starts: the zygote's must be the command's.
_START_UP_NAMES = ("HOME", "LANG", "LC_ALL", "LC_CTYPE")
#: The zygote's command line: its code arrives as the first packet.
_BOOTSTRAP = "import os, sys; exec(os.read(int(sys.argv[1]), 1 << 20))  # python zygote"
_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote_process.py")


#: Exits remembered for pids not watched yet.
MAX_UNWATCHED = 1024


def _parse(packet):
    """
    ``(kind, rest)`` of a message from the zygote, which user code could
    have replaced: ASCII only, checked field by field.
    """
    kind, _, rest = packet.decode("ascii").partition(" ")
    if kind not in ("pid", "error", "exit"):
        raise ValueError(f"unexpected message from the zygote: {kind[:20]!r}")
    return kind, rest


def _pid(text):
    pid = int(text)
    if pid <= 1:
        raise ValueError(f"not a child's pid: {pid}")
    return pid


class ZygoteUnavailable(Exception):
    """
    The zygote cannot take this command now; spawn it the usual way.
    """


def _start_up_environment(env):
    return {
        name: value
        for name, value in env.items()
        if name.startswith("PYTHON") or name in _START_UP_NAMES
    }


class Zygote:
    """
    A forking Python interpreter for ``python3 -c`` snippets.

    ``spawn`` returns the pid of a child started in a session of its own;
    ``watch(pid, callback)`` calls ``callback(wait_status)`` when it exits
    (the zygote, its parent, reaps it and says so).
    """

    def __init__(self, loop, env, cwd, devnull, interpreter=None):
        self._loop = loop
        self._env = dict(env)
        self._start_up = _start_up_environment(self._env)
        self._cwd = cwd
        self._devnull = devnull
        self._interpreter = os.path.abspath(interpreter or sys.executable)
        self._process = None
        self._channel = None
        self._watched = {}
        self._exited = {}
        self._down_since = None

    @property
    def running(self):
        return self._channel is not None

    def start(self):
        """
        Start the zygote; False (and commands spawned the usual way) when
        it cannot be.
        """
        try:
            with open(_SOURCE) as f:
                source = f.read()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError:
            return False
        try:
            self._process = subprocess.Popen(
                [self._interpreter, "-c", _BOOTSTRAP, str(theirs.fileno())],
                stdin=self._devnull,
                stdout=self._devnull,
                stderr=self._devnull,
                cwd=self._cwd,
                env=self._env,
                pass_fds=[theirs.fileno()],
                start_new_session=True,
            )
        except OSError:
            ours.close()
            return False
        finally:
            theirs.close()
        try:
            ours.send(source.encode())
        except OSError:
            ours.close()
            self._process.kill()
            self._process.wait()
            self._process = None
            return False
        ours.setblocking(False)
        self._channel = ours
        self._down_since = None
        self._loop.add_reader(ours.fileno(), self._readable)
        return True

    def close(self):
        """
        Stop the zygote (it exits when its channel closes).
        """
        self._hang_up(grace=1)

    def _hang_up(self, grace):
        """
        Close the channel and reap the zygote, killed after ``grace`` seconds.
        """
        if self._channel is not None:
            self._loop.remove_reader(self._channel.fileno())
            self._channel.close()
            self._channel = None
        if self._process is not None:
            try:
                self._process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    # Which commands

    def accepts(self, argv, env):
        """
        Whether ``argv`` with ``env`` can be run by forking the zygote.
        """
        if len(argv) < 3 or argv[1] != "-c":
            return False
        if _start_up_environment(env) != self._start_up:
            return False
        if not self._same_interpreter(argv[0], env.get("PATH", os.defpath)):
            return False
        return self.running or self._restart()

    def _same_interpreter(self, name, path):
        """
        Whether ``name``, looked up as exec would, is the zygote's interpreter
        (the same file in the same directory).  Not cached: a program put on
        the PATH later must be found.
        """
        if "/" in name:
            found = name if os.path.isabs(name) else None
        else:
            found = shutil.which(name, path=path)
        return found is not None and (
            os.path.dirname(os.path.abspath(found)) == os.path.dirname(self._interpreter)
            and os.path.realpath(found) == os.path.realpath(self._interpreter)
        )

    def _restart(self):
        now = self._loop.time()
        if self._down_since is None or now - self._down_since < RESTART_DELAY:
            return False
        return self.start()

    # Running them

    def spawn(self, argv, cwd, env, stdin, stdout, stderr):
        """
        Fork ``argv`` (accepted by ``accepts``) off the zygote: its pid.
        Raise ZygoteUnavailable when the zygote does not answer.
        """
        if not os.path.isdir(cwd):
            raise ZygoteUnavailable(f"no directory {cwd}")  # the usual way names the error
        request = marshal.dumps(("spawn", argv[0], argv[2], argv[3:], cwd, env))
        try:
            socket.send_fds(self._channel, [request], [stdin, stdout, stderr])
            deadline = self._loop.time() + SPAWN_TIMEOUT
            while True:
                kind, fields = self._receive(deadline)
                if kind == "pid":
                    return _pid(fields)
                if kind == "error":
                    raise ZygoteUnavailable(fields)
                self._exit(fields)
        except (OSError, ValueError, EOFError) as e:
            self._lost()
            raise ZygoteUnavailable(str(e))

    def _receive(self, deadline):
        while True:
            try:
                packet = self._channel.recv(1 << 16)
            except BlockingIOError:
                left = deadline - self._loop.time()
                if left <= 0:
                    raise TimeoutError("the zygote did not answer")
                select.select([self._channel], [], [], left)
                continue
            if not packet:
                raise EOFError("the zygote exited")
            return _parse(packet)

    def watch(self, pid, callback):
        if pid in self._exited:
            self._loop.call_soon(callback, self._exited.pop(pid))
        else:
            self._watched[pid] = callback

    def _readable(self):
        while self._channel is not None:
            try:
                packet = self._channel.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                packet = b""
            if not packet:
                self._lost()
                return
            try:
                kind, fields = _parse(packet)
                if kind == "exit":
                    self._exit(fields)
            except ValueError:
                continue

    def _exit(self, fields):
        """
        ``PID STATUS``: the child ended; its watcher hears it on the next
        pass of the loop (never inside another command's spawn).
        """
        pid, status = fields.split()
        pid, status = _pid(pid), int(status)
        callback = self._watched.pop(pid, None)
        if callback is not None:
            self._loop.call_soon(callback, status)
        else:
            if len(self._exited) >= MAX_UNWATCHED:
                self._exited.pop(next(iter(self._exited)))
            self._exited[pid] = status

    def _lost(self):
        """
        The zygote is gone: its children lost their parent, and with it
        any way to learn how they end.  Kill them and report them killed;
        try a new zygote after RESTART_DELAY.
        """
        self._hang_up(grace=0)
        self._down_since = self._loop.time()
        watched, self._watched = self._watched, {}
        for pid, callback in watched.items():
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            self._loop.call_soon(callback, signal.SIGKILL)  # a SIGKILL death's wait status
