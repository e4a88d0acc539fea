"""
The warm pool: per profile, sandboxes already started and authenticated,
handed out without touching the container engine.
"""

from collections import deque

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger


class WarmPool:
    """
    Ready sandboxes of one profile.

    ``claim()`` pops a ready sandbox (O(1), no I/O) and starts a refill; the
    refill boots sandboxes in the background through ``boot`` (a callable
    returning a Deferred of a ready Sandbox), at most ``parallel`` at a time.
    A boot that fails backs off before the next try so a broken engine or a
    missing image is not hammered.  ``limiter`` (a DeferredSemaphore shared
    by every pool) bounds the boots of all pools together.

    ``flush()`` replaces every warm sandbox: the ready ones are discarded and
    boots already under way when it was called are discarded when they end.
    ``checkHealth()`` pings the ready ones; one that is disconnected, or
    misses ``STRIKES`` pings in a row, is discarded and replaced.
    """

    STRIKES = 2

    log = Logger()
    #: Called as ``notify(type, **data)`` for ``pool.replaced`` and
    #: ``pool.boot_failed`` (PoolSet records them as events), or None.
    notify = None

    def __init__(
        self,
        profile,
        boot,
        discard,
        clock,
        target,
        parallel=2,
        limiter=None,
        refill_delay=0.0,
    ):
        self.profile = profile
        self.target = target
        self._boot = boot
        self._discard = discard
        self._clock = clock
        self._parallel = parallel
        self._limiter = limiter
        self._refill_delay = refill_delay
        self._delayed_refill = None
        self._generation = 0
        self._strikes = {}
        self._ready = deque()
        self._starting = 0
        self._stopped = True
        self._backoff = 0.0
        self._retry = None
        self.hits = 0
        self.misses = 0
        self.failures = 0
        self.replaced = 0
        self.last_error = None

    @property
    def ready(self):
        return len(self._ready)

    @property
    def starting(self):
        return self._starting

    def start(self):
        self._stopped = False
        self.refill()

    def stop(self):
        """
        Stop refilling; return the ready sandboxes for the caller to destroy.
        """
        self._stopped = True
        for call in (self._retry, self._delayed_refill):
            if call is not None and call.active():
                call.cancel()
        ready, self._ready = list(self._ready), deque()
        return ready

    def claim(self):
        """
        A ready sandbox with a live agent connection, or None (a miss).
        """
        while self._ready:
            sandbox = self._ready.popleft()
            if sandbox.connection is not None and sandbox.connection.connected:
                self.hits += 1
                self._refillSoon()
                return sandbox
            self._discard(sandbox)
        self.misses += 1
        self.refill()
        return None

    def _refillSoon(self):
        """
        Refill after ``refill_delay``: booting a container costs the machine
        CPU, which the caller that just claimed a sandbox needs for its
        first commands more than the pool needs it now.
        """
        if not self._refill_delay:
            self.refill()
        elif self._delayed_refill is None or not self._delayed_refill.active():
            self._delayed_refill = self._clock.callLater(
                self._refill_delay, self.refill
            )

    def resize(self, target):
        """
        Set the target and discard ready sandboxes above it at once.
        """
        self.target = target
        self.shrink()

    def setTarget(self, target):
        """
        Set the target; a higher one is refilled after ``refill_delay`` (a
        claim retargets every pool: its caller's first commands come
        first), a lower one takes effect at the next ``shrink()``.
        """
        self.target = target
        self._refillSoon()

    def shrink(self):
        while len(self._ready) > self.target:
            self._discard(self._ready.pop())
        self.refill()

    def flush(self):
        """
        Replace every warm sandbox (after an image rebuild, say).
        """
        self._generation += 1
        ready, self._ready = list(self._ready), deque()
        for sandbox in ready:
            self._discard(sandbox)
        self.refill()
        return len(ready)

    async def checkHealth(self, timeout):
        """
        Ping every ready sandbox; discard the dead and the repeatedly slow.
        Return how many were replaced.
        """
        ready = list(self._ready)
        answers = await gatherResults(
            [
                s.connection.ping(timeout * s.liveness_scale) if s.connection is not None
                else succeed(False)
                for s in ready
            ],
            consumeErrors=True,
        )
        replaced = 0
        for sandbox, alive in zip(ready, answers):
            if alive:
                self._strikes.pop(sandbox.id, None)
                continue
            strikes = self._strikes.get(sandbox.id, 0) + 1
            dead = sandbox.connection is None or not sandbox.connection.connected
            if dead or strikes >= self.STRIKES:
                self._strikes.pop(sandbox.id, None)
                if self.remove(sandbox):
                    self.log.warn(
                        "warm pool {profile}: replacing {sandbox} ({why})",
                        profile=self.profile.name,
                        sandbox=sandbox.id,
                        why="agent gone" if dead else "too slow to answer",
                    )
                    self._discard(sandbox)
                    replaced += 1
            else:
                self._strikes[sandbox.id] = strikes
        return replaced

    def remove(self, sandbox):
        """
        Forget a warm sandbox that died while waiting, and replace it
        (counted in ``replaced``).
        """
        try:
            self._ready.remove(sandbox)
        except ValueError:
            return False
        self.replaced += 1
        if self.notify is not None:
            self._notify("pool.replaced", sandbox=sandbox.id)
        self.refill()
        return True

    def _notify(self, type, **data):
        if self.notify is not None:
            self.notify(type, profile=self.profile.name, **data)

    def _backingOff(self):
        return self._retry is not None and self._retry.active()

    def refill(self):
        """
        Boot sandboxes until ready + starting reaches the target, at most
        ``parallel`` at once, unless stopped or backing off after a failure.
        """
        while (
            not self._stopped
            and not self._backingOff()
            and len(self._ready) + self._starting < self.target
            and self._starting < self._parallel
        ):
            self._starting += 1
            booting = Deferred.fromCoroutine(self._bootOne())
            booting.addErrback(
                lambda f: self.log.failure("warm pool refill crashed", f)
            )

    async def _bootOne(self):
        generation = self._generation
        try:
            if self._limiter is not None:
                await self._limiter.acquire()
            try:
                sandbox = await self._boot(self.profile)
            finally:
                if self._limiter is not None:
                    self._limiter.release()
        except Exception as e:
            self._starting -= 1
            self.failures += 1
            self.last_error = str(e)
            self._backoff = min(max(self._backoff * 2, 0.5), 30.0)
            self._notify("pool.boot_failed", error=str(e)[:500], retry_in=self._backoff)
            self.log.error(
                "warm pool {profile}: boot failed ({error}); retrying in {delay}s",
                profile=self.profile.name,
                error=e,
                delay=self._backoff,
            )
            if not self._stopped:
                self._retry = self._clock.callLater(self._backoff, self.refill)
            return
        self._starting -= 1
        self._backoff = 0.0
        self.last_error = None
        stale = generation != self._generation
        if self._stopped or stale or len(self._ready) >= self.target:
            self._discard(sandbox)
        else:
            self._ready.append(sandbox)
        self.refill()

    def status(self):
        total = self.hits + self.misses
        return {
            "target": self.target,
            "ready": len(self._ready),
            "starting": self._starting,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": (self.hits / total) if total else None,
            "failures": self.failures,
            "replaced": self.replaced,
            "last_error": self.last_error,
        }
