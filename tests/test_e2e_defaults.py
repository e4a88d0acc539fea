"""
A real daemon started as a new user would (``twistd -n sandboxd``, no
configuration file; only the socket and data directory moved by the
environment) offers a profile for each sandbox image the engine has.
"""

import asyncio
import os
import subprocess
import sys
import time

from twisted.trial.unittest import TestCase

from sandbox import connect_sandbox
from sandboxd.config import load_config
from sandboxd.defaults import BUILTIN_PROFILES
from tests.daemon import TWISTD, Daemon
from tests.dockerutil import require_docker


class DefaultsDaemon(Daemon):
    """
    A Daemon without --config: the built-in defaults.
    """

    def spawn(self):
        env = dict(os.environ, SANDBOX_SOCKET=self.socket, SANDBOX_DATA_DIR=self.data_dir,
                   SANDBOX_TCP="")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "sandboxd"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, env=env)


class DefaultProfilesTests(TestCase):
    def test_profile_per_image(self):
        """
        Without a file, ``default`` plus every built-in profile whose image
        is present is listed (a ``config.reloaded`` event at start says
        which were added), and a sandbox of the python profile, when its
        image is there, runs python.
        """
        docker = require_docker()
        tags = {tag for image in docker.images.list() for tag in image.tags}
        expected = sorted(name for name, profile in BUILTIN_PROFILES.items()
                          if name == "default" or profile.image in tags)
        daemon = DefaultsDaemon(min_base=1)
        daemon.start(timeout=180)
        self.addCleanup(daemon.stop)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, events = daemon.request("GET", "/events/history?after=0")
            started = [e for e in events if e["type"] == "config.reloaded"]
            if started:
                break
            time.sleep(0.2)
        else:
            self.fail(f"no config.reloaded at start\n{daemon.logTail()}")
        self.assertEqual(started[0]["data"]["trigger"], "start")
        self.assertEqual(sorted(started[0]["data"]["profiles"]["added"]),
                         [n for n in expected if n != "default"])
        status, profiles = daemon.request("GET", "/profiles")
        self.assertEqual(sorted(p["name"] for p in profiles), expected)
        if "python" not in expected:
            # `make test` builds every image first: under CI it must be there.
            self.assertNotEqual(os.environ.get("CI"), "true", "sandbox-python:latest is missing")
            return
        status, sandbox = daemon.request("POST", "/sandboxes", {"profile": "python", "ttl": 60})
        self.assertEqual(status, 201, sandbox)
        self.assertEqual(sandbox["image"], "sandbox-python:latest")

        async def version():
            async with await connect_sandbox(sandbox["id"], endpoint=daemon.endpoint) as sbx:
                return (await sbx.process.exec_("python3 -c 'print(6*7)'")).stdout

        self.assertEqual(asyncio.run(version()), "42\n")

    def test_builtin_match_example(self):
        """
        The built-in profiles are the example configuration's, so the docs
        and `make run` without a file agree.
        """
        example = load_config(os.path.join(os.path.dirname(__file__), os.pardir, "config",
                                           "sandboxd.example.toml"), environ={})
        self.assertEqual(dict(BUILTIN_PROFILES), dict(example.profiles))
