"""
Sandboxes as Firecracker microVMs.

Each VM is a ``firecracker --api-sock DIR/api.sock`` process (started in a
session of its own, so it outlives the daemon), configured through its API
as Firecracker's swagger specifies: ``PUT /machine-config`` (vcpu_count,
mem_size_mib), ``PUT /boot-source`` (kernel_image_path, boot_args,
initrd_path), ``PUT /drives/root`` (the image's ext4 disk, read-only, as
for QEMU), ``PUT /vsock`` (guest_cid, uds_path) and ``PUT /actions``
(InstanceStart).  The agent listens on vsock port 1024 in the guest
(images/vm/init with ``sandboxd.listen=vsock:1024``); the daemon reaches
it through Firecracker's hybrid vsock: ``fcvsock:DIR/v.sock:1024``.

Firecracker needs KVM and a guest kernel with
VIRTIO_MMIO_CMDLINE_DEVICES and virtio vsock (``firecracker.kernel_path``;
Debian's cloud kernel has neither): it cannot run on this project's CI
machine, where it is tested against a fake Firecracker
(tests/fakefirecracker.py) that serves the same API.  docs/runtimes.md.
"""

import json
import math
import os
import shutil
import signal

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from zope.interface import implementer

from sandboxd.runtimes import _cpio, vmproc
from sandboxd.runtimes._engine import UNIXEndpointFactory
from sandboxd.runtimes.interface import (
    IRuntime, PauseNotSupported, RuntimeFailure, RuntimeUnavailable, Started,
)

PREFIX = "fc-"
AGENT_VSOCK_PORT = 1024
BOOT_DEADLINE = 60.0
#: Seconds Firecracker may take to create its API socket.
API_WAIT = 10.0


class FirecrackerAPIError(RuntimeFailure):
    """
    Firecracker refused an API call; ``fault`` is its fault_message.
    """

    def __init__(self, method, path, status, fault):
        super().__init__(f"firecracker {method} {path}: {status} {fault}")
        self.status = status
        self.fault = fault


class FirecrackerAPI:
    """
    The API of one Firecracker process, over its Unix socket.
    """

    def __init__(self, reactor, socket_path, timeout=10.0):
        self._reactor = reactor
        self._agent = Agent.usingEndpointFactory(
            reactor, UNIXEndpointFactory(reactor, socket_path, timeout)
        )
        self._timeout = timeout

    async def put(self, path, body):
        """
        PUT ``body`` as JSON; return on 204, else FirecrackerAPIError.
        """
        from twisted.web.client import FileBodyProducer
        from io import BytesIO

        data = json.dumps(body).encode()
        request = self._agent.request(
            b"PUT", b"http://localhost" + path.encode(),
            Headers({b"Content-Type": [b"application/json"], b"Accept": [b"application/json"]}),
            FileBodyProducer(BytesIO(data)),
        )
        response = await request.addTimeout(self._timeout, self._reactor)
        raw = await readBody(response)
        if response.code in (200, 204):
            return
        try:
            fault = json.loads(raw).get("fault_message", "")
        except (ValueError, AttributeError):
            fault = raw[:200].decode(errors="replace")
        raise FirecrackerAPIError("PUT", path, response.code, fault)

    async def boot(self, vcpus, memory_mib, kernel, boot_args, initrd, disk, cid, uds_path):
        """
        Configure the VM and start it, in the order the API requires.
        """
        await self.put("/machine-config", {"vcpu_count": vcpus, "mem_size_mib": memory_mib})
        await self.put("/boot-source", {"kernel_image_path": kernel, "boot_args": boot_args,
                                        "initrd_path": initrd})
        await self.put("/drives/root", {"drive_id": "root", "path_on_host": disk,
                                        "is_root_device": False, "is_read_only": True})
        await self.put("/vsock", {"guest_cid": cid, "uds_path": uds_path})
        await self.put("/actions", {"action_type": "InstanceStart"})


