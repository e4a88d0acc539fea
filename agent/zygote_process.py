"""
The Python zygote: an interpreter started once, that forks a child for each
``python3 -c CODE ARGS...`` the agent runs, so that a snippet costs a fork
instead of an interpreter start-up.

This file is not imported: the agent starts ``python3 -c BOOTSTRAP FD`` (so
that the interpreter starts exactly as a user's ``python3 -c`` would), FD
one end of a SOCK_SEQPACKET socket pair, and sends this source as the first
packet, which BOOTSTRAP runs.  It needs the standard library only and holds
nothing secret.

One message per packet.  The agent sends a marshal-encoded
``("spawn", argv0, code, args, cwd, env)`` with the child's stdin, stdout
and stderr attached (SCM_RIGHTS); the zygote answers in ASCII, which the
agent parses without trusting it: ``pid PID`` or ``error TEXT``, and later
``exit PID WAIT_STATUS`` when the child ends.  The zygote exits when the
agent's end closes.

The child becomes what a fresh ``python3 -c`` would be: a session of its
own, those three descriptors and no other, the requested working directory
and environment, new standard streams, ``sys.argv == ["-c", *args]``, a new
``__main__``, the modules the zygote imported for itself forgotten, and an
uncaught exception printed and turned into exit status 1 as the interpreter
does.  What differs is said in docs/agent.md.
"""

# What a fresh -c interpreter has: read before anything else is defined.
_PRISTINE_MAIN = {k: v for k, v in globals().items() if k.startswith("__")}

import sys  # noqa: E402

_PRISTINE_MODULES = set(sys.modules)

import _imp  # noqa: E402
import atexit  # noqa: E402
import gc  # noqa: E402
import marshal  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402

#: The largest request (code, arguments and environment).
MAX_REQUEST = 4 << 20

#: Where the standard library's extension modules are, and their suffixes.
_STDLIB_EXTENSIONS = os.path.join(os.path.dirname(os.__file__), "lib-dynload", "")
_EXTENSION_SUFFIXES = tuple(_imp.extension_suffixes())

#: Compiled once before the first fork (see _serve).
_WARM_UP = "import sys\nprint(f'{sys.argv!r}', [x * 2 for x in range(3)])\n"


def _serve(fd):
    """
    Answer the agent until it hangs up; in a forked child, return its
    request and descriptors instead.
    """
    channel = socket.socket(fileno=fd)
    # The first compile() of a process sets the parser up (milliseconds,
    # and pages every child would copy): done once, here.
    compile(_WARM_UP, "<string>", "exec", dont_inherit=True)
    # Objects made so far are shared with every child: kept out of the
    # collector's reach, its passes do not touch, and so copy, their pages.
    gc.freeze()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def send(*fields):
        channel.send(" ".join(map(str, fields)).encode("ascii", "replace"))

    while True:
        try:
            ready = select.select([channel, wake_r], [], [])[0]
        except InterruptedError:
            continue
        if wake_r in ready:
            while True:
                try:
                    if not os.read(wake_r, 512):
                        break
                except BlockingIOError:
                    break
            _reap(send)
        if channel not in ready:
            continue
        packet, fds, _, _ = socket.recv_fds(channel, MAX_REQUEST, 3)
        if not packet:
            os._exit(0)
        try:
            request = marshal.loads(packet)
            if request[0] != "spawn" or len(fds) != 3:
                raise ValueError("not a spawn request with three descriptors")
            pid = os.fork()
        except Exception as e:
            for descriptor in fds:
                os.close(descriptor)
            send("error", f"{type(e).__name__}: {e}")
            continue
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            channel.close()
            os.close(wake_r)
            os.close(wake_w)
            return request, fds
        for descriptor in fds:
            os.close(descriptor)
        send("pid", pid)


def _reap(send):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        send("exit", pid, status)


def _become(request, fds):
    """
    Turn this forked child into ``argv0 -c code args...``.
    """
    _, argv0, code, args, cwd, env = request
    os.setsid()
    for target, descriptor in enumerate(fds):
        os.dup2(descriptor, target)
    _close_others()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["-c", *args]
    sys.orig_argv = [argv0, "-c", code, *args]
    _new_stdio()
    for name in set(sys.modules) - _PRISTINE_MODULES:
        del sys.modules[name]
    _user_site()
    # Files written since the zygote started must be found by imports.
    for finder in sys.meta_path:
        if hasattr(finder, "invalidate_caches"):
            finder.invalidate_caches()
    main = type(sys)("__main__")
    main.__dict__.update(_PRISTINE_MAIN, __doc__=None, __annotations__={})
    sys.modules["__main__"] = main
    return code, main.__dict__


