"""
Unit tests of the pieces that pick and drive runtimes: the RuntimeSet's
routing by runtime name and container id, the QEMU command line, the
accelerator choice, and the initramfs archives.
"""

import gzip
import os
import stat

from twisted.internet.defer import succeed
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from sandboxd.config import QemuConfig
from sandboxd.runtimes import _cpio
from sandboxd.runtimes.dispatch import RuntimeSet
from sandboxd.runtimes.interface import IRuntime, RuntimeUnavailable, SandboxSpec
from sandboxd.runtimes.qemu import QemuRuntime, qemu_argv, resolve_accel
from tests.fakeruntime import FakeRuntime


class _VMFake(FakeRuntime):
    PREFIX = "qemu-"
    name = "qemu"

    def __init__(self):
        super().__init__(owned=[("qemu-sbx-1", {"sandboxd.owner": "/d"})])
        self.prepared = None

    def prepare(self, runtimes):
        self.prepared = set(runtimes)
        return succeed(None)


class RuntimeSetTests(SynchronousTestCase):
    def setUp(self):
        self.docker = FakeRuntime(owned=[("c" * 64, {"sandboxd.owner": "/d"})])
        self.qemu = _VMFake()
        self.set = RuntimeSet({"docker": self.docker, "docker+gvisor": self.docker,
                               "qemu": self.qemu})
        verifyObject(IRuntime, self.set)

    def spec(self, runtime):
        return SandboxSpec(sandbox_id="sbx-1", image="i", runtime=runtime, memory=1, cpu=1.0,
                           storage=1, secret="s")

    def test_startByName(self):
        """
        A start goes to the runtime its spec names; an unknown runtime is
        RuntimeUnavailable naming the ones served.
        """
        self.successResultOf(self.set.start(self.spec("qemu")))
        self.successResultOf(self.set.start(self.spec("docker+gvisor")))
        self.assertEqual(["c-sbx-1"], self.qemu.started)
        self.assertEqual(["c-sbx-1"], self.docker.started)
        failure = self.failureResultOf(self.set.start(self.spec("firecracker")), RuntimeUnavailable)
        self.assertIn("docker, docker+gvisor, qemu", str(failure.value))

    def test_destroyByContainerId(self):
        """
        A container id with a VM runtime's prefix goes to it, any other to
        Docker.
        """
        self.set.destroy("qemu-sbx-1")
        self.set.destroy("c" * 64)
        self.assertEqual((["qemu-sbx-1"], ["c" * 64]), (self.qemu.destroyed, self.docker.destroyed))

    def test_prepareAndListOnlyWhatProfilesUse(self):
        """
        Only the runtimes the profiles use are prepared, watched and listed;
        one runtime serving two names is prepared once with both; a runtime
        a later prepare (a reload) brings in is watched too.
        """
        self.successResultOf(self.set.prepare({"qemu"}))
        self.assertEqual({"qemu"}, self.qemu.prepared)
        self.assertEqual([("qemu-sbx-1", {"sandboxd.owner": "/d"})],
                         self.successResultOf(self.set.list_owned()))
        self.set.watch(lambda *a: None)
        self.assertIsNone(self.docker.watcher)
        self.assertIsNotNone(self.qemu.watcher)
        # A reload bringing Docker in: prepared, listed and watched from then on.
        self.successResultOf(self.set.prepare({"qemu", "docker", "docker+gvisor"}))
        self.assertEqual(2, len(self.successResultOf(self.set.list_owned())))
        self.assertIsNotNone(self.docker.watcher)

    def test_prepareUnknown(self):
        """
        A profile's runtime nobody serves fails prepare by name.
        """
        self.failureResultOf(self.set.prepare({"firecracker"}), RuntimeUnavailable)


