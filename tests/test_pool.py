"""
Tests for L{sandboxd.pool.WarmPool}: refilling, claiming, backoff, resizing
and stopping, with boots the test completes by hand and time on a Clock.
"""

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from sandboxd.pool import WarmPool
from tests.fakeruntime import FakeConnection


class RunawayBoot(BaseException):
    """
    Raised by a fake boot called far more often than it should be.
    """


class FakeProfile:
    name = "default"


class FakeSandbox:
    def __init__(self, name):
        self.name = name
        self.connection = FakeConnection()

    def __repr__(self):
        return f"<FakeSandbox {self.name}>"


class Boots:
    """
    A fake C{boot(profile)}: records each call's profile and Deferred, for
    the test to fire.
    """

    def __init__(self):
        self.profiles = []
        self.pending = []
        self.count = 0

    def __call__(self, profile):
        self.profiles.append(profile)
        self.count += 1
        d = Deferred()
        self.pending.append(d)
        return d

    def succeed(self, name=None):
        """
        Complete the oldest pending boot with a new sandbox; return it.
        """
        sandbox = FakeSandbox(name or f"sb{self.count}")
        self.pending.pop(0).callback(sandbox)
        return sandbox

    def fail(self, message="engine down"):
        self.pending.pop(0).errback(RuntimeError(message))


class PoolTestCase(TestCase):
    def makePool(self, target=3, parallel=2):
        self.clock = Clock()
        self.boots = Boots()
        self.discarded = []
        self.profile = FakeProfile()
        return WarmPool(
            self.profile,
            self.boots,
            self.discarded.append,
            self.clock,
            target=target,
            parallel=parallel,
        )

    def fill(self, pool):
        """
        Complete boots until the pool stops asking; return the sandboxes.
        """
        sandboxes = []
        while self.boots.pending:
            sandboxes.append(self.boots.succeed())
        self.assertEqual(pool.ready, pool.target)
        return sandboxes


class RefillTests(PoolTestCase):
    """
    The pool boots sandboxes in the background up to its target.
    """

    def test_nothingBeforeStart(self):
        """
        A pool boots nothing until it is started.
        """
        pool = self.makePool()
        pool.refill()
        self.assertEqual((self.boots.count, pool.starting), (0, 0))

    def test_startBootsAtMostParallel(self):
        """
        C{start} begins at most C{parallel} boots, with the pool's profile.
        """
        pool = self.makePool(target=5, parallel=2)
        pool.start()
        self.assertEqual(self.boots.count, 2)
        self.assertEqual(pool.starting, 2)
        self.assertEqual(self.boots.profiles, [self.profile, self.profile])

    def test_startBootsNoMoreThanTarget(self):
        """
        When the target is below C{parallel}, only the target is booted.
        """
        pool = self.makePool(target=1, parallel=4)
        pool.start()
        self.assertEqual(self.boots.count, 1)

    def test_fillsToTarget(self):
        """
        Each finished boot starts the next until C{target} sandboxes are
        ready, never more than C{parallel} at once, and then it stops.
        """
        pool = self.makePool(target=5, parallel=2)
        pool.start()
        while self.boots.pending:
            self.assertTrue(len(self.boots.pending) <= 2)
            self.boots.succeed()
        self.assertEqual((pool.ready, pool.starting), (5, 0))
        self.assertEqual(self.boots.count, 5)
        self.assertEqual(self.discarded, [])


class ClaimTests(PoolTestCase):
    """
    C{claim} hands out ready sandboxes and counts hits and misses.
    """

    def test_claimReady(self):
        """
        C{claim} returns the oldest ready sandbox, counts a hit and starts a
        boot to replace it.
        """
        pool = self.makePool(target=2)
        pool.start()
        first, second = self.fill(pool)
        self.assertIs(pool.claim(), first)
        self.assertEqual((pool.hits, pool.misses), (1, 0))
        self.assertEqual((pool.ready, pool.starting), (1, 1))
        self.assertEqual(self.boots.count, 3)

    def test_claimEmpty(self):
        """
        C{claim} on an empty pool returns None, counts a miss and starts a
        refill.
        """
        pool = self.makePool(target=0)
        pool.start()
        self.assertEqual(self.boots.count, 0)
        pool.target = 1
        self.assertIsNone(pool.claim())
        self.assertEqual((pool.hits, pool.misses), (0, 1))
        self.assertEqual(self.boots.count, 1)

    def test_claimWhileBooting(self):
        """
        A claim while the only boots are in flight is a miss and does not
        exceed C{parallel}.
        """
        pool = self.makePool(target=3, parallel=1)
        pool.start()
        self.assertIsNone(pool.claim())
        self.assertEqual(pool.misses, 1)
        self.assertEqual(self.boots.count, 1)

    def test_deadSandboxSkipped(self):
        """
        A ready sandbox whose agent connection is no longer connected (or
        gone) is discarded and the next live one is returned.
        """
        pool = self.makePool(target=3, parallel=3)
        pool.start()
        dead, gone, live = self.fill(pool)
        dead.connection.connected = False
        gone.connection = None
        self.assertIs(pool.claim(), live)
        self.assertEqual(self.discarded, [dead, gone])
        self.assertEqual((pool.hits, pool.misses), (1, 0))

    def test_onlyDeadSandboxes(self):
        """
        When every ready sandbox is dead, C{claim} discards them all, returns
        None (a miss) and boots replacements.
        """
        pool = self.makePool(target=1, parallel=1)
        pool.start()
        (dead,) = self.fill(pool)
        dead.connection.connected = False
        self.assertIsNone(pool.claim())
        self.assertEqual(self.discarded, [dead])
        self.assertEqual((pool.hits, pool.misses, pool.ready), (0, 1, 0))
        self.assertEqual(self.boots.count, 2)


