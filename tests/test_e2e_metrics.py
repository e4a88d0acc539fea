"""
``GET /metrics`` of a real daemon (real containers, real agent), read with
prometheus-client's own text parser while a sandbox is created, driven
through the SDK and destroyed: the counters and gauges move as they should.
"""

import asyncio
import http.client

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import TestCase

from tests.daemon import Daemon, UnixHTTPConnection


def parse(text):
    """{(sample name, sorted label pairs): value} of an exposition."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


class Scrape:
    def __init__(self, samples):
        self.samples = samples

    def get(self, name, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)


class MetricsTests(TestCase):
    """
    One daemon, scraped around a create, an exec and a destroy.
    """

    def setUp(self):
        self.daemon = Daemon(min_base=1)
        self.daemon.start()
        self.addCleanup(self.daemon.stop)

    def scrape(self):
        connection = UnixHTTPConnection(self.daemon.socket)
        try:
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            self.assertEqual(response.status, 200)
            self.assertTrue(response.getheader("Content-Type").startswith("text/plain"))
            return Scrape(parse(response.read().decode()))
        finally:
            connection.close()

    def test_lifecycle_moves_counters(self):
        """
        A warm create counts as a POST /sandboxes 201, a warm create of its
        profile and a pool hit; while its session is open there is one
        session and one running sandbox; the exec is timed under its agent
        method; the destroy counts a DELETE 204 on the route template and
        an end; afterwards no sandbox and no session remain.
        """
        before = self.scrape()
        status, body = self.daemon.request("POST", "/sandboxes", {"ttl": 600})
        self.assertEqual(status, 201)
        sandbox_id = body["id"]

        during = {}

        async def use():
            from sandbox import connect_sandbox

            async with await connect_sandbox(sandbox_id, endpoint=self.daemon.endpoint) as sbx:
                result = await sbx.process.exec_("echo hi")
                self.assertEqual(result.stdout, "hi\n")
                during["scrape"] = await asyncio.to_thread(self.scrape)

        asyncio.run(use())
        during = during["scrape"]
        self.assertEqual(during.get("sandboxd_websocket_sessions"), 1)
        self.assertEqual(during.get("sandboxd_sandboxes", state="running", profile="default",
                                    runtime="docker"), 1)
        self.assertEqual(
            during.get("sandboxd_agent_call_duration_seconds_count", method="process.exec")
            - before.get("sandboxd_agent_call_duration_seconds_count", method="process.exec"),
            1)
        status, _ = self.daemon.request("DELETE", f"/sandboxes/{sandbox_id}")
        self.assertEqual(status, 204)
        after = self.scrape()

        def moved(name, **labels):
            return after.get(name, **labels) - before.get(name, **labels)

        self.assertEqual(moved("sandboxd_http_requests_total", method="POST",
                               route="/sandboxes", status="201"), 1)
        self.assertEqual(moved("sandboxd_http_requests_total", method="DELETE",
                               route="/sandboxes/<sandbox_id>", status="204"), 1)
        self.assertEqual(moved("sandboxd_http_request_duration_seconds_count",
                               method="DELETE", route="/sandboxes/<sandbox_id>", status="204"), 1)
        self.assertEqual(moved("sandboxd_sandbox_creates_total",
                               profile="default", method="warm"), 1)
        self.assertEqual(moved("sandboxd_pool_hits_total", profile="default"), 1)
        self.assertEqual(moved("sandboxd_sandbox_ends_total", outcome="destroyed"), 1)
        self.assertEqual(moved("sandboxd_events_total", type="sandbox.created"), 1)
        self.assertEqual(after.get("sandboxd_websocket_sessions"), 0)
        self.assertEqual(after.get("sandboxd_sandboxes", state="running", profile="default",
                                   runtime="docker"), 0)
        self.assertGreater(after.get("process_resident_memory_bytes"), 10 << 20)
        self.assertGreater(after.get("process_open_fds"), 5)
        self.assertEqual(after.get("sandboxd_event_subscribers"), 0)
        self.assertGreaterEqual(after.get("sandboxd_pool_target", profile="default"), 1)

    def test_unknown_route_and_tcp(self):
        """
        /metrics is served on TCP without credentials too, and a request
        to no route counts under ``unmatched`` (not its path: paths are
        unbounded).
        """
        self.daemon.request("GET", "/no/such/route/sbx-12345678")
        connection = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=30)
        try:
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            self.assertEqual(response.status, 200)
            scrape = Scrape(parse(response.read().decode()))
        finally:
            connection.close()
        self.assertGreaterEqual(scrape.get("sandboxd_http_requests_total", method="GET",
                                           route="unmatched", status="404"), 1)
        self.assertFalse([key for key in scrape.samples if "sbx-12345678" in str(key)])
