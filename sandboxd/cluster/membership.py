"""
A node's membership in the cluster: its record in etcd under a lease.

Every ``refresh`` seconds the node keeps its lease alive and rewrites its
record at ``<prefix>nodes/<node_id>`` (JSON, docs/deploy.md "Many hosts"):
its endpoint, capacity, warm sandboxes per profile, load, the templates it
holds and how many sandboxes each identity has on it.  A node that stops
(crash, partition, kill -9) stops refreshing: etcd drops the lease after
``lease_ttl`` seconds and the record with it, which is how routers learn a
node is gone.  A lease etcd no longer knows (expired during a pause) is
replaced by a new one on the next beat; an etcd that does not answer is
logged and tried again on the next beat, never a crash.
"""

import json
import os

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


def node_key(prefix, node_id):
    """The etcd key of a node's record."""
    return f"{prefix}nodes/{node_id}"


def describe_node(config, manager, templates=None, load=os.getloadavg):
    """
    The record a node publishes: a JSON-ready dict built from the running
    daemon's ``config``, ``manager`` (sandboxes and pools) and template
    ``catalog`` (or None).
    """
    limits = config.limits
    # The manager lists handed-out sandboxes (warm ones are in the pools).
    handed = manager.list()
    identities = {}
    for sandbox in handed:
        if sandbox.identity:
            identities[sandbox.identity] = identities.get(sandbox.identity, 0) + 1
    pools = manager.pools.status()
    memory_used = sum(s.memory for s in handed)
    cpu_used = sum(s.cpu for s in handed)
    record = {
        "node_id": config.server.node_id,
        "endpoint": config.cluster.advertise,
        "capacity": {
            "max_sandboxes": limits.max_sandboxes,
            "sandboxes": manager.count,
            "free": max(0, limits.max_sandboxes - manager.count),
            "memory_free": (max(0, limits.max_total_memory - memory_used)
                            if limits.max_total_memory else None),
            "cpu_free": (max(0.0, limits.max_total_cpu - cpu_used)
                         if limits.max_total_cpu else None),
        },
        "warm": {name: status["ready"] for name, status in pools.items()},
        "load": round(load()[0], 2),
        "identities": identities,
        "templates": [t.id for t in templates.all()] if templates is not None else [],
    }
    return record


class Membership(Service):
    """
    Keeps ``describe()`` (a dict) at this node's key in ``etcd`` (an
    L{IEtcd}) under a lease of ``ttl`` seconds refreshed every ``interval``.
    """

    log = Logger()

    def __init__(self, etcd, clock, key, describe, ttl, interval):
        self._etcd = etcd
        self._clock = clock
        self._key = key
        self._describe = describe
        self._ttl = ttl
        self._interval = interval
        self._loop = None
        self.lease = 0
        self.beats = 0
        self.failures = 0

    def startService(self):
        super().startService()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=True).addErrback(
            lambda f: self.log.failure("membership loop", f))

    def _tick(self):
        # A beat that fails is logged; the loop goes on.
        return Deferred.fromCoroutine(self.beat()).addErrback(self._failed)

    def _failed(self, failure):
        self.failures += 1
        self.log.warn("cannot refresh the cluster record {key}: {why}", key=self._key,
                      why=failure.getErrorMessage())

    async def beat(self):
        """Keep the lease alive (or take a new one) and rewrite the record."""
        if self.lease:
            if await self._etcd.keepalive(self.lease) <= 0:
                self.log.info("lease {lease} expired; taking a new one", lease=self.lease)
                self.lease = 0
        if not self.lease:
            self.lease = await self._etcd.grant(self._ttl)
        record = json.dumps(self._describe(), sort_keys=True).encode()
        await self._etcd.put(self._key, record, self.lease)
        self.beats += 1

    def stopService(self):
        """Leave the cluster at once: revoke the lease (its record goes with it)."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if not self.lease:
            return None
        lease, self.lease = self.lease, 0
        return self._etcd.revoke(lease).addErrback(
            lambda f: self.log.info("revoking the lease: {why}", why=f.getErrorMessage()))