class BackoffTests(PoolTestCase):
    """
    A failed boot delays the next one: 0.5 s, doubling, capped at 30 s.
    """

    def assertRetryAfter(self, pool, delay):
        """
        No boot starts (not even on a claim) until C{delay} seconds pass;
        then exactly one does.
        """
        before = self.boots.count
        self.clock.advance(delay / 2)
        self.assertIsNone(pool.claim())
        self.assertEqual(self.boots.count, before, f"booted before {delay}s")
        self.clock.advance(delay / 2)
        self.assertEqual(self.boots.count, before + 1, f"no boot after {delay}s")

    def test_backoffDoublesAndCaps(self):
        """
        Successive failures wait 0.5, 1, 2, 4, 8, 16, then 30 s (the cap)
        before the next boot.
        """
        pool = self.makePool(target=1, parallel=1)
        pool.start()
        for delay in (0.5, 1, 2, 4, 8, 16, 30, 30):
            self.boots.fail()
            self.assertEqual(self.boots.count, len(self.boots.profiles))
            self.assertRetryAfter(pool, delay)

    def test_failureStatus(self):
        """
        C{status()} reports the failures and the last error; a success
        clears the error and resets the backoff to 0.5 s.
        """
        pool = self.makePool(target=1, parallel=1)
        pool.start()
        self.boots.fail("no such image")
        status = pool.status()
        self.assertEqual((status["failures"], status["last_error"]), (1, "no such image"))
        self.assertEqual(status["starting"], 0)
        self.assertRetryAfter(pool, 0.5)
        self.boots.fail("still down")
        self.assertEqual(pool.status()["failures"], 2)
        self.assertEqual(pool.status()["last_error"], "still down")
        self.assertRetryAfter(pool, 1)
        self.boots.succeed()
        self.assertEqual(pool.status()["last_error"], None)
        self.assertEqual(pool.status()["failures"], 2)
        self.assertIsNotNone(pool.claim())
        self.boots.fail()
        self.assertRetryAfter(pool, 0.5)

    def runawayBoot(self, fail):
        """
        A boot that fails through ``fail()`` the first three times, then
        raises L{RunawayBoot} (which the pool does not catch, ending a
        refill loop that would otherwise never stop); returns the list of
        calls.
        """
        calls = []

        def boot(profile):
            calls.append(profile)
            if len(calls) > 3:
                raise RunawayBoot()
            return fail()

        return boot, calls

    def test_synchronousFailure(self):
        """
        A C{boot} that raises instead of returning a failing Deferred is a
        failed boot too: counted, reported, and retried only after the
        backoff, not in a loop.
        """
        pool = self.makePool(target=1, parallel=1)

        def fail():
            raise OSError("docker socket missing")

        pool._boot, calls = self.runawayBoot(fail)
        pool.start()
        self.flushLoggedErrors(RunawayBoot)
        self.assertEqual(len(calls), 1)
        self.assertEqual(pool.status()["failures"], 1)
        self.assertEqual(pool.status()["last_error"], "docker socket missing")
        self.assertEqual(pool.starting, 0)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_alreadyFailedDeferred(self):
        """
        A C{boot} returning an already-failed Deferred is retried only after
        the backoff, not in a loop.
        """
        pool = self.makePool(target=2, parallel=2)
        pool._boot, calls = self.runawayBoot(lambda: fail(RuntimeError("no image")))
        pool.start()
        self.flushLoggedErrors(RunawayBoot)
        self.assertEqual(len(calls), 1)
        self.assertEqual(pool.status()["failures"], 1)
        self.clock.advance(0.5)
        self.flushLoggedErrors(RunawayBoot)
        self.assertEqual(len(calls), 2)


class ResizeTests(PoolTestCase):
    """
    C{resize} changes the target.
    """

    def test_resizeDown(self):
        """
        Shrinking discards the extra ready sandboxes and boots nothing.
        """
        pool = self.makePool(target=3, parallel=3)
        pool.start()
        first, second, third = self.fill(pool)
        pool.resize(1)
        self.assertEqual(pool.target, 1)
        self.assertEqual(pool.ready, 1)
        self.assertEqual(sorted(self.discarded, key=id), sorted([second, third], key=id))
        self.assertEqual(self.boots.count, 3)
        self.assertIs(pool.claim(), first)

    def test_resizeUp(self):
        """
        Growing boots more, up to C{parallel} at a time, until the new target.
        """
        pool = self.makePool(target=1, parallel=2)
        pool.start()
        self.fill(pool)
        pool.resize(4)
        self.assertEqual(pool.starting, 2)
        self.fill(pool)
        self.assertEqual((pool.ready, self.boots.count), (4, 4))

    def test_bootFinishingAboveTarget(self):
        """
        A boot that finishes after the target shrank below what is ready is
        discarded.
        """
        pool = self.makePool(target=2, parallel=2)
        pool.start()
        self.boots.succeed()
        pool.resize(1)
        late = self.boots.succeed()
        self.assertEqual(self.discarded, [late])
        self.assertEqual(pool.ready, 1)


