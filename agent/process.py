"""
process.exec, process.stream and process.spawn: run a command in a session
of its own (on a pty if asked) and send its output as DATA within the
stream's credit; stdin from a parameter or from the request's body.

Pipes are read with the event loop's readers, only while the stream has
credit and the transport is writable: when the client stops granting window
the pipe fills and the process blocks, nothing piles up in the agent.
"""

import asyncio
import os
import select
import signal
import subprocess

from . import params as p
from .errors import RequestError, from_oserror
from .procutil import _descendants, _pump_stdin, _set_size, _StdinFeeder, _take_terminal
from .reaper import exit_code
from .shellfree import argv_without_shell, shell_environment
from .wire import CHANNEL_STDERR, CHANNEL_STDOUT, CHUNK_SIZE, Code
from .zygote import ZygoteUnavailable

DEFAULT_MAX_OUTPUT = 16 << 20
#: How long process.exec holds small output, so that a short command's DATA
#: and RESULT leave in one write.
EXEC_LINGER = 0.002
#: Reads of one pipe per readiness callback, so one chatty process cannot
#: hold the event loop.
_READS_PER_WAKEUP = 8

STREAM_SPEC = {
    "cmd": (p.command, p.REQUIRED),
    "cwd": (p.path, None),
    "env": (p.string_map, None),
    "timeout": (p.seconds, None),
    "stdin": (p.text_bytes, None),
}
STREAM_SPEC["stdin_stream"] = (p.boolean, False)
EXEC_SPEC = dict(STREAM_SPEC, max_output=(p.count, DEFAULT_MAX_OUTPUT))
SPAWN_SPEC = {
    "cmd": (p.command, p.REQUIRED),
    "cwd": (p.path, None),
    "env": (p.string_map, None),
    "timeout": (p.seconds, None),
    "pty": (p.terminal_size, None),
}
#: Seconds after a pty's process exits before its output may be ended
#: without the master's end-of-file (see Run._pty_settled).
PTY_SETTLE = 0.1

#: The default TERM of a pty whose environment names none.
DEFAULT_TERM = "xterm-256color"


def stdin_streamed(args):
    """
    Whether the request's body (DATA on channel 0, then END) is the stdin.
    """
    return args.get("stdin_stream", True)


async def run_exec(agent, stream, args):
    return await Run(agent, stream, args, args["max_output"], EXEC_LINGER).wait()


async def run_stream(agent, stream, args):
    return await Run(agent, stream, args, None, 0).wait()


async def run_spawn(agent, stream, args):
    """
    process.spawn: stdin from the body, EVENT {"pid"} once started.
    """
    args = dict(args, stdin=None, stdin_stream=True)
    return await Run(agent, stream, args, None, 0, announce=True).wait()


class _Pipe:
    """
    The read end of the child's stdout or stderr.  ``room`` is what the
    output cap still allows (None: no cap; 0: drain and drop).
    """

    __slots__ = ("fd", "channel", "room", "reading", "eof")

    def __init__(self, fd, channel, cap):
        self.fd = fd
        self.channel = channel
        self.room = cap
        self.reading = False
        self.eof = False


