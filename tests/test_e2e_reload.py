"""
Hot reload against a real daemon process and real containers: the test
edits the daemon's configuration file (or sends SIGHUP) and watches the
same process (its pid never changes) serve the new settings, or keep the
old ones when the file is broken.
"""

import os
import signal
import time

from twisted.trial.unittest import TestCase

from tests.daemon import TEST_IMAGE, Daemon


class ReloadTests(TestCase):
    def setUp(self):
        self.daemon = Daemon(min_base=1)
        self.daemon.start()
        self.addCleanup(self.daemon.stop)
        self.pid = self.daemon.process.pid
        with open(self.daemon.config) as f:
            self.original = f.read()
        # Cleanups run last-in first-out: this one before the daemon stops.
        self.addCleanup(self.sameProcess)

    def sameProcess(self):
        self.assertEqual(self.daemon.process.pid, self.pid)
        self.assertIsNone(self.daemon.process.poll(), "the daemon exited")

    def rewrite(self, text):
        """Replace the file the way an editor does (write, then rename)."""
        temporary = self.daemon.config + ".new"
        with open(temporary, "w") as f:
            f.write(text)
        os.rename(temporary, self.daemon.config)

    def configEvent(self, after, timeout=30):
        """The next config.* event after id ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, events = self.daemon.request("GET", f"/events/history?after={after}")
            found = [e for e in events if e["type"].startswith("config.")]
            if found:
                return found[0]
            time.sleep(0.2)
        self.fail(f"no config event within {timeout}s\n{self.daemon.logTail(20)}")

    def newestId(self):
        status, events = self.daemon.request("GET", "/events/history?after=0&limit=1000")
        return events[-1]["id"] if events else 0

    def create(self, **body):
        return self.daemon.request("POST", "/sandboxes", body)

    def test_add_profile_and_create(self):
        """
        A profile added to the file is served without a restart: listed,
        given a warm pool, and a sandbox of it is created.
        """
        mark = self.newestId()
        self.rewrite(self.original + f'[pool.base.small]\nimage = "{TEST_IMAGE}"\n'
                     'memory = "128m"\ncpu = 0.5\n')
        event = self.configEvent(mark)
        self.assertEqual(event["type"], "config.reloaded", event)
        self.assertEqual(event["data"]["changed"], ["pool.base.small"])
        self.assertEqual(event["data"]["profiles"]["added"], ["small"])
        status, profiles = self.daemon.request("GET", "/profiles")
        self.assertIn("small", [p["name"] for p in profiles])
        status, sandbox = self.create(profile="small", ttl=60)
        self.assertEqual(status, 201, sandbox)
        self.assertEqual(sandbox["profile"], "small")
        self.assertEqual(self.daemon.request("DELETE", f"/sandboxes/{sandbox['id']}")[0], 204)

    def test_tighten_limit(self):
        """
        ``limits.max_sandboxes`` lowered in the file applies to the next
        create: one more fits, the one after is refused AT_CAPACITY.
        """
        mark = self.newestId()
        self.rewrite(self.original.replace("[limits]\n", "[limits]\nmax_sandboxes = 1\n"))
        self.assertEqual(self.configEvent(mark)["type"], "config.reloaded")
        status, first = self.create(ttl=60)
        self.assertEqual(status, 201, first)
        status, refused = self.create(ttl=60)
        self.assertEqual(status, 503, refused)
        self.assertEqual(refused["error"]["code"], "AT_CAPACITY")
        self.assertIn("max_sandboxes", refused["error"]["message"])

    def test_broken_file_keeps_old_config(self):
        """
        A file with an error is refused: ``config.rejected`` names the key,
        and the daemon keeps serving its old profiles and limits.
        """
        mark = self.newestId()
        self.rewrite(self.original.replace('memory = "256m"', 'memory = "lots"'))
        event = self.configEvent(mark)
        self.assertEqual(event["type"], "config.rejected", event)
        self.assertEqual(event["data"]["key"], "pool.base.default.memory")
        status, sandbox = self.create(ttl=60)
        self.assertEqual(status, 201, sandbox)
        status, profiles = self.daemon.request("GET", "/profiles")
        self.assertEqual([(p["name"], p["memory"]) for p in profiles],
                         [("default", 256 << 20)])
        self.assertIn("pool.base.default.memory", self.daemon.logTail(40))

    def test_sighup(self):
        """
        SIGHUP reloads the file (here unchanged): a config.reloaded event
        with its trigger and nothing changed.
        """
        mark = self.newestId()
        self.daemon.process.send_signal(signal.SIGHUP)
        event = self.configEvent(mark)
        self.assertEqual(event["type"], "config.reloaded")
        self.assertEqual((event["data"]["trigger"], event["data"]["changed"]), ("SIGHUP", []))

    def test_change_profile(self):
        """
        A changed profile's warm sandboxes are replaced by ones of the new
        shape (the next create is warm and has it) while a sandbox already
        handed out keeps running with the old one.
        """
        status, before = self.create(ttl=120)
        self.assertEqual(status, 201, before)
        mark = self.newestId()
        self.rewrite(self.original.replace('memory = "256m"', 'memory = "192m"'))
        event = self.configEvent(mark)
        self.assertEqual((event["type"], event["data"]["profiles"]["changed"]),
                         ("config.reloaded", ["default"]))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            _, health = self.daemon.request("GET", "/health")
            if health["pool"]["default"]["ready"] >= 1:
                break
            time.sleep(0.2)
        status, after = self.create(ttl=60)
        self.assertEqual(status, 201, after)
        self.assertEqual((after["memory"], after["method"]), (192 << 20, "warm"))
        status, kept = self.daemon.request("GET", f"/sandboxes/{before['id']}")
        self.assertEqual(status, 200)
        self.assertEqual((kept["memory"], kept["state"]), (256 << 20, "running"))
        [container] = self.daemon.containers(before["id"])
        self.assertEqual(container["State"], "running")
