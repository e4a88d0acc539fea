"""
The pool sizing rules (sandboxd/poolplan.py) and a simulation of hours of
shifting demand through PoolSet with a fake boot and a Clock.
"""

import random

import attr
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from sandboxd.config import parse_config
from sandboxd.poolplan import Autoscaler, DemandTracker, plan_targets
from sandboxd.pools import REFILL_DELAY, PoolSet, UnknownPool
from tests.fakeruntime import FakeConnection


class PlanTests(TestCase):
    """
    plan_targets: floors, proportional shares, boosts, pins and the ceiling.
    """

    def plan(self, demand=None, boosts=None, pinned=None, min_base=2,
             total_warm=8, max_warm=32, profiles=("a", "b")):
        return plan_targets(
            list(profiles), demand or {}, boosts or {}, pinned or {},
            min_base, total_warm, max_warm,
        )

    def test_idle_gets_floors(self):
        """
        With no demand every profile keeps exactly min_base.
        """
        self.assertEqual(self.plan(), {"a": 2, "b": 2})

    def test_shares_follow_demand(self):
        """
        The slots of total_warm above the floors go in proportion to demand.
        """
        self.assertEqual(self.plan({"a": 30, "b": 10}), {"a": 5, "b": 3})
        self.assertEqual(self.plan({"a": 10}), {"a": 6, "b": 2})

    def test_boosts_add_and_ceiling_holds(self):
        """
        Misses add slots beyond total_warm, but the sum never exceeds
        max_warm.
        """
        self.assertEqual(self.plan({"a": 1}, boosts={"b": 3}), {"a": 6, "b": 5})
        targets = self.plan({"a": 1}, boosts={"a": 100, "b": 100}, max_warm=10)
        self.assertEqual(sum(targets.values()), 10)
        self.assertGreaterEqual(min(targets.values()), 2)

    def test_pins_win(self):
        """
        A pinned count is used as is and its slots come out of the ceiling.
        """
        targets = self.plan({"a": 5, "b": 5}, pinned={"a": 20}, max_warm=24)
        self.assertEqual(targets["a"], 20)
        self.assertLessEqual(sum(targets.values()), 24)
        self.assertEqual(self.plan(pinned={"a": 0}), {"a": 0, "b": 2})

    def test_floors_above_ceiling_are_split(self):
        """
        If the floors alone exceed max_warm, they are split evenly within it.
        """
        targets = self.plan(min_base=4, max_warm=6, profiles=("a", "b", "c"))
        self.assertEqual(sum(targets.values()), 6)
        self.assertEqual(sorted(targets.values()), [2, 2, 2])


class DemandAndAutoscalerTests(TestCase):
    """
    The sliding window and the miss-driven boosts.
    """

    def test_window_forgets(self):
        """
        Creates older than the window stop counting.
        """
        tracker = DemandTracker(window=60)
        tracker.record("a", 0)
        tracker.record("a", 30)
        self.assertEqual(tracker.counts(59), {"a": 2})
        self.assertEqual(tracker.counts(61), {"a": 1})
        self.assertEqual(tracker.counts(200), {"a": 0})

    def test_boost_grows_and_decays(self):
        """
        +1 per miss up to the cap; -1 per quiet tick down to nothing.
        """
        scaler = Autoscaler(cap=3)
        for _ in range(5):
            scaler.missed("a")
        self.assertEqual(scaler.boosts, {"a": 3})
        scaler.decay()  # missed since the last tick: kept
        self.assertEqual(scaler.boosts, {"a": 3})
        scaler.decay()
        scaler.decay()
        self.assertEqual(scaler.boosts, {"a": 1})
        scaler.decay()
        self.assertEqual(scaler.boosts, {})


@attr.s
class FakeSandbox:
    id = attr.ib()
    connection = attr.ib(factory=FakeConnection)
    liveness_scale = attr.ib(default=1.0)