class Run:
    """
    One running command, from spawn to its RESULT.
    """

    def __init__(self, agent, stream, args, cap, linger, announce=False):
        self._loop = asyncio.get_running_loop()
        self._announce = announce
        self._pump = None
        self._master = None
        self._agent = agent
        self._stream = stream
        self._args = args
        self._cap = cap
        self._linger = linger
        self._pid = None
        self._pipes = ()
        self._stdin = None
        self._status = None
        self._killed = False
        self._timed_out = False
        self._truncated = False
        self._stopped = False
        self._completed = False
        self._waking = False
        self._timer = None
        self._watch = agent.reaper.watch
        self._pending = []  # [channel, bytearray] not yet sent
        self._pending_size = 0
        self._flush_timer = None
        self._settle_timer = None
        self._done = self._loop.create_future()

    @property
    def pid(self):
        return self._pid

    @property
    def has_pty(self):
        return self._args.get("pty") is not None

    def signal(self, signum, group=True):
        """
        Send ``signum`` to the process (its whole group with ``group``).
        """
        if self._completed or self._stopped:
            raise ProcessLookupError(self._pid)
        if group:
            os.killpg(self._pid, signum)
        else:
            os.kill(self._pid, signum)

    def resize(self, cols, rows):
        """
        Set the terminal size (the kernel sends SIGWINCH); False without a pty.
        """
        if self._master is None:
            return False
        _set_size(self._master, cols, rows)
        return True

    async def wait(self):
        try:
            self._start()
            self._agent.processes[self._pid] = self
            if self._announce:
                self._stream.send_event({"pid": self._pid})
            await self._done
        finally:
            self._stop()
            if self._pid is not None and self._agent.processes.get(self._pid) is self:
                del self._agent.processes[self._pid]
        self._flush()
        return {
            "exit_code": exit_code(self._status),
            "timed_out": self._timed_out,
            "truncated": self._truncated,
        }

    # Starting and stopping.

    def _start(self):
        args, agent = self._args, self._agent
        cwd = agent.resolve(args["cwd"]) if args["cwd"] else agent.cwd
        env = {**agent.env, **args["env"]} if args["env"] else agent.env
        stdin_data = args["stdin"]
        streamed = args.get("stdin_stream")
        if streamed and stdin_data is not None:
            raise RequestError(Code.BAD_PARAMS, "stdin and stdin_stream exclude each other")
        size = args.get("pty")
        if size is not None:
            self._start_pty(args["cmd"], cwd, env, size)
        else:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            child_ends = [out_w, err_w]
            if stdin_data is None and not streamed:
                stdin, stdin_w = agent.devnull, None
            else:
                stdin, stdin_w = os.pipe2(os.O_CLOEXEC)
                child_ends.append(stdin)
            try:
                self._pid, self._watch = _start_process(
                    agent, args["cmd"], cwd, env, stdin, out_w, err_w
                )
            except BaseException:
                for fd in (out_r, err_r, stdin_w):
                    if fd is not None:
                        os.close(fd)
                raise
            finally:
                for fd in child_ends:
                    os.close(fd)
            self._pipes = (
                _Pipe(out_r, CHANNEL_STDOUT, self._cap),
                _Pipe(err_r, CHANNEL_STDERR, self._cap),
            )
        for pipe in self._pipes:
            os.set_blocking(pipe.fd, False)
        if size is not None:
            stdin_w = os.dup(self._master)
            stdin_data = None
        self._watch(self._pid, self._on_exit)
        if args["timeout"] is not None:
            self._timer = self._loop.call_later(args["timeout"], self._on_timeout)
        if streamed:
            self._pump = self._loop.create_task(
                _pump_stdin(self._loop, self._stream, stdin_w)
            )
        elif stdin_w is not None:
            self._stdin = _StdinFeeder(self._loop, stdin_w, stdin_data)
        self._update_readers()

    def _start_pty(self, argv, cwd, env, size):
        master, slave = os.openpty()
        os.set_inheritable(master, False)
        try:
            _set_size(master, *size)
            if "TERM" not in env:
                env = dict(env, TERM=DEFAULT_TERM)
            self._pid = _spawn(argv, cwd, env, slave, slave, slave, _take_terminal)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self._master = master
        self._pipes = (_Pipe(master, CHANNEL_STDOUT, self._cap),)

    def _stop(self):
        """
        Release everything; kill the process group unless the run completed.
        """
        self._stopped = True
        for timer in (self._timer, self._flush_timer, self._settle_timer):
            if timer is not None:
                timer.cancel()
        self._flush_timer = self._settle_timer = None
        for pipe in self._pipes:
            self._close_pipe(pipe)
        if self._stdin is not None:
            self._stdin.close()
        if self._pump is not None:
            self._pump.cancel()
        self._master = None  # closed with its pipe
        if self._pid is not None and not self._completed:
            self._kill()

    def _kill(self):
        if self._killed:
            return
        self._killed = True
        # Descendants that left the group (setsid) but are still in the tree
        # die too; found before the group dies and the tree falls apart.
        escaped = _descendants(self._pid) if self._status is None else ()
        for target, kill in ((self._pid, os.killpg), *((pid, os.kill) for pid in escaped)):
            try:
                kill(target, signal.SIGKILL)
            except OSError:
                pass  # gone already

    def _on_timeout(self):
        self._timer = None
        self._timed_out = True
        self._kill()
        self._check_done()

    def _on_exit(self, status):
        self._status = status
        self._check_done()
        if self._master is not None and not self._done.done():
            self._settle_timer = self._loop.call_later(PTY_SETTLE, self._pty_settled)

    def _pty_settled(self):
        """
        The pty's process exited a while ago and its master has not reported
        the end (gVisor's never does: no EIO, no hang-up, once the last
        replica closes).  When the master has nothing left to read, end its
        output; otherwise look again later.  Under Linux the EIO comes first
        and this never runs.
        """
        self._settle_timer = None
        pipe = self._pipes[0]
        if self._stopped or pipe.eof:
            return
        if pipe.reading and not _has_input(pipe.fd):
            self._close_pipe(pipe)
            self._check_done()
        else:
            self._settle_timer = self._loop.call_later(PTY_SETTLE, self._pty_settled)

    def _check_done(self):
        if self._status is None or self._done.done():
            return
        if self._killed or all(pipe.eof for pipe in self._pipes):
            self._completed = True
            self._done.set_result(None)

    # Reading output within the credit.

    def _update_readers(self):
        if self._stopped:
            return
        writable = self._stream.writable()
        blocked = False
        for pipe in self._pipes:
            if pipe.eof:
                continue
            want = writable or pipe.room == 0
            if want and not pipe.reading:
                self._loop.add_reader(pipe.fd, self._on_readable, pipe)
                pipe.reading = True
            elif not want:
                blocked = True
                if pipe.reading:
                    self._loop.remove_reader(pipe.fd)
                    pipe.reading = False
        if blocked and not self._waking:
            self._waking = True
            self._stream.on_writable(self._wake)

    def _wake(self):
        self._waking = False
        self._update_readers()

    def _on_readable(self, pipe):
        """
        Read what the pipe holds (a few chunks at most), within the credit.
        """
        window = self._stream.send_window
        for _ in range(_READS_PER_WAKEUP):
            if pipe.room == 0:
                data = _read(pipe.fd, CHUNK_SIZE)
                if data:
                    self._truncated = True
            else:
                size = min(CHUNK_SIZE, window.credit)
                if pipe.room is not None:
                    size = min(size, pipe.room)
                if size == 0:
                    break
                data = _read(pipe.fd, size)
                if data:
                    window.take(len(data))
                    if pipe.room is not None:
                        pipe.room -= len(data)
                    self._queue(pipe.channel, data)
            if data is None:
                break
            if not data:
                self._close_pipe(pipe)
                self._check_done()
                break
        self._update_readers()

    def _close_pipe(self, pipe):
        if pipe.fd == self._master and not pipe.eof:
            self._master = None
        if pipe.reading:
            self._loop.remove_reader(pipe.fd)
            pipe.reading = False
        if not pipe.eof:
            pipe.eof = True
            os.close(pipe.fd)

    # Sending output.

    def _queue(self, channel, data):
        pending = self._pending
        if pending and pending[-1][0] == channel and len(pending[-1][1]) + len(data) <= CHUNK_SIZE:
            pending[-1][1] += data
        else:
            pending.append([channel, bytearray(data)])
        self._pending_size += len(data)
        if (
            not self._linger
            or self._pending_size >= CHUNK_SIZE
            or not self._stream.send_window.credit
        ):
            self._flush()
        elif self._flush_timer is None:
            self._flush_timer = self._loop.call_later(self._linger, self._flush)

    def _flush(self):
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        for channel, chunk in self._pending:
            self._stream.send_data(chunk, channel)
        self._pending = []
        self._pending_size = 0