def _close_others():
    """
    Close every descriptor above 2 (listed, not a million close calls).
    """
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            try:
                os.close(int(name))
            except OSError:
                pass  # the directory's own descriptor, closed already


def _new_stdio():
    """
    sys.stdin, stdout and stderr over descriptors 0, 1 and 2, made as the
    interpreter makes them at start-up (CPython's create_stdio: buffered
    unless -u or PYTHONUNBUFFERED, line-buffered on a terminal and for
    stderr), with the encodings the zygote's environment gave.
    """
    import io

    # The zygote's own streams were made at its start-up, by these rules.
    buffered_stdio = not sys.__stdout__.write_through
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        old = getattr(sys, name)
        buffering = -1 if buffered_stdio or mode == "r" else 0
        binary = open(fd, mode + "b", buffering, closefd=False)
        raw = binary.raw if buffering else binary
        raw.name = f"<{name}>"
        stream = io.TextIOWrapper(
            binary,
            encoding=old.encoding,
            errors=old.errors,
            newline="\n",
            line_buffering=buffered_stdio and (raw.isatty() or fd == 2),
            write_through=not buffered_stdio,
        )
        stream.mode = mode
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _user_site():
    """
    The user's site-packages (``pip install --user``) made after the zygote
    started is on a fresh interpreter's path: put it on ours too.
    """
    import site

    if not site.ENABLE_USER_SITE:
        return
    path = site.getusersitepackages()
    if path not in sys.path and os.path.isdir(path):
        site.addsitedir(path)


def _run(code, namespace):
    """
    Run the snippet as the interpreter runs ``-c``: its exit status.  An
    uncaught exception is printed (without this file's frames) and gives 1;
    SystemExit gives its code as the interpreter reads it.  KeyboardInterrupt
    gives None: the process is to end killed by SIGINT.
    """
    try:
        exec(compile(code, "<string>", "exec", dont_inherit=True), namespace)
    except SystemExit as e:
        return _exit_status(e.code)
    except BaseException as e:
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_globals is not namespace:
            tb = tb.tb_next
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        return None if isinstance(e, KeyboardInterrupt) else 1
    return 0


def _exit_status(code):
    """
    The exit status ``SystemExit(code)`` gives (CPython's handle_system_exit:
    an int as the C exit() takes it, anything else printed to stderr and 1).
    """
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if -(1 << 63) <= code < 1 << 63 else 255
    try:
        sys.stderr.write(str(code))
        sys.stderr.write("\n")
    except Exception:
        pass  # no stderr to tell: the status still says it
    return 1


def _finish(status):
    """
    End as the interpreter ends after ``-c`` (the parts of Py_FinalizeEx a
    program can see), without tearing down what the zygote made at start-up,
    which every child shares and would copy page by page only to free it:
    wait for threads, run the atexit callbacks, flush the standard streams,
    finalize what the snippet left in ``__main__`` and in the modules it
    imported (unclosed files are flushed, ``__del__`` runs), exit.

    The interpreter's own finalization (SystemExit) ends the child instead
    when the snippet loaded native code of its own, whose C-level exit work
    (stdio buffers, library destructors) only the C exit() does, and when a
    standard stream cannot be flushed (reported as a fresh interpreter
    does, status 120).  (After KeyboardInterrupt the child ends killed by
    SIGINT, which no SystemExit can say, so always the short way.)
    """
    if status is not None and _native_code_loaded():
        raise SystemExit(status)
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None and not getattr(stream, "closed", False):
                stream.flush()
    except BaseException:
        raise SystemExit(130 if status is None else status)
    for name in list(sys.modules):
        if name not in _PRISTINE_MODULES or name == "__main__":
            del sys.modules[name]
    gc.collect()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except BaseException:
            pass  # the interpreter ignores these as well
    if status is None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        status = 130
    os._exit(status)


def _native_code_loaded():
    """
    Whether an extension module from outside the standard library, or
    ctypes, is loaded.
    """
    if "_ctypes" in sys.modules:
        return True
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if (isinstance(path, str) and path.endswith(_EXTENSION_SUFFIXES)
                and not path.startswith(_STDLIB_EXTENSIONS)):
            return True
    return False


if __name__ == "__main__":
    _finish(_run(*_become(*_serve(int(sys.argv[1])))))
