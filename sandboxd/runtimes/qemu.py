"""
Sandboxes as QEMU virtual machines: a kernel of their own per sandbox.

Each VM boots Debian's cloud kernel with a busybox initramfs
(images/vm/init, built by ``make vm``) that loads the virtio modules,
mounts the sandbox's root disk read-only (the profile's image as ext4,
sandboxd/runtimes/vmdisk.py; tmpfs /root and /tmp as in a container) and
execs the agent on a virtio-serial port.  QEMU serves that port on a Unix
socket in the VM's directory: the agent endpoint ``vserial:PATH``.  The
agent's secret reaches the guest in a small per-VM initramfs archive
appended to the shared one (never on a command line a host ``ps`` shows).

The machine is ``-M pc,acpi=off`` with qboot: on this project's hosts
``-M microvm`` boots only with ACPI (Debian's cloud kernel finds no
virtio-mmio device without it: no VIRTIO_MMIO_CMDLINE_DEVICES), and with
ACPI its timer interrupt never arrives under TCG.  No network device (the
agent's net.fetch then fails by name), ``-m`` and ``-smp`` from the
profile, KVM when ``/dev/kvm`` works and the host is no PVM guest (whose
KVM hangs stock kernels), TCG otherwise.

QEMU runs detached (``-daemonize``, its own session): VMs outlive a
restart of the daemon, which finds them again in ``data_dir/vm/*/vm.json``
(pid, labels) and reconnects to their sockets.
"""

import json
import math
import os
import shutil
import signal

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from sandboxd.runtimes import _cpio, qmp, vmproc
from sandboxd.runtimes._disks import DiskCache, run
from sandboxd.runtimes.interface import (
    IRuntime, PauseNotSupported, RuntimeFailure, RuntimeUnavailable, Started,
)

#: Prefix of a QEMU sandbox's container id (what the manager keys it by).
PREFIX = "qemu-"
MACHINE = ["-M", "pc,acpi=off", "-bios", "qboot.rom"]
#: Seconds a VM may take from start to an answering agent (TCG is slow).
BOOT_DEADLINE = 120.0
#: How much longer than a container's an emulated (TCG) VM's agent may take
#: to answer the heartbeat (sandboxd/heartbeat.py): its guest runs tens of
#: times slower, and it was seen starved for over 17 s on a busy host.
TCG_LIVENESS_SCALE = 10.0
AGENT_SOCKET = "agent.sock"
#: The VM's QMP monitor (pause and resume: sandboxd/runtimes/qmp.py).
MONITOR_SOCKET = "qmp.sock"
MANAGED_LABEL = "sandboxd.managed"


def resolve_accel(accel, dev_kvm="/dev/kvm", pvm="/sys/module/kvm_pvm"):
    """
    ``kvm`` or ``tcg`` for the configured ``accel`` (``auto``: KVM when
    /dev/kvm opens read-write and the host is not a PVM guest).
    """
    if accel != "auto":
        return accel
    if os.path.exists(pvm):
        return "tcg"
    try:
        os.close(os.open(dev_kvm, os.O_RDWR | os.O_CLOEXEC))
    except OSError:
        return "tcg"
    return "kvm"


def qemu_argv(binary, accel, vm_dir, kernel, initrd, disk, spec):
    """
    The command line of the VM for SandboxSpec ``spec`` in ``vm_dir``.
    """
    memory_mib = max(64, spec.memory >> 20)
    cpus = max(1, math.ceil(spec.cpu))
    append = " ".join([
        # No console device (-serial none): a guest has nowhere to flood.
        # Its agent is PID 1: when it dies the kernel panics, and resets at
        # once by triple fault; -no-reboot makes that QEMU's exit.
        "quiet", "panic=-1", "reboot=t",
        f"sandboxd.storage={spec.storage}", f"sandboxd.hostname={spec.sandbox_id}",
    ])
    argv = [
        binary, *MACHINE, "-accel", accel, "-m", str(memory_mib), "-smp", str(cpus),
        "-name", f"sandboxd-{spec.sandbox_id}",
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-serial", "none",
        "-kernel", kernel, "-initrd", os.path.join(vm_dir, "initrd.img"),
        "-append", append,
        "-drive", f"id=root,file={disk},format=raw,if=none,readonly=on",
        "-device", "virtio-blk-pci,drive=root",
        "-device", "virtio-serial-pci",
        "-chardev", f"socket,id=agent,path={os.path.join(vm_dir, AGENT_SOCKET)},server=on,wait=off",
        "-device", "virtserialport,chardev=agent,name=sandbox.agent",
        "-qmp", f"unix:{os.path.join(vm_dir, MONITOR_SOCKET)},server=on,wait=off",
        # seccomp; spawn=deny and elevateprivileges=deny would stop -daemonize.
        "-sandbox", "on,obsolete=deny,resourcecontrol=deny",
        "-daemonize", "-pidfile", os.path.join(vm_dir, "qemu.pid"),
    ]
    if accel == "kvm":
        argv += ["-cpu", "host"]
    return argv


