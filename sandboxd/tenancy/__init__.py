"""
Multi-tenancy: signed identities (canonical.py, verifier.py, signer.py) and
per-identity quotas (quotas.py).  docs/multi-tenant.md.
"""
