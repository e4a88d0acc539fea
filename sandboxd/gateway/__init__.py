"""
``sandboxd-gateway``: a signing gateway in front of a multi-tenant sandboxd
(docs/multi-tenant.md, "The gateway").  API keys (keys.py) map to an
identity and quotas; every request (proxy.py), WebSocket upgrades included,
is signed and forwarded to the daemon's TCP listener.
"""
