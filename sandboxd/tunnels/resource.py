"""
The HTTP face of tunnels, everything under ``/sandboxes/{id}/ports``
(docs/api.md, docs/tunnels.md):

- ``GET /sandboxes/{id}/ports``: the dedicated host ports.
- ``POST /sandboxes/{id}/ports/{port}/expose {"timeout": s}``: open one.
- ``DELETE /sandboxes/{id}/ports/{port}/expose``: close it.
- ``POST /sandboxes/{id}/ports/{port}/url {"expires": s}``: a signed
  path-proxy URL and the tunnel's token (private ingress).
- anything else under ``/sandboxes/{id}/ports/{port}/``: the path proxy.

The API mounts L{TunnelResource} on a Klein branch route; the resource reads
the raw request path itself, so what the proxy checks (the port segment,
byte for byte) is what it connects to.
"""

import json

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from sandboxd.api.errors import ApiError, invalid_field
from sandboxd.api.requests import read_json_object
from sandboxd.sandbox import iso_time
from sandboxd.tunnels.addressing import check_target, parse_port, split_proxy_path
from sandboxd.tunnels.pathproxy import write_error

#: What this resource serves, as (method, path template): the path proxy
#: takes any method (the OpenAPI document lists the usual ones).
ROUTES = frozenset({
    ("GET", "/sandboxes/{sandbox_id}/ports"),
    ("POST", "/sandboxes/{sandbox_id}/ports/{port}/expose"),
    ("DELETE", "/sandboxes/{sandbox_id}/ports/{port}/expose"),
    ("POST", "/sandboxes/{sandbox_id}/ports/{port}/url"),
    *(
        (method, "/sandboxes/{sandbox_id}/ports/{port}/{path}")
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH")
    ),
})



def route_of(method, path):
    """
    The route template (werkzeug's spelling, as the metrics label Klein's
    routes) a request for the raw ``path`` falls under, or None when the
    path is not a tunnel's.
    """
    parts = path.split(b"/")
    if len(parts) < 4 or parts[1] != b"sandboxes" or parts[3] != b"ports" or not parts[2]:
        return None
    if len(parts) == 4 or (len(parts) == 5 and parts[4] == b""):
        return "/sandboxes/<sandbox_id>/ports"
    if len(parts) == 6 and (method, parts[5]) in (
        (b"POST", b"expose"), (b"DELETE", b"expose"), (b"POST", b"url")
    ):
        return f"/sandboxes/<sandbox_id>/ports/<port>/{parts[5].decode()}"
    return "/sandboxes/<sandbox_id>/ports/<port>/<path>"


#: The longest readiness wait an expose may ask for, in seconds.
MAX_EXPOSE_TIMEOUT = 600
#: How long a signed URL lasts when its request does not say, and at most.
DEFAULT_URL_LIFETIME = 3600
MAX_URL_LIFETIME = 7 * 86400


