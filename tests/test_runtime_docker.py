"""
Tests for L{sandboxd.runtimes.docker}: the hardening and isolation of
sandboxes run by a real Docker engine, and the runtime's error handling.
"""

import os
import secrets
import socket

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from treq.testing import StubTreq
from twisted.trial.unittest import TestCase
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from sandboxd.runtimes._firewall import bridge_interface
from sandboxd.runtimes.docker import DockerRuntime
from sandboxd.runtimes.interface import (
    IRuntime,
    RuntimeFailure,
    RuntimeUnavailable,
    SandboxSpec,
    Started,
)
from tests.dockerutil import build_image, require_docker, require_image
from tests.test_engine import NETWORK, docker_engine

BASE_IMAGE = "sandbox-base:latest"
ROOTFS_IMAGE = "sandbox-rootfs:bookworm"
SLEEPER_IMAGE = "sandboxd-test-sleeper:latest"
BROKEN_IMAGE = "sandboxd-test-broken:latest"
MEMORY = 256 * 1024 * 1024
STORAGE = 64 * 1024 * 1024
LISTEN_PORT = 8000

_images = {}


def sandbox_image():
    """
    The image sandboxes run in these tests: the real image's filesystem
    (or the bare root filesystem before it is built) with an entrypoint
    that just sleeps, so these tests pin the runtime's container, not the
    agent's behaviour.
    """
    if "sandbox" not in _images:
        base = require_image(BASE_IMAGE, ROOTFS_IMAGE)
        _images["sandbox"] = build_image(
            SLEEPER_IMAGE, f'FROM {base}\nENTRYPOINT ["sleep", "infinity"]\n'
        )
    return _images["sandbox"]


def broken_image():
    """
    An image whose entrypoint does not exist, so starting it fails after
    the container was created.
    """
    if "broken" not in _images:
        _images["broken"] = build_image(
            BROKEN_IMAGE, f'FROM {sandbox_image()}\nENTRYPOINT ["/no/such/entrypoint"]\n'
        )
    return _images["broken"]


def new_id():
    return f"sbx-{secrets.token_hex(4)}"


class UnitTests(TestCase):
    """
    Behaviour that needs no Docker engine: a fake one answers.
    """

    def test_provides_interface(self):
        """
        L{DockerRuntime} provides L{IRuntime}.
        """
        self.assertTrue(verifyObject(IRuntime, DockerRuntime(reactor)))

    async def test_unknown_runtime(self):
        """
        prepare() refuses a runtime name it does not serve, naming it.
        """
        engine = docker_engine()
        runtime = DockerRuntime(reactor, bridge_name=NETWORK, http=StubTreq(engine))
        self.addCleanup(runtime.stop)
        with self.assertRaises(RuntimeUnavailable) as caught:
            await runtime.prepare(["docker", "firecracker"])
        self.assertIn("'firecracker'", str(caught.exception))
        self.assertEqual([], engine.requests)

    async def test_unreachable_engine(self):
        """
        prepare() fails with RuntimeUnavailable when nothing listens on the
        engine's socket, naming the socket.
        """
        path = os.path.join(self.mktemp(), "docker.sock")
        runtime = DockerRuntime(reactor, socket_path=path)
        self.addCleanup(runtime.stop)
        with self.assertRaises(RuntimeUnavailable) as caught:
            await runtime.prepare(["docker"])
        message = str(caught.exception)
        self.assertTrue(message.startswith("cannot reach the Docker engine: "), message)
        self.assertIn(f"unix://{path}", message)

    async def test_gvisor_needs_runsc(self):
        """
        prepare() for docker+gvisor fails naming runsc when the engine does
        not list it, and succeeds for plain docker.
        """
        runtime = DockerRuntime(reactor, bridge_name=NETWORK, http=StubTreq(docker_engine()))
        self.addCleanup(runtime.stop)
        await runtime.prepare(["docker"])
        with self.assertRaises(RuntimeUnavailable) as caught:
            await runtime.prepare(["docker", "docker+gvisor"])
        self.assertIn("'runsc'", str(caught.exception))

    async def test_stop_closes_and_restarts(self):
        """
        stop() closes the engine connection; a later call connects (and
        asks the version) afresh, and stopping twice is harmless.
        """
        engine = docker_engine()
        connections, closed = [], []
        site = Site(engine)
        build = site.buildProtocol

        def buildProtocol(addr):
            protocol = build(addr)
            connections.append(protocol)
            lost = protocol.connectionLost

            def connectionLost(reason):
                closed.append(protocol)
                return lost(reason)

            protocol.connectionLost = connectionLost
            return protocol

        site.buildProtocol = buildProtocol
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "docker.sock")
        port = reactor.listenUNIX(path, site)
        self.addCleanup(port.stopListening)
        runtime = DockerRuntime(
            reactor, bridge_name=NETWORK, socket_path=path, firewall=RecordingFirewall()
        )
        await runtime.prepare(["docker"])
        self.assertEqual(1, len(connections))
        await runtime.stop()
        await runtime.prepare(["docker"])
        self.assertEqual(2, len(connections))
        await runtime.stop()
        await runtime.stop()
        self.assertEqual(2, engine.paths().count("/version"))
        for _ in range(200):
            if len(closed) == 2:
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(connections, closed)


