"""
A real sandboxd, started as ``twistd -n sandboxd`` in a subprocess on a
temporary socket, for integration tests.
"""

import atexit
import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

from sandboxd.egress.firewall import CHAIN as EGRESS_CHAIN
from sandboxd.egress.firewall import owner_prefix
from sandboxd.runtimes._firewall import CHAIN as INPUT_CHAIN
from tests.dockerutil import require_docker

TWISTD = "from twisted.scripts.twistd import run; run()"


class UnixHTTPConnection(http.client.HTTPConnection):
    """
    http.client over a Unix socket.
    """

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


_shared = {}

#: The image of the test daemons' default profile: SANDBOXD_TEST_IMAGE, to
#: try an agent built under another tag, else the one `make images` builds.
TEST_IMAGE = os.environ.get("SANDBOXD_TEST_IMAGE") or "sandbox-base:latest"

#: The test daemons' [limits] unless a test gives its own.
NO_RATE_LIMIT = "create_rate_limit = 1000000"

#: The Docker runtimes every important integration suite runs on.
RUNTIMES = ("docker", "docker+gvisor")


def shared_daemon(name="default", **options):
    """
    One running Daemon per ``name`` for the whole test process (started on
    first use, stopped at exit): integration modules share it.
    """
    daemon = _shared.get(name)
    if daemon is None:
        daemon = Daemon(**options)
        daemon.start()
        atexit.register(daemon.stop)
        _shared[name] = daemon
    return daemon


def runtime_daemon(runtime, min_base=2):
    """
    The shared daemon whose default profile runs on ``runtime`` (one of
    L{RUNTIMES}); the runc one is the modules' usual shared daemon.
    """
    if runtime == "docker":
        return shared_daemon(min_base=min_base)
    if runtime == "qemu":
        # TCG costs a CPU per booting VM: a pool of one, and room to boot.
        # A cold create boots a VM: tens of seconds on a loaded machine.
        return shared_daemon(runtime, min_base=1, runtime=runtime, ready_timeout=300,
                             request_timeout=180, pool_config="total_warm = 1\n")
    return shared_daemon(runtime, min_base=min_base, runtime=runtime)


def on_gvisor(namespace, *classes):
    """
    Add to a test module's ``namespace`` (its ``globals()``) a subclass of
    each class in ``classes`` whose ``runtime`` is ``docker+gvisor``: the
    same tests against a daemon whose default profile runs under runsc.
    The classes pick their daemon with L{runtime_daemon}(self.runtime).
    """
    for cls in classes:
        name = f"GVisor{cls.__name__}"
        namespace[name] = type(
            name,
            (cls,),
            {
                "runtime": "docker+gvisor",
                "__module__": namespace["__name__"],
                "__doc__": f"{(cls.__doc__ or '').strip()}\n\n(On gVisor: runtime docker+gvisor.)",
            },
        )


def on_qemu(namespace, *classes):
    """
    As L{on_gvisor}, for the QEMU runtime: ``Qemu<Class>`` subclasses whose
    daemon's default profile boots a VM (software emulation here: its pool
    holds one VM, see L{runtime_daemon}).
    """
    for cls in classes:
        name = f"Qemu{cls.__name__}"
        namespace[name] = type(
            name,
            (cls,),
            {
                "runtime": "qemu",
                "__module__": namespace["__name__"],
                "__doc__": f"{(cls.__doc__ or '').strip()}\n\n(In a QEMU VM: runtime qemu.)",
            },
        )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drop_egress_rules(owner):
    """
    Delete the egress rules (sandboxd/egress/firewall.py) a daemon with
    data directory ``owner`` left for the sandboxes removed behind its back.
    """
    prefix = owner_prefix(os.path.abspath(owner))

    def iptables(*args):
        return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)

    for chain in (EGRESS_CHAIN, INPUT_CHAIN):
        for line in iptables("-S", chain).stdout.splitlines():
            if line.startswith("-A ") and prefix in line:
                iptables("-D", *shlex.split(line)[1:])
    for line in iptables("-S").stdout.splitlines():
        words = line.split()
        if words[:1] == ["-N"] and words[1].startswith(prefix):
            iptables("-F", words[1])
            iptables("-X", words[1])


