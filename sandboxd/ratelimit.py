"""
Per-caller rate limiting of sandbox creation (``limits.create_rate_limit``
per caller per minute, bursts of ``limits.create_rate_burst``), with a
bounded table of callers.  Who the caller is: L{sandboxd.api.identity.rate_key}
(the verified identity over TCP with multi-tenancy, the peer's address
without; the Unix socket is never limited).
"""

import math
from collections import OrderedDict

#: The window ``create_rate_limit`` counts in, in seconds.
WINDOW = 60.0


class RateLimited(Exception):
    """
    The caller used up its allowance; ``retry_after`` is the whole number of
    seconds until it may try again.
    """

    def __init__(self, caller, limit, retry_after):
        super().__init__(
            f"more than {limit} creates per minute from {caller}"
            f" (limits.create_rate_limit); retry in {retry_after} s"
        )
        self.caller = caller
        self.retry_after = retry_after


class RateLimiter:
    """
    A token bucket per caller: ``burst`` tokens at most (None, or more
    than ``rate``: ``rate``), refilled at ``rate`` per L{WINDOW} seconds
    (so after a burst, one create every ``60 / rate`` seconds).

    At most ``entries`` callers are tracked.  When a new caller arrives at a
    full table, the caller seen least recently is dropped; its bucket was
    the likeliest to be full again, so forgetting it is the smallest
    possible gift.  Time comes from ``clock`` (an L{IReactorTime}).
    """

    def __init__(self, rate, entries, clock, window=WINDOW, burst=None):
        self._clock = clock
        self._window = window
        self._buckets = OrderedDict()  # caller -> (tokens, when)
        self.reload(rate, entries, burst)

    def reload(self, rate, entries, burst=None):
        """
        New allowances: buckets keep their tokens, capped at the new size.
        """
        if rate <= 0 or entries <= 0 or (burst is not None and burst <= 0):
            raise ValueError("rate, entries and burst must be positive")
        self.rate = rate
        self.entries = entries
        self.capacity = float(min(rate, burst or rate))
        self._per_second = rate / self._window
        for caller, (tokens, when) in self._buckets.items():
            self._buckets[caller] = (min(tokens, self.capacity), when)
        self._evict()

    def __len__(self):
        return len(self._buckets)

    def take(self, caller):
        """
        Spend one token of ``caller``'s bucket, or raise L{RateLimited}
        (spending nothing).
        """
        now = self._clock.seconds()
        tokens, when = self._buckets.pop(caller, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - when) * self._per_second)
        if tokens >= 1.0:
            self._buckets[caller] = (tokens - 1.0, now)
            self._evict()
            return
        self._buckets[caller] = (tokens, now)
        wait = (1.0 - tokens) / self._per_second
        raise RateLimited(caller, self.rate, max(1, math.ceil(wait - 1e-9)))

    def _evict(self):
        while len(self._buckets) > self.entries:
            self._buckets.popitem(last=False)

