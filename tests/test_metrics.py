"""
Unit tests of sandboxd/metrics.py: label bounds, route templates, request
timing on a Clock through the real Klein app (StubTreq), events counted.
"""

from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from sandboxd import metrics as metrics_module
from sandboxd.api.app import SandboxAPI
from sandboxd.config import Config
from sandboxd.metrics import DaemonMetrics, MeteredResource
from sandboxd.lifecycle import Lifecycle
from sandboxd.sandbox import Sandbox, State
from sandboxd.store import Event
from tests.test_events import NoManager


def samples(metrics):
    found = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class MetricsTests(TestCase):
    def setUp(self):
        self.clock = Clock()
        self.metrics = DaemonMetrics(self.clock, routes=SandboxAPI.app.url_map)

    def test_own_registry(self):
        """
        Two DaemonMetrics do not share series (no global registry).
        """
        other = DaemonMetrics(self.clock)
        self.metrics.requestDone("GET", "/health", 200, 0.001)
        self.assertIn(("sandboxd_http_requests_total",
                       (("method", "GET"), ("route", "/health"), ("status", "200"))),
                      samples(self.metrics))
        self.assertNotIn(("sandboxd_http_requests_total",
                          (("method", "GET"), ("route", "/health"), ("status", "200"))),
                         samples(other))

    def test_method_labels_bounded(self):
        """
        Agent method names come from clients: odd ones and any beyond
        MAX_METHODS distinct names are counted as ``other``.
        """
        self.patch(metrics_module, "MAX_METHODS", 2)
        for method in ("fs.read", "process.exec", "fs.write", "../../x", None, "A" * 99):
            self.clock.advance(1)
            self.metrics.callEnded(self.metrics.callStarted(method))
        found = samples(self.metrics)
        counts = {dict(labels)["method"]: value for (name, labels), value in found.items()
                  if name == "sandboxd_agent_call_duration_seconds_count"}
        self.assertEqual(counts, {"fs.read": 1, "process.exec": 1, "other": 4})

    def test_transitions_counted(self):
        """
        As a lifecycle observer: a hand-out counts a create by profile and
        warm|cold, a warm boot is timed from the sandbox's creation to
        READY, a handed-out sandbox ending counts as destroyed or failed
        (a warm one discarded does not), and recorded events by type.
        """
        lifecycle = Lifecycle()
        lifecycle.observe(self.metrics)
        warm = Sandbox(id="sbx-1", profile="python", image="i", runtime="docker",
                       memory=1, cpu=1.0, storage=1, secret="s", created=self.clock.seconds())
        self.clock.advance(0.4)
        lifecycle.move(warm, State.READY)
        warm.method, warm.claimed = "warm", True
        lifecycle.move(warm, State.RUNNING)
        lifecycle.move(warm, State.FAILED, "its container exited")
        spare = Sandbox(id="sbx-2", profile="python", image="i", runtime="docker",
                        memory=1, cpu=1.0, storage=1, secret="s", created=self.clock.seconds())
        lifecycle.move(spare, State.READY)
        lifecycle.move(spare, State.DESTROYING)
        self.metrics.deliver(Event(1, "sandbox.destroyed", "sbx-1", "", 0.0, {}))
        found = samples(self.metrics)
        self.assertEqual(found[("sandboxd_sandbox_creates_total",
                                (("method", "warm"), ("profile", "python")))], 1)
        self.assertEqual(found[("sandboxd_sandbox_ends_total", (("outcome", "failed"),))], 1)
        self.assertNotIn(("sandboxd_sandbox_ends_total", (("outcome", "destroyed"),)), found)
        self.assertEqual(found[("sandboxd_pool_boot_duration_seconds_count",
                                (("profile", "python"),))], 2)
        self.assertEqual(found[("sandboxd_pool_boot_duration_seconds_sum",
                                (("profile", "python"),))], 0.4)
        self.assertEqual(found[("sandboxd_events_total", (("type", "sandbox.destroyed"),))], 1)

    async def test_metered_requests(self):
        """
        Requests through MeteredResource are counted by route template and
        status and timed on the injected clock; /metrics serves them.
        """
        api = SandboxAPI(NoManager(), Config(), self.clock, metrics=self.metrics)
        treq = StubTreq(MeteredResource(api.resource(), self.metrics, self.clock))
        response = await treq.get("http://localhost/sandboxes/sbx-00000000/nope")
        self.assertEqual(response.code, 404)
        await response.content()
        response = await treq.get("http://localhost/metrics")
        self.assertEqual(response.code, 200)
        self.assertIn(b"text/plain", response.headers.getRawHeaders(b"content-type")[0])
        text = (await response.content()).decode()
        self.assertIn('sandboxd_http_requests_total{method="GET",route="unmatched",'
                      'status="404"} 1.0', text)
        self.assertEqual(self.metrics.route(_Request(b"DELETE", b"/sandboxes/sbx-1")),
                         "/sandboxes/<sandbox_id>")
        self.assertEqual(self.metrics.route(_Request(b"PUT", b"/sandboxes/sbx-1")),
                         "unmatched")

    async def test_routing_notes_the_template(self):
        """
        A request Klein routed is labelled with the template Klein matched,
        without the metrics matching its path again (they have no routes
        of their own here); each route has one template.
        """
        metrics = DaemonMetrics(self.clock)
        api = SandboxAPI(NoManager(), Config(), self.clock, metrics=metrics)
        treq = StubTreq(MeteredResource(api.resource(), metrics, self.clock))
        response = await treq.get("http://localhost/ui/no-such-file")
        self.assertEqual(response.code, 404)
        await response.content()
        self.assertIn(("sandboxd_http_requests_total",
                       (("method", "GET"), ("route", "/ui/<name>"), ("status", "404"))),
                      samples(metrics))
        url_map = SandboxAPI.app.url_map
        for rule in url_map.iter_rules():
            self.assertEqual([r.rule for r in url_map.iter_rules(rule.endpoint)], [rule.rule])

    def test_tunnel_routes(self):
        """
        Tunnel requests, served before Klein's routing, are labelled with
        their own templates (bounded: the proxied path is one label), never
        ``unmatched``.
        """
        cases = [
            (b"GET", b"/sandboxes/sbx-1/ports", "/sandboxes/<sandbox_id>/ports"),
            (b"GET", b"/sandboxes/sbx-1/ports/", "/sandboxes/<sandbox_id>/ports"),
            (b"POST", b"/sandboxes/sbx-1/ports/80/expose",
             "/sandboxes/<sandbox_id>/ports/<port>/expose"),
            (b"DELETE", b"/sandboxes/sbx-1/ports/80/expose",
             "/sandboxes/<sandbox_id>/ports/<port>/expose"),
            (b"POST", b"/sandboxes/sbx-1/ports/80/url",
             "/sandboxes/<sandbox_id>/ports/<port>/url"),
            (b"GET", b"/sandboxes/sbx-1/ports/80/url",
             "/sandboxes/<sandbox_id>/ports/<port>/<path>"),
            (b"GET", b"/sandboxes/sbx-1/ports/80/a/b/c?x=1",
             "/sandboxes/<sandbox_id>/ports/<port>/<path>"),
        ]
        for method, path, template in cases:
            self.assertEqual(self.metrics.route(_Request(method, path)), template, path)

    def test_streams_not_timed(self):
        """
        /events and the session route are counted but not put in the
        latency histogram (their time is the stream's life).
        """
        self.metrics.requestDone("GET", "/events", 200, 3600.0)
        found = samples(self.metrics)
        self.assertEqual(found[("sandboxd_http_requests_total",
                                (("method", "GET"), ("route", "/events"), ("status", "200")))],
                         1)
        self.assertNotIn(("sandboxd_http_request_duration_seconds_count",
                          (("method", "GET"), ("route", "/events"), ("status", "200"))), found)
        self.metrics.requestDone("GET", "/health", 200, 0.002)
        self.assertEqual(samples(self.metrics)[(
            "sandboxd_http_request_duration_seconds_count",
            (("method", "GET"), ("route", "/health"), ("status", "200")))], 1)