@implementer(IRuntime)
class QemuRuntime:
    """
    Runs each sandbox as a QEMU VM; its state lives in ``state_dir``.
    ``config`` is the ``[qemu]`` section; ``images`` the images to make
    root disks for at prepare (others are made at their first start).
    """

    log = Logger()
    name = "qemu"
    PREFIX = PREFIX

    def __init__(self, reactor, config, state_dir, images=()):
        self._reactor = reactor
        self._config = config
        self.state_dir = state_dir
        self._images = tuple(images)
        #: The root disks of images (shared with the Firecracker runtime's
        #: when both use the same directory).
        self.disks = DiskCache(reactor, config.disk_dir)
        self._accel = None
        self._callback = None
        self._watchers = {}

    # IRuntime

    def prepare(self, runtimes):
        return Deferred.fromCoroutine(self._prepare())

    async def _prepare(self):
        config = self._config
        if shutil.which(config.binary) is None:
            raise RuntimeUnavailable(
                f"qemu.binary {config.binary!r} is not installed (qemu-system-x86; make setup)"
            )
        for key in ("kernel", "initrd"):
            path = getattr(config, key)
            if not os.path.isfile(path):
                raise RuntimeUnavailable(f"qemu.{key} {path} is missing: run make vm")
        self._accel = resolve_accel(config.accel)
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        for image in self._images:
            await self.disks.path(image)
        self.log.info("qemu runtime ready ({accel})", accel=self._accel)

    def start(self, spec):
        if spec.runtime != "qemu":
            return fail(RuntimeUnavailable(f"the qemu runtime does not run {spec.runtime!r}"))
        return Deferred.fromCoroutine(self._start(spec))

    async def _start(self, spec):
        if self._accel is None:
            self._accel = resolve_accel(self._config.accel)
        disk = await self.disks.path(spec.image)
        container_id = PREFIX + spec.sandbox_id
        vm_dir = os.path.join(self.state_dir, spec.sandbox_id)
        vmproc.check_socket_path(os.path.join(vm_dir, AGENT_SOCKET))
        os.makedirs(vm_dir, mode=0o700)
        try:
            with open(self._config.initrd, "rb") as f:
                base = f.read()
            vmproc.private_write(os.path.join(vm_dir, "initrd.img"),
                           _cpio.append(base, _cpio.secret_archive(spec.secret)))
            labels = {
                MANAGED_LABEL: "1", "sandboxd.id": spec.sandbox_id,
                "sandboxd.profile": spec.profile, "sandboxd.owner": spec.owner,
            }
            labels.update({f"sandboxd.label.{k}": str(v) for k, v in spec.labels.items()})
            argv = qemu_argv(self._config.binary, self._accel, vm_dir, self._config.kernel,
                             self._config.initrd, disk, spec)
            out, err, code = await run(self._reactor, argv[0], argv[1:], {}, vm_dir)
            if code != 0:
                raise RuntimeFailure(
                    f"qemu did not start sandbox {spec.sandbox_id}:"
                    f" {err.decode(errors='replace').strip()}"
                )
            pid = vmproc.read_pidfile(os.path.join(vm_dir, "qemu.pid"))
            # The secret is in the guest's memory now; the file goes.
            os.unlink(os.path.join(vm_dir, "initrd.img"))
            vmproc.private_write(os.path.join(vm_dir, "vm.json"), json.dumps({
                "container_id": container_id, "pid": pid, "labels": labels,
                "memory": spec.memory, "argv0": argv[0],
            }).encode())
        except BaseException:
            await self._remove(vm_dir)
            raise
        self._watch(container_id, pid)
        return Started(
            spec.sandbox_id, container_id, f"vserial:{os.path.join(vm_dir, AGENT_SOCKET)}",
            address=None, connect_deadline=BOOT_DEADLINE,
            liveness_scale=TCG_LIVENESS_SCALE if self._accel == "tcg" else 1.0,
        )

    def destroy(self, container_id):
        return Deferred.fromCoroutine(self._destroy(container_id))

    async def _destroy(self, container_id):
        vm_dir = self._vmDir(container_id)
        watcher = self._watchers.pop(container_id, None)
        if watcher is not None:
            watcher.stop()
        await self._remove(vm_dir)

    async def _remove(self, vm_dir):
        pid = vmproc.read_state(vm_dir).get("pid")
        if pid is None:
            try:
                pid = vmproc.read_pidfile(os.path.join(vm_dir, "qemu.pid"))
            except (OSError, ValueError):
                pid = None
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
        """
        Stop the VM's CPUs (QMP ``stop``): its memory stays, it uses no CPU.
        """
        return self._monitor(container_id, "stop")

    def resume(self, container_id):
        """
        Let the VM's CPUs run again (QMP ``cont``; running already is fine).
        """
        return self._monitor(container_id, "cont")

    def _monitor(self, container_id, command):
        try:
            path = os.path.join(self._vmDir(container_id), MONITOR_SOCKET)
        except RuntimeFailure as e:
            return fail(e)
        if not os.path.exists(path):
            # A VM started before monitors were.
            return fail(PauseNotSupported(f"sandbox {container_id} has no QMP monitor"))
        return Deferred.fromCoroutine(qmp.execute(self._reactor, path, command))

    def stats(self, container_id):
        try:
            directory = self._vmDir(container_id)
        except RuntimeFailure as e:
            return fail(e)
        return Deferred.fromCoroutine(vmproc.stats(self._reactor, directory, container_id))

    def list_owned(self):
        owned = []
        for container_id, labels, state in vmproc.list_vms(self.state_dir, PREFIX):
            pid = state.get("pid")
            directory = self._vmDir(container_id)
            if pid is not None and vmproc.is_ours(pid, directory):
                if container_id not in self._watchers:
                    self._watch(container_id, pid)
            owned.append((container_id, labels))
        return succeed(owned)

    def _vmDir(self, container_id):
        return vmproc.vm_dir(self.state_dir, PREFIX, container_id)
