"""
Malformed and hostile HTTP requests: whatever the method, path, query and
body, the API answers with a status below 500 and, for an error, the
``{"error": {"code", "message"}}`` shape.  A property test over the real
routes and manager (fake runtime, real SQLite store) through StubTreq, and
the cases found by hand against a real daemon over its Unix socket.
"""

import json

from hypothesis import HealthCheck, given, settings, strategies as st
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sandboxd.api.app import SandboxAPI
from sandboxd.config import parse_config
from sandboxd.eventfeed import EventFeed
from sandboxd.manager import SandboxManager
from sandboxd.metrics import DaemonMetrics
from sandboxd.stats import SandboxStats
from sandboxd.store import Store
from tests.daemon import UnixHTTPConnection, shared_daemon
from tests.fakeruntime import FakeConnection, FakeRuntime

METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "BREW"]
#: Path pieces that reach every route and its neighbours.
SEGMENTS = [
    "sandboxes", "pools", "events", "history", "profiles", "health", "ws", "stats",
    "flush", "default", "sbx-00000000", "", "%ff", "%2F", "..", ".", "%00", "é",
    "a" * 300, "ports", "8080", "expose", "templates", "metrics", "openapi.json",
]
#: Cases found by hand (issue 19): doubled slashes and paths that are not UTF-8.
KNOWN = [
    ("POST", "/sandboxes///flush"),
    ("GET", "/sandboxes///ws?resume=x"),
    ("HEAD", "/sandboxes///pause"),
    ("GET", "/pools/%ff"),
    ("PUT", "/pools/%ff"),
    ("DELETE", "/sandboxes/%ff%fe"),
    ("GET", "/events/history?after=%ff&limit=-1"),
]

paths = st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=5).map(
    lambda parts: "/" + "/".join(parts)
)
queries = st.dictionaries(
    st.sampled_from(["after", "limit", "label", "sandbox", "resume", "x"]),
    st.sampled_from(["1", "-1", "0", "abc", "%ff", "k:v", "", "99999999999999999999"]),
    max_size=3,
).map(lambda q: "&".join(f"{k}={v}" for k, v in q.items()))
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=64),
    st.sampled_from([b"{}", b"[]", b"null", b'{"profile": 1}', b'{"ttl": -5}',
                     b'{"memory": "1t"}', b'{"labels": {"a": 1}}', b'{"count": "x"}',
                     b'{"count": 5}', b"\xff\xfe"]),
)


def check_answer(test, status, headers, body, method):
    """
    Below 500; an error is JSON in the error shape (HEAD has no body).
    """
    test.assertLess(status, 500, body)
    if status >= 400 and method != "HEAD":
        error = json.loads(body)["error"]
        test.assertEqual(sorted(error), ["code", "message"])
        test.assertTrue(error["code"].isupper(), error)


class PropertyTests(SynchronousTestCase):
    def setUp(self):
        clock = Clock()
        store = Store(self.mktemp())
        self.addCleanup(store.close)
        runtime = FakeRuntime()
        config = parse_config("[pool]\nmin_base = 0\ntotal_warm = 0\n", "<test>", {})

        async def connect(reactor, endpoint, secret, label="", deadline=None):
            return FakeConnection()

        manager = SandboxManager(clock, runtime, config, store, owner="/d", connect=connect)
        self.successResultOf(Deferred.fromCoroutine(manager.start()))
        self.addCleanup(manager.reaper.stop)
        # As the daemon wires it (tap.py): the event stream and the metrics too.
        events = EventFeed(store, clock)
        api = SandboxAPI(manager, config, clock, stats=SandboxStats(runtime, clock),
                         events=events,
                         metrics=DaemonMetrics(clock, manager, events, SandboxAPI.app.url_map))
        self.treq = StubTreq(api.resource())

    def answer(self, method, path, body=b""):
        d = self.treq.request(method, "http://localhost" + path, data=body or None)
        self.treq.flush()
        response = self.successResultOf(d)
        if b"text/event-stream" in b"".join(response.headers.getRawHeaders(b"content-type", [])):
            # GET /events: a stream that never ends (tests/test_events.py).
            return response.code, response.headers, b""
        content = self.successResultOf(response.content())
        return response.code, response.headers, content

    @settings(max_examples=400, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(METHODS), paths, queries, bodies)
    def test_anyRequest(self, method, path, query, body):
        """
        Any method, path, query and body: no 5xx, errors in the error shape.
        """
        target = path + (f"?{query}" if query else "")
        status, headers, content = self.answer(method, target, body)
        check_answer(self, status, headers, content, method)

    def test_knownCases(self):
        """
        Doubled slashes are no route (404, not a redirect turned 500); a
        path that is not UTF-8 is 400 BAD_PATH.
        """
        for method, path in KNOWN:
            status, headers, content = self.answer(method, path)
            check_answer(self, status, headers, content, method)
        self.assertEqual(self.answer("POST", "/sandboxes///flush")[0], 404)
        status, _, content = self.answer("GET", "/pools/%ff")
        self.assertEqual((status, json.loads(content)["error"]["code"]), (400, "BAD_PATH"))


class RealDaemonTests(TestCase):
    """
    The same cases over a real daemon's Unix socket.
    """

    def test_knownCases(self):
        """
        Each hand-found case gets a 4xx in the error shape from a real daemon.
        """
        daemon = shared_daemon()
        for method, path in KNOWN:
            connection = UnixHTTPConnection(daemon.socket)
            try:
                connection.request(method, path)
                response = connection.getresponse()
                body = response.read()
            finally:
                connection.close()
            with self.subTest(method=method, path=path):
                self.assertGreaterEqual(response.status, 400)
                check_answer(self, response.status, response.headers, body, method)
