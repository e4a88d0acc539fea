"""
The Firecracker runtime against a fake Firecracker (tests/fakefirecracker.py)
that serves the API over its Unix socket as Firecracker's swagger says and
a hybrid-vsock socket in front of a real agent: the API driver, CID
allocation and reuse, and a sandbox started, reached through hybrid vsock,
adopted by a new runtime and destroyed.  (No Firecracker binary exists for
this machine and its KVM cannot run one: docs/runtimes.md.)
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import attr
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from agent import wire
from sandboxd.config import FirecrackerConfig
from sandboxd.protocols.connect import connect_agent
from sandboxd.runtimes.firecracker import (
    CIDAllocator,
    FirecrackerAPI,
    FirecrackerAPIError,
    FirecrackerRuntime,
)
from sandboxd.runtimes.interface import IRuntime, SandboxSpec
from sandboxd.runtimes import vmproc
from sandboxd.runtimes._cpio import append, secret_archive

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakefirecracker.py")


class CIDTests(SynchronousTestCase):
    def test_lowestFreeAndReuse(self):
        """
        CIDs are handed out from the base up; a released CID is the next
        one given; CIDs of adopted VMs are never handed out twice.
        """
        cids = CIDAllocator(base=3)
        self.assertEqual([3, 4, 5], [cids.take() for _ in range(3)])
        cids.release(4)
        self.assertEqual(4, cids.take())
        cids.take(7)
        self.assertEqual([6, 8], [cids.take(), cids.take()])


class AcceptingTests(SynchronousTestCase):
    def test_boundIsNotListening(self):
        """
        A socket path is C{accepting} once its socket listens: not while it
        is missing, nor between its bind and its listen.
        """
        directory = tempfile.mkdtemp(prefix="fc-")
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        path = os.path.join(directory, "api.sock")
        self.assertFalse(vmproc.accepting(path))
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(server.close)
        server.bind(path)
        self.assertFalse(vmproc.accepting(path))
        server.listen(1)
        self.assertTrue(vmproc.accepting(path))


class _FakeDir(TestCase):
    def setUp(self):
        # Short: the VMs' Unix sockets live below it.
        self.dir = tempfile.mkdtemp(prefix="fc-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.binary = os.path.join(self.dir, "firecracker")
        with open(self.binary, "w") as f:
            f.write(f"#!{sys.executable}\nimport runpy, sys\nsys.argv[0] = {FAKE!r}\n"
                    f"runpy.run_path({FAKE!r}, run_name='__main__')\n")
        os.chmod(self.binary, 0o755)
        self.kernel = self.file("vmlinux", b"kernel")
        self.disk = self.file("root.ext4", b"disk")
        self.initrd = self.file("initrd.img", b"base initramfs")

    def file(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path


class APITests(_FakeDir):
    def startFake(self):
        sock = os.path.join(self.dir, "api.sock")
        process = subprocess.Popen([self.binary, "--api-sock", sock], cwd=self.dir)
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        while not vmproc.accepting(sock):
            time.sleep(0.01)
        return FirecrackerAPI(reactor, sock)

    def calls(self):
        with open(os.path.join(self.dir, "api.log")) as f:
            return [json.loads(line) for line in f]

    async def test_bootSequence(self):
        """
        boot() makes the five calls in order with the bodies the swagger
        names, every one answered 204.
        """
        api = self.startFake()
        initrd = self.file("vm-initrd", append(b"base", secret_archive("ab" * 32)))
        await api.boot(2, 256, self.kernel, "console=ttyS0", initrd, self.disk, 5,
                       os.path.join(self.dir, "v.sock"))
        calls = self.calls()
        self.assertEqual(
            ["/machine-config", "/boot-source", "/drives/root", "/vsock", "/actions"],
            [c["path"] for c in calls])
        self.assertEqual([None] * 5, [c["fault"] for c in calls])
        self.assertEqual({"vcpu_count": 2, "mem_size_mib": 256}, calls[0]["body"])
        self.assertEqual({"guest_cid": 5, "uds_path": os.path.join(self.dir, "v.sock")},
                         calls[3]["body"])
        self.assertEqual({"action_type": "InstanceStart"}, calls[4]["body"])

    async def test_fault(self):
        """
        A refused call is FirecrackerAPIError with Firecracker's status and
        fault_message: a start without a kernel, a bad machine config.
        """
        api = self.startFake()
        with self.assertRaises(FirecrackerAPIError) as caught:
            await api.put("/actions", {"action_type": "InstanceStart"})
        self.assertEqual(400, caught.exception.status)
        self.assertIn("without kernel configuration", caught.exception.fault)
        with self.assertRaises(FirecrackerAPIError) as caught:
            await api.put("/machine-config", {"vcpu_count": 0, "mem_size_mib": 128})
        self.assertIn("vcpu_count", caught.exception.fault)


class RuntimeTests(_FakeDir):
    def runtime(self):
        config = attr.evolve(FirecrackerConfig(), binary_path=self.binary,
                             kernel_path=self.kernel, vsock_cid_base=3)

        async def disk_for(image):
            return self.disk

        runtime = FirecrackerRuntime(reactor, config, os.path.join(self.dir, "vms"),
                                     self.initrd, disk_for)
        verifyObject(IRuntime, runtime)
        return runtime

    def spec(self, n):
        return SandboxSpec(sandbox_id=f"sbx-fc{n}", image="img", runtime="firecracker",
                           memory=256 << 20, cpu=1.0, storage=100 << 20,
                           secret=wire.new_secret(), owner="/test")

    async def test_startConnectAdoptDestroy(self):
        """
        A started VM's agent answers through the hybrid-vsock endpoint the
        runtime reports; a new runtime (a restarted daemon) lists it and
        keeps its CID; destroy kills the VM, removes its directory and frees
        the CID for the next VM.
        """
        runtime = self.runtime()
        await runtime.prepare({"firecracker"})
        deaths = []
        watch = runtime.watch(lambda cid, action: deaths.append((cid, action)))
        self.addCleanup(watch.stop)
        spec = self.spec(1)
        started = await runtime.start(spec)
        self.addCleanup(runtime.destroy, started.container_id)
        vm_dir = os.path.join(self.dir, "vms", spec.sandbox_id)
        self.assertEqual(f"fcvsock:{vm_dir}/v.sock:1024", started.endpoint)
        self.assertIsNone(started.address)
        connection = await connect_agent(reactor, started.endpoint, spec.secret, deadline=30)
        result = await connection.call("process.exec", {"cmd": ["echo", "via vsock"]})
        self.assertEqual(0, result["exit_code"])
        connection.disconnect()

        again = self.runtime()
        owned = await again.list_owned()
        self.assertEqual([(started.container_id, "sbx-fc1")],
                         [(c, labels["sandboxd.id"]) for c, labels in owned])
        self.assertEqual(4, again.cids.take())  # 3 is the adopted VM's

        pid = vmproc.read_state(vm_dir)["pid"]
        await runtime.destroy(started.container_id)
        self.assertFalse(os.path.exists(vm_dir))
        self.assertFalse(vmproc.is_ours(pid, vm_dir))
        second = await runtime.start(self.spec(2))
        self.addCleanup(runtime.destroy, second.container_id)
        state = vmproc.read_state(os.path.join(self.dir, "vms", "sbx-fc2"))
        self.assertEqual(3, state["cid"])

    async def test_vmDeathIsReported(self):
        """
        A VM whose process dies is reported to the watch as "die".
        """
        runtime = self.runtime()
        await runtime.prepare({"firecracker"})
        deaths = []
        watch = runtime.watch(lambda cid, action: deaths.append((cid, action)))
        self.addCleanup(watch.stop)
        started = await runtime.start(self.spec(3))
        self.addCleanup(runtime.destroy, started.container_id)
        pid = vmproc.read_state(os.path.join(self.dir, "vms", "sbx-fc3"))["pid"]
        os.kill(pid, 9)
        from twisted.internet.task import deferLater

        for _ in range(100):
            if deaths:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual([(started.container_id, "die")], deaths)
