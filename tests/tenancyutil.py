"""
Signing test requests as a tenant (the gateway's job in production):
fixed test keys and an http.client request signed for an identity.
"""

import base64
import http.client
import json
import os
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sandboxd.tenancy.signer import public_key_text, sign
from sandboxd.tenancy.verifier import Quotas

#: Two signing keys (the second for rotation tests).
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NEW_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))


def multi_tenant_config(*keys):
    """A ``[multi_tenant]`` section trusting ``keys`` (default: KEY)."""
    listed = ", ".join(f'"{public_key_text(k)}"' for k in keys or (KEY,))
    return f"[multi_tenant]\nenabled = true\npublic_keys = [{listed}]\n"


def signed_request(port, method, target, body=None, identity="alice", key=KEY,
                   quotas=Quotas(), headers=None, timestamp=None, host="127.0.0.1",
                   timeout=60):
    """
    One signed request over TCP: ``(status, parsed JSON or None, headers)``.
    """
    raw = json.dumps(body).encode() if body is not None else b""
    signing = sign(key, method, target, raw, identity,
                   time.time() if timestamp is None else timestamp, quotas)
    signing.update(headers or {})
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, target, body=raw or None, headers=signing)
        response = connection.getresponse()
        data = response.read()
        parsed = json.loads(data) if data and response.status != 101 else None
        return response.status, parsed, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def upgrade_headers():
    """The headers of a WebSocket upgrade request."""
    return {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
