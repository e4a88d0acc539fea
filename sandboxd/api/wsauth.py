"""
Credentials for a WebSocket session that a browser can send.

Browsers cannot set ``Authorization`` on a WebSocket.  A client that cannot
asks the daemon for a short-lived session token (``POST
/sandboxes/{id}/session-token``, over the REST API and its usual
credentials) and sends it in one of two places a browser controls:

- ``Sec-WebSocket-Protocol: sandboxd.v1, sandboxd.bearer.<token>`` (the
  daemon answers ``sandboxd.v1``, never echoing the token), or
- ``?access_token=<token>`` in the URL (it may end up in proxy logs: prefer
  the subprotocol).

A token is bound to one sandbox and expires (60 s by default; it only has to
last until the handshake).  It is an HMAC-SHA256 of its claims under a key
made at start-up, so tokens do not survive a daemon restart.  A session
offering no token is served as before; one offering a bad, expired or
foreign token is refused with 401.  The token carries the sandbox's
identity: with multi-tenancy, the signature gate (sandboxd/api/identity.py)
takes a valid token on a session upgrade in place of a signature, as that
identity (``upgrade_token``), since a browser cannot sign.
"""

import base64
import hashlib
import hmac
import json
import os
import re
from urllib.parse import unquote

from autobahn.websocket.types import ConnectionDeny

#: The subprotocol a browser offers (and the daemon selects).
PROTOCOL = "sandboxd.v1"
#: The offered subprotocol that carries a token.
BEARER_PREFIX = "sandboxd.bearer."
#: The query parameter that carries a token.
QUERY = "access_token"
#: Seconds a token is valid.
LIFETIME = 60
#: The session route, as twisted.web sees its path.
_SESSION_PATH = re.compile(rb"^/sandboxes/([^/]+)/ws$")


class InvalidToken(Exception):
    """
    A token that is malformed, forged, expired or for another sandbox.
    """


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionTokens:
    """
    Mints and checks session tokens with a key of its own.
    """

    def __init__(self, clock, key=None, lifetime=LIFETIME):
        self._clock = clock
        self._key = key or os.urandom(32)
        self.lifetime = lifetime

    def _mac(self, claims):
        return _b64(hmac.new(self._key, claims.encode(), hashlib.sha256).digest())

    def mint(self, sandbox_id, identity=""):
        """
        A token for a session of ``sandbox_id``: ``{"token", "expires_in",
        "protocol"}``.
        """
        expires = int(self._clock.seconds()) + self.lifetime
        claims = _b64(json.dumps({"s": sandbox_id, "i": identity, "e": expires},
                                 separators=(",", ":")).encode())
        return {"token": f"{claims}.{self._mac(claims)}", "expires_in": self.lifetime,
                "protocol": PROTOCOL}

    def verify(self, token, sandbox_id):
        """
        The identity ``token`` carries, or InvalidToken.
        """
        claims, _, mac = token.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(claims)):
            raise InvalidToken("the session token is not valid")
        try:
            body = json.loads(_unb64(claims))
        except ValueError:
            raise InvalidToken("the session token is not valid")
        if body.get("s") != sandbox_id:
            raise InvalidToken("the session token is for another sandbox")
        if not isinstance(body.get("e"), int) or body["e"] < self._clock.seconds():
            raise InvalidToken("the session token has expired")
        return body.get("i", "")


def negotiate(request, tokens, sandbox_id):
    """
    Check the token an upgrade ``request`` (autobahn's ConnectionRequest)
    carries, if any: ``(subprotocol to select or None, identity or None)``.
    A bad token is ConnectionDeny 401.
    """
    offered = list(getattr(request, "protocols", None) or ())
    token = None
    for p in offered:
        if p.startswith(BEARER_PREFIX):
            token = p[len(BEARER_PREFIX):]
    if token is None and request.params.get(QUERY):
        token = request.params[QUERY][-1]
    identity = None
    if token is not None:
        try:
            identity = tokens.verify(token, sandbox_id)
        except InvalidToken as e:
            raise ConnectionDeny(401, str(e))
    return (PROTOCOL if PROTOCOL in offered else None), identity


def upgrade_token(request):
    """
    ``(sandbox id, token)`` of a twisted.web ``request`` that opens a
    session with a session token (in the subprotocols or the query), else
    None (another route, or no token).
    """
    match = _SESSION_PATH.match(request.path)
    if request.method != b"GET" or match is None:
        return None
    token = None
    for value in request.requestHeaders.getRawHeaders(b"sec-websocket-protocol", []):
        for offered in value.decode("latin-1").split(","):
            offered = offered.strip()
            if offered.startswith(BEARER_PREFIX):
                token = offered[len(BEARER_PREFIX):]
    if token is None and request.args.get(QUERY.encode()):
        token = request.args[QUERY.encode()][-1].decode("latin-1")
    if token is None:
        return None
    return unquote(match.group(1).decode("latin-1")), token
