"""
``sandboxd-router``: a stateless front for many sandboxd nodes.  It reads
the nodes' records from etcd (sandboxd/cluster/), places new sandboxes by
the rule in placement.py, forwards everything about a sandbox to the node
named inside its id, and merges lists and event streams.  docs/deploy.md.
"""
