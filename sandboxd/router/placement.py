"""
Where a new sandbox goes: the placement rule (docs/deploy.md "Placement").

1. Quota first: a caller whose signed ``X-Sandbox-Max-Concurrent`` is N and
   who already has N sandboxes over all nodes is refused (429
   ``QUOTA_EXCEEDED``) without asking any node.
2. Candidates are the live nodes with free capacity (``free > 0``); a create
   from a template only considers the nodes holding that template
   (templates stay on the node that baked them).
3. Among the candidates, nodes with a warm sandbox of the profile come
   first (a warm create is an in-memory hand-over; a cold one boots a
   container), then the most free capacity, then the lowest load, then the
   node id (so the choice is deterministic).

``rank`` returns every candidate in that order: the router tries the next
one when a node cannot be reached at all.
"""


class PlacementError(Exception):
    """No node may take the sandbox: ``status``, ``code`` and the message."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def rank(nodes, profile, template=None, identity="", max_concurrent=None, counted=0):
    """
    The nodes (L{Node}s) a sandbox of ``profile`` (from ``template`` if set)
    may go to, best first; L{PlacementError} when there is none, or when
    ``identity`` already has ``counted`` >= ``max_concurrent`` sandboxes.
    """
    if identity and max_concurrent is not None and counted >= max_concurrent:
        raise PlacementError(429, "QUOTA_EXCEEDED",
                             f"identity {identity} has {counted} sandboxes over the cluster "
                             f"(X-Sandbox-Max-Concurrent is {max_concurrent})")
    nodes = list(nodes)
    if not nodes:
        raise PlacementError(503, "CLUSTER_UNAVAILABLE", "no sandboxd node is live")
    if template:
        nodes = [n for n in nodes if template in n.templates]
        if not nodes:
            raise PlacementError(404, "TEMPLATE_NOT_FOUND",
                                 f"no live node holds template {template}")
    candidates = [n for n in nodes if n.free > 0]
    if not candidates:
        raise PlacementError(503, "AT_CAPACITY", "every live node is at capacity")
    return sorted(candidates,
                  key=lambda n: (n.warm.get(profile, 0) <= 0, -n.free, n.load, n.node_id))