class Daemon:
    """
    One daemon process with its own socket, data dir and TCP port.
    """

    def __init__(
        self, min_base=1, extra_config="", pool_config="", runtime="docker",
        limits_config=None, ready_timeout=90, request_timeout=30, options=(),
    ):
        #: More command line options of ``twistd sandboxd`` (e.g. --relay-tap).
        self.options = list(options)
        self.ready_timeout = ready_timeout
        #: Seconds a request may take (a cold create boots a sandbox).
        self.request_timeout = request_timeout
        self.dir = tempfile.mkdtemp(prefix="sandboxd-test-")
        self.socket = os.path.join(self.dir, "sandboxd.sock")
        self.port = free_port()
        self.config = os.path.join(self.dir, "sandboxd.toml")
        self.min_base = min_base
        with open(self.config, "w") as f:
            f.write(
                f'[server]\nsocket = "{self.socket}"\n'
                f'data_dir = "{self.data_dir}"\n'
                f'tcp = "127.0.0.1:{self.port}"\n'
                # Test suites create far more than the default 20 sandboxes
                # a minute over the one Unix socket caller.
                f"[limits]\n{NO_RATE_LIMIT if limits_config is None else limits_config}\n"
                f"[pool]\nmin_base = {min_base}\n{pool_config}"
                f'[pool.base.default]\nmemory = "256m"\nruntime = "{runtime}"\n'
                f'image = "{TEST_IMAGE}"\n' + extra_config
            )
        self.process = None
        self.log = os.path.join(self.dir, "sandboxd.log")

    @property
    def endpoint(self):
        return f"unix://{self.socket}"

    @property
    def env(self):
        env = dict(os.environ)
        env["SANDBOX_ENDPOINT"] = self.endpoint
        return env

    def start(self, timeout=None):
        """
        Start the daemon (unless running); return when its warm pool is full.
        """
        timeout = timeout or self.ready_timeout
        require_docker()
        if self.process is None:
            self.spawn()
        return self.waitReady(timeout)

    def spawn(self):
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "sandboxd",
                 "--config", self.config, *self.options],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
            )

    def waitReady(self, timeout):
        """
        Wait until every pool holds min_base ready sandboxes.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sandboxd exited early:\n{self.logTail()}")
            try:
                status, health = self.request("GET", "/health")
            except OSError:
                time.sleep(0.1)
                continue
            pools = health.get("pool", {})
            if all(p["ready"] >= self.min_base for p in pools.values()):
                return health
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"sandboxd not ready in {timeout}s:\n{self.logTail()}")

    def request(self, method, path, body=None, headers=None):
        """
        One HTTP request over the Unix socket: (status, parsed JSON or None).
        """
        connection = UnixHTTPConnection(self.socket, timeout=self.request_timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=data, headers=headers or {})
            response = connection.getresponse()
            raw = response.read()
            self.last_headers = dict(response.getheaders())
            return response.status, json.loads(raw) if raw else None
        finally:
            connection.close()

    def tcpRequest(self, method, path):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
        finally:
            connection.close()

    @property
    def data_dir(self):
        return os.path.join(self.dir, "data")

    def containers(self, sandbox_id=None):
        """
        The engine's containers (any state) this daemon made, or only the
        one of ``sandbox_id``: a list of the engine's summaries (``Id``,
        ``Labels``, ``State``...).
        """
        labels = [f"sandboxd.owner={self.data_dir}"]
        if sandbox_id is not None:
            labels.append(f"sandboxd.id={sandbox_id}")
        return require_docker().api.containers(all=True, filters={"label": labels})

    def kill(self):
        """
        SIGKILL the daemon (its sandboxes stay) and wait for it.
        """
        self.process.kill()
        self.process.wait()

    def stop(self, timeout=60, remove=True):
        """
        SIGTERM and wait; return the exit code.  A stopped daemon leaves
        the sandboxes it handed out running (a restart adopts them): unless
        ``remove`` is false, remove them too.
        """
        if self.process is None or self.process.poll() is not None:
            code = self.process and self.process.returncode
        else:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise RuntimeError(f"sandboxd ignored SIGTERM:\n{self.logTail()}")
        if remove and self.process is not None:
            import docker

            self.unmount_volumes()
            for pid in self.vm_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for container in self.containers():
                try:
                    if container.get("State") == "paused":
                        # The engine takes seconds to kill a paused gVisor sandbox.
                        require_docker().api.unpause(container["Id"])
                    require_docker().api.remove_container(container["Id"], force=True)
                except docker.errors.NotFound:
                    pass
            drop_egress_rules(self.data_dir)
        return code

    def unmount_volumes(self):
        """
        Unmount the volumes this daemon left mounted (sandboxd/volumes/).
        """
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f]
        for point in points:
            if point.startswith(self.dir + "/"):
                subprocess.run(["umount", "-l", point], check=False)

    def vm_pids(self):
        """
        The QEMU processes of this daemon's VMs that are still running.
        """
        from sandboxd.runtimes import vmproc

        pids = []
        root = os.path.join(self.data_dir, "vm")
        for name in os.listdir(root) if os.path.isdir(root) else ():
            try:
                with open(os.path.join(root, name, "vm.json")) as f:
                    pid = json.load(f)["pid"]
            except (OSError, ValueError, KeyError):
                continue
            if vmproc.is_ours(pid, os.path.join(root, name)):
                pids.append(pid)
        return pids

    def logTail(self, lines=60):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""
