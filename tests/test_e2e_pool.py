"""
The warm pool against a real daemon and real containers: replacement of dead
and frozen warm sandboxes, flush, resize, and the admin routes' Unix-only rule.
"""

import os
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import shared_daemon
from tests.dockerutil import require_docker

def pool_daemon():
    return shared_daemon("pool", min_base=1, pool_config='health_interval = "1s"\n')


class PoolTests(SynchronousTestCase):
    def setUp(self):
        self.docker = require_docker()
        self.daemon = pool_daemon()
        self.addCleanup(self.daemon.request, "PUT", "/pools/default", {"count": None})

    def warm_containers(self):
        """
        Ids of this daemon's running containers not handed to any caller.
        """
        owner = os.path.abspath(os.path.join(self.daemon.dir, "data"))
        running = self.docker.api.containers(filters={"label": f"sandboxd.owner={owner}"})
        claimed = {s["id"] for s in self.daemon.request("GET", "/sandboxes")[1]}
        return {c["Id"] for c in running if c["Labels"]["sandboxd.id"] not in claimed}

    def wait_for(self, predicate, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        self.fail(f"not true within {timeout}s: {self.daemon.request('GET', '/pools')}")

    def ready(self):
        return self.daemon.request("GET", "/pools")[1]["default"]["ready"]

    def test_killed_warm_container_is_replaced(self):
        """
        A warm container killed from outside is noticed and replaced by a new
        one within the health interval plus one boot.
        """
        self.daemon.waitReady(60)
        (victim,) = self.warm_containers()
        self.docker.containers.get(victim).kill()
        started = time.monotonic()
        fresh = self.wait_for(lambda: self.ready() >= 1 and self.warm_containers() - {victim})
        self.assertLess(time.monotonic() - started, 1 + 10)
        self.assertNotIn(victim, fresh)

    def test_frozen_warm_container_is_replaced(self):
        """
        A warm container that stops answering pings (paused: its TCP
        connection stays open) is replaced after two missed health checks.
        """
        self.daemon.waitReady(60)
        (victim,) = self.warm_containers()
        self.docker.containers.get(victim).pause()
        self.addCleanup(self._unpause, victim)
        self.wait_for(lambda: self.daemon.request("GET", "/pools")[1]["default"]["replaced"] >= 1)
        self.wait_for(lambda: self.ready() >= 1)
        self.assertNotIn(victim, self.warm_containers())

    def _unpause(self, container_id):
        try:
            self.docker.containers.get(container_id).unpause()
        except Exception:
            pass

    def test_flush_replaces_every_warm_sandbox(self):
        """
        POST /pools/default/flush discards every warm sandbox; the pool
        refills with new containers.
        """
        self.daemon.waitReady(60)
        before = self.warm_containers()
        status, body = self.daemon.request("POST", "/pools/default/flush")
        self.assertEqual((status, body["flushed"]), (200, len(before)))
        after = self.wait_for(lambda: self.ready() >= 1 and self.warm_containers() - before)
        self.assertFalse(after & before)

    def test_resize_up_and_down(self):
        """
        PUT /pools/default pins the warm count: 3 brings three ready, 1 takes
        it back to one.
        """
        status, body = self.daemon.request("PUT", "/pools/default", {"count": 3})
        self.assertEqual((status, body["target"], body["pinned"]), (200, 3, True))
        self.wait_for(lambda: self.ready() == 3 and len(self.warm_containers()) == 3, 60)
        status, body = self.daemon.request("PUT", "/pools/default", {"count": 1})
        self.assertEqual(body["target"], 1)
        self.wait_for(lambda: len(self.warm_containers()) == 1)

    def test_admin_routes_refused_over_tcp(self):
        """
        Over TCP the admin routes answer 403; on the Unix socket they work.
        """
        status, body = self.daemon.tcpRequest("GET", "/pools")
        self.assertEqual((status, body["error"]["code"]), (403, "ADMIN_ONLY"))
        status, body = self.daemon.tcpRequest("POST", "/pools/default/flush")
        self.assertEqual(status, 403)
        self.assertEqual(self.daemon.request("GET", "/pools")[0], 200)


class PoolCLITests(SynchronousTestCase):
    """
    ``sbx pool status|resize|flush`` against the real daemon.
    """

    def setUp(self):
        require_docker()
        self.daemon = pool_daemon()
        self.addCleanup(self.daemon.request, "PUT", "/pools/default", {"count": None})

    def sbx(self, *args, env=None):
        import subprocess
        import sys

        done = subprocess.run(
            [sys.executable, "-m", "sbx.main", *args],
            capture_output=True, env=env or self.daemon.env, timeout=60,
        )
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    def test_status_resize_flush(self):
        """
        status prints a row per profile; resize pins (and 'auto' unpins)
        the count; flush says how many it replaced; a bad N is a usage
        error that changes nothing.
        """
        code, out, err = self.sbx("pool", "status")
        self.assertEqual(code, 0, err)
        self.assertIn("default", out)
        self.assertIn("HIT RATE", out)
        code, out, _ = self.sbx("pool", "status", "--json")
        self.assertIn("default", __import__("json").loads(out))
        code, out, err = self.sbx("pool", "resize", "default", "2")
        self.assertEqual(code, 0, err)
        self.assertIn("pinned", out)
        self.assertEqual(self.daemon.request("GET", "/pools")[1]["default"]["target"], 2)
        code, _, err = self.sbx("pool", "resize", "default", "lots")
        self.assertEqual(code, 2)
        self.assertIn("'auto'", err)
        self.assertEqual(self.daemon.request("GET", "/pools")[1]["default"]["target"], 2)
        code, out, _ = self.sbx("pool", "resize", "default", "auto")
        self.assertIn("auto", out)
        code, out, err = self.sbx("pool", "flush", "default")
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"^flushed \d+ warm sandboxes of default")
        code, _, err = self.sbx("pool", "flush", "nosuch")
        self.assertEqual(code, 1)
        self.assertIn("nosuch", err)

    def test_over_tcp_is_refused(self):
        """
        Over TCP the CLI reports the daemon's refusal and exits 1.
        """
        env = dict(self.daemon.env, SANDBOX_ENDPOINT=f"http://127.0.0.1:{self.daemon.port}")
        code, _, err = self.sbx("pool", "status", env=env)
        self.assertEqual(code, 1)
        self.assertIn("Unix socket", err)