def _start_process(agent, argv, cwd, env, stdin, stdout, stderr):
    """
    Start ``argv`` without a terminal: forked off the Python zygote when it
    takes the command, else spawned.  A command string that needs no shell
    (agent/shellfree.py) is run without one.  ``(pid, watch)``: ``watch(pid,
    callback)`` reports the exit.
    """
    if len(argv) == 3 and argv[:2] == ["/bin/sh", "-c"]:
        direct = argv_without_shell(argv[2], env, cwd)
        if direct is not None:
            argv, env = direct, shell_environment(env, cwd)
    zygote = agent.zygote
    if zygote is not None and zygote.accepts(argv, env):
        try:
            return zygote.spawn(argv, cwd, env, stdin, stdout, stderr), zygote.watch
        except ZygoteUnavailable:
            pass
    return _spawn(argv, cwd, env, stdin, stdout, stderr), agent.reaper.watch


def _spawn(argv, cwd, env, stdin, stdout, stderr, preexec=None):
    """
    Start ``argv`` in a new session (vfork + exec); its pid.
    """
    try:
        proc = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=preexec,
        )
    except OSError as e:
        raise from_oserror(e, e.filename if e.filename is not None else argv[0])
    except ValueError as e:  # e.g. an environment name subprocess refuses
        raise RequestError(Code.BAD_PARAMS, str(e))
    # The Reaper waits for the child; keep subprocess from ever reaping it.
    proc.returncode = 0
    return proc.pid


def _has_input(fd):
    """
    Whether a read of ``fd`` would return at once.
    """
    return bool(select.select([fd], [], [], 0)[0])


def _read(fd, size):
    """
    Up to ``size`` bytes; b"" at end of file, None when nothing is ready.
    """
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError:
        return b""
