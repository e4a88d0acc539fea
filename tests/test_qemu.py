"""
Sandboxes in real QEMU VMs (runtime ``qemu``; software emulation on CI):
hostile code kept inside the VM, the VM dying mid-call, and VMs surviving a
``kill -9`` of the daemon.  The agent suite itself runs in VMs too
(tests/test_e2e_agent.py, ``Qemu*`` classes).

TCG costs about a CPU per booting VM: these tests use the shared qemu
daemon (a pool of one) and one daemon of their own for the restart, with at
most four VMs at once.
"""

import asyncio
import json
import os
import signal
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from sandbox import NetworkError, SandboxUnavailableError, connect_sandbox
from sandboxd.runtimes import vmproc
from tests.daemon import NO_RATE_LIMIT, Daemon
from tests.hostile import HostileTestCase, run


def vm_pid(daemon, sandbox_id):
    """
    The host pid of the QEMU process of ``sandbox_id``.
    """
    vm_dir = os.path.join(daemon.data_dir, "vm", sandbox_id)
    with open(os.path.join(vm_dir, "vm.json")) as f:
        pid = json.load(f)["pid"]
    assert vmproc.is_ours(pid, vm_dir), (pid, vm_dir)
    return pid


class QemuHostileTests(HostileTestCase):
    """
    Attacks from inside a QEMU VM.
    """

    runtime = "qemu"

    def test_host_files_are_out_of_reach(self):
        """
        A file the test writes on the host is nowhere in the VM; its only
        disk is its own root, read-only (a write fails), and nothing in it
        reaches the host's.
        """
        target = self.create()
        with tempfile.NamedTemporaryFile(dir="/tmp", prefix="sandboxd-host-secret-") as f:
            f.write(b"host secret\n")
            f.flush()
            name = os.path.basename(f.name)
            result = self.sh(
                target,
                f"cat /tmp/{name}; find / -path /proc -prune -o -name {name} -print 2>/dev/null;"
                " grep -rl 'host secret' /tmp /root 2>/dev/null; true",
            )
            self.assertNotIn("host secret", result.stdout)
            self.assertNotIn(name, result.stdout)
        disks = self.sh(target, "ls /sys/block | grep -v '^loop'; cat /proc/mounts")
        self.assertEqual(["vda"], [d for d in disks.stdout.split("\n")[:1]], disks.stdout)
        self.assertIn("/dev/vda / ext4 ro,", disks.stdout)
        write = self.sh(target, "echo x > /usr/evil; dd if=/dev/zero of=/dev/vda count=1")
        self.assertNotEqual(0, write.exit_code)
        self.assertEqual("no\n", self.sh(target, "test -e /usr/evil && echo yes || echo no").stdout)

    def test_memory_bomb_stays_in_the_vm(self):
        """
        Allocating without end meets the VM's own RAM (256 MiB here): the
        guest kernel's OOM killer ends the bomb (137), the agent and the VM
        live on, and the QEMU process on the host stays within the VM's
        RAM plus QEMU's own overhead.
        """
        target = self.create()
        bomb = "b = []\nwhile True:\n    b.append(bytearray(16 << 20))\n"
        result = self.py(target, bomb)
        self.assertEqual(137, result.exit_code, result)
        self.assertEqual("survived\n", self.sh(target, "echo survived").stdout)
        status = vmproc.sample(vm_pid(self.daemon, target))
        self.assertLess(status["rss"], (256 + 256) << 20, status)
        self.assertUnharmed()

    def test_no_network(self):
        """
        A VM has no network device: only the loopback interface exists, and
        net.fetch to the host fails with a named network error.
        """
        target = self.create()
        links = self.sh(target, "ls /sys/class/net")
        self.assertEqual(["lo"], links.stdout.split())

        async def fetch():
            async with await connect_sandbox(target, endpoint=self.daemon.endpoint) as sbx:
                with self.assertRaises(NetworkError) as caught:
                    await sbx.net.fetch("http://10.0.2.2:80/", timeout=5)
                return caught.exception.code

        code = run(fetch())
        self.assertIsInstance(code, str)
        self.assertTrue(code.isupper(), code)


