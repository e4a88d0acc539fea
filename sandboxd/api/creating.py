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
from sandboxd.manager import UnknownProfile, VolumesNotSupported
from sandboxd.ratelimit import RateLimited
from sandboxd.runtimes.interface import RuntimeFailure
from sandboxd.tenancy.quotas import ConcurrencyQuota, QuotaExceeded, effective_ttl

#: Query parameters of ``GET /sandboxes/new/ws``: the create body's fields,
#: ``label=k=v`` repeated for its labels.
_QUERY_FIELDS = ("profile", "template", "memory", "cpu", "storage", "ttl", "ttl_action",
                 "expires_at")


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
    volumes = []
    for raw in args.get(b"volume", []):
        name, _, rest = raw.decode("utf-8", "replace").partition(":")
        path, _, mode = rest.partition(":")
        if mode not in ("", "ro"):
            raise invalid_field("volume", f"{raw[:80]!r} is not NAME:PATH[:ro]")
        volumes.append({"name": name, "path": path, "read_only": mode == "ro"})
    if volumes:
        body["volumes"] = volumes
    return body


class Creator:
    """
    Creates sandboxes through ``manager`` for callers, within ``limiter``
    (a RateLimiter keyed by caller) and the tenants' quotas; ``templates``
    (the API's TemplateRoutes) finds a template the caller may use.
    """

    def __init__(self, manager, limiter, templates, limits, clock, volumes=None):
        self._manager = manager
        self._clock = clock
        #: The Volumes (sandboxd/volumes/registry.py) mounts are found in.
        self.volumes = volumes
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
        wanted = parse_create(body, self.limits, self._clock.seconds())
        template = wanted.template and self._templates.lookup(request, wanted.template)
        tenant, ttl, release = caller_tenant(request), wanted.ttl, (lambda: None)
        try:
            if tenant is not None:
                ttl = effective_ttl(tenant.quotas, ttl)
                check_expiry(tenant.quotas, wanted.expires_at, self._clock.seconds())
                release = self._held.reserve(tenant.identity, tenant.quotas)
        except QuotaExceeded as e:
            headers = {"Retry-After": str(e.retry_after)} if e.retry_after else None
            raise ApiError(e.status, e.code, e.message, headers=headers)
        try:
            volumes = await self._mounts(request, wanted.volumes)
            return await self._manager.create(
                template=template,
                profile=wanted.profile,
                memory=wanted.memory,
                cpu=wanted.cpu,
                storage=wanted.storage,
                ttl=ttl,
                labels=wanted.labels,
                identity=caller_identity(request),
                ttl_action=wanted.ttl_action,
                expires_at=wanted.expires_at,
                volumes=volumes,
                network=wanted.network,
                secrets=wanted.secrets,
            )
        except UnknownProfile as e:
            raise ApiError(404, "UNKNOWN_PROFILE", f"no profile named {e.args[0]!r}")
        except AtCapacity as e:
            raise ApiError(503, "AT_CAPACITY", str(e), headers={"Retry-After": "1"})
        except VolumesNotSupported as e:
            raise ApiError(501, "VOLUMES_NOT_SUPPORTED", str(e))
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

    async def _mounts(self, request, mounts):
        """
        The caller's volumes for ``mounts``, with their host sources.
        """
        if not mounts:
            return ()
        if self.volumes is None:
            raise ApiError(501, "NOT_AVAILABLE", "this daemon serves no volumes")
        return await self.volumes.sources(caller_identity(request), mounts)


def check_expiry(quotas, expires_at, now):
    """
    Refuse an ``expires_at`` further away than the identity's
    ``X-Sandbox-Max-TTL``.
    """
    if expires_at is not None and quotas.max_ttl is not None:
        if expires_at - now > quotas.max_ttl:
            raise QuotaExceeded(400, "LIMIT_EXCEEDED", "expires_at is further away than this "
                                f"identity's X-Sandbox-Max-TTL ({quotas.max_ttl} s)")
