"""
Unit tests of hot reload (sandboxd/reload.py, PoolSet.reload,
config.changed_keys): a real file in a temporary directory, a real
EventFeed over a real SQLite store, time on a Clock, boots faked.
"""

import os
import shutil
import signal
import tempfile

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from sandboxd.config import Config, parse_config
from sandboxd.eventfeed import EventFeed
from sandboxd.pools import PoolSet
from sandboxd.reload import ConfigReloader, ReloadService, changed_keys
from sandboxd.store import Store

BASE = """
[server]
socket = "/tmp/a.sock"
[limits]
max_sandboxes = 10
[pool]
min_base = 1
[pool.base.default]
memory = "256m"
"""


class ReloaderTests(TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.path = os.path.join(self.dir, "sandboxd.toml")
        self.write(BASE)
        self.store = Store(os.path.join(self.dir, "data"))
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.feed = EventFeed(self.store, self.clock)
        self.applied = []
        self.reloader = ConfigReloader(
            self.path, parse_config(BASE, self.path, environ={}), self.apply, self.feed,
            environ={})

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    async def apply(self, config):
        self.applied.append(config)
        return {"added": [], "removed": [], "changed": []}

    def events(self):
        return [(e.type, e.data) for e in self.store.events(0, 100)]

    def test_reloaded(self):
        """
        A good file is applied; ``config.reloaded`` lists the changed keys.
        """
        self.write(BASE.replace("max_sandboxes = 10", "max_sandboxes = 3")
                   + '[pool.base.python]\nimage = "sandbox-python:latest"\n')
        result = self.successResultOf(self.reloader.reload("SIGHUP"))
        self.assertTrue(result)
        [config] = self.applied
        self.assertEqual(config.limits.max_sandboxes, 3)
        self.assertIn("python", config.profiles)
        [(type, data)] = self.events()
        self.assertEqual(type, "config.reloaded")
        self.assertEqual(data["changed"], ["limits.max_sandboxes", "pool.base.python"])
        self.assertEqual(data["restart_required"], [])
        self.assertIs(self.reloader.config, config)

    def test_rejected(self):
        """
        A file with an error changes nothing; ``config.rejected`` names the
        key and the reloader keeps the old configuration.
        """
        old = self.reloader.config
        self.write(BASE.replace("max_sandboxes = 10", "max_sandboxes = -1"))
        self.assertFalse(self.successResultOf(self.reloader.reload("file changed")))
        self.assertEqual(self.applied, [])
        [(type, data)] = self.events()
        self.assertEqual(type, "config.rejected")
        self.assertEqual(data["key"], "limits.max_sandboxes")
        self.assertIn("greater than 0", data["message"])
        self.assertIs(self.reloader.config, old)

    def test_invalid_toml_rejected(self):
        """
        A file that is not TOML at all is refused too (no key to name).
        """
        self.write("[limits\n")
        self.assertFalse(self.successResultOf(self.reloader.reload("SIGHUP")))
        [(type, data)] = self.events()
        self.assertEqual((type, data["key"]), ("config.rejected", ""))
        self.assertIn("invalid TOML", data["message"])

    def test_apply_fails(self):
        """
        When applying fails (a runtime that cannot be prepared), the reload
        is refused naming the profile, and the old configuration stays.
        """
        async def refuse(config):
            raise RuntimeError("runsc is not registered")

        self.reloader._apply = refuse
        old = self.reloader.config
        self.write(BASE + '[pool.base.secure]\nruntime = "docker+gvisor"\n')
        self.assertFalse(self.successResultOf(self.reloader.reload("SIGHUP")))
        [(type, data)] = self.events()
        self.assertEqual((type, data["key"]), ("config.rejected", "pool.base.secure"))
        self.assertIs(self.reloader.config, old)

    def test_listeners_wait_for_restart(self):
        """
        A changed listener is not applied (the running one is kept) but is
        reported as waiting for a restart; the rest applies.
        """
        self.write(BASE.replace("/tmp/a.sock", "/tmp/b.sock").replace(
            "max_sandboxes = 10", "max_sandboxes = 4"))
        self.successResultOf(self.reloader.reload("SIGHUP"))
        [config] = self.applied
        self.assertEqual(config.server.socket, "/tmp/a.sock")
        self.assertEqual(config.limits.max_sandboxes, 4)
        [(_, data)] = self.events()
        self.assertEqual(data["restart_required"], ["server.socket"])

    def test_one_at_a_time(self):
        """
        A reload asked for while one is applying runs once after it.
        """
        gate = Deferred()

        async def slow(config):
            self.applied.append(config)
            await gate

        self.reloader._apply = slow
        first = self.reloader.reload("SIGHUP")
        self.reloader.reload("SIGHUP")
        self.reloader.reload("SIGHUP")
        self.assertEqual(len(self.applied), 1)
        gate.callback(None)
        self.successResultOf(first)
        self.assertEqual(len(self.applied), 2)


class FakeSignals:
    def __init__(self):
        self.handlers = {}

    def signal(self, number, handler):
        previous = self.handlers.get(number, signal.SIG_DFL)
        self.handlers[number] = handler
        return previous


class FakeReloader:
    def __init__(self, path):
        self.path = path
        self.reasons = []

    def reload(self, why):
        self.reasons.append(why)
        return succeed(True)


class ThreadlessClock(Clock):
    def callFromThread(self, f, *args):
        self.callLater(0, f, *args)


class ReloadServiceTests(TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.path = os.path.join(self.dir, "sandboxd.toml")
        with open(self.path, "w") as f:
            f.write(BASE)
        self.clock = ThreadlessClock()
        self.signals = FakeSignals()
        self.reloader = FakeReloader(self.path)
        self.service = ReloadService(self.reloader, self.clock, interval=1.0,
                                     signals=self.signals)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def test_sighup(self):
        """
        SIGHUP reloads, on the reactor thread; stopping restores the
        previous handler.
        """
        self.signals.handlers[signal.SIGHUP](signal.SIGHUP, None)
        self.assertEqual(self.reloader.reasons, [])
        self.clock.advance(0)
        self.assertEqual(self.reloader.reasons, ["SIGHUP"])
        self.service.stopService()
        self.assertEqual(self.signals.handlers[signal.SIGHUP], signal.SIG_DFL)

    def test_file_change(self):
        """
        An edit is reloaded once the file stayed the same for one poll;
        polls with no change do nothing.
        """
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.reloader.reasons, [])
        with open(self.path, "a") as f:
            f.write("# edited\n")
        self.clock.advance(1)
        self.assertEqual(self.reloader.reasons, [])
        self.clock.advance(1)
        self.assertEqual(self.reloader.reasons, ["file changed"])
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.reloader.reasons, ["file changed"])

    def test_file_missing(self):
        """
        A file removed (an editor replacing it) is waited for, not read;
        its replacement is reloaded.
        """
        os.rename(self.path, self.path + ".bak")
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.reloader.reasons, [])
        with open(self.path, "w") as f:
            f.write(BASE + "# new\n")
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.reloader.reasons, ["file changed"])


