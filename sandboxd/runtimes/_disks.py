"""
Root disks of VM sandboxes, made on demand in the daemon: the VM runtimes'
side of sandboxd/runtimes/vmdisk.py, which runs in a process of its own.
"""

import os
import sys

from twisted.internet.defer import DeferredLock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger

from sandboxd.runtimes.interface import RuntimeUnavailable


class DiskCache:
    """
    The path of each image's root disk in ``disk_dir``: made (or found up
    to date) once per image per daemon; concurrent starts wait for the one
    build.
    """

    log = Logger()

    def __init__(self, reactor, disk_dir):
        self._reactor = reactor
        self.disk_dir = disk_dir
        self._paths = {}
        self._locks = {}

    async def path(self, image):
        lock = self._locks.setdefault(image, DeferredLock())
        async with lock:
            if image not in self._paths:
                self._paths[image] = await self._make(image)
        return self._paths[image]

    async def _make(self, image):
        self.log.info("root disk of {image} in {dir} (made once per image and agent)",
                      image=image, dir=self.disk_dir)
        out, err, code = await run(
            self._reactor, sys.executable,
            ["-m", "sandboxd.runtimes.vmdisk", self.disk_dir, image], dict(os.environ),
        )
        if code != 0:
            raise RuntimeUnavailable(
                f"cannot make the root disk of {image}: {err.decode(errors='replace').strip()}"
            )
        return out.decode().strip().splitlines()[-1]


def run(reactor, executable, args, env, path=None):
    """
    Fire with (stdout, stderr, exit code) of a command; a death by signal
    is code ``-signal``.
    """
    running = getProcessOutputAndValue(executable, args, env=env, path=path, reactor=reactor)

    def died(failure):
        # getProcessOutputAndValue errbacks with the tuple (out, err, signal).
        if isinstance(failure.value, tuple):
            out, err, signum = failure.value
            return out, err, -signum
        return failure

    return running.addErrback(died)
