"""
Start-up: take the configuration out of the environment, protect the
process, and when the agent is PID 1 run a tiny init beside it that keeps
the server alive whatever the sandbox's own code does to it.
"""

import errno
import os
import signal
import sys
import time

from . import listeners

ENV_PREFIX = "SANDBOX_AGENT_"
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 7070
_PR_SET_DUMPABLE = 4
_HEX = frozenset("0123456789abcdefABCDEF")
#: Signals that end PID 1 when the engine sends them, and nothing else.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
#: The longest pause between restarts of a server that keeps dying.
_MAX_RESTART_DELAY = 2.0
#: A server that lived this long (seconds) was killed, not crashing at start.
_HEALTHY_LIFE = 0.25


class ConfigError(Exception):
    """
    The environment does not let the agent start.
    """


class Config:
    """
    The agent's settings, from SANDBOX_AGENT_* variables.
    """

    __slots__ = ("secret", "host", "port", "cwd", "use_pidfd", "zygote", "listen", "harden")

    def __init__(self, secret, host, port, cwd, use_pidfd, zygote=True, listen=None):
        self.secret = secret
        self.host = host
        self.port = port
        self.cwd = cwd
        self.use_pidfd = use_pidfd
        self.zygote = zygote
        #: Where to serve (listeners.Listen): TCP host:port unless LISTEN says.
        self.listen = listen
        #: Drop every capability at start (a VM's agent: Docker does it for
        #: a container's).
        self.harden = False


def take_config(environ=os.environ, listen=None):
    """
    Remove every SANDBOX_AGENT_* variable from ``environ``; the Config.

    SECRET (64 hex characters) is required; LISTEN (``tcp:[HOST:]PORT``,
    ``vsock:PORT``, ``vserial:PATH``; the ``--listen`` argument, given as
    ``listen``, wins), HOST, PORT, CWD (the default
    working directory of processes, else /root when it exists), PIDFD ("0"
    forces the SIGCHLD reaper) and ZYGOTE ("0": no Python zygote, every
    ``python3 -c`` starts an interpreter) and DROP_CAPABILITIES ("1": drop
    every capability at start, see drop_privileges) are optional.
    """
    values = {
        name[len(ENV_PREFIX) :]: environ.pop(name)
        for name in list(environ)
        if name.startswith(ENV_PREFIX)
    }
    secret = values.get("SECRET")
    if not secret:
        raise ConfigError(f"{ENV_PREFIX}SECRET is not set")
    if len(secret) != 64 or not _HEX.issuperset(secret):
        raise ConfigError(f"{ENV_PREFIX}SECRET must be 64 hex characters")
    try:
        port = int(values.get("PORT", DEFAULT_PORT))
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"{ENV_PREFIX}PORT must be a port number")
    cwd = values.get("CWD") or ("/root" if os.path.isdir("/root") else os.getcwd())
    host = values.get("HOST") or DEFAULT_HOST
    listen = listen or values.get("LISTEN") or f"tcp:{host}:{port}"
    try:
        where = listeners.parse_listen(listen, host)
    except listeners.ListenError as e:
        raise ConfigError(str(e)) from None
    config = Config(
        secret,
        values.get("HOST") or DEFAULT_HOST,
        port,
        cwd,
        values.get("PIDFD") != "0",
        values.get("ZYGOTE") != "0",
        where,
    )
    config.harden = values.get("DROP_CAPABILITIES") == "1"
    return config


def scrub_environ_block(prefix=ENV_PREFIX):
    """
    Overwrite, in this process's memory, the values of the C environment
    block's variables that start with ``prefix``, before ``take_config``
    unsets them (``os.environ`` keeps its own copy).

    The kernel serves ``/proc/<pid>/environ`` from that block.  Under runc
    the non-dumpable flag hides it from the sandbox's other processes;
    gVisor's Sentry shows it to any process of the sandbox regardless, so
    the secret must not be there at all.  A no-op off Linux or without
    ctypes.
    """
    try:
        import ctypes

        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(ctypes.CDLL(None), "environ")
    except (ImportError, OSError, AttributeError, ValueError):
        return
    wanted = prefix.encode()
    index = 0
    while environ[index]:
        address = environ[index]
        entry = ctypes.string_at(address)
        if entry.startswith(wanted) and b"=" in entry:
            start = entry.index(b"=") + 1
            ctypes.memset(address + start, ord("x"), len(entry) - start)
        index += 1


