"""
Tests for L{sandboxd.ratelimit}: creates per caller per minute, on a fake
clock, and the bounded caller table.
"""

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from sandboxd.api.identity import rate_key
from sandboxd.ratelimit import RateLimited, RateLimiter
from sandboxd.tenancy.verifier import Tenant


class RateLimiterTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.limiter = RateLimiter(3, 100, self.clock)

    def test_burst_then_refused(self):
        """
        A caller may create C{rate} times at once; the next is refused with
        the whole seconds until one more is allowed (60 / rate).
        """
        for _ in range(3):
            self.limiter.take("a")
        with self.assertRaises(RateLimited) as caught:
            self.limiter.take("a")
        self.assertEqual(caught.exception.retry_after, 20)
        self.assertIn("create_rate_limit", str(caught.exception))

    def test_refill_over_the_minute(self):
        """
        Tokens come back evenly: one after 60 / rate seconds, all after a
        minute, never more than C{rate}; a refusal spends nothing.
        """
        for _ in range(3):
            self.limiter.take("a")
        self.clock.advance(19)
        with self.assertRaises(RateLimited) as caught:
            self.limiter.take("a")
        self.assertEqual(caught.exception.retry_after, 1)
        self.clock.advance(1)
        self.limiter.take("a")
        self.assertRaises(RateLimited, self.limiter.take, "a")
        self.clock.advance(3600)
        for _ in range(3):
            self.limiter.take("a")
        self.assertRaises(RateLimited, self.limiter.take, "a")

    def test_callers_are_separate(self):
        """
        One caller's creates do not use another's allowance.
        """
        for _ in range(3):
            self.limiter.take("a")
        self.assertRaises(RateLimited, self.limiter.take, "a")
        for _ in range(3):
            self.limiter.take("b")

    def test_table_is_bounded(self):
        """
        At most C{entries} callers are tracked; a new one makes the limiter
        forget the caller seen least recently (who starts afresh), and only
        that one.
        """
        limiter = RateLimiter(1, 2, self.clock)
        limiter.take("a")
        limiter.take("b")
        self.assertRaises(RateLimited, limiter.take, "a")  # a is now the most recent
        limiter.take("c")  # forgets b
        self.assertEqual(len(limiter), 2)
        self.assertRaises(RateLimited, limiter.take, "a")
        self.assertRaises(RateLimited, limiter.take, "c")
        limiter.take("b")  # forgotten, so fresh (and forgets a)
        self.assertEqual(len(limiter), 2)
        for caller in range(1000):
            limiter.take(f"x{caller}")
        self.assertEqual(len(limiter), 2)

    def test_bad_settings(self):
        """
        A rate or table size of 0 is refused.
        """
        self.assertRaises(ValueError, RateLimiter, 0, 1, self.clock)
        self.assertRaises(ValueError, RateLimiter, 1, 0, self.clock)


class _Request:
    def __init__(self, address, tenant=None):
        self._address = address
        if tenant is not None:
            self.sandboxdTenant = tenant

    def getClientAddress(self):
        return self._address

    def getHost(self):
        return self._address


class CallerTests(SynchronousTestCase):
    def test_rate_key(self):
        """
        Over TCP the caller is the signed identity when there is one, else
        the peer's IP address; the Unix socket (the operator) has no key: it
        is never limited.
        """
        tcp = IPv4Address("TCP", "10.0.0.7", 5000)
        self.assertEqual(rate_key(_Request(tcp)), "peer:10.0.0.7")
        self.assertEqual(rate_key(_Request(IPv6Address("TCP", "::1", 5000))), "peer:::1")
        self.assertEqual(rate_key(_Request(tcp, Tenant("alice"))), "identity:alice")
        self.assertIsNone(rate_key(_Request(UNIXAddress(None))))
        self.assertIsNone(rate_key(_Request(UNIXAddress(b"/run/s.sock"))))


class BurstTests(SynchronousTestCase):
    """
    A bucket smaller than the per-minute rate: bursts of ``burst``, then
    ``rate`` a minute.
    """

    def test_burst_of_100_at_600_a_minute(self):
        """
        With the defaults' shape (600 a minute, burst 100): 100 at once,
        the 101st refused with Retry-After 1, then 10 more each second.
        """
        clock = Clock()
        limiter = RateLimiter(600, 10, clock, burst=100)
        for _ in range(100):
            limiter.take("a")
        with self.assertRaises(RateLimited) as caught:
            limiter.take("a")
        self.assertEqual(caught.exception.retry_after, 1)
        clock.advance(1)
        for _ in range(10):
            limiter.take("a")
        self.assertRaises(RateLimited, limiter.take, "a")