class SimulationTests(TestCase):
    """
    PoolSet driven by hours of synthetic demand on a Clock, with boots that
    take two seconds.
    """

    BOOT_SECONDS = 2.0

    def setUp(self):
        self.clock = Clock()
        self.config = parse_config(
            "[pool]\ntotal_warm = 8\nmin_base = 1\nmax_warm = 12\n"
            'rebalance_window = "10m"\nhealth_interval = "10s"\n'
            "[pool.base.python]\n[pool.base.node]\n[pool.base.full]\n"
        )
        self.discarded = []
        self.booted = self.inflight = self.most_inflight = 0
        self.pools = PoolSet(
            dict(self.config.profiles), self.config.pool, self.boot,
            self.discarded.append, self.clock,
        )
        self.pools.start()

    def boot(self, profile):
        from twisted.internet.task import deferLater

        self.booted += 1
        self.inflight += 1
        self.most_inflight = max(self.most_inflight, self.inflight)

        def booted():
            self.inflight -= 1
            return FakeSandbox(f"{profile.name}-{self.booted}")

        return deferLater(self.clock, self.BOOT_SECONDS, booted)

    def run_phase(self, seconds, rates, rng):
        """
        Claim at ``rates`` (creates per second per profile) for ``seconds``,
        checking the invariants every second; return (hits, claims).
        """
        hits = claims = 0
        for _ in range(int(seconds)):
            for name, rate in rates.items():
                for _ in range(int(rate) if rate >= 1 else int(rng.random() < rate)):
                    claims += 1
                    if self.pools.claim(name) is not None:
                        hits += 1
            self.clock.advance(1)
            self.check_invariants()
        return hits, claims

    def check_invariants(self):
        targets = {n: p.target for n, p in self.pools.pools.items()}
        self.assertLessEqual(sum(targets.values()), 12)
        for name, target in targets.items():
            self.assertGreaterEqual(target, 1, name)
            pool = self.pools[name]
            self.assertLessEqual(pool.starting, 3)
        self.assertLessEqual(self.most_inflight, 4, "boots in flight, all pools")

    def test_hours_of_shifting_demand(self):
        """
        Demand moves from python to node, bursts, then idles: the busy
        profile gets the larger share, misses grow it, idle profiles shrink
        back to their floor, and the ceiling always holds.
        """
        rng = random.Random(4)
        self.clock.advance(10)
        self.run_phase(1800, {"python": 0.5, "node": 0.02}, rng)
        self.assertGreater(self.pools["python"].target, self.pools["node"].target)
        self.assertEqual(self.pools["full"].target, 1)
        hits, claims = self.run_phase(1800, {"python": 0.02, "node": 0.5}, rng)
        self.assertGreater(self.pools["node"].target, self.pools["python"].target)
        self.assertGreater(hits / claims, 0.9)
        self.run_phase(60, {"full": 5}, rng)
        self.assertEqual(
            sum(p.target for p in self.pools.pools.values()), 12, "a burst fills the ceiling"
        )
        self.assertGreater(self.pools["full"].target, 1)
        self.run_phase(3600, {}, rng)
        self.assertEqual(
            {n: p.target for n, p in self.pools.pools.items()},
            {"python": 1, "node": 1, "full": 1},
        )
        self.assertEqual({n: p.ready for n, p in self.pools.pools.items()},
                         {"python": 1, "node": 1, "full": 1})

    def test_claim_boots_nothing_before_the_refill_delay(self):
        """
        A warm claim raises targets (demand grew) but starts no boot in
        its caller's request: the refill comes after REFILL_DELAY.
        """
        self.clock.advance(self.BOOT_SECONDS)
        self.assertEqual(self.pools["python"].ready, 1)
        booted = self.booted
        self.assertIsNotNone(self.pools.claim("python"))
        self.assertGreater(self.pools["python"].target, 1)
        self.assertEqual(self.booted, booted)
        self.clock.advance(REFILL_DELAY)
        self.assertGreater(self.booted, booted)

    def test_resize_pins_and_unpins(self):
        """
        resize pins a count that demand does not move; None returns the pool
        to automatic sizing; an unknown profile is refused.
        """
        self.pools.resize("python", 5)
        self.run_phase(120, {"node": 2}, random.Random(1))
        self.assertEqual(self.pools["python"].target, 5)
        self.assertEqual(self.pools["python"].ready, 5)
        self.assertTrue(self.pools.status()["python"]["pinned"])
        self.pools.resize("python", None)
        self.assertEqual(self.pools["python"].target, 1)
        self.assertRaises(UnknownPool, self.pools.resize, "gpu", 1)

    def test_health_replaces_dead_and_slow(self):
        """
        Each health interval a disconnected warm sandbox is replaced at once
        and one that misses two pings in a row is replaced too.
        """
        self.clock.advance(self.BOOT_SECONDS)
        ready = list(self.pools["python"]._ready)
        self.assertEqual(len(ready), 1)
        ready[0].connection.connected = False
        ready[0].connection.answers = False
        self.clock.advance(10)
        self.assertIn(ready[0], self.discarded)
        self.clock.advance(self.BOOT_SECONDS)
        slow = self.pools["node"]._ready[0]
        slow.connection.answers = False
        self.clock.advance(10)
        self.assertNotIn(slow, self.discarded)
        self.clock.advance(10)
        self.assertIn(slow, self.discarded)
        self.assertEqual(self.pools.status()["node"]["replaced"], 1)

    def test_health_allows_slow_runtimes_longer(self):
        """
        A warm sandbox's ping waits its ``liveness_scale`` times longer (a
        VM under software emulation).
        """
        self.clock.advance(self.BOOT_SECONDS)
        usual, emulated = self.pools["python"]._ready[0], self.pools["node"]._ready[0]
        emulated.liveness_scale = 10.0
        self.clock.advance(10)
        self.assertTrue(usual.connection.pings)
        self.assertEqual(emulated.connection.pings[-1], usual.connection.pings[-1] * 10)

    def test_flush_replaces_all(self):
        """
        flush discards every warm sandbox and boots fresh ones; a boot under
        way when flush was called is discarded when it ends.
        """
        self.clock.advance(self.BOOT_SECONDS)
        old = list(self.pools["python"]._ready)
        self.pools.claim("python")  # starts a refill boot
        self.assertEqual(self.pools.flush("python"), len(old) - 1 if len(old) > 1 else 0)
        for _ in range(6):
            self.clock.advance(1)
        fresh = list(self.pools["python"]._ready)
        self.assertTrue(fresh)
        self.assertFalse(set(map(id, fresh)) & set(map(id, old)))