class RecordingFirewall:
    """
    A HostFirewall that records the interfaces it was asked to isolate.
    """

    def __init__(self):
        self.isolated = []

    async def isolate(self, interface):
        self.isolated.append(interface)


class DockerTestCase(TestCase):
    """
    Tests against the real engine, on a bridge network of their own.
    """

    timeout = 180

    def setUp(self):
        self.docker = require_docker()
        self.image = sandbox_image()
        self.network = f"sandboxd-test-{secrets.token_hex(4)}"
        self.runtime = DockerRuntime(reactor, bridge_name=self.network)
        self.addCleanup(self._remove_network)
        self.addCleanup(self.runtime.stop)

    async def _remove_network(self):
        import docker.errors

        try:
            network = self.docker.api.inspect_network(self.network)
        except docker.errors.NotFound:
            return
        await self.runtime.firewall.release(bridge_interface(network))
        try:
            self.docker.networks.get(self.network).remove()
        except docker.errors.NotFound:
            pass

    def _remove_container(self, container_id):
        import docker.errors

        try:
            self.docker.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass

    def spec(self, **kwargs):
        values = dict(
            sandbox_id=new_id(),
            image=self.image,
            runtime="docker",
            memory=MEMORY,
            cpu=0.5,
            storage=STORAGE,
            secret=secrets.token_hex(16),
        )
        values.update(kwargs)
        return SandboxSpec(**values)

    async def start(self, spec=None):
        """
        Prepare the network, start a sandbox and remove it after the test.
        """
        await self.runtime.prepare(["docker"])
        started = await self.runtime.start(spec or self.spec())
        self.addCleanup(self._remove_container, started.container_id)
        return started

    def exec_in(self, container_id, argv, detach=False):
        """
        Fire with (exit code, output) of argv run in the container.
        """
        container = self.docker.containers.get(container_id)
        return deferToThread(container.exec_run, argv, detach=detach)

    def containers_named(self, sandbox_id):
        return self.docker.containers.list(all=True, filters={"name": f"^/sandboxd-{sandbox_id}$"})