class TunnelResource(Resource):
    """
    ``/sandboxes/{id}/ports...`` over ``tunnels`` (a L{Tunnels}),
    ``lookup`` (sandbox id -> Sandbox or None) and ``clock``;
    ``visible(request, sandbox)`` says whether the caller may see it (a
    sandbox it may not see answers as a missing one).
    """

    isLeaf = True
    log = Logger()

    def __init__(self, tunnels, lookup, clock, visible=lambda request, sandbox: True):
        Resource.__init__(self)
        self._visible = visible
        self._tunnels = tunnels
        self._lookup = lookup
        self._clock = clock

    def render(self, request):
        try:
            return self._route(request)
        except ApiError as e:
            write_error(request, e)
            return NOT_DONE_YET

    def _route(self, request):
        path = request.uri.split(b"?", 1)[0]
        parts = path.split(b"/")
        # ['', 'sandboxes', id, 'ports', ...]
        sandbox = self._sandbox(parts[2], request)
        if len(parts) == 4 or (len(parts) == 5 and parts[4] == b""):
            if request.method != b"GET":
                raise _not_allowed(request)
            return _json(request, self._tunnels.describe(sandbox.id))
        sandbox_id, raw_port, rest = split_proxy_path(request.uri)
        port = parse_port(raw_port.split(b"?", 1)[0])
        if len(parts) == 5:
            # /ports/8080 with no slash: relative links need one.
            query = request.uri[len(path):]
            request.setResponseCode(308)
            request.setHeader(b"location", path + b"/" + query)
            return b""
        if len(parts) == 6 and parts[5] == b"expose" and request.method in (b"POST", b"DELETE"):
            if request.method == b"DELETE":
                return self._close(request, sandbox, port)
            return self._expose(request, sandbox, port)
        if len(parts) == 6 and parts[5] == b"url" and request.method == b"POST":
            return self._signedURL(request, sandbox, port)
        address = check_target(sandbox, port)
        ingress = self._tunnels.ingress
        if ingress is not None:
            prefix = b"/sandboxes/%s/ports/%d" % (sandbox.id.encode(), port)
            answer = ingress.admit(request, sandbox.id, port, prefix)
            if answer is not None:
                return answer
        return self._tunnels.proxy.render(request, sandbox, address, port, rest)

    def _signedURL(self, request, sandbox, port):
        body = read_json_object(request)
        unknown = sorted(set(body) - {"expires"})
        if unknown:
            raise invalid_field(unknown[0], "unknown field")
        expires = body.get("expires", DEFAULT_URL_LIFETIME)
        if isinstance(expires, bool) or not isinstance(expires, int) or not (
            1 <= expires <= MAX_URL_LIFETIME
        ):
            raise invalid_field(
                "expires", f"must be a whole number of seconds from 1 to {MAX_URL_LIFETIME}")
        check_target(sandbox, port)
        path = f"/sandboxes/{sandbox.id}/ports/{port}/"
        ingress = self._tunnels.ingress
        if ingress is None:
            return _json(request, {"port": port, "path": path, "auth": "none"})
        until = int(self._clock.seconds()) + expires
        return _json(request, {
            "port": port,
            "path": f"{path}?{ingress.signedQuery(sandbox.id, port, until)}",
            "expires": iso_time(until),
            "token": ingress.token(sandbox.id, port),
            "auth": "token",
        })

    def _sandbox(self, raw_id, request):
        sandbox_id = raw_id.decode("utf-8", "replace")
        sandbox = self._lookup(sandbox_id)
        if sandbox is None or not self._visible(request, sandbox):
            raise ApiError(404, "SANDBOX_NOT_FOUND", f"sandbox {sandbox_id} not found")
        return sandbox

    def _close(self, request, sandbox, port):
        if not self._tunnels.close(sandbox, port):
            raise ApiError(
                404, "TUNNEL_NOT_FOUND", f"port {port} of sandbox {sandbox.id} is not exposed"
            )
        request.setResponseCode(204)
        return b""

    def _expose(self, request, sandbox, port):
        body = read_json_object(request)
        unknown = sorted(set(body) - {"timeout"})
        if unknown:
            raise invalid_field(unknown[0], "unknown field")
        timeout = body.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 <= timeout <= MAX_EXPOSE_TIMEOUT
        ):
            raise invalid_field("timeout", f"must be a number of seconds from 0 to {MAX_EXPOSE_TIMEOUT}")
        gone = []
        request.notifyFinish().addErrback(gone.append)

        def done(result):
            tunnel, new = result
            if not gone:
                request.write(_json(request, tunnel.toJSON(), 201 if new else 200))
                request.finish()

        def failed(failure):
            if gone:
                return
            if failure.check(ApiError):
                write_error(request, failure.value)
                return
            self.log.failure("expose {sandbox}:{port}", failure, sandbox=sandbox.id, port=port)
            write_error(request, ApiError(500, "INTERNAL", "internal error; see the daemon log"))

        ensureDeferred(self._tunnels.expose(sandbox, port, timeout)).addCallbacks(done, failed)
        return NOT_DONE_YET


class TunnelFront(Resource):
    """
    The API's root: requests under ``/sandboxes/{id}/ports`` go to
    ``tunnels`` (a L{TunnelResource}) at once, everything else to ``api``
    (the Klein resource).  Proxied requests skip Klein's routing, a good
    part of what the path proxy costs per request.
    """

    isLeaf = True

    def __init__(self, api, tunnels):
        Resource.__init__(self)
        self._api = api
        self._tunnels = tunnels

    def render(self, request):
        parts = request.path.split(b"/", 4)
        if len(parts) >= 4 and parts[1] == b"sandboxes" and parts[3] == b"ports" and parts[2]:
            return self._tunnels.render(request)
        return self._api.render(request)


def _json(request, obj, status=200):
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(obj).encode()


def _not_allowed(request):
    return ApiError(
        405, "METHOD_NOT_ALLOWED",
        f"{request.method.decode('latin-1')} is not allowed on {request.path.decode('latin-1')}",
    )