class _Request:
    def __init__(self, method, path):
        self.method = method
        self.path = path


class _Pools:
    def status(self):
        return {"default": {"target": 2, "ready": 1, "starting": 1, "hits": 3, "misses": 1,
                            "failures": 0, "replaced": 0}}


class _Manager(NoManager):
    pools = _Pools()

    def list(self):
        return [Sandbox(id="sbx-1", profile="default", image="i", runtime="docker",
                        memory=1, cpu=1.0, storage=1, secret="s", state=State.RUNNING)]


class DocumentedTests(TestCase):
    def families(self):
        metrics = DaemonMetrics(Clock(), manager=_Manager())
        metrics.requests.labels("GET", "/health", "200").inc()
        return {f.name for f in text_string_to_metric_families(metrics.exposition().decode())}

    def test_every_metric_documented(self):
        """
        docs/metrics.md names every sandboxd_ metric the daemon exposes
        (counters with their _total), and the scraped gauges are there.
        """
        import os

        with open(os.path.join(os.path.dirname(__file__), os.pardir, "docs", "metrics.md")) as f:
            doc = f.read()
        names = {n for n in self.families()
                 if n.startswith("sandboxd_") and not n.endswith("_created")}
        self.assertIn("sandboxd_sandboxes", names)
        self.assertIn("sandboxd_pool_hits", names)
        counters = {"sandboxd_http_requests", "sandboxd_sandbox_creates", "sandboxd_sandbox_ends",
                    "sandboxd_events", "sandboxd_pool_hits", "sandboxd_pool_misses",
                    "sandboxd_pool_boot_failures", "sandboxd_pool_replaced"}
        for name in names:
            shown = name + "_total" if name in counters else name
            self.assertIn(f"`{shown}`", doc, f"{shown} is not in docs/metrics.md")

    def test_dashboard_uses_real_metrics(self):
        """
        Every sandboxd_ metric the Grafana dashboard queries exists.
        """
        import json
        import os
        import re

        path = os.path.join(os.path.dirname(__file__), os.pardir, "deploy", "grafana",
                            "sandboxd-dashboard.json")
        with open(path) as f:
            dashboard = json.load(f)
        names = self.families()
        used = set(re.findall(r"sandboxd_[a-z_]+", json.dumps(dashboard)))
        self.assertTrue(used)
        for name in used:
            base = re.sub(r"_(total|bucket|sum|count)$", "", name)
            self.assertIn(base, names, f"the dashboard queries {name}")
