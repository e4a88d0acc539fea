"""
The router's view of the cluster: the nodes' records read from etcd every
``poll`` seconds (the router keeps nothing else; restart it and it knows
everything again after one read).

A node is *live* while its record is in etcd.  A node whose record vanished
(its lease expired: crashed, killed, partitioned, or it left) is *lost*:
observers hear ``nodeLost(node_id)`` once, and ``nodeJoined(node)`` when a
record (new or returning) appears.  An etcd that does not answer keeps the
last view (logged) rather than dropping every node at once; ``healthy``
says whether the last read worked.

Between reads the router places many sandboxes: ``reserve`` lowers the
cached free capacity and warm count of the node it chose, so a burst of
creates spreads by the rule instead of piling on the node that looked best
at the last read.  The next read replaces the guess with the node's word.
"""

import json

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sandboxd.cluster.membership import node_key


@attrs.define
class Node:
    """One node's record (docs/deploy.md "Many hosts") as the router uses it."""

    node_id: str
    endpoint: str
    max_sandboxes: int = 0
    free: int = 0
    warm: dict = attrs.Factory(dict)
    load: float = 0.0
    identities: dict = attrs.Factory(dict)
    templates: tuple = ()
    record: dict = attrs.Factory(dict)

    @classmethod
    def fromRecord(cls, record):
        """A Node from a decoded record; ValueError if it is not one."""
        if not isinstance(record, dict):
            raise ValueError("a node record is a JSON object")
        capacity = record.get("capacity") or {}
        try:
            return cls(
                node_id=str(record["node_id"]), endpoint=str(record["endpoint"]),
                max_sandboxes=int(capacity.get("max_sandboxes", 0)),
                free=int(capacity.get("free", 0)),
                warm={str(k): int(v) for k, v in (record.get("warm") or {}).items()},
                load=float(record.get("load") or 0.0),
                identities={str(k): int(v) for k, v in (record.get("identities") or {}).items()},
                templates=tuple(str(t) for t in record.get("templates") or ()),
                record=record)
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a node record: {e}") from None


class NodeDirectory:
    """
    The live nodes under ``prefix`` in ``etcd`` (an L{IEtcd}), re-read every
    ``poll`` seconds on ``clock``.
    """

    log = Logger()

    def __init__(self, etcd, clock, prefix, poll):
        self._etcd = etcd
        self._clock = clock
        self._prefix = node_key(prefix, "")
        self._poll = poll
        self._loop = None
        self._observers = []
        self.nodes = {}
        self.healthy = False
        self.reads = 0
        self.lost = 0
        self._pending = None

    def observe(self, observer):
        """Tell ``observer`` (nodeJoined(node), nodeLost(node_id)) of changes."""
        self._observers.append(observer)

    def unobserve(self, observer):
        if observer in self._observers:
            self._observers.remove(observer)

    def start(self):
        """Read now and every ``poll`` seconds; fires after the first read."""
        self._loop = LoopingCall(self.refresh)
        self._loop.clock = self._clock
        first = Deferred()
        self._loop.start(self._poll, now=True).addErrback(
            lambda f: self.log.failure("reading the node records", f))
        # refresh() ran synchronously up to its first wait: wait for it.
        self._pending.addBoth(lambda _: first.callback(None))
        return first

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def refresh(self):
        """Read the records once (a Deferred that never fails)."""
        self._pending = Deferred.fromCoroutine(self._read()).addErrback(self._unreadable)
        return self._pending

    def _unreadable(self, failure):
        if self.healthy:
            self.log.warn("cannot read the node records: {why}", why=failure.getErrorMessage())
        self.healthy = False

    async def _read(self):
        raw = await self._etcd.range_prefix(self._prefix)
        self.reads += 1
        self.healthy = True
        seen = {}
        for key, value in raw.items():
            try:
                node = Node.fromRecord(json.loads(value))
            except ValueError as e:
                self.log.warn("ignoring the record at {key}: {why}", key=key, why=str(e))
                continue
            if key != self._prefix + node.node_id:
                self.log.warn("ignoring the record at {key}: it names node {node}",
                              key=key, node=node.node_id)
                continue
            seen[node.node_id] = node
        before, self.nodes = self.nodes, seen
        for node_id in sorted(before.keys() - seen.keys()):
            self.lost += 1
            self.log.info("node {node} lost (its lease expired)", node=node_id)
            self._tell("nodeLost", node_id)
        for node_id in sorted(seen.keys() - before.keys()):
            self.log.info("node {node} joined at {endpoint}", node=node_id,
                          endpoint=seen[node_id].endpoint)
            self._tell("nodeJoined", seen[node_id])

    def _tell(self, event, argument):
        for observer in list(self._observers):
            try:
                getattr(observer, event)(argument)
            except Exception:
                self.log.failure("telling {observer} {event}", observer=observer, event=event)

    def get(self, node_id):
        """The live Node of that id, or None."""
        return self.nodes.get(node_id)

    def reserve(self, node_id, profile, identity=""):
        """Count a sandbox just placed on ``node_id`` until the next read."""
        node = self.nodes.get(node_id)
        if node is None:
            return
        node.free = max(0, node.free - 1)
        if identity:
            node.identities[identity] = node.identities.get(identity, 0) + 1
        if node.warm.get(profile, 0) > 0:
            node.warm[profile] -= 1

    def counted(self, identity):
        """Sandboxes ``identity`` has over all live nodes (as last published)."""
        return sum(node.identities.get(identity, 0) for node in self.nodes.values())
