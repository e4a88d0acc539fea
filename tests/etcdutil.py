"""
A real etcd for tests: Debian's ``etcd`` binary on free loopback ports (etcd
cannot listen on port 0, so ports are found by binding port 0 first) with a
temporary data directory, stopped by the test's cleanup.
"""

import os
import shutil
import socket
import subprocess
import tempfile

from twisted.internet import reactor
import treq
from twisted.internet.task import deferLater

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port():
    """A loopback TCP port nothing listens on now (the OS chose it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_etcd(testcase, deadline=30.0):
    """
    Start etcd for ``testcase`` and return its client URL once it answers
    /health (failing the test after ``deadline`` seconds).
    """
    if not os.path.exists(ETCD):
        if os.environ.get("CI"):
            testcase.fail("no etcd binary (scripts/setup.sh installs etcd-server)")
        testcase.skipTest("no etcd binary (apt-get install etcd-server)")
    data = tempfile.mkdtemp(prefix="sbx-etcd-")
    testcase.addCleanup(shutil.rmtree, data, True)
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    peer_url = f"http://127.0.0.1:{peer}"
    log = open(os.path.join(data, "etcd.log"), "wb")
    testcase.addCleanup(log.close)
    process = subprocess.Popen(
        [ETCD, "--name", "t", "--data-dir", os.path.join(data, "d"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", f"t={peer_url}"],
        stdout=log, stderr=subprocess.STDOUT)

    def stop():
        process.kill()
        process.wait()
    testcase.addCleanup(stop)
    until = reactor.seconds() + deadline
    while reactor.seconds() < until:
        if process.poll() is not None:
            with open(os.path.join(data, "etcd.log"), "rb") as f:
                testcase.fail(f"etcd exited: {f.read()[-2000:]!r}")
        try:
            response = await treq.get(url + "/health", timeout=1, persistent=False)
            if b'"true"' in await response.content():
                return url
        except Exception:
            pass
        await deferLater(reactor, 0.1, lambda: None)
    testcase.fail(f"etcd did not answer within {deadline} s")
