"""
The warm pools of every profile, sized together.

``PoolSet`` owns one WarmPool per profile, records demand, and on every
claim and every ``pool.health_interval`` recomputes the targets with
``sandboxd.poolplan``; on the interval it also shrinks pools above their
target and pings every warm sandbox.
"""

from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sandboxd.pool import WarmPool
from sandboxd.poolplan import Autoscaler, DemandTracker, plan_targets

#: Sandboxes booting at once, all pools together, and per pool.
MAX_PARALLEL_BOOTS = 4
PARALLEL_BOOTS_PER_POOL = 3
#: Seconds between a hit and the refill it causes (see WarmPool).
REFILL_DELAY = 0.1


class UnknownPool(KeyError):
    """
    No pool has this profile name.
    """


class PoolSet:
    """
    Warm pools sized by demand, misses, floors, ceilings and operators.
    ``notify(type, **data)``, if given, hears of ``pool.replaced`` and
    ``pool.boot_failed``.
    """

    log = Logger()

    def __init__(self, profiles, pool_config, boot, discard, clock, notify=None):
        self._config = pool_config
        self._notify = notify
        self._clock = clock
        self._limiter = DeferredSemaphore(MAX_PARALLEL_BOOTS)
        self._demand = DemandTracker(pool_config.rebalance_window)
        self._autoscaler = Autoscaler(cap=pool_config.max_warm)
        self._pinned = {}
        self._boot, self._discard = boot, discard
        self.pools = {name: self._newPool(profile) for name, profile in profiles.items()}
        #: The pools of templates (sandboxd/templates/warm.py), by template id.
        self._templates = set()
        self._ticker = None
        self._checking = None
        self.rebalance()

    def _newPool(self, profile):
        pool = WarmPool(
            profile,
            self._boot,
            self._discard,
            self._clock,
            target=0,
            parallel=PARALLEL_BOOTS_PER_POOL,
            limiter=self._limiter,
            refill_delay=REFILL_DELAY,
        )
        pool.notify = self._notify
        return pool

    def reload(self, profiles, pool_config):
        """
        Apply a new configuration: pools of removed profiles are stopped
        and their warm sandboxes discarded, new profiles get a pool, a
        changed profile's warm sandboxes are replaced (handed-out ones are
        not the pools'), and the sizes follow the new ``[pool]``.  Return
        ``{"added", "removed", "changed"}`` profile names.
        """
        started = self._ticker is not None and self._ticker.running
        added = sorted(profiles.keys() - self.pools.keys())
        removed = sorted(self.pools.keys() - profiles.keys() - self._templates)
        changed = sorted(name for name in profiles.keys() & self.pools.keys() - self._templates
                         if profiles[name] != self.pools[name].profile)
        for name in removed:
            for sandbox in self.pools.pop(name).stop():
                self._discard(sandbox)
            self._pinned.pop(name, None)
        for name in changed:
            self.pools[name].profile = profiles[name]
            self.pools[name].flush()
        for name in added:
            self.pools[name] = self._newPool(profiles[name])
            if started:
                self.pools[name].start()
        interval_changed = pool_config.health_interval != self._config.health_interval
        self._config = pool_config
        self._demand.window = pool_config.rebalance_window
        self._autoscaler.cap = pool_config.max_warm
        self.rebalance()
        for pool in self.pools.values():
            pool.shrink()
        if started and interval_changed:
            self._ticker.stop()
            self._ticker.start(pool_config.health_interval, now=False)
        return {"added": added, "removed": removed, "changed": changed}

    def __getitem__(self, name):
        return self.pools[name]

    def start(self):
        for pool in self.pools.values():
            pool.start()
        self._ticker = LoopingCall(self.tick)
        self._ticker.clock = self._clock
        self._ticker.start(self._config.health_interval, now=False).addErrback(
            lambda f: self.log.failure("pool maintenance stopped", f)
        )

    def stop(self):
        """
        Stop every pool; return the ready sandboxes for the caller to destroy.
        """
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        ready = []
        for pool in self.pools.values():
            ready.extend(pool.stop())
        return ready

    def claim(self, name):
        """
        A warm sandbox of profile ``name`` or None; either way the demand is
        recorded and the targets follow it.
        """
        pool = self.pools[name]
        self._demand.record(name, self._clock.seconds())
        sandbox = pool.claim()
        if sandbox is None:
            self._autoscaler.missed(name)
        self.rebalance()
        return sandbox

    def claimTemplate(self, profile):
        """
        A warm sandbox of the template whose pool ``profile`` describes (a
        TemplateProfile), or None.  With ``pool.min_per_image`` above 0 the
        template gets a pool at its first use, kept while it is used within
        ``pool.rebalance_window``.
        """
        if profile.name not in self.pools:
            if self._config.min_per_image <= 0:
                return None
            self._templates.add(profile.name)
            self.pools[profile.name] = self._newPool(profile)
            if self._ticker is not None and self._ticker.running:
                self.pools[profile.name].start()
        return self.claim(profile.name)

    def dropTemplate(self, name):
        """
        Stop a template's pool (deleted, or not used within the window)
        and discard its warm sandboxes.
        """
        if name in self._templates:
            self._templates.discard(name)
            self._pinned.pop(name, None)
            for sandbox in self.pools.pop(name).stop():
                self._discard(sandbox)

    def rebalance(self):
        demand = self._demand.counts(self._clock.seconds())
        for name in [t for t in self._templates if not demand.get(t)]:
            self.dropTemplate(name)
        targets = plan_targets(
            profiles=list(self.pools),
            demand=demand,
            boosts=self._autoscaler.boosts,
            pinned=self._pinned,
            min_base=self._config.min_base,
            total_warm=self._config.total_warm,
            max_warm=self._config.max_warm,
            floors={name: self._config.min_per_image for name in self._templates},
        )
        for name, pool in self.pools.items():
            pool.setTarget(targets[name])
        return targets

    def tick(self):
        """
        The periodic upkeep: decay boosts, retarget, shrink, health-check.
        """
        self._autoscaler.decay()
        self.rebalance()
        for pool in self.pools.values():
            pool.shrink()
        if self._checking is None or self._checking.called:
            self._checking = Deferred.fromCoroutine(self._checkHealth())

    async def _checkHealth(self):
        try:
            for pool in self.pools.values():
                await pool.checkHealth(self._config.liveness_timeout)
        except Exception:
            self.log.failure("health check failed")

    def resize(self, name, count):
        """
        Pin the profile's warm count (None unpins it); apply at once.
        """
        if name not in self.pools:
            raise UnknownPool(name)
        if count is None:
            self._pinned.pop(name, None)
        else:
            self._pinned[name] = count
        self.rebalance()
        self.pools[name].shrink()

    def flush(self, name):
        if name not in self.pools:
            raise UnknownPool(name)
        return self.pools[name].flush()

    def status(self):
        result = {}
        for name, pool in self.pools.items():
            status = pool.status()
            status["pinned"] = name in self._pinned
            result[name] = status
        return result
