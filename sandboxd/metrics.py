"""
The daemon's Prometheus metrics (``GET /metrics``, docs/metrics.md).

``DaemonMetrics`` owns one ``CollectorRegistry`` (no global state): counters
and histograms fed as things happen (HTTP requests, sandbox transitions
observed on the manager's lifecycle, events recorded, agent calls relayed by
sessions), and a collector that reads the manager, its pools, the sessions
and the event feed when scraped.  Process RSS and open fds come from
prometheus-client's ``ProcessCollector`` on the same registry.
"""

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.logger import Logger
from twisted.web.resource import Resource
from werkzeug.exceptions import HTTPException
from zope.interface import implementer

from sandboxd.lifecycle import ISandboxObserver
from sandboxd.sandbox import State
from sandboxd.tunnels.resource import route_of

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Latency buckets in seconds: a warm create is ~1 ms, a cold one ~0.5 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0, 30.0)
BOOT_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
#: Routes whose requests last as long as a stream or session: counted, not timed.
STREAMING_ROUTES = frozenset({"/events", "/sandboxes/<sandbox_id>/ws"})
#: Distinct agent method labels kept; others are counted as "other" (a
#: client chooses the method name: it must not grow the series without bound).
MAX_METHODS = 64
_METHOD = re.compile(r"[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31}){0,3}")


@implementer(ISandboxObserver)
class DaemonMetrics:
    """
    Every metric of one daemon, in ``self.registry``; an observer of the
    manager's lifecycle (creates, ends, warm boot times) and of the event
    feed (events by type).
    """

    log = Logger()

    def __init__(self, clock, manager=None, feed=None, routes=None):
        self._clock = clock
        self._manager = manager
        self._feed = feed
        self._routes = None if routes is None else routes.bind("localhost")
        self._methods = set()
        self.sessions = set()
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sandboxd_http_requests", "HTTP requests answered, by route template and status.",
            ["method", "route", "status"], registry=registry)
        self.request_seconds = Histogram(
            "sandboxd_http_request_duration_seconds",
            "Time from a request's arrival to its last byte (streams and sessions excluded).",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=registry)
        self.creates = Counter(
            "sandboxd_sandbox_creates", "Sandboxes handed out, by profile and warm|cold.",
            ["profile", "method"], registry=registry)
        self.ended = Counter(
            "sandboxd_sandbox_ends", "Handed-out sandboxes that ended, by how (destroyed|failed).",
            ["outcome"], registry=registry)
        self.agent_seconds = Histogram(
            "sandboxd_agent_call_duration_seconds",
            "Agent requests relayed for sessions, from the request to its final frame.",
            ["method"], buckets=LATENCY_BUCKETS, registry=registry)
        self.boot_seconds = Histogram(
            "sandboxd_pool_boot_duration_seconds",
            "Time to boot a warm sandbox (container start, agent handshake, warm-up).",
            ["profile"], buckets=BOOT_BUCKETS, registry=registry)
        self.events = Counter(
            "sandboxd_events", "Events recorded, by type.", ["type"], registry=registry)
        ProcessCollector(registry=registry)
        registry.register(_StateCollector(self))
        if feed is not None:
            feed.observe(self.deliver)
        if manager is not None:
            manager.lifecycle.observe(self)

    # Fed as things happen

    def requestDone(self, method, route, status, seconds):
        status = str(status)
        self.requests.labels(method, route, status).inc()
        if route not in STREAMING_ROUTES:
            self.request_seconds.labels(method, route, status).observe(seconds)

    def deliver(self, event):
        """
        An event recorded (from the feed).
        """
        self.events.labels(event.type).inc()

    def sandboxChanged(self, transition):
        """
        A sandbox moved (ISandboxObserver): count hand-outs by warm|cold and
        ends; time warm boots (from the sandbox's creation to READY).
        """
        sandbox, new = transition.sandbox, transition.new
        if transition.old is None:
            return
        if transition.handedOut:
            self.creates.labels(sandbox.profile, sandbox.method or "").inc()
        elif new is State.READY:
            self.boot_seconds.labels(sandbox.profile).observe(
                max(0.0, self._clock.seconds() - sandbox.created))
        elif transition.ending and sandbox.claimed:
            self.ended.labels("failed" if new is State.FAILED else "destroyed").inc()

    def callStarted(self, method):
        """
        A relayed agent request began: a token for ``callEnded``.
        """
        if not isinstance(method, str) or not _METHOD.fullmatch(method):
            method = "other"
        elif method not in self._methods:
            if len(self._methods) >= MAX_METHODS:
                method = "other"
            else:
                self._methods.add(method)
        return (method, self._clock.seconds())

    def callEnded(self, token):
        method, started = token
        self.agent_seconds.labels(method).observe(self._clock.seconds() - started)

    def route(self, request):
        """
        The route template a request matched (``/sandboxes/<sandbox_id>``),
        or ``unmatched``: the one the API's routing noted, else (a request
        answered before routing) matched here.  Tunnel requests (served
        before Klein's routing) are labelled with their own templates.
        """
        noted = getattr(request, "sandboxd_route", None)
        if noted is not None:
            return noted
        tunnel = route_of(request.method, request.path)
        if tunnel is not None:
            return tunnel
        if self._routes is None:
            return "unmatched"
        try:
            rule, _ = self._routes.match(
                request.path.decode("utf-8", "replace"),
                request.method.decode("latin-1"), return_rule=True)
        except (HTTPException, UnicodeError):
            return "unmatched"
        return rule.rule

    def exposition(self):
        return generate_latest(self.registry)


