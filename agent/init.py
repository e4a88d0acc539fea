"""
Start-up: take the configuration out of the environment, protect the
process, and when the agent is PID 1 run a tiny init beside it.
"""

import os
import signal
import sys

from . import listeners
from .reaper import exit_code

ENV_PREFIX = "SANDBOX_AGENT_"
DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 7070
_PR_SET_DUMPABLE = 4
_HEX = frozenset("0123456789abcdefABCDEF")
_FORWARDED = (signal.SIGTERM, signal.SIGINT)


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


_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522
_LAST_CAP = 63


def drop_privileges():
    """
    What Docker does to a sandbox's container, for an agent that starts
    as a VM's init with every capability: no new privileges, every
    capability out of the bounding, ambient, effective, permitted and
    inheritable sets, so that root in the sandbox has none (and no setuid
    binary gives any back).  Raises OSError if the kernel refuses.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def check(result, what):
        if result != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    for cap in range(_LAST_CAP + 1):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            check(-1, f"PR_CAPBSET_DROP {cap}")
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    check(libc.capset(header, data), "capset")


def run_as_init(child_main):
    """
    Fork: the child runs ``child_main()`` (its return value is the exit
    status); this process, PID 1, reaps every orphan, forwards SIGTERM and
    SIGINT to the child, and returns the child's status when it exits.
    """
    child = os.fork()
    if child == 0:
        status = 1
        try:
            status = child_main()
        except BaseException:
            import traceback  # PID 1 stays small: only when it is needed

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(status)
    return _supervise(child)


def _supervise(child):
    def forward(signum, frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in _FORWARDED:
        signal.signal(signum, forward)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        if pid == child:
            return exit_code(status)
