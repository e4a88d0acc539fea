"""
Private ingress for the path proxy (``[tunnels] auth = "token"``): every
request through ``/sandboxes/{id}/ports/{port}/`` over a TCP listener must
carry the tunnel's token, or a signed URL that has not expired.

- The token of a tunnel is an HMAC of ``(sandbox id, port)`` under the
  daemon's ingress key (``data_dir/tunnels.key``, made on first use, mode
  0600): the same after a restart, different for every sandbox and port.
- A request presents it in the ``X-Sandbox-Tunnel-Token`` header, or in the
  ``sbx_token`` query parameter (answered with a redirect to the same URL
  without it, setting the ``sbx_tunnel`` cookie scoped to the prefix), or
  in that cookie.
- A signed URL carries ``sbx_expires`` (POSIX seconds) and
  ``sbx_signature`` (an HMAC of sandbox, port and expiry): it is turned into
  a cookie that expires with it.
- Whatever carried the credential is removed before the request reaches
  the sandbox: the header, the cookie, the query parameters.

The Unix socket is the operator: requests over it need no token.
"""

import base64
import hashlib
import hmac
import os
from urllib.parse import parse_qsl, urlencode

from twisted.internet.address import UNIXAddress

from sandboxd.api.errors import ApiError

KEY_FILE = "tunnels.key"
HEADER = b"x-sandbox-tunnel-token"
COOKIE = b"sbx_tunnel"
TOKEN_PARAM = "sbx_token"
EXPIRES_PARAM = "sbx_expires"
SIGNATURE_PARAM = "sbx_signature"
_PARAMS = {TOKEN_PARAM, EXPIRES_PARAM, SIGNATURE_PARAM}


def load_key(data_dir):
    """
    The ingress key kept in ``data_dir`` (32 random bytes made on first use).
    """
    path = os.path.join(data_dir, KEY_FILE)
    try:
        with open(path, "rb") as f:
            key = f.read()
        if len(key) == 32:
            return key
    except FileNotFoundError:
        pass
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def _mac(key, *parts):
    digest = hmac.new(key, b"\0".join(parts), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).rstrip(b"=")


class Ingress:
    """
    Checks path-proxy requests for their tunnel's credential.
    """

    def __init__(self, key, clock):
        self._key = key
        self._clock = clock

    def token(self, sandbox_id, port):
        return _mac(self._key, b"token", sandbox_id.encode(), b"%d" % port).decode()

    def signature(self, sandbox_id, port, expires):
        return _mac(self._key, b"signed", sandbox_id.encode(), b"%d" % port,
                    b"%d" % expires).decode()

    def signedQuery(self, sandbox_id, port, expires):
        """
        The query string of a URL valid until ``expires`` (POSIX seconds).
        """
        return urlencode({"sbx_expires": expires,
                          "sbx_signature": self.signature(sandbox_id, port, expires)})

    def _valid(self, sandbox_id, port, credential):
        """
        Whether ``credential`` (a token, or ``expires.signature``) is good now.
        """
        if b"." in credential:
            expires, _, signature = credential.partition(b".")
            if not expires.isdigit() or int(expires) <= self._clock.seconds():
                return False
            good = self.signature(sandbox_id, port, int(expires)).encode()
            return hmac.compare_digest(good, signature)
        return hmac.compare_digest(self.token(sandbox_id, port).encode(), credential)

    def admit(self, request, sandbox_id, port, prefix):
        """
        Let ``request`` through (after removing its credential), answer it
        with a redirect that sets the cookie (return the body), or raise a
        401.  None means: proxy it.
        """
        if isinstance(request.getHost(), UNIXAddress):
            _drop_credentials(request)
            return None
        path, _, query = request.uri.partition(b"?")
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        given = {k: v.encode("latin-1") for k, v in pairs if k in _PARAMS}
        if given:
            return self._fromQuery(request, sandbox_id, port, prefix, path, pairs, given)
        credential = request.getHeader(HEADER) or request.received_cookies.get(COOKIE)
        if credential is None:
            raise ApiError(401, "TUNNEL_UNAUTHORIZED",
                           f"port {port} of sandbox {sandbox_id} needs its tunnel token"
                           " (docs/tunnels.md)")
        if not self._valid(sandbox_id, port, credential):
            raise ApiError(401, "TUNNEL_UNAUTHORIZED",
                           "the tunnel token is wrong, or the signed URL has expired")
        _drop_credentials(request)
        return None

    def _fromQuery(self, request, sandbox_id, port, prefix, path, pairs, given):
        if TOKEN_PARAM in given:
            credential = given[TOKEN_PARAM]
            max_age = None
        else:
            expires = given.get(EXPIRES_PARAM, b"")
            credential = expires + b"." + given.get(SIGNATURE_PARAM, b"")
            max_age = int(expires) - int(self._clock.seconds()) if expires.isdigit() else 0
        if not self._valid(sandbox_id, port, credential):
            raise ApiError(401, "TUNNEL_UNAUTHORIZED",
                           "the tunnel token is wrong, or the signed URL has expired")
        cookie = (b"%s=%s; Path=%s/; HttpOnly; SameSite=Lax"
                  % (COOKIE, credential, prefix))
        if max_age is not None:
            cookie += b"; Max-Age=%d" % max_age
        rest = [(k, v) for k, v in pairs if k not in _PARAMS]
        target = path + (b"?" + urlencode(rest).encode("latin-1") if rest else b"")
        request.setResponseCode(303)
        request.setHeader(b"location", target)
        request.setHeader(b"set-cookie", cookie)
        request.setHeader(b"cache-control", b"no-store")
        return b""


def _drop_credentials(request):
    """
    Remove the token header and cookie from what goes to the sandbox.
    """
    headers = request.requestHeaders
    headers.removeHeader(HEADER)
    cookies = headers.getRawHeaders(b"cookie")
    if not cookies:
        return
    kept = []
    for value in cookies:
        for pair in value.split(b";"):
            name = pair.split(b"=", 1)[0].strip()
            if name and name != COOKIE:
                kept.append(pair.strip())
    if kept:
        headers.setRawHeaders(b"cookie", [b"; ".join(kept)])
    else:
        headers.removeHeader(b"cookie")