class _StateCollector:
    """
    What is read when scraped: sandboxes by state, pools, sessions,
    subscribers.
    """

    def __init__(self, metrics):
        self._metrics = metrics

    def describe(self):
        return []

    def collect(self):
        metrics = self._metrics
        manager = metrics._manager
        sessions = GaugeMetricFamily(
            "sandboxd_websocket_sessions", "WebSocket sessions open now.")
        sessions.add_metric([], len(metrics.sessions))
        yield sessions
        subscribers = GaugeMetricFamily(
            "sandboxd_event_subscribers", "Clients following GET /events now.")
        subscribers.add_metric([], metrics._feed.subscribers if metrics._feed else 0)
        yield subscribers
        if manager is None:
            return
        sandboxes = GaugeMetricFamily(
            "sandboxd_sandboxes", "Sandboxes handed out, by state, profile and runtime.",
            labels=["state", "profile", "runtime"])
        counts = {}
        for sandbox in manager.list():
            key = (sandbox.state.value, sandbox.profile, sandbox.runtime)
            counts[key] = counts.get(key, 0) + 1
        for key, count in sorted(counts.items()):
            sandboxes.add_metric(list(key), count)
        yield sandboxes
        status = manager.pools.status()
        families = {
            "ready": GaugeMetricFamily("sandboxd_pool_ready", "Warm sandboxes ready.",
                                       labels=["profile"]),
            "starting": GaugeMetricFamily("sandboxd_pool_starting",
                                          "Warm sandboxes booting.", labels=["profile"]),
            "target": GaugeMetricFamily("sandboxd_pool_target",
                                        "Warm sandboxes the pool aims to hold.",
                                        labels=["profile"]),
        }
        totals = {
            "hits": ("sandboxd_pool_hits", "Creates served from the pool."),
            "misses": ("sandboxd_pool_misses", "Creates of the pool's shape it could not serve."),
            "failures": ("sandboxd_pool_boot_failures", "Warm boots that failed."),
            "replaced": ("sandboxd_pool_replaced", "Warm sandboxes discarded as unhealthy."),
        }
        counters = {key: CounterMetricFamily(name, text, labels=["profile"])
                    for key, (name, text) in totals.items()}
        for profile, pool in sorted(status.items()):
            for key, family in families.items():
                family.add_metric([profile], pool[key])
            for key, family in counters.items():
                family.add_metric([profile], pool[key])
        yield from families.values()
        yield from counters.values()


class MeteredResource(Resource):
    """
    Wraps the API's (leaf) resource: every request is counted and timed by
    route template and status when it finishes.
    """

    isLeaf = True

    def __init__(self, wrapped, metrics, clock):
        super().__init__()
        self._wrapped = wrapped
        self._metrics = metrics
        self._clock = clock

    def render(self, request):
        started = self._clock.seconds()
        metrics = self._metrics

        def done(_):
            metrics.requestDone(request.method.decode("latin-1"), metrics.route(request),
                                request.code, self._clock.seconds() - started)

        request.notifyFinish().addBoth(done)
        return self._wrapped.render(request)
