"""
The dashboard with 200 sandboxes, in headless Chromium, against a small
stand-in for the daemon's read routes (stdlib HTTP in a thread: the page's
files from sandboxd/ui/static, 200 made-up sandboxes, their stats, a pool
and an event stream that stays open).  The table lists all of them, the
filters narrow it, and stats are asked for a bounded number of rows with
a bounded number of requests in flight.
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from twisted.python import log
from twisted.trial.unittest import SynchronousTestCase

from sandboxd.api.ui import FILES, STATIC
from tests.uibrowser import Browser, require_browser

COUNT = 200


def fake_sandboxes():
    """COUNT sandboxes: every tenth failed, labels team a/b alternating."""
    return [{"id": f"sbx-fake{i:04d}", "profile": "default" if i % 3 else "python",
             "template": None, "image": "sandbox-base:latest", "runtime": "docker",
             "state": "failed" if i % 10 == 0 else "running",
             "created": "2026-12-02T12:00:00.000000Z", "ttl": 0,
             "labels": {"team": "a" if i % 2 else "b", "n": str(i)},
             "memory": 268435456, "cpu": 1.0, "storage": 524288000, "method": "warm",
             "identity": ""} for i in range(COUNT)]


class FakeDaemon:
    """The stand-in: counts stats requests and the most in flight at once."""

    def __init__(self):
        self.sandboxes = fake_sandboxes()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.stats_asked = []
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/ui/"

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def stats(self, sandbox_id):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.stats_asked.append(sandbox_id)
        try:
            # Hold each answer a moment so that requests overlap if the page
            # sends more at once than it should.
            self.stopping.wait(0.02)
            return {"cpu_percent": 1.5, "memory_usage_bytes": 20 << 20,
                    "memory_limit_bytes": 256 << 20, "network_rx_bytes": 0,
                    "network_tx_bytes": 0, "pids": 3, "uptime_seconds": 60}
        finally:
            with self.lock:
                self.in_flight -= 1

    def handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status, body, kind=b"application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind.decode())
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlsplit(self.path)
                path, query = url.path, parse_qs(url.query)
                if path.startswith("/ui/"):
                    name = path[4:] or "index.html"
                    if name == "config.json":
                        return self.send(200, {"read_only": False})
                    with open(os.path.join(STATIC, name), "rb") as f:
                        return self.send(200, f.read(), FILES[name])
                if path == "/sandboxes":
                    wanted = [v.split(":", 1) for v in query.get("label", [])]
                    return self.send(200, [s for s in fake.sandboxes
                                           if all(s["labels"].get(k) == v for k, v in wanted)])
                if path.startswith("/sandboxes/") and path.endswith("/stats"):
                    return self.send(200, fake.stats(path.split("/")[2]))
                if path == "/pools":
                    return self.send(200, {"default": {
                        "target": 4, "ready": 3, "starting": 1, "hits": 90, "misses": 10,
                        "hit_rate": 0.9, "failures": 0, "replaced": 0, "last_error": None,
                        "pinned": False}})
                if path == "/events/history":
                    return self.send(200, [])
                if path == "/events":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    self.wfile.write(b": stand-in\nid: 0\n\n")
                    self.wfile.flush()
                    fake.stopping.wait(120)
                    return None
                return self.send(404, {"error": {"code": "NOT_FOUND", "message": path}})

        return Handler


class ManySandboxesTests(SynchronousTestCase):
    def setUp(self):
        require_browser()
        self.fake = FakeDaemon()
        self.fake.start()
        self.addCleanup(self.fake.stop)
        self.browser = Browser()
        self.addCleanup(self.browser.close)
        self.page = self.browser.page

    def test_two_hundred(self):
        """
        All 200 are listed; the state, text and label filters narrow the
        table to the right rows; stats are asked with at most 4 requests in flight, never for a failed one.
        """
        self.page.goto(self.fake.url)
        self.page.wait_for_selector("#sandbox-count:has-text('200 of 200 sandboxes')")
        self.assertEqual(len(self.page.query_selector_all("#sandboxes tbody tr")), COUNT)
        took = self.page.evaluate("""() => {
            const select = document.querySelector('#filter-state'), t = performance.now();
            select.value = 'failed'; select.dispatchEvent(new Event('change'));
            return performance.now() - t; }""")
        log.msg(f"re-rendering 200 rows for a filter took {took:.1f} ms")
        self.page.wait_for_selector("#sandbox-count:has-text('20 of 200 sandboxes')")
        self.assertEqual(len(self.page.query_selector_all("#sandboxes tbody tr.state-failed")), 20)
        self.page.select_option("#filter-state", "")
        self.page.fill("#filter-text", "sbx-fake0199")
        self.page.wait_for_selector("#sandbox-count:has-text('1 of 200 sandboxes')")
        self.page.fill("#filter-text", "")
        self.page.fill("#filter-label", "team:a")
        self.page.press("#filter-label", "Enter")
        self.page.wait_for_selector("#sandbox-count:has-text('100 of 100 sandboxes')")
        self.page.fill("#filter-label", "")
        self.page.press("#filter-label", "Enter")
        self.page.wait_for_selector("#sandbox-count:has-text('200 of 200 sandboxes')")
        self.page.wait_for_selector("#sandboxes tbody td.num:has-text('MiB')")
        with self.fake.lock:
            asked = list(self.fake.stats_asked)
        self.assertLessEqual(self.fake.most_in_flight, 4)
        self.assertGreater(len(asked), 0)
        self.assertTrue(all(not i.endswith("0") for i in asked), "stats of a failed sandbox")