def set_non_dumpable():
    """
    prctl(PR_SET_DUMPABLE, 0): other processes of the sandbox can read
    neither our memory nor /proc/<pid>/environ.  A no-op off Linux.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (ImportError, OSError, AttributeError):
        pass


_PR_SET_KEEPCAPS = 8
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522
_LAST_CAP = 63
_CAP_KILL, _CAP_SETGID, _CAP_SETUID, _CAP_SETPCAP = 5, 6, 7, 8
#: What PID 1 needs to leave root, give its server root back and still
#: signal it (see leave_root): the runtime grants exactly these to gVisor's
#: sandboxes.
INIT_CAPABILITIES = sum(1 << cap for cap in (_CAP_KILL, _CAP_SETGID, _CAP_SETUID, _CAP_SETPCAP))
#: The uid and gid PID 1 moves to: not root's, nor nobody's.
INIT_UID = 65533


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(result, what, tolerated=()):
    """
    Raise OSError for a libc call that returned ``result`` other than 0,
    unless its errno is one of ``tolerated``.
    """
    if result != 0:
        import ctypes

        code = ctypes.get_errno()
        if code not in tolerated:
            raise OSError(code, f"{what}: {os.strerror(code)}")


def _capset(libc, capabilities):
    """
    Make ``capabilities`` (a mask of the first 32) this process's effective
    and permitted sets; the inheritable set empty.
    """
    import ctypes

    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(capabilities, capabilities, 0, 0, 0, 0)
    _check(libc.capset(header, data), "capset")


def drop_privileges():
    """
    What Docker does to a sandbox's container, for an agent that starts
    as a VM's init with every capability: no new privileges, every
    capability out of the bounding, ambient, effective, permitted and
    inheritable sets, so that root in the sandbox has none (and no setuid
    binary gives any back).  Raises OSError if the kernel refuses.
    """
    libc = _libc()
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    for cap in range(_LAST_CAP + 1):
        # EINVAL: a capability this kernel does not have.
        _check(libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"PR_CAPBSET_DROP {cap}",
               tolerated=(errno.EINVAL,))
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _capset(libc, 0)


def effective_capabilities(status="/proc/self/status"):
    """
    The effective capability mask in ``status`` (0 if it has none).
    """
    with open(status) as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def leave_root(uid=INIT_UID, status="/proc/self/status"):
    """
    In PID 1, when it holds CAP_KILL, CAP_SETGID, CAP_SETUID and
    CAP_SETPCAP (under gVisor, whose Sentry, unlike Linux, lets the
    sandbox's processes SIGKILL and SIGSTOP PID 1): move to ``uid`` (uid and
    gid), keeping those four capabilities only.  The sandbox's processes are
    root without CAP_KILL, so the kernel refuses them any signal to PID 1.

    Returns the function the server calls, in PID 1's child, to become root
    again with no capability at all; or None when PID 1 lacks any of them
    (runc, where Linux keeps SIGKILL and SIGSTOP from PID 1 itself; a VM's
    agent).  Raises OSError if the kernel refuses a step.
    """
    try:
        if effective_capabilities(status) & INIT_CAPABILITIES != INIT_CAPABILITIES:
            return None
    except OSError:
        return None
    libc = _libc()
    groups = os.getgroups()
    _check(libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0), "PR_SET_KEEPCAPS")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    # Leaving root emptied the effective set; the permitted one was kept.
    _capset(libc, INIT_CAPABILITIES)
    set_non_dumpable()

    def back_to_root():
        os.setresuid(0, 0, 0)
        os.setresgid(0, 0, 0)
        os.setgroups(groups)
        drop_privileges()
        set_non_dumpable()

    return back_to_root


def run_as_init(child_main, sleep=time.sleep, clock=time.monotonic):
    """
    PID 1 of the sandbox: run ``child_main()`` (the server) in a child and
    start it again whenever it dies, however it dies; reap every orphan;
    wake a child that was stopped.  A stop signal (SIGTERM, SIGINT, SIGHUP,
    SIGQUIT) sent from outside the sandbox (the engine: ``si_pid`` 0, the
    sender is in no pid namespace the sandbox sees) kills the server and
    ends PID 1 with status 0, and with it the sandbox; one sent from inside
    (user code: ``kill -TERM 1``) is ignored.  Linux keeps SIGKILL and
    SIGSTOP from inside away from PID 1; under gVisor, leave_root does.
    """
    watched = {signal.SIGCHLD, *_STOP_SIGNALS}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    restarts = _Restarts(sleep, clock)
    child = _start(child_main, watched)
    while True:
        info = signal.sigwaitinfo(watched)
        if info.si_signo != signal.SIGCHLD:
            if info.si_pid == 0:
                # Asked to stop: end the server, then PID 1 (exit 0).
                _signal(child, signal.SIGKILL)
                return 0
            continue
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG | os.WUNTRACED)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                break
            if pid != child:
                continue
            if os.WIFSTOPPED(status):
                _signal(child, signal.SIGCONT)
                continue
            restarts.wait()
            child = _start(child_main, watched)


class _Restarts:
    """
    Spaces out restarts of a server that dies soon after each start: none
    for one that lived a quarter of a second or more (it got to serve and
    was killed), then 0.1 s doubling to 2 s (it keeps failing to start).
    """

    def __init__(self, sleep, clock):
        self._sleep = sleep
        self._clock = clock
        self._started = clock()
        self._delay = 0.0

    def wait(self):
        if self._clock() - self._started >= _HEALTHY_LIFE:
            self._delay = 0.0
        else:
            self._delay = min(_MAX_RESTART_DELAY, max(0.1, self._delay * 2))
            self._sleep(self._delay)
        self._started = self._clock()


def _start(child_main, blocked):
    """
    Fork a child running ``child_main()`` with ``blocked`` unblocked; its
    pid.
    """
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
        status = 1
        try:
            status = child_main()
        except BaseException:
            import traceback  # PID 1 stays small: only when it is needed

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(status)
    return child


def shield_from_stop_signals():
    """
    In the server under our PID 1: stop signals from user code (``pkill``,
    ``kill -TERM``) do nothing; only SIGKILL ends it, and PID 1 starts it
    again.  Handlers, not SIG_IGN: processes the server starts get the
    default dispositions back at exec.
    """
    for signum in _STOP_SIGNALS + (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, _ignore)


def _ignore(signum, frame):
    pass


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