class CIDAllocator:
    """
    Guest CIDs from ``base`` up: the lowest free one, reused once released.
    """

    def __init__(self, base=3):
        self.base = base
        self._taken = set()

    def take(self, cid=None):
        """
        Mark ``cid`` taken (an adopted VM's), or take the lowest free one.
        """
        if cid is None:
            cid = self.base
            while cid in self._taken:
                cid += 1
        self._taken.add(cid)
        return cid

    def release(self, cid):
        self._taken.discard(cid)


@implementer(IRuntime)
class FirecrackerRuntime:
    """
    Runs each sandbox as a Firecracker microVM; its state lives in
    ``state_dir``.  ``config`` is the ``[firecracker]`` section, ``initrd``
    the initramfs (``make vm``'s), ``disk_for(image)`` a coroutine giving
    an image's root disk.
    """

    log = Logger()
    name = "firecracker"
    PREFIX = PREFIX

    def __init__(self, reactor, config, state_dir, initrd, disk_for):
        self._reactor = reactor
        self._config = config
        self.state_dir = state_dir
        self._initrd = initrd
        self._disk_for = disk_for
        self.cids = CIDAllocator(config.vsock_cid_base)
        self._callback = None
        self._watchers = {}

    def prepare(self, runtimes):
        return Deferred.fromCoroutine(self._prepare())

    async def _prepare(self):
        config = self._config
        if shutil.which(config.binary_path) is None:
            raise RuntimeUnavailable(
                f"firecracker.binary_path {config.binary_path!r} is not installed"
            )
        for what, path in (("firecracker.kernel_path", config.kernel_path),
                           ("the initramfs (make vm)", self._initrd)):
            if not os.path.isfile(path):
                raise RuntimeUnavailable(f"{what} {path} is missing")
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)

    def start(self, spec):
        if spec.runtime != "firecracker":
            return fail(RuntimeUnavailable(f"the firecracker runtime does not run {spec.runtime!r}"))
        return Deferred.fromCoroutine(self._start(spec))

    async def _start(self, spec):
        disk = await self._disk_for(spec.image)
        container_id = PREFIX + spec.sandbox_id
        vm_dir = os.path.join(self.state_dir, spec.sandbox_id)
        vmproc.check_socket_path(os.path.join(vm_dir, "api.sock"))
        os.makedirs(vm_dir, mode=0o700)
        cid = self.cids.take()
        try:
            with open(self._initrd, "rb") as f:
                base = f.read()
            initrd = os.path.join(vm_dir, "initrd.img")
            vmproc.private_write(initrd, _cpio.append(base, _cpio.secret_archive(spec.secret)))
            api_sock = os.path.join(vm_dir, "api.sock")
            pid = self._spawn(vm_dir, api_sock)
            labels = {
                "sandboxd.managed": "1", "sandboxd.id": spec.sandbox_id,
                "sandboxd.profile": spec.profile, "sandboxd.owner": spec.owner,
            }
            vmproc.private_write(os.path.join(vm_dir, "vm.json"), json.dumps({
                "container_id": container_id, "pid": pid, "labels": labels, "cid": cid,
                "memory": spec.memory,
            }).encode())
            await self._waitForSocket(api_sock, pid, vm_dir)
            boot_args = " ".join([
                "console=ttyS0", "quiet", "panic=-1", "reboot=k",
                f"sandboxd.storage={spec.storage}", f"sandboxd.hostname={spec.sandbox_id}",
                f"sandboxd.listen=vsock:{AGENT_VSOCK_PORT}",
            ])
            await FirecrackerAPI(self._reactor, api_sock).boot(
                max(1, math.ceil(spec.cpu)), max(64, spec.memory >> 20),
                self._config.kernel_path, boot_args, initrd, disk, cid,
                os.path.join(vm_dir, "v.sock"),
            )
        except BaseException:
            await self._remove(vm_dir)
            self.cids.release(cid)
            raise
        self._watch(container_id, pid)
        return Started(
            spec.sandbox_id, container_id,
            f"fcvsock:{os.path.join(vm_dir, 'v.sock')}:{AGENT_VSOCK_PORT}",
            address=None, connect_deadline=BOOT_DEADLINE,
        )

    def _spawn(self, vm_dir, api_sock):
        """
        Start firecracker in a session of its own (it outlives us), its
        output to a log in the VM's directory; return its pid.
        """
        log = os.open(os.path.join(vm_dir, "firecracker.log"),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            process = self._reactor.spawnProcess(
                _Ignore(), "/usr/bin/setsid",
                ["setsid", self._config.binary_path, "--api-sock", api_sock],
                env={}, path=vm_dir, childFDs={0: devnull, 1: log, 2: log},
            )
        finally:
            os.close(log)
            os.close(devnull)
        return process.pid

    async def _waitForSocket(self, api_sock, pid, vm_dir):
        give_up = self._reactor.seconds() + API_WAIT
        # The socket exists from its bind on, but refuses until listen.
        while not vmproc.accepting(api_sock):
            if not vmproc.is_alive(pid) or self._reactor.seconds() > give_up:
                raise RuntimeFailure(f"firecracker in {vm_dir} did not open its API socket")
            await deferLater(self._reactor, 0.01, lambda: None)

    def destroy(self, container_id):
        return Deferred.fromCoroutine(self._destroy(container_id))

    async def _destroy(self, container_id):
        vm_dir = self._vmDir(container_id)
        watcher = self._watchers.pop(container_id, None)
        if watcher is not None:
            watcher.stop()
        cid = vmproc.read_state(vm_dir).get("cid")
        await self._remove(vm_dir)
        if cid is not None:
            self.cids.release(cid)

    async def _remove(self, vm_dir):
        pid = vmproc.read_state(vm_dir).get("pid")
        if pid is not None and vmproc.is_ours(pid, vm_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for _ in range(100):
                if not vmproc.is_ours(pid, vm_dir):
                    break
                await deferLater(self._reactor, 0.05, lambda: None)
        shutil.rmtree(vm_dir, ignore_errors=True)

    def watch(self, callback):
        self._callback = callback
        return vmproc.Watches(self)

    def _watch(self, container_id, pid):
        def died():
            self._watchers.pop(container_id, None)
            if self._callback is not None:
                self._callback(container_id, "die")

        try:
            self._watchers[container_id] = vmproc.ExitWatcher(self._reactor, pid, died)
        except OSError:
            self._reactor.callLater(0, died)

    def pause(self, container_id):
        return fail(PauseNotSupported("the firecracker runtime cannot pause sandboxes"))

    def resume(self, container_id):
        return succeed(None)

    def stats(self, container_id):
        try:
            directory = self._vmDir(container_id)
        except RuntimeFailure as e:
            return fail(e)
        return Deferred.fromCoroutine(vmproc.stats(self._reactor, directory, container_id))

    def list_owned(self):
        owned = vmproc.list_vms(self.state_dir, PREFIX)
        for container_id, labels, state in owned:
            pid, vm_dir = state.get("pid"), os.path.join(self.state_dir, container_id[len(PREFIX):])
            if state.get("cid") is not None:
                self.cids.take(state["cid"])
            if pid is not None and vmproc.is_ours(pid, vm_dir) and container_id not in self._watchers:
                self._watch(container_id, pid)
        return Deferred.fromCoroutine(_value([(c, labels) for c, labels, _ in owned]))

    def _vmDir(self, container_id):
        return vmproc.vm_dir(self.state_dir, PREFIX, container_id)


async def _value(value):
    return value


class _Ignore:
    """
    A ProcessProtocol that ignores everything (the output goes to a file).
    """

    def makeConnection(self, transport):
        pass

    def childDataReceived(self, fd, data):
        pass

    def childConnectionLost(self, fd):
        pass

    def processExited(self, reason):
        pass

    def processEnded(self, reason):
        pass
