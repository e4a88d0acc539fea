"""Cluster membership: a node's record in etcd (docs/deploy.md "Many hosts")."""
