"""
Tests for L{sandboxd.runtimes.qmp} and the QEMU runtime's pause and resume
through it, against a stand-in QMP monitor on a real Unix socket (the real
QEMU is exercised by tests/test_qemu.py's VMs).
"""

import json
import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from twisted.trial.unittest import TestCase

from sandboxd.config import QemuConfig
from sandboxd.runtimes import qmp
from sandboxd.runtimes.interface import PauseNotSupported
from sandboxd.runtimes.qemu import MONITOR_SOCKET, QemuRuntime, qemu_argv
from sandboxd.runtimes.interface import SandboxSpec


class StandInMonitor(LineOnlyReceiver):
    """
    Greets, then answers each command: ``return`` (an event line first),
    or ``error`` for the names in ``factory.refuse``.
    """

    delimiter = b"\n"

    def connectionMade(self):
        self.sendLine(json.dumps({"QMP": {"version": {}, "capabilities": []}}).encode())

    def lineReceived(self, line):
        name = json.loads(line)["execute"]
        self.factory.commands.append(name)
        self.sendLine(b'{"event": "STOP", "timestamp": {}}')
        if name in self.factory.refuse:
            self.sendLine(json.dumps({"error": {"class": "GenericError",
                                                "desc": f"no {name}"}}).encode())
        else:
            self.sendLine(b'{"return": {}}')


class QMPTests(TestCase):
    def setUp(self):
        self.state_dir = tempfile.mkdtemp(prefix="qmp-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.state_dir, True)
        os.mkdir(os.path.join(self.state_dir, "sbx-1"))
        self.factory = Factory.forProtocol(StandInMonitor)
        self.factory.commands = []
        self.factory.refuse = set()
        self.path = os.path.join(self.state_dir, "sbx-1", MONITOR_SOCKET)

    async def listen(self):
        port = await UNIXServerEndpoint(reactor, self.path).listen(self.factory)
        self.addCleanup(port.stopListening)

    async def test_pause_and_resume(self):
        """
        The runtime's pause is QMP ``stop`` and its resume ``cont``, each
        after ``qmp_capabilities``; events between replies are skipped.
        """
        await self.listen()
        runtime = QemuRuntime(reactor, QemuConfig(), self.state_dir)
        await runtime.pause("qemu-sbx-1")
        await runtime.resume("qemu-sbx-1")
        self.assertEqual(self.factory.commands,
                         ["qmp_capabilities", "stop", "qmp_capabilities", "cont"])

    async def test_refused(self):
        """
        A command the monitor refuses is a QMPError naming it.
        """
        await self.listen()
        self.factory.refuse.add("stop")
        with self.assertRaises(qmp.QMPError) as caught:
            await qmp.execute(reactor, self.path, "stop")
        self.assertIn("no stop", str(caught.exception))

    async def test_no_monitor(self):
        """
        A VM without a monitor socket (started before there were) cannot be
        paused: PauseNotSupported; a monitor that is not there is a QMPError.
        """
        runtime = QemuRuntime(reactor, QemuConfig(), self.state_dir)
        with self.assertRaises(PauseNotSupported):
            await runtime.pause("qemu-sbx-1")
        with self.assertRaises(qmp.QMPError):
            await qmp.execute(reactor, self.path, "stop", timeout=1)

    def test_argv_has_monitor(self):
        """
        A VM is started with its QMP monitor in its directory.
        """
        spec = SandboxSpec("sbx-1", "img", "qemu", 256 << 20, 1.0, 1 << 20, "s")
        argv = qemu_argv("qemu", "tcg", "/vm/sbx-1", "k", "i", "d", spec)
        self.assertEqual(argv[argv.index("-qmp") + 1],
                         f"unix:/vm/sbx-1/{MONITOR_SOCKET},server=on,wait=off")
