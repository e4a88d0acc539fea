"""
Admission of new sandboxes against the daemon-wide limits: how many may
live at once and how much memory and CPU they may claim in all.
"""


class AtCapacity(Exception):
    """
    A new sandbox would exceed ``limits.max_sandboxes``,
    ``limits.max_total_memory`` or ``limits.max_total_cpu``.
    """


class Capacity:
    """
    Checks a new sandbox's memory and CPU against the sandboxes already
    handed out (running, or booting cold for a caller).  Warm sandboxes in
    the pools do not count: ``pool.max_warm`` bounds them, and a claim moves
    one into the count.  A total of 0 means no cap beyond
    ``max_sandboxes`` times the per-sandbox limits.
    """

    def __init__(self, limits):
        self._limits = limits

    def reload(self, limits):
        """
        Check later sandboxes against new limits (the running ones stay).
        """
        self._limits = limits

    def check(self, sandboxes, memory, cpu):
        """
        Raise L{AtCapacity}, naming the limit, unless one more sandbox of
        ``memory`` bytes and ``cpu`` CPUs fits beside ``sandboxes``.
        """
        limits = self._limits
        sandboxes = list(sandboxes)
        if len(sandboxes) >= limits.max_sandboxes:
            raise AtCapacity(
                f"{limits.max_sandboxes} sandboxes are running (limits.max_sandboxes)"
            )
        if limits.max_total_memory:
            used = sum(s.memory for s in sandboxes)
            if used + memory > limits.max_total_memory:
                raise AtCapacity(
                    f"{_mib(memory)} more memory would exceed limits.max_total_memory"
                    f" ({_mib(used)} of {_mib(limits.max_total_memory)} in use)"
                )
        if limits.max_total_cpu:
            used = sum(s.cpu for s in sandboxes)
            # A little slack: sums of float CPUs like 0.1 must not refuse
            # the sandbox that exactly fills the total.
            if used + cpu > limits.max_total_cpu + 1e-9:
                raise AtCapacity(
                    f"{cpu:g} more CPUs would exceed limits.max_total_cpu"
                    f" ({used:g} of {limits.max_total_cpu:g} in use)"
                )


def _mib(size):
    return f"{size / (1 << 20):g} MiB"
