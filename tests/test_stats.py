"""
Tests for L{sandboxd.stats}: the engine's raw container stats summarised as
C{GET /sandboxes/{id}/stats} answers them.
"""

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from sandboxd.runtimes.interface import RuntimeFailure
from sandboxd.sandbox import Sandbox
from sandboxd.stats import SandboxStats, cpu_percent, summarize

# A Docker 20.10 sample on cgroup v1, cut down.
RAW = {
    "pids_stats": {"current": 7, "limit": 256},
    "cpu_stats": {
        "cpu_usage": {"total_usage": 1_500_000_000, "percpu_usage": [1, 2]},
        "system_cpu_usage": 20_000_000_000,
        "online_cpus": 2,
    },
    "precpu_stats": {
        "cpu_usage": {"total_usage": 1_000_000_000, "percpu_usage": [1, 2]},
        "system_cpu_usage": 18_000_000_000,
        "online_cpus": 2,
    },
    "memory_stats": {
        "usage": 50 << 20,
        "stats": {"total_inactive_file": 8 << 20, "rss": 40 << 20},
        "limit": 256 << 20,
    },
    "networks": {
        "eth0": {"rx_bytes": 1000, "tx_bytes": 200},
        "eth1": {"rx_bytes": 10, "tx_bytes": 2},
    },
}


class SummarizeTests(TestCase):
    def test_fields(self):
        """
        Every field of docs/api.md, computed as docker stats does: CPU as a
        percentage of one CPU, memory without the inactive file cache,
        network summed over interfaces.
        """
        self.assertEqual(
            summarize(RAW, 12.3456),
            {
                "cpu_percent": 50.0,  # 0.5 s of 2 s of both CPUs' time, x 2 CPUs
                "memory_usage_bytes": 42 << 20,
                "memory_limit_bytes": 256 << 20,
                "network_rx_bytes": 1010,
                "network_tx_bytes": 202,
                "pids": 7,
                "uptime_seconds": 12.346,
            },
        )

    def test_cgroup_v2_and_missing_parts(self):
        """
        cgroup v2's inactive_file is subtracted too; a sample without
        networks, pids or a previous CPU reading gives zeros, not errors.
        """
        raw = {
            "memory_stats": {"usage": 100, "stats": {"inactive_file": 30}, "limit": 1000},
            "cpu_stats": {"cpu_usage": {"total_usage": 5}, "system_cpu_usage": 10},
            "precpu_stats": {},
        }
        summary = summarize(raw, -1)
        self.assertEqual(summary["memory_usage_bytes"], 70)
        self.assertEqual(
            (summary["cpu_percent"], summary["pids"], summary["network_rx_bytes"],
             summary["uptime_seconds"]),
            (0.0, 0, 0, 0.0),
        )
        self.assertEqual(summarize({}, 0)["memory_limit_bytes"], 0)

    def test_null_sample(self):
        """
        The engine answers ``null`` for a container being removed (found by
        schemathesis as a 500): all zeros, with the uptime.
        """
        summary = summarize(None, 3.0)
        self.assertEqual(summary["uptime_seconds"], 3.0)
        self.assertEqual({k: v for k, v in summary.items() if k != "uptime_seconds"},
                         {"cpu_percent": 0.0, "memory_usage_bytes": 0, "memory_limit_bytes": 0,
                          "network_rx_bytes": 0, "network_tx_bytes": 0, "pids": 0})

    def test_cpu_percent_without_online_cpus(self):
        """
        Older engines give no online_cpus: the per-CPU list counts them.
        """
        raw = {
            "cpu_stats": {"cpu_usage": {"total_usage": 300, "percpu_usage": [0] * 4},
                          "system_cpu_usage": 1000},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 600},
        }
        self.assertEqual(cpu_percent(raw), 200.0)


class _Runtime:
    def __init__(self, result):
        self.result = result
        self.asked = []

    def stats(self, container_id):
        self.asked.append(container_id)
        return self.result


def _sandbox(container_id="c1"):
    sandbox = Sandbox(id="sbx-1", profile="default", image="i", runtime="docker",
                      memory=1, cpu=1.0, storage=1, secret="s", created=100.0)
    sandbox.container_id = container_id
    return sandbox


class SandboxStatsTests(TestCase):
    async def test_read(self):
        """
        read() asks the runtime for the sandbox's container and gives the
        uptime since the sandbox was created.
        """
        clock = Clock()
        clock.advance(130)
        runtime = _Runtime(succeed(RAW))
        summary = await SandboxStats(runtime, clock).read(_sandbox())
        self.assertEqual(runtime.asked, ["c1"])
        self.assertEqual((summary["uptime_seconds"], summary["pids"]), (30.0, 7))

    async def test_failures(self):
        """
        No container yet, or an engine failure, is a RuntimeFailure naming
        the sandbox.
        """
        stats = SandboxStats(_Runtime(fail(ValueError("bad json"))), Clock())
        with self.assertRaises(RuntimeFailure) as caught:
            await stats.read(_sandbox())
        self.assertIn("sbx-1", str(caught.exception))
        with self.assertRaises(RuntimeFailure):
            await stats.read(_sandbox(container_id=None))