class QemuLossTests(HostileTestCase):
    """
    The VM itself dying mid-call.
    """

    runtime = "qemu"

    def test_vm_killed(self):
        """
        SIGKILL of the sandbox's QEMU process fails a pending exec and a
        pending wait of a spawned process with SandboxUnavailableError
        within a second or two; the sandbox is then failed.
        """
        target = self.create()

        async def body():
            async with await connect_sandbox(target, endpoint=self.daemon.endpoint) as sbx:
                loop = asyncio.get_running_loop()
                proc = await sbx.process.spawn("sleep 60")
                pending = [asyncio.ensure_future(sbx.process.exec_("sleep 60")),
                           asyncio.ensure_future(proc.wait())]
                await asyncio.sleep(0.3)
                start = loop.time()
                os.kill(vm_pid(self.daemon, target), signal.SIGKILL)
                for call in pending:
                    with self.assertRaises(SandboxUnavailableError):
                        await asyncio.wait_for(call, 10)
                return loop.time() - start

        self.assertLess(run(body()), 3.0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, body = self.daemon.request("GET", f"/sandboxes/{target}")
            if body.get("state") == "failed":
                break
            time.sleep(0.2)
        self.assertEqual("failed", body.get("state"), body)


class QemuRestartTests(SynchronousTestCase):
    """
    VMs outlive a kill -9 of the daemon and are adopted again.
    """

    def test_kill9_and_restart(self):
        """
        With 3 VMs handed out (a file written in each, a session open on
        one), SIGKILL the daemon and start it again on the same data dir:
        all 3 are listed, answer in new sessions with their files intact
        (the virtio-serial link resynchronised with a new daemon), and the
        old warm VM, an orphan, is gone: the QEMU processes left are the 3
        plus the new pool's.
        """
        daemon = Daemon(
            min_base=1, runtime="qemu", ready_timeout=300, request_timeout=180,
            # One warm VM, whatever the misses of the creates below: the pool
            # boosts a profile that misses, up to max_warm.
            pool_config="total_warm = 1\nmax_warm = 1\n",
            limits_config=f"{NO_RATE_LIMIT}\nmax_sandboxes = 10\n",
        )
        daemon.start()
        self.addCleanup(daemon.stop)
        ids = []
        for _ in range(3):
            status, body = daemon.request("POST", "/sandboxes", {"ttl": 600})
            self.assertEqual(201, status, body)
            ids.append(body["id"])
        daemon.waitReady(300)  # the pool has its warm VM again
        warm_before = set(daemon.vm_pids()) - {vm_pid(daemon, s) for s in ids}
        self.assertEqual(1, len(warm_before), daemon.vm_pids())

        async def write_and_kill():
            for sandbox_id in ids[1:]:
                async with await connect_sandbox(sandbox_id, endpoint=daemon.endpoint) as sbx:
                    await sbx.fs.write("/root/kept", sandbox_id)
            open_session = await connect_sandbox(ids[0], endpoint=daemon.endpoint)
            await open_session.fs.write("/root/kept", ids[0])
            daemon.kill()
            await open_session.close()

        run(write_and_kill())
        daemon.spawn()
        daemon.waitReady(300)
        status, listed = daemon.request("GET", "/sandboxes")
        self.assertEqual(sorted(ids), sorted(s["id"] for s in listed))

        async def use_all():
            for sandbox_id in ids:
                async with await connect_sandbox(sandbox_id, endpoint=daemon.endpoint) as sbx:
                    self.assertEqual(sandbox_id.encode(), await sbx.fs.read("/root/kept"))
                    self.assertEqual("alive\n", (await sbx.process.exec_("echo alive")).stdout)

        run(use_all())
        deadline = time.monotonic() + 30
        while warm_before & set(daemon.vm_pids()) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertFalse(warm_before & set(daemon.vm_pids()), "the old warm VM survived")
        _, pools = daemon.request("GET", "/pools")
        self.assertEqual(
            3 + pools["default"]["ready"] + pools["default"]["starting"], len(daemon.vm_pids())
        )
