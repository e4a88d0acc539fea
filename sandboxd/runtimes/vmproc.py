"""
The host processes of VMs: finding them by pid without mistaking a reused
pid for them, noticing their exit, sampling their CPU and memory.
"""

import os

from twisted.internet.abstract import FileDescriptor
from twisted.logger import Logger

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