class NetworkTests(DockerTestCase):
    """
    The bridge network sandboxes share.
    """

    async def test_prepare_creates_network_without_icc(self):
        """
        prepare() creates a labelled bridge network with inter-container
        communication disabled, and leaves it alone the second time.
        """
        await self.runtime.prepare(["docker"])
        network = self.docker.api.inspect_network(self.network)
        self.assertEqual("bridge", network["Driver"])
        self.assertEqual("false", network["Options"]["com.docker.network.bridge.enable_icc"])
        self.assertEqual("1", network["Labels"]["sandboxd.managed"])
        await self.runtime.prepare(["docker"])
        self.assertEqual(network["Id"], self.docker.api.inspect_network(self.network)["Id"])

    async def test_prepare_refuses_network_with_icc(self):
        """
        An existing network of that name that lets containers talk to each
        other is refused, not used.
        """
        self.docker.networks.create(self.network, driver="bridge")
        with self.assertRaises(RuntimeUnavailable) as caught:
            await self.runtime.prepare(["docker"])
        self.assertIn("enable_icc=false", str(caught.exception))

    async def test_gvisor_matches_engine(self):
        """
        prepare() for docker+gvisor succeeds exactly when the engine lists
        a runsc runtime, and otherwise names it.
        """
        has_runsc = "runsc" in (self.docker.info().get("Runtimes") or {})
        d = self.runtime.prepare(["docker+gvisor"])
        if has_runsc:
            await d
        else:
            with self.assertRaises(RuntimeUnavailable) as caught:
                await d
            self.assertIn("runsc", str(caught.exception))

    async def test_neighbours_cannot_connect(self):
        """
        A sandbox cannot open a connection to another sandbox's listener,
        while the host can.
        """
        a = await self.start()
        b = await self.start()
        await self.exec_in(
            b.container_id,
            ["python3", "-m", "http.server", str(LISTEN_PORT), "--bind", "0.0.0.0"],
            detach=True,
        )
        reply = await self.host_get(b.address, LISTEN_PORT)
        self.assertTrue(reply.startswith(b"HTTP/1.0 200"), reply[:100])
        code, output = await self.exec_in(
            a.container_id,
            [
                "python3",
                "-c",
                "import socket, sys\n"
                f"socket.create_connection(({b.address!r}, {LISTEN_PORT}), timeout=3)\n"
                "print('CONNECTED')\n",
            ],
        )
        self.assertNotEqual(0, code)
        self.assertNotIn(b"CONNECTED", output)
        self.assertRegex(output.decode(), "timed out|refused|unreachable")

    async def test_host_is_unreachable(self):
        """
        A sandbox cannot open a connection to a host service listening on
        every address (through the bridge's gateway), while the host still
        reaches a listener in the sandbox: prepare() installed the host firewall
        for the bridge.
        """
        sandbox = await self.start()
        network = self.docker.api.inspect_network(self.network)
        gateway = network["IPAM"]["Config"][0]["Gateway"]
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("0.0.0.0", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        code, output = await self.exec_in(
            sandbox.container_id,
            [
                "python3",
                "-c",
                f"import socket\nsocket.create_connection(({gateway!r}, {port}), timeout=3)\n"
                "print('CONNECTED')\n",
            ],
        )
        self.assertNotIn(b"CONNECTED", output)
        self.assertNotEqual(0, code)
        await self.exec_in(
            sandbox.container_id,
            ["python3", "-m", "http.server", str(LISTEN_PORT), "--bind", "0.0.0.0"],
            detach=True,
        )
        reply = await self.host_get(sandbox.address, LISTEN_PORT)
        self.assertTrue(reply.startswith(b"HTTP/1.0 200"), reply[:100])

    async def host_get(self, host, port, attempts=100):
        """
        GET / from the host, retrying while the listener starts.
        """

        def get():
            with socket.create_connection((host, port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                return s.recv(4096)

        for attempt in range(attempts):
            try:
                return await deferToThread(get)
            except OSError:
                if attempt == attempts - 1:
                    raise
                await deferLater(reactor, 0.1, lambda: None)


class StartTests(DockerTestCase):
    """
    start(): the container it makes and how it fails.
    """

    async def test_started(self):
        """
        start() fires with the container's address on the bridge and the
        agent port; the container is named, labelled and configured for the
        agent, with no published ports.
        """
        spec = self.spec(profile="small", labels={"team": "qa", "job": "7"}, owner="/var/lib/x")
        started = await self.start(spec)
        info = self.docker.api.inspect_container(started.container_id)
        self.assertIsInstance(started, Started)
        ip = info["NetworkSettings"]["Networks"][self.network]["IPAddress"]
        self.assertEqual(Started(spec.sandbox_id, info["Id"], f"tcp:{ip}:7070", ip), started)
        self.assertEqual([self.network], list(info["NetworkSettings"]["Networks"]))
        self.assertEqual(f"/sandboxd-{spec.sandbox_id}", info["Name"])
        self.assertEqual(spec.sandbox_id, info["Config"]["Hostname"])
        self.assertEqual(self.image, info["Config"]["Image"])
        self.assertIn(f"SANDBOX_AGENT_SECRET={spec.secret}", info["Config"]["Env"])
        self.assertIn("SANDBOX_AGENT_PORT=7070", info["Config"]["Env"])
        labels = info["Config"]["Labels"]
        self.assertEqual("1", labels["sandboxd.managed"])
        self.assertEqual(spec.sandbox_id, labels["sandboxd.id"])
        self.assertEqual("small", labels["sandboxd.profile"])
        self.assertEqual("/var/lib/x", labels["sandboxd.owner"])
        self.assertEqual("qa", labels["sandboxd.label.team"])
        self.assertEqual("7", labels["sandboxd.label.job"])
        self.assertFalse(info["HostConfig"]["PortBindings"])
        self.assertFalse(info["HostConfig"]["PublishAllPorts"])
        self.assertFalse(info["NetworkSettings"]["Ports"])
        self.assertTrue(info["State"]["Running"])

    async def test_host_config(self):
        """
        The engine records every hardening setting: read-only root, the two
        tmpfs mounts, no capabilities, no new privileges, 256 pids, memory
        without swap, CPU, no init, no auto-removal.
        """
        started = await self.start()
        host = self.docker.api.inspect_container(started.container_id)["HostConfig"]
        self.assertTrue(host["ReadonlyRootfs"])
        self.assertEqual(
            {
                "/tmp": "rw,noexec,nosuid,nodev,size=100m",
                "/root": f"rw,exec,nosuid,nodev,size={STORAGE},mode=0700",
            },
            host["Tmpfs"],
        )
        self.assertEqual(["ALL"], host["CapDrop"])
        self.assertFalse(host["CapAdd"])
        self.assertEqual(["no-new-privileges"], host["SecurityOpt"])
        self.assertFalse(host["Privileged"])
        self.assertEqual(256, host["PidsLimit"])
        self.assertEqual(MEMORY, host["Memory"])
        self.assertEqual(MEMORY, host["MemorySwap"])
        self.assertEqual(500_000_000, host["NanoCpus"])
        self.assertEqual(self.network, host["NetworkMode"])
        self.assertFalse(host["Init"])
        self.assertFalse(host["AutoRemove"])
        self.assertEqual("runc", host["Runtime"])
        self.assertEqual(
            {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}},
            host["LogConfig"],
        )

    async def test_gvisor_host_config(self):
        """
        A docker+gvisor sandbox runs under runsc with the same hardening;
        its process cap is RLIMIT_NPROC inside the Sentry, and the host pids
        cgroup leaves room for the Sentry's own threads.
        """
        started = await self.start(self.spec(runtime="docker+gvisor"))
        host = self.docker.api.inspect_container(started.container_id)["HostConfig"]
        self.assertEqual("runsc", host["Runtime"])
        self.assertEqual(
            [{"Name": "nproc", "Soft": 256, "Hard": 256}], host["Ulimits"]
        )
        self.assertEqual(3072, host["PidsLimit"])
        self.assertTrue(host["ReadonlyRootfs"])
        self.assertEqual(["ALL"], host["CapDrop"])
        self.assertEqual(["KILL", "SETGID", "SETUID", "SETPCAP"], host["CapAdd"])
        self.assertEqual(["no-new-privileges"], host["SecurityOpt"])
        self.assertEqual(MEMORY, host["Memory"])

    async def test_inside(self):
        """
        Seen from inside: the root filesystem is read-only, /tmp and /root
        are writable, only /root executes programs, /root is private, no process has
        a capability or may gain privileges, and the cgroup limits hold.
        """
        started = await self.start()

        async def sh(script):
            code, output = await self.exec_in(started.container_id, ["sh", "-c", script])
            return code, output.decode()

        code, output = await sh("touch /etc/x")
        self.assertNotEqual(0, code)
        self.assertIn("Read-only file system", output)
        self.assertEqual((0, ""), await sh("touch /tmp/x /root/x"))
        code, output = await sh("cp /bin/true /tmp/t && /tmp/t")
        self.assertEqual(126, code, output)
        self.assertIn("Permission denied", output)
        self.assertEqual((0, ""), await sh("cp /bin/true /root/t && /root/t"))
        self.assertEqual((0, "700\n"), await sh("stat -c %a /root"))
        for pid in ("self", "1"):
            code, output = await sh(
                f"grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs):' /proc/{pid}/status"
            )
            fields = dict(line.split(":\t") for line in output.splitlines())
            self.assertEqual(
                {"CapEff": "0" * 16, "CapPrm": "0" * 16, "CapBnd": "0" * 16, "NoNewPrivs": "1"},
                fields,
                pid,
            )
        code, output = await sh(
            "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"
        )
        self.assertEqual("256", output.strip())
        code, output = await sh(
            "cat /sys/fs/cgroup/memory.max 2>/dev/null"
            " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
        )
        self.assertEqual(str(MEMORY), output.strip())
        code, output = await sh(
            "cat /sys/fs/cgroup/cpu.max 2>/dev/null"
            " || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us"
        )
        quota, period = output.split()
        self.assertEqual(0.5, int(quota) / int(period))

    async def test_missing_image(self):
        """
        A start with an image the engine lacks fails with a RuntimeFailure
        naming the image, and leaves no container behind.
        """
        spec = self.spec(image="sandboxd-test-missing:latest")
        await self.runtime.prepare(["docker"])
        with self.assertRaises(RuntimeFailure) as caught:
            await self.runtime.start(spec)
        self.assertEqual(
            "image sandboxd-test-missing:latest not found: build it with make images",
            str(caught.exception),
        )
        self.assertEqual([], self.containers_named(spec.sandbox_id))

    async def test_failed_start_removes_container(self):
        """
        When the engine creates the container but cannot start it, start()
        fails with the engine's message and removes the container.
        """
        spec = self.spec(image=broken_image())
        await self.runtime.prepare(["docker"])
        with self.assertRaises(RuntimeFailure) as caught:
            await self.runtime.start(spec)
        self.assertIn("/no/such/entrypoint", str(caught.exception))
        self.assertEqual([], self.containers_named(spec.sandbox_id))

    async def test_duplicate_id(self):
        """
        Starting a sandbox id that is already running fails and leaves the
        running sandbox alone.
        """
        first = await self.start()
        with self.assertRaises(RuntimeFailure) as caught:
            await self.runtime.start(self.spec(sandbox_id=first.sandbox_id))
        self.assertIn("Conflict", str(caught.exception))
        self.assertTrue(self.docker.api.inspect_container(first.container_id)["State"]["Running"])


class LifecycleTests(DockerTestCase):
    """
    destroy(), list_owned() and stats().
    """

    async def test_destroy(self):
        """
        destroy() removes the container; destroying it again, or an id the
        engine never knew, succeeds.
        """
        import docker.errors

        started = await self.start()
        await self.runtime.destroy(started.container_id)
        with self.assertRaises(docker.errors.NotFound):
            self.docker.api.inspect_container(started.container_id)
        await self.runtime.destroy(started.container_id)
        await self.runtime.destroy("0" * 64)

    async def test_list_owned(self):
        """
        list_owned() returns our sandboxes, stopped ones included, with
        their labels, and not containers without the managed label.
        """
        mine = await self.start(self.spec(labels={"k": "v"}))
        stopped = await self.start()
        self.docker.api.kill(stopped.container_id)
        other = self.docker.api.create_container(
            self.image, name=f"sandboxd-test-other-{secrets.token_hex(4)}"
        )
        self.addCleanup(self._remove_container, other["Id"])
        owned = dict(await self.runtime.list_owned())
        self.assertEqual(mine.sandbox_id, owned[mine.container_id]["sandboxd.id"])
        self.assertEqual("v", owned[mine.container_id]["sandboxd.label.k"])
        self.assertIn(stopped.container_id, owned)
        self.assertNotIn(other["Id"], owned)

    async def test_stats(self):
        """
        stats() fires with the engine's stats for the container, including
        its memory limit and pid count.
        """
        started = await self.start()
        stats = await self.runtime.stats(started.container_id, one_shot=True)
        self.assertEqual(MEMORY, stats["memory_stats"]["limit"])
        self.assertGreaterEqual(stats["pids_stats"]["current"], 1)

    async def test_stats_of_missing_container(self):
        """
        stats() of an unknown container fails with RuntimeFailure.
        """
        with self.assertRaises(RuntimeFailure) as caught:
            await self.runtime.stats("0" * 64)
        self.assertIn("No such container", str(caught.exception))
