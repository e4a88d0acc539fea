"""
Egress: what a sandbox may reach on the network (policy, firewall, guard)
and the secrets substituted on its way out (sandboxd/egress/secrets.py).
"""
