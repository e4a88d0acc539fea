"""
Creating a sandbox for a caller, the one path behind ``POST /sandboxes``
and ``GET /sandboxes/new/ws`` (create and open its session in one round
trip, docs/api.md): the caller's rate limit, the create body, a template
the caller may use, the tenant's quotas, and the manager's errors named.
"""

from sandboxd.api.errors import ApiError, invalid_field
from sandboxd.api.identity import caller_identity, caller_tenant, rate_key
from sandboxd.api.requests import parse_create
from sandboxd.booting import SandboxDestroyed
from sandboxd.capacity import AtCapacity
from sandboxd.egress.guard import EgressFailed, NetworkUnsupported
from sandboxd.manager import UnknownProfile
from sandboxd.ratelimit import RateLimited
from sandboxd.runtimes.interface import RuntimeFailure
from sandboxd.tenancy.quotas import ConcurrencyQuota, QuotaExceeded, effective_ttl

#: Query parameters of ``GET /sandboxes/new/ws``: the create body's fields,
#: ``label=k=v`` repeated for its labels.
_QUERY_FIELDS = ("profile", "template", "memory", "cpu", "storage", "ttl")


def is_websocket_upgrade(request):
    """
    Whether ``request`` asks for a WebSocket (RFC 6455: GET, ``Upgrade:
    websocket``, ``Connection: upgrade``, a key and version 13).
    """
    headers = request.requestHeaders

    def has(name, token):
        values = b",".join(headers.getRawHeaders(name, [])).lower()
        return token in {part.strip() for part in values.split(b",")}

    return (request.method == b"GET" and has(b"upgrade", b"websocket")
            and has(b"connection", b"upgrade")
            and bool(headers.getRawHeaders(b"sec-websocket-key"))
            and has(b"sec-websocket-version", b"13"))


def body_from_query(args):
    """
    A create body from the query of ``GET /sandboxes/new/ws`` (``args``:
    Twisted's ``request.args``); numbers as the JSON body would have them.
    """
    body = {}
    for name in (b"network", b"secrets"):
        if name in args:
            # A secret never travels in a URL (logs, proxies): POST them.
            raise invalid_field(name.decode(), "not taken in a URL: create with POST /sandboxes")
    for name in _QUERY_FIELDS:
        values = args.get(name.encode())
        if not values:
            continue
        text = values[-1].decode("utf-8", "replace")
        if name == "ttl":
            if not text.isdigit():
                raise invalid_field("ttl", "must be a whole number of seconds >= 0")
            body[name] = int(text)
        elif name == "cpu":
            try:
                body[name] = float(text)
            except ValueError:
                raise invalid_field("cpu", "must be a positive number of CPUs") from None
        else:
            body[name] = text
    labels = {}
    for raw in args.get(b"label", []):
        key, sep, value = raw.decode("utf-8", "replace").partition("=")
        if not sep:
            raise invalid_field("label", f"{key!r} is not KEY=VALUE")
        labels[key] = value
    if labels:
        body["labels"] = labels
    return body


class Creator:
    """
    Creates sandboxes through ``manager`` for callers, within ``limiter``
    (a RateLimiter keyed by caller) and the tenants' quotas; ``templates``
    (the API's TemplateRoutes) finds a template the caller may use.
    """

    def __init__(self, manager, limiter, templates, limits):
        self._manager = manager
        self._limiter = limiter
        self._templates = templates
        self.limits = limits
        self._held = ConcurrencyQuota(
            lambda who: sum(1 for s in manager.list() if s.identity == who and s.alive))

    async def create(self, request, body):
        """
        The sandbox ``body`` (a create body) asks for, made for the caller
        of ``request``; ApiError otherwise.
        """
        key = rate_key(request)
        try:
            if key is not None:
                self._limiter.take(key)
        except RateLimited as e:
            raise ApiError(
                429, "RATE_LIMITED", str(e), headers={"Retry-After": str(e.retry_after)}
            )
        wanted = parse_create(body, self.limits)
        template = wanted.template and self._templates.lookup(request, wanted.template)
        tenant, ttl, release = caller_tenant(request), wanted.ttl, (lambda: None)
        try:
            if tenant is not None:
                ttl = effective_ttl(tenant.quotas, ttl)
                release = self._held.reserve(tenant.identity, tenant.quotas)
        except QuotaExceeded as e:
            headers = {"Retry-After": str(e.retry_after)} if e.retry_after else None
            raise ApiError(e.status, e.code, e.message, headers=headers)
        try:
            return await self._manager.create(
                template=template,
                profile=wanted.profile,
                memory=wanted.memory,
                cpu=wanted.cpu,
                storage=wanted.storage,
                ttl=ttl,
                labels=wanted.labels,
                identity=caller_identity(request),
                network=wanted.network,
                secrets=wanted.secrets,
            )
        except UnknownProfile as e:
            raise ApiError(404, "UNKNOWN_PROFILE", f"no profile named {e.args[0]!r}")
        except AtCapacity as e:
            raise ApiError(503, "AT_CAPACITY", str(e), headers={"Retry-After": "1"})
        except SandboxDestroyed as e:
            raise ApiError(409, "SANDBOX_DESTROYED", f"{e}: DELETE came first")
        except NetworkUnsupported as e:
            raise ApiError(400, "NETWORK_UNSUPPORTED", str(e))
        except EgressFailed as e:
            raise ApiError(502, "EGRESS_FAILED", str(e))
        except RuntimeFailure as e:
            raise ApiError(502, "RUNTIME_ERROR", str(e))
        finally:
            release()
