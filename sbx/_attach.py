"""
``sbx attach``: an interactive shell in a sandbox on a pty.

The local terminal is put in raw mode (every key goes to the sandbox,
Ctrl-C included) and restored on the way out whatever happens; SIGWINCH
resizes the remote terminal; the exit status is the shell's.
"""

import asyncio
import os
import signal
import sys
import termios
import tty

#: Bytes read from the local terminal at once.
READ_SIZE = 64 * 1024


def terminal_size(fd):
    try:
        size = os.get_terminal_size(fd)
        return size.columns, size.lines
    except OSError:
        return 80, 24


async def attach(sbx, cmd=None, stdin=None, stdout=None):
    """
    Run ``cmd`` (default: bash) on a pty in ``sbx`` wired to this process's
    terminal; return its exit status.
    """
    loop = asyncio.get_running_loop()
    in_fd = (stdin or sys.stdin).fileno()
    out_fd = (stdout or sys.stdout).fileno()
    interactive = os.isatty(in_fd)
    size_fd = in_fd if interactive else out_fd
    cols, rows = terminal_size(size_fd)
    env = {"TERM": os.environ.get("TERM") or "xterm-256color"}
    term = await sbx.process.pty(cmd, cols=cols, rows=rows, env=env)
    keys = asyncio.Queue(maxsize=64)
    saved = termios.tcgetattr(in_fd) if interactive else None
    reading = False

    def on_input():
        nonlocal reading
        try:
            data = os.read(in_fd, READ_SIZE)
        except OSError:
            data = b""
        keys.put_nowait(data)
        if not data or keys.full():
            loop.remove_reader(in_fd)
            reading = False

    async def forward_input():
        nonlocal reading
        while True:
            data = await keys.get()
            if not data:
                await term.close_stdin()
                return
            await term.write(data)
            if not reading and not keys.full():
                loop.add_reader(in_fd, on_input)
                reading = True

    def on_resize():
        columns, lines = terminal_size(size_fd)
        task = loop.create_task(term.resize(columns, lines))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def forward_file():
        # Not a terminal (a file or a pipe): blocking reads in a thread,
        # since epoll refuses regular files.
        while data := await asyncio.to_thread(os.read, in_fd, READ_SIZE):
            await term.write(data)
        await term.close_stdin()

    writer = None
    try:
        if interactive:
            tty.setraw(in_fd, termios.TCSANOW)
            loop.add_signal_handler(signal.SIGWINCH, on_resize)
            loop.add_reader(in_fd, on_input)
            reading = True
            writer = loop.create_task(forward_input())
        else:
            writer = loop.create_task(forward_file())
        async for event in term:
            view = memoryview(event.raw)
            while view:
                try:
                    view = view[os.write(out_fd, view) :]
                except BlockingIOError:
                    await asyncio.sleep(0.01)
        return await term.exit_code()
    finally:
        if reading:
            loop.remove_reader(in_fd)
        if writer is not None:
            writer.cancel()
        if interactive:
            loop.remove_signal_handler(signal.SIGWINCH)
            termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)
        if not term.done:
            await term.cancel()
