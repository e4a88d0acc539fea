"""
How many warm sandboxes each profile should keep: pure arithmetic over the
demand the daemon has seen, no I/O.

The rules (docs/pool.md):

- every base profile keeps at least ``min_base`` warm (its floor); a
  template used within the window is planned like a profile whose floor is
  ``pool.min_per_image`` (``floors``);
- ``total_warm`` slots are shared in proportion to each profile's creates
  over the last ``rebalance_window``; a profile with no recent demand gets
  only its floor;
- a profile that misses (a create found its pool empty) gets a boost that
  grows by one per miss and decays by one per quiet rebalance;
- a count pinned by an operator (``PUT /pools/{profile}``) wins;
- the sum never exceeds ``max_warm``: extras above the floors are scaled
  down first, then the floors themselves if they alone exceed it.
"""

from collections import deque


class DemandTracker:
    """
    Create timestamps per profile within a sliding window.
    """

    def __init__(self, window):
        self.window = window
        self._times = {}

    def record(self, profile, now):
        times = self._times.setdefault(profile, deque())
        times.append(now)
        self._prune(times, now)

    def counts(self, now):
        """
        Creates per profile within the window ending at ``now``.
        """
        result = {}
        for profile, times in self._times.items():
            self._prune(times, now)
            result[profile] = len(times)
        return result

    def _prune(self, times, now):
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()


def _apportion(budget, weights):
    """
    Split the integer ``budget`` in proportion to ``weights`` (largest
    remainders), deterministic for equal remainders (by name).
    """
    total = sum(weights.values())
    if budget <= 0 or total <= 0:
        return {name: 0 for name in weights}
    exact = {name: budget * w / total for name, w in weights.items()}
    shares = {name: int(x) for name, x in exact.items()}
    left = budget - sum(shares.values())
    by_remainder = sorted(weights, key=lambda n: (-(exact[n] - shares[n]), n))
    for name in by_remainder[:left]:
        shares[name] += 1
    return shares


def plan_targets(profiles, demand, boosts, pinned, min_base, total_warm, max_warm,
                 floors=None):
    """
    The warm target of each profile.

    ``profiles``: names of base profiles (and of templates' pools);
    ``demand``: creates per profile in the window; ``boosts``: extra slots
    earned by misses; ``pinned``: counts fixed by an operator; ``floors``:
    the floor of a pool that is not ``min_base`` (templates').
    """
    free = [p for p in profiles if p not in pinned]
    targets = {p: pinned[p] for p in profiles if p in pinned}
    capacity = max(0, max_warm - sum(targets.values()))
    floors = {p: (floors or {}).get(p, min_base) for p in free}
    if sum(floors.values()) > capacity:
        floors = _apportion(capacity, {p: 1 for p in free})
    room = capacity - sum(floors.values())
    shared = max(0, min(total_warm, capacity) - sum(floors.values()))
    weights = {p: demand.get(p, 0) for p in free}
    extras = _apportion(shared, weights)
    for p in free:
        extras[p] += boosts.get(p, 0)
    if sum(extras.values()) > room:
        extras = _apportion(room, {p: e for p, e in extras.items() if e} or {})
    for p in free:
        targets[p] = floors[p] + extras.get(p, 0)
    return targets


class Autoscaler:
    """
    Miss-driven boosts: +1 per miss, -1 per quiet rebalance, within a cap.
    """

    def __init__(self, cap):
        self.cap = cap
        self.boosts = {}
        self._missed = set()

    def missed(self, profile):
        self.boosts[profile] = min(self.cap, self.boosts.get(profile, 0) + 1)
        self._missed.add(profile)

    def decay(self):
        """
        A rebalance tick: profiles that did not miss since the last tick
        shrink back by one.
        """
        for profile in list(self.boosts):
            if profile not in self._missed:
                self.boosts[profile] -= 1
                if self.boosts[profile] <= 0:
                    del self.boosts[profile]
        self._missed.clear()
