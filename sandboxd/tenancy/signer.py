"""
Signing a request the way the daemon verifies it (the gateway and tests).
"""

import base64
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sandboxd.tenancy import canonical
from sandboxd.tenancy.verifier import Quotas, body_digest


def new_nonce():
    """A fresh nonce: 32 characters of URL-safe base64."""
    return base64.urlsafe_b64encode(os.urandom(24)).decode("ascii")


def load_private_key(raw):
    """An Ed25519 private key from its raw 32 bytes."""
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_text(private_key):
    """The base64 of a private key's raw public key (for ``public_keys``)."""
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def sign(private_key, method, target, body, identity, timestamp, quotas=Quotas(), nonce=None):
    """
    The headers (a dict of str) that sign a request: ``method`` and
    ``target`` (``/path?query``) as str or bytes, ``body`` bytes,
    ``timestamp`` whole seconds.
    """
    method = method.encode() if isinstance(method, str) else method
    target = target.encode() if isinstance(target, str) else target
    nonce = nonce or new_nonce()
    digest = body_digest(body)
    path, query = canonical.split_target(target)
    values = quotas.headerValues()
    text = canonical.canonical_string(
        method, path, query, digest, identity.encode(), values, str(int(timestamp)).encode(),
        nonce.encode())
    headers = {
        canonical.IDENTITY: identity,
        canonical.TIMESTAMP: str(int(timestamp)),
        canonical.NONCE: nonce,
        canonical.CONTENT_SHA256: digest.decode(),
        canonical.SIGNATURE: base64.b64encode(private_key.sign(text)).decode("ascii"),
    }
    for name, value in zip(canonical.QUOTAS, values):
        if value:
            headers[name] = value.decode()
    return headers