class FakeProfileSandbox:
    def __init__(self, profile):
        self.profile = profile
        self.connection = type("C", (), {"connected": True})()


class PoolSetReloadTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.booted = []
        self.discarded = []
        config = parse_config(BASE + '[pool.base.python]\nimage = "p"\n', environ={})
        self.pools = PoolSet(config.profiles, config.pool, self.boot, self.discarded.append,
                             self.clock)
        self.pools.start()
        self.addCleanup(self.pools.stop)

    def boot(self, profile):
        sandbox = FakeProfileSandbox(profile)
        self.booted.append(sandbox)
        return succeed(sandbox)

    def test_added_removed_changed(self):
        """
        A removed profile's pool goes and its warm sandboxes are
        discarded; a changed one's are replaced by boots of the new shape;
        a new profile gets a started pool.
        """
        self.assertEqual(self.pools.status()["python"]["ready"], 1)
        old_default = list(self.pools["default"]._ready)
        new = parse_config(BASE.replace('"256m"', '"128m"')
                           + '[pool.base.node]\nimage = "n"\n', environ={})
        result = self.pools.reload(new.profiles, new.pool)
        self.assertEqual(result, {"added": ["node"], "removed": ["python"],
                                  "changed": ["default"]})
        self.assertEqual(sorted(self.pools.pools), ["default", "node"])
        self.assertTrue(all(s in self.discarded for s in old_default))
        self.assertTrue(any(s.profile.name == "python" for s in self.discarded))
        ready = list(self.pools["default"]._ready)
        self.assertTrue(ready)
        self.assertEqual({s.profile.memory for s in ready}, {128 << 20})
        self.assertEqual(self.pools.status()["node"]["ready"], 1)

    def test_sizes_follow(self):
        """
        A lower ``pool.min_base`` shrinks the pools at once.
        """
        new = parse_config(BASE.replace("min_base = 1", "min_base = 0").replace(
            "[pool]", "[pool]\ntotal_warm = 0"), environ={})
        self.pools.reload(new.profiles, new.pool)
        self.assertEqual(self.pools.status()["default"]["ready"], 0)


class ChangedKeysTests(TestCase):
    def test_changed_keys(self):
        """
        Every differing setting is named by its dotted key; profiles as
        pool.base.NAME whether added, removed or changed.
        """
        old = Config()
        new = parse_config('[limits]\nmax_cpu = 2.0\n[pool.base.x]\ncpu = 1.0\n', environ={})
        self.assertEqual(changed_keys(old, new),
                         ["limits.max_cpu", "pool.base.default", "pool.base.x"])
        self.assertEqual(changed_keys(old, Config()), [])


class PoolEventsTests(TestCase):
    def test_boot_failed_and_replaced(self):
        """
        A PoolSet's notify hears pool.boot_failed (with the error and the
        back-off) and pool.replaced (with the sandbox), naming the profile.
        """
        clock = Clock()
        heard = []
        config = parse_config(BASE, environ={})
        outcomes = [RuntimeError("no such image"), None]

        def boot(profile):
            outcome = outcomes.pop(0) if outcomes else None
            if outcome is not None:
                from twisted.internet.defer import fail
                return fail(outcome)
            sandbox = FakeProfileSandbox(profile)
            sandbox.id = "sbx-warm"
            return succeed(sandbox)

        pools = PoolSet(config.profiles, config.pool, boot, lambda s: None, clock,
                        notify=lambda type, **data: heard.append((type, data)))
        pools.start()
        self.addCleanup(pools.stop)
        clock.advance(1)
        [warm] = list(pools["default"]._ready)
        pools["default"].remove(warm)
        self.assertEqual(heard[0], ("pool.boot_failed", {
            "profile": "default", "error": "no such image", "retry_in": 0.5}))
        self.assertEqual(heard[1], ("pool.replaced", {"profile": "default",
                                                      "sandbox": "sbx-warm"}))
