"""
The host processes of VMs: finding them by pid without mistaking a reused
pid for them, noticing their exit, sampling their CPU and memory.
"""

import json
import os
import socket

from twisted.internet.abstract import FileDescriptor
from twisted.internet.task import deferLater
from twisted.logger import Logger

from sandboxd.runtimes.interface import RuntimeFailure, RuntimeUnavailable

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_NS = 1_000_000_000


def read_pidfile(path):
    with open(path) as f:
        return int(f.read().strip())


def is_ours(pid, vm_dir):
    """
    Whether process ``pid`` lives and is the VM of ``vm_dir`` (its command
    line names that directory): a pid the kernel gave to another process
    since is not.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z" and os.fsencode(vm_dir) + b"/" in cmdline


class ExitWatcher(FileDescriptor):
    """
    Calls ``on_exit()`` once when process ``pid`` (not necessarily our
    child) exits: its pidfd becomes readable.
    """

    log = Logger()

    def __init__(self, reactor, pid, on_exit):
        super().__init__(reactor)
        self._fd = os.pidfd_open(pid)
        self._on_exit = on_exit
        self.startReading()

    def fileno(self):
        return self._fd

    def doRead(self):
        on_exit, self._on_exit = self._on_exit, None
        self.stop()
        if on_exit is not None:
            on_exit()

    def stop(self):
        if self._fd >= 0:
            self.stopReading()
            os.close(self._fd)
            self._fd = -1

    def connectionLost(self, reason):
        self.stop()


def sample(pid):
    """
    One reading of process ``pid``: CPU time (ns), the host's total CPU time
    (ns), resident memory (bytes), threads.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) * _NS // _CLOCK_TICKS
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    with open("/proc/stat") as f:
        total = sum(int(v) for v in f.readline().split()[1:8]) * _NS // _CLOCK_TICKS
    return {"cpu": cpu, "system": total, "rss": rss, "threads": threads}


def engine_shape(before, now, memory_limit):
    """
    Two samples in the shape of the Docker engine's stats object, which
    sandboxd/stats.py summarises: memory is the QEMU process's resident
    set (guest RAM it touched plus QEMU's own), its limit the guest's RAM;
    pids are QEMU's host threads (the guest's processes are not visible
    from the host).
    """
    cpus = os.cpu_count() or 1
    return {
        "cpu_stats": {"cpu_usage": {"total_usage": now["cpu"]},
                      "system_cpu_usage": now["system"], "online_cpus": cpus},
        "precpu_stats": {"cpu_usage": {"total_usage": before["cpu"]},
                         "system_cpu_usage": before["system"], "online_cpus": cpus},
        "memory_stats": {"usage": now["rss"], "limit": memory_limit, "stats": {}},
        "pids_stats": {"current": now["threads"]},
        "networks": {},
    }


def is_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def private_write(path, data):
    """
    Create ``path`` (it must not exist) with mode 0600 holding ``data``.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def read_state(vm_dir):
    """
    The VM's recorded state (``vm.json``), or {} when it has none.
    """
    try:
        with open(os.path.join(vm_dir, "vm.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def vm_dir(state_dir, prefix, container_id):
    """
    The directory of the VM ``container_id`` (``prefix`` + sandbox id).
    """
    name = container_id[len(prefix):] if container_id.startswith(prefix) else ""
    if not name or "/" in name or name in (".", ".."):
        raise RuntimeFailure(f"{container_id} is not one of this runtime's VMs")
    return os.path.join(state_dir, name)


def list_vms(state_dir, prefix):
    """
    ``(container_id, labels, state)`` of every VM directory in
    ``state_dir``, alive or not.
    """
    try:
        names = sorted(os.listdir(state_dir))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        state = read_state(os.path.join(state_dir, name))
        found.append((state.get("container_id") or prefix + name, state.get("labels") or {}, state))
    return found


async def stats(reactor, directory, container_id):
    """
    Two samples of the VM's process half a second apart, in the engine's
    stats shape.
    """
    state = read_state(directory)
    pid = state.get("pid")
    if pid is None or not is_ours(pid, directory):
        raise RuntimeFailure(f"VM {container_id} is not running")
    before = sample(pid)
    await deferLater(reactor, 0.5, lambda: None)
    now = sample(pid)
    return engine_shape(before, now, state.get("memory", 0))


class Watches:
    """
    What a VM runtime's ``watch`` returns: ``stop()`` ends every exit watch.
    """

    def __init__(self, runtime):
        self._runtime = runtime

    def stop(self):
        self._runtime._callback = None
        for watcher in self._runtime._watchers.values():
            watcher.stop()
        self._runtime._watchers.clear()


#: The longest path a Unix socket can have (sun_path, less its NUL).
MAX_SOCKET_PATH = 107


def check_socket_path(path):
    """
    RuntimeUnavailable unless ``path`` fits a Unix socket address.
    """
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise RuntimeUnavailable(
            f"{path} is too long for a Unix socket ({MAX_SOCKET_PATH} bytes at most):"
            " use a shorter server.data_dir"
        )


def accepting(path):
    """
    Whether the Unix socket at ``path`` takes connections: bound and
    listening (between the two a connect is refused).  A probe connection
    is opened and closed at once.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except BlockingIOError:
        return True  # listening, its backlog full for now
    except OSError:
        return False
    finally:
        probe.close()
    return True
