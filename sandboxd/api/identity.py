"""
Who is calling: the one seam the routes use to scope what they serve
(docs/multi-tenant.md).

- L{caller_identity}``(request)``: the caller's identity, ``""`` for the
  operator (the Unix socket, or any caller when multi-tenancy is off), who
  sees everything.
- L{may_see}``(caller, owner)``: whether that caller may see a resource
  recorded with identity ``owner``.

L{TenantGate} wraps the whole API resource: with ``multi_tenant.enabled`` a
TCP request (HTTP or WebSocket upgrade) must be signed; the verified
L{Tenant} is attached to the request, a refused one answered 401 with the
refusal's code (and counted against the peer's rate limit).  The Unix
socket is never checked.
"""

import hashlib

from twisted.internet.address import UNIXAddress
from twisted.web.resource import Resource

from sandboxd.api import wsauth
from sandboxd.api.ui import is_page_request
from sandboxd.api.errors import error_body
from sandboxd.ratelimit import RateLimited
from sandboxd.tenancy.verifier import SignatureRefused, Tenant, Verifier

#: The request attribute holding the verified Tenant (None: the operator).
_TENANT = "sandboxdTenant"
#: Bytes of a body hashed at a time.
_PIECE = 1 << 16


def content_digest(content):
    """
    The hex SHA-256 (bytes) of a request's body file, read in pieces (a
    path-proxy upload may be large; Twisted keeps it in a temporary file),
    then rewound for the route.
    """
    digest = hashlib.sha256()
    content.seek(0)
    for piece in iter(lambda: content.read(_PIECE), b""):
        digest.update(piece)
    content.seek(0)
    return digest.hexdigest().encode()


def caller_tenant(request):
    """The verified L{Tenant} of a request, or None for the operator."""
    return getattr(request, _TENANT, None)


def caller_identity(request):
    """
    The caller's identity: ``""`` for the operator (Unix socket; every
    caller when multi-tenancy is off), else the signed identity.
    """
    tenant = caller_tenant(request)
    return "" if tenant is None else tenant.identity


def may_see(caller, owner):
    """
    Whether ``caller`` (a L{caller_identity}) may see or drive a resource
    recorded with identity ``owner``: the operator sees all, a tenant only
    its own.
    """
    return caller == "" or caller == owner


def on_unix_socket(request):
    """Whether the request came over the Unix socket (the operator's)."""
    return isinstance(request.getHost(), UNIXAddress)


def peer_of(request):
    """The peer's IP address (TCP), ``"unix"`` on the Unix socket."""
    host = getattr(request.getClientAddress(), "host", None)
    return host if isinstance(host, str) and host else "unix"


def rate_key(request):
    """
    Whose create allowance a request spends: None on the Unix socket (never
    limited), the signed identity with multi-tenancy, else the peer address.
    """
    if on_unix_socket(request):
        return None
    identity = caller_identity(request)
    return f"identity:{identity}" if identity else f"peer:{peer_of(request)}"


class TenantGate(Resource):
    """
    The API's outermost resource: checks signatures on TCP requests when
    ``settings.enabled`` (a ``MultiTenantConfig``), then hands every request
    to ``inner``.  ``limiter`` (a RateLimiter, or None) is charged one token
    of the peer's allowance per refused signature.
    """

    isLeaf = True

    def __init__(self, inner, settings, clock, limiter=None):
        super().__init__()
        self._inner = inner
        self._limiter = limiter
        self.verifier = Verifier(settings.public_key_bytes, clock)
        self.enabled = settings.enabled

    def reload(self, settings):
        """New keys and switch, at once (the replay cache stays)."""
        self.verifier.reload(settings.public_key_bytes)
        self.enabled = settings.enabled

    def checks(self, request):
        """
        Whether this request must be signed: not on the Unix socket, nor
        for the dashboard's files (public, they hold no data).
        """
        return (self.enabled and not on_unix_socket(request)
                and not is_page_request(request.method, request.path))

    def signedBodies(self, transport):
        """
        Whether requests on this connection are signed (so their bodies are
        read whole, not streamed: the site's ``signedBodies``).
        """
        return self.enabled and not isinstance(transport.getHost(), UNIXAddress)

    #: Session tokens (sandboxd.api.wsauth.SessionTokens) a session upgrade
    #: may carry in place of a signature (a browser cannot sign), or None.
    sessionTokens = None

    def render(self, request):
        if self.checks(request):
            session = self.sessionTokens is not None and wsauth.upgrade_token(request)
            if session:
                try:
                    identity = self.sessionTokens.verify(session[1], session[0])
                except wsauth.InvalidToken as e:
                    return self._refuse(request, SignatureRefused("SESSION_TOKEN_INVALID", str(e)))
                setattr(request, _TENANT, Tenant(identity))
                return self._inner.render(request)
            try:
                tenant = self.verifier.verify(
                    request.method, request.uri,
                    lambda name: request.getHeader(name.encode("ascii")),
                    digest=content_digest(request.content))
            except SignatureRefused as e:
                return self._refuse(request, e)
            setattr(request, _TENANT, tenant)
        return self._inner.render(request)

    def _refuse(self, request, refusal):
        request.setHeader(b"Content-Type", b"application/json")
        if self._limiter is not None:
            try:
                self._limiter.take(f"peer:{peer_of(request)}")
            except RateLimited as e:
                request.setResponseCode(429)
                request.setHeader(b"Retry-After", str(e.retry_after).encode())
                return error_body("RATE_LIMITED", f"too many refused signatures: {e}")
        if refusal.code == "REPLAY_CACHE_FULL":
            request.setResponseCode(503)
            request.setHeader(b"Retry-After", b"5")
        else:
            request.setResponseCode(401)
            request.setHeader(b"WWW-Authenticate", b'Sandbox-Signature realm="sandboxd"')
        return error_body(refusal.code, refusal.message)