class QemuArgvTests(SynchronousTestCase):
    def test_argv(self):
        """
        The command line carries the profile's memory and (rounded up) CPUs,
        the read-only root disk, the agent's port as a Unix socket in the
        VM's directory, no network device, no secret, and runs detached.
        """
        spec = SandboxSpec(sandbox_id="sbx-ab", image="i", runtime="qemu", memory=512 << 20,
                           cpu=1.5, storage=100 << 20, secret="f" * 64)
        argv = qemu_argv("qemu-system-x86_64", "tcg", "/d/sbx-ab", "/k", "/i", "/disk.ext4", spec)
        text = " ".join(argv)
        self.assertEqual(["-m", "512"], argv[argv.index("-m"):argv.index("-m") + 2])
        self.assertEqual(["-smp", "2"], argv[argv.index("-smp"):argv.index("-smp") + 2])
        self.assertIn("file=/disk.ext4,format=raw,if=none,readonly=on", text)
        self.assertIn("socket,id=agent,path=/d/sbx-ab/agent.sock,server=on,wait=off", text)
        self.assertIn("-daemonize", argv)
        self.assertIn("-nodefaults", argv)
        self.assertNotIn("-netdev", argv)
        self.assertNotIn("f" * 64, text)
        self.assertIn("sandboxd.storage=104857600", text)


class AccelTests(SynchronousTestCase):
    def test_choice(self):
        """
        auto is TCG on a PVM guest or without a usable /dev/kvm, KVM
        otherwise; kvm and tcg are taken as given.
        """
        base = self.mktemp()
        os.makedirs(base)
        kvm = os.path.join(base, "kvm")
        open(kvm, "w").close()
        pvm = os.path.join(base, "kvm_pvm")
        self.assertEqual("kvm", resolve_accel("auto", dev_kvm=kvm, pvm=pvm))
        os.makedirs(pvm)
        self.assertEqual("tcg", resolve_accel("auto", dev_kvm=kvm, pvm=pvm))
        self.assertEqual("tcg", resolve_accel("auto", dev_kvm=kvm + "-none", pvm=pvm + "x"))
        self.assertEqual("kvm", resolve_accel("kvm", dev_kvm=kvm + "-none"))
        self.assertEqual("tcg", resolve_accel("tcg", dev_kvm=kvm, pvm=pvm + "x"))


class PrepareTests(SynchronousTestCase):
    def test_missingKernel(self):
        """
        Without the kernel make vm fetches, prepare fails by name.
        """
        config = QemuConfig(binary="sh", kernel="/nonexistent/vmlinuz")
        runtime = QemuRuntime(None, config, self.mktemp())
        failure = self.failureResultOf(runtime.prepare({"qemu"}), RuntimeUnavailable)
        self.assertIn("qemu.kernel /nonexistent/vmlinuz is missing: run make vm", str(failure.value))

    def test_missingBinary(self):
        """
        Without QEMU, prepare fails naming the package.
        """
        runtime = QemuRuntime(None, QemuConfig(binary="no-such-qemu"), self.mktemp())
        failure = self.failureResultOf(runtime.prepare({"qemu"}), RuntimeUnavailable)
        self.assertIn("qemu-system-x86", str(failure.value))


class CpioTests(SynchronousTestCase):
    def test_newcLayout(self):
        """
        Entries are newc records (magic 070701, 4-byte aligned name and
        data) ending in the TRAILER!!! record; the secret archive holds the
        secret, mode 0600.
        """
        data = _cpio.secret_archive("ab" * 32)
        self.assertTrue(data.startswith(b"070701"))
        mode = int(data[14:22], 16)
        self.assertEqual(stat.S_IFREG | 0o600, mode)
        self.assertEqual(64, int(data[54:62], 16))
        name_end = 110 + len(b"sandboxd-secret\0")
        start = name_end + (-name_end % 4)
        self.assertEqual(b"ab" * 32, data[start:start + 64])
        self.assertIn(b"TRAILER!!!\0", data)
        self.assertEqual(0, len(data) % 4)

    def test_appendAligns(self):
        """
        An archive appended to a compressed initramfs starts on a 4-byte
        boundary, NUL-padded (the kernel looks for the next magic only
        there).
        """
        base = gzip.compress(b"x" * 7)
        joined = _cpio.append(base, b"070701rest")
        offset = joined.index(b"070701")
        self.assertEqual(0, offset % 4)
        self.assertEqual(b"\0" * (offset - len(base)), joined[len(base):offset])
