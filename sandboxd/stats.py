"""
A sandbox's resource usage (``GET /sandboxes/{id}/stats``), summarised from
the engine's raw container stats.
"""

from twisted.internet.defer import Deferred

from sandboxd.runtimes.interface import RuntimeFailure


def summarize(raw, uptime):
    """
    The public stats of a sandbox from one engine sample ``raw`` (the body
    of ``GET /containers/{id}/stats?stream=false``) and its ``uptime`` in
    seconds:

    - ``cpu_percent``: CPU time used over the sample's interval, as a
      percentage of one CPU (200.0 is two CPUs busy), as ``docker stats``
      shows it;
    - ``memory_usage_bytes``: memory charged to the sandbox less the
      inactive file cache (what the kernel would reclaim first), as
      ``docker stats`` shows it; ``memory_limit_bytes``: its limit;
    - ``network_rx_bytes``, ``network_tx_bytes``: summed over interfaces;
    - ``pids``: tasks in its cgroup (under gVisor, the Sentry's own threads
      count as well);
    - ``uptime_seconds``: since the sandbox was handed out.
    """
    if not isinstance(raw, dict):
        raw = {}  # the engine answers null for a container that is going: zeros
    memory = raw.get("memory_stats") or {}
    detail = memory.get("stats") or {}
    # cgroup v1 names it total_inactive_file, v2 inactive_file.
    inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    usage = max(0, (memory.get("usage") or 0) - (inactive or 0))
    networks = (raw.get("networks") or {}).values()
    return {
        "cpu_percent": cpu_percent(raw),
        "memory_usage_bytes": usage,
        "memory_limit_bytes": memory.get("limit") or 0,
        "network_rx_bytes": sum(n.get("rx_bytes", 0) for n in networks),
        "network_tx_bytes": sum(n.get("tx_bytes", 0) for n in networks),
        "pids": (raw.get("pids_stats") or {}).get("current") or 0,
        "uptime_seconds": round(max(0.0, uptime), 3),
    }


def cpu_percent(raw):
    """
    The container's share of the host's CPU time between the sample's two
    readings, times the number of CPUs, in percent (0.0 without two
    readings).
    """
    now = raw.get("cpu_stats") or {}
    before = raw.get("precpu_stats") or {}
    used = (now.get("cpu_usage") or {}).get("total_usage", 0) - (
        before.get("cpu_usage") or {}
    ).get("total_usage", 0)
    elapsed = (now.get("system_cpu_usage") or 0) - (before.get("system_cpu_usage") or 0)
    cpus = now.get("online_cpus") or len((now.get("cpu_usage") or {}).get("percpu_usage") or ()) or 1
    if used <= 0 or elapsed <= 0 or not before.get("system_cpu_usage"):
        return 0.0
    return round(used / elapsed * cpus * 100.0, 2)


class SandboxStats:
    """
    Reads a sandbox's stats from its runtime (C{IRuntime.stats}) and
    summarises them; C{clock} gives the uptime.
    """

    def __init__(self, runtime, clock):
        self._runtime = runtime
        self._clock = clock

    def read(self, sandbox):
        """
        Fire with L{summarize}'s dict for C{sandbox}; fail with
        L{RuntimeFailure} when it has no container or the engine fails.
        """
        return Deferred.fromCoroutine(self._read(sandbox))

    async def _read(self, sandbox):
        if sandbox.container_id is None:
            raise RuntimeFailure(f"sandbox {sandbox.id} has no container yet")
        try:
            raw = await self._runtime.stats(sandbox.container_id)
        except RuntimeFailure:
            raise
        except Exception as e:
            raise RuntimeFailure(f"cannot read the stats of sandbox {sandbox.id}: {e}") from e
        return summarize(raw, self._clock.seconds() - sandbox.created)