class StopAndRemoveTests(PoolTestCase):
    """
    C{stop} and C{remove}.
    """

    def test_stopReturnsReady(self):
        """
        C{stop} returns the ready sandboxes and leaves the pool empty.
        """
        pool = self.makePool(target=2)
        pool.start()
        sandboxes = self.fill(pool)
        self.assertEqual(pool.stop(), sandboxes)
        self.assertEqual(pool.ready, 0)
        self.assertEqual(self.discarded, [])

    def test_noRefillAfterStop(self):
        """
        After C{stop}, claims boot nothing and a boot that was in flight is
        discarded when it finishes.
        """
        pool = self.makePool(target=2, parallel=1)
        pool.start()
        self.assertEqual(pool.stop(), [])
        late = self.boots.succeed()
        self.assertEqual(self.discarded, [late])
        self.assertIsNone(pool.claim())
        pool.refill()
        self.assertEqual((self.boots.count, pool.ready, pool.starting), (1, 0, 0))

    def test_stopCancelsRetry(self):
        """
        C{stop} during a backoff cancels the retry: no boot ever follows.
        """
        pool = self.makePool(target=1, parallel=1)
        pool.start()
        self.boots.fail()
        pool.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(60)
        self.assertEqual(self.boots.count, 1)

    def test_failureAfterStopSchedulesNothing(self):
        """
        A boot failing after C{stop} schedules no retry.
        """
        pool = self.makePool(target=1, parallel=1)
        pool.start()
        pool.stop()
        self.boots.fail()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_remove(self):
        """
        C{remove} forgets a ready sandbox (it is never claimed), returns True
        and boots a replacement; an unknown sandbox gives False.
        """
        pool = self.makePool(target=2, parallel=2)
        pool.start()
        first, second = self.fill(pool)
        self.assertTrue(pool.remove(first))
        self.assertEqual(pool.ready, 1)
        self.assertEqual(self.boots.count, 3)
        self.assertFalse(pool.remove(first))
        self.assertFalse(pool.remove(FakeSandbox("stranger")))
        self.assertIs(pool.claim(), second)
        self.assertEqual(self.discarded, [])


class StatusTests(PoolTestCase):
    """
    C{status()} is the pool's numbers for the API.
    """

    def test_fresh(self):
        """
        A started pool reports its target, what is starting, and no hit rate
        before any claim.
        """
        pool = self.makePool(target=3, parallel=2)
        pool.start()
        self.assertEqual(
            pool.status(),
            {
                "target": 3,
                "ready": 0,
                "starting": 2,
                "hits": 0,
                "misses": 0,
                "hit_rate": None,
                "failures": 0,
                "replaced": 0,
                "last_error": None,
            },
        )

    def test_afterClaims(self):
        """
        Hits, misses and the hit rate follow the claims.
        """
        pool = self.makePool(target=1, parallel=1)
        pool.start()
        self.fill(pool)
        pool.claim()
        pool.claim()
        pool.claim()
        self.boots.succeed()
        pool.claim()
        status = pool.status()
        self.assertEqual(
            (status["hits"], status["misses"], status["hit_rate"]), (2, 2, 0.5)
        )
        self.assertEqual((status["ready"], status["starting"], status["target"]), (0, 1, 1))


class RefillDelayTests(PoolTestCase):
    """
    With a refill delay, a hit's refill waits; a miss's does not.
    """

    def test_hit_refills_after_delay(self):
        """
        After a hit no boot starts until the delay has passed, and a burst
        of hits schedules one refill, not one per hit.
        """
        clock = Clock()
        boots = Boots()
        pool = WarmPool(FakeProfile(), boots, [].append, clock, target=2,
                        refill_delay=0.1)
        pool.start()
        boots.succeed()
        boots.succeed()
        self.assertEqual(pool.ready, 2)
        self.assertIsNotNone(pool.claim())
        self.assertIsNotNone(pool.claim())
        self.assertEqual(boots.count, 2)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0.1)
        self.assertEqual(boots.count, 4)

    def test_miss_refills_at_once(self):
        """
        A miss starts the refill immediately: the pool is behind.
        """
        clock = Clock()
        boots = Boots()
        pool = WarmPool(FakeProfile(), boots, [].append, clock, target=1,
                        refill_delay=0.1, parallel=2)
        pool.start()
        pool.resize(2)
        self.assertIsNone(pool.claim())
        self.assertEqual(boots.count, 2)
