"""
Tests for the benchmark harness's pure parts (bench/stats.py,
bench/report.py) and for the committed results the docs show.
"""

import json
import os
import re
import sys

from twisted.trial.unittest import TestCase

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BENCH = os.path.join(_ROOT, "bench")
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)

from report import markdown_table, scenario  # noqa: E402
from stats import mbps, percentile, ratio, summary  # noqa: E402

RESULTS = os.path.join(_ROOT, "docs", "bench", "results.json")
DOC = os.path.join(_ROOT, "docs", "benchmarks.md")


def fakeResults(rows):
    return {
        "scenarios": rows,
        "idle_pool_20_cpu_share": 0.0012,
        "scaling": [{
            "live": 10, "daemon_rss_mb": 64.5,
            "agent_rss": {"n": 10, "mean_mb": 16.9, "max_mb": 17.0, "total_mb": 169.0},
            "shim_rss": {"n": 10, "mean_mb": 13.7, "max_mb": 14.0, "total_mb": 137.0},
            **{k: summary([0.001, 0.002]) for k in (
                "exec_rtt", "warm_create", "create_snippet_destroy",
                "list_sandboxes", "docker_exec")},
        }],
    }


class StatsTests(TestCase):
    """
    Percentiles, summaries and ratios.
    """

    def test_percentileNearestRank(self):
        """
        percentile picks the nearest-rank value: of 1..200 the p99 is 198,
        the p50 of 1..100 is 50, and one sample is every percentile.
        """
        self.assertEqual(percentile(list(range(1, 201)), 0.99), 198)
        self.assertEqual(percentile(list(range(1, 101)), 0.5), 50)
        self.assertEqual(percentile([7], 0.99), 7)

    def test_summaryInMilliseconds(self):
        """
        summary reports n, p50/p90/p99/max in ms and keeps every sample (in
        ms, in the order taken) for the plots.
        """
        samples = [i / 1000 for i in range(100, 0, -1)]
        out = summary(samples)
        self.assertEqual(out["n"], 100)
        self.assertEqual(out["p50_ms"], 50.5)
        self.assertEqual(out["p90_ms"], 90.0)
        self.assertEqual(out["p99_ms"], 99.0)
        self.assertEqual(out["max_ms"], 100.0)
        self.assertEqual(out["samples_ms"][:2], [100.0, 99.0])

    def test_ratio(self):
        """
        ratio is the peer's p50 over ours; None when a side is missing.
        """
        self.assertEqual(ratio({"p50_ms": 2.0}, {"p50_ms": 300.0}), 150.0)
        self.assertIsNone(ratio({"p50_ms": 2.0}, None))

    def test_mbps(self):
        """
        mbps counts 10^6 bytes per second.
        """
        self.assertEqual(mbps(0.5, 100 * 10**6), 200.0)


class ReportTests(TestCase):
    """
    Result rows and the Markdown table built from them.
    """

    def test_scenarioDropsPeersThatDidNotRun(self):
        """
        A peer given as None (not installed) gets no row and no ratio.
        """
        row = scenario("x", "x", summary([0.001]), {"a": summary([0.1]), "b": None})
        self.assertEqual(list(row["peers"]), ["a"])
        self.assertEqual(row["ratio_p50"], {"a": 100.0})

    def test_scenarioThroughput(self):
        """
        With a size, the row carries our MB/s at the median.
        """
        row = scenario("w", "w", summary([0.5]), {}, size=100 * 10**6)
        self.assertEqual(row["ours"]["MBps_at_p50"], 200.0)

    def test_markdownTable(self):
        """
        The Markdown table has a row for us, one per peer with its ratio,
        the idle CPU line and one scaling row per level.
        """
        rows = [scenario("warm_create", "warm create", summary([0.001]),
                         {"docker run": summary([0.3])}, pool_hit_rate=0.5)]
        text = markdown_table(fakeResults(rows))
        self.assertIn("| **warm create** | 1 | 1.00 |", text)
        self.assertIn("| &nbsp;&nbsp;docker run | 1 | 300.00 |", text)
        self.assertIn("**300.0x**", text)
        self.assertIn("pool hit rate 50.0%", text)
        self.assertIn("0.12% of one core", text)
        self.assertRegex(text, r"\| 10 \| 64\.5 \| 16\.9 / 17\.0 \| - \| - \| 13\.7 / - \| 0 \|")


class CommittedResultsTests(TestCase):
    """
    docs/bench/results.json (from the last full `make bench`) covers every
    scenario of the issue and docs/benchmarks.md shows its plots.
    """

    def setUp(self):
        with open(RESULTS) as f:
            self.results = json.load(f)

    def test_everyScenarioWithItsPeers(self):
        """
        Each scenario of the issue is there, beside the peers it is compared
        with, each with p50/p90/p99/max.
        """
        rows = {r["key"]: r for r in self.results["scenarios"]}
        expected = {
            "warm_create": {"docker run --rm echo"},
            "create_snippet_destroy": {
                "docker run --rm python3 -c", "llm-sandbox open/run/close",
                "llm-sandbox pooled open/run/close", "epicbox.run"},
            "exec_rtt": {"docker exec", "llm-sandbox execute_command"},
            "write_100mib": {"docker cp in", "llm-sandbox copy_to_runtime"},
            "read_100mib": {"docker cp out", "llm-sandbox copy_from_runtime"},
            "concurrent_100_creates": {"100 concurrent docker run --rm echo"},
            "sustained_5_per_s": set(),
            "open_loop_5_per_s": set(),
        }
        for key, peers in expected.items():
            self.assertIn(key, rows)
            self.assertEqual(set(rows[key]["peers"]), peers, key)
            for stats in [rows[key]["ours"], *rows[key]["peers"].values()]:
                for field in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
                    self.assertGreater(stats[field], 0, (key, field))
        self.assertIn("pool_hit_rate", rows["sustained_5_per_s"])

    def test_scalingLevels(self):
        """
        The scaling run reached 10, 100 and 200 live sandboxes and measured
        the daemon's and the agents' memory at each.
        """
        levels = [row["live"] for row in self.results["scaling"]]
        for level in (10, 100, 200):
            self.assertIn(level, levels)
        for row in self.results["scaling"]:
            self.assertGreater(row["daemon_rss_mb"], 0)
            self.assertEqual(row["agent_rss"]["n"], row["live"])

    def test_docShowsEveryPlot(self):
        """
        Every plot the doc links exists, and the doc links all five.
        """
        with open(DOC) as f:
            doc = f.read()
        linked = re.findall(r"\(bench/([a-z-]+\.png)\)", doc)
        self.assertEqual(
            set(linked),
            {"latency.png", "snippet.png", "scaling-memory.png",
             "scaling-latency.png", "sustained.png"},
        )
        for name in linked:
            self.assertTrue(os.path.isfile(os.path.join(_ROOT, "docs", "bench", name)), name)
