"""
The router's Prometheus metrics (``GET /metrics`` on the router; each node
keeps its own at its own ``/metrics``), in one registry of their own:

- ``sandboxd_router_requests_total{route,code}`` and
  ``sandboxd_router_request_seconds{route}`` (until the node's answer
  headers, or the router's own answer);
- ``sandboxd_router_placements_total{node,warm}``: creates placed, and
  whether the node had a warm sandbox of the profile;
- ``sandboxd_router_unavailable_total{node}``: requests answered
  ``SANDBOX_UNAVAILABLE`` (node lost or unreachable);
- per node, from the records the directory last read:
  ``sandboxd_router_node_free{node}``, ``sandboxd_router_node_sandboxes{node}``,
  ``sandboxd_router_node_warm{node,profile}``, ``sandboxd_router_node_load{node}``;
- ``sandboxd_router_nodes`` (live), ``sandboxd_router_nodes_lost_total``,
  ``sandboxd_router_etcd_up`` (whether the last read of etcd worked).
"""

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _DirectoryCollector:
    """Gauges read from the directory at scrape time."""

    def __init__(self, directory):
        self._directory = directory

    def collect(self):
        directory = self._directory
        nodes = GaugeMetricFamily("sandboxd_router_nodes", "Live nodes")
        nodes.add_metric([], len(directory.nodes))
        lost = CounterMetricFamily("sandboxd_router_nodes_lost", "Nodes seen to go")
        lost.add_metric([], directory.lost)
        up = GaugeMetricFamily("sandboxd_router_etcd_up", "1 if the last etcd read worked")
        up.add_metric([], 1 if directory.healthy else 0)
        free = GaugeMetricFamily("sandboxd_router_node_free", "Sandboxes a node may still start",
                                 labels=["node"])
        count = GaugeMetricFamily("sandboxd_router_node_sandboxes",
                                  "Sandboxes handed out on a node", labels=["node"])
        warm = GaugeMetricFamily("sandboxd_router_node_warm", "Warm sandboxes per profile",
                                 labels=["node", "profile"])
        load = GaugeMetricFamily("sandboxd_router_node_load", "A node's 1-minute load average",
                                 labels=["node"])
        for node in directory.nodes.values():
            free.add_metric([node.node_id], node.free)
            count.add_metric([node.node_id], node.max_sandboxes - node.free)
            load.add_metric([node.node_id], node.load)
            for profile, ready in sorted(node.warm.items()):
                warm.add_metric([node.node_id, profile], ready)
        return [nodes, lost, up, free, count, warm, load]


class RouterMetrics:
    """The router's registry and the counters its resource updates."""

    def __init__(self, directory):
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("sandboxd_router_requests", "Requests answered",
                                ["route", "code"], registry=registry)
        self.seconds = Histogram(
            "sandboxd_router_request_seconds", "Time until the answer's headers",
            ["route"], registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                     5, 10))
        self.placements = Counter("sandboxd_router_placements", "Creates placed on a node",
                                  ["node", "warm"], registry=registry)
        self.unavailable = Counter("sandboxd_router_unavailable",
                                   "Requests answered SANDBOX_UNAVAILABLE", ["node"],
                                   registry=registry)
        registry.register(_DirectoryCollector(directory))

    def render(self):
        return generate_latest(self.registry)
