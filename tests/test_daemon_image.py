"""
Integration test of the daemon image sandboxd:latest (make images): run
with ``docker run`` as deploy/docker-compose.yml runs it (the host's Docker
socket mounted, a host directory for its Unix socket, the host's network),
it serves ``sbx health`` through the mounted socket and hands out working
sandboxes.
"""

import os
import secrets
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import Daemon
from tests.dockerutil import require_docker, require_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSE = os.path.join(ROOT, "deploy", "docker-compose.yml")
IMAGE = "sandboxd:latest"


class ContainerDaemon(Daemon):
    """
    A L{Daemon} whose process is C{docker run} of the daemon image in the
    foreground: its temporary directory (config, socket, data dir) is
    mounted at the same path, so the owner label on its sandboxes names
    that directory, and SIGTERM reaches the daemon through the CLI.
    """

    def __init__(self, **options):
        super().__init__(**options)
        self.name = f"sandboxd-test-image-{secrets.token_hex(4)}"

    def spawn(self):
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["docker", "run", "--rm", "--name", self.name,
                 "--network", "host", "--cap-add", "NET_ADMIN",
                 "-v", "/var/run/docker.sock:/var/run/docker.sock",
                 "-v", f"{self.dir}:{self.dir}",
                 "-e", f"SANDBOX_ENDPOINT={self.endpoint}",
                 IMAGE, "--config", self.config],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def owned(self):
        """
        Ids of the containers, in any state, labelled as this daemon's.
        """
        done = subprocess.run(
            ["docker", "ps", "-aq", "--filter",
             f"label=sandboxd.owner={os.path.join(self.dir, 'data')}"],
            capture_output=True, text=True, check=True)
        return done.stdout.split()

    def ownedAfterRemovals(self, patience=30):
        """
        L{owned}, once no container of ours is still being removed by the
        engine (or after C{patience} seconds).
        """
        deadline = time.monotonic() + patience
        while True:
            done = subprocess.run(
                ["docker", "ps", "-a", "--format", "{{.ID}} {{.Status}}", "--filter",
                 f"label=sandboxd.owner={os.path.join(self.dir, 'data')}"],
                capture_output=True, text=True, check=True)
            rows = [line.split(" ", 1) for line in done.stdout.splitlines()]
            if not any("Removal" in status for _, status in rows) or time.monotonic() > deadline:
                return [container for container, _ in rows]
            time.sleep(0.5)

    def cleanUp(self):
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True)
        for container in self.owned():
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)


class DaemonImageTests(SynchronousTestCase):
    """
    sandboxd:latest in a container.
    """

    def sbx(self, daemon, *args):
        done = subprocess.run(
            [sys.executable, "-m", "sbx.main", *args],
            capture_output=True, text=True, env=daemon.env, timeout=60)
        return done.returncode, done.stdout, done.stderr

    def test_serves_through_mounted_socket(self):
        """
        The image starts under docker run with the Docker socket mounted;
        sbx on the host gets its health through the Unix socket in the
        mounted directory; a sandbox it creates runs a command (the daemon
        reaches the agent on the bridge); docker stop ends it cleanly,
        removing its warm pool and keeping the sandbox it handed out (for
        the next start to adopt).
        """
        require_docker()
        require_image(IMAGE)
        require_image("sandbox-base:latest")
        daemon = ContainerDaemon(min_base=1)
        self.addCleanup(daemon.cleanUp)
        daemon.start(timeout=120)

        code, out, err = self.sbx(daemon, "health")
        self.assertEqual(code, 0, err + daemon.logTail())
        self.assertIn("default", out)
        status, health = daemon.request("GET", "/health")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(health["pool"]["default"]["ready"], 1)

        code, out, err = self.sbx(daemon, "create")
        self.assertEqual(code, 0, err)
        sandbox_id = out.strip()
        code, out, err = self.sbx(daemon, "exec", sandbox_id, "echo from $(hostname)")
        self.assertEqual((code, out), (0, f"from {sandbox_id}\n"), err)
        self.assertGreaterEqual(len(daemon.owned()), 2)

        # The sbx in the image reaches the daemon too.
        done = subprocess.run(["docker", "exec", daemon.name, "sbx", "ls"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn(sandbox_id, done.stdout)

        subprocess.run(["docker", "stop", "-t", "60", daemon.name],
                       capture_output=True, check=True, timeout=90)
        self.assertEqual(daemon.process.wait(30), 0, daemon.logTail())
        (kept,) = daemon.ownedAfterRemovals()
        labels = subprocess.run(
            ["docker", "inspect", "-f", '{{index .Config.Labels "sandboxd.id"}}', kept],
            capture_output=True, text=True, check=True).stdout.strip()
        self.assertEqual(labels, sandbox_id, daemon.logTail())

    def test_compose_file(self):
        """
        deploy/docker-compose.yml runs sandboxd:latest on the host's
        network with the Docker socket, the socket directory and the data
        directory mounted from the host at the same paths.
        """
        with open(COMPOSE) as f:
            compose = f.read()
        self.assertIn("image: sandboxd:latest", compose)
        self.assertIn("network_mode: host", compose)
        for mount in ("/var/run/docker.sock:/var/run/docker.sock",
                      "/var/run/sandboxd:/var/run/sandboxd",
                      "/var/lib/sandboxd:/var/lib/sandboxd"):
            self.assertIn(f"- {mount}\n", compose)
