"""
The HTTP routes of the daemon (docs/api.md).
"""

from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.address import UNIXAddress
from twisted.logger import Logger
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from sandboxd import __version__
from sandboxd.api import openapi
from sandboxd.api.creating import Creator, body_from_query, check_expiry, is_websocket_upgrade
from sandboxd.api.answers import json_answer, sized
from sandboxd.api.errors import ApiError, error_body, sandbox_paused
from sandboxd.api.events import MAX_SUBSCRIBERS, EventStreamResource, parse_stream_request
from sandboxd.api.identity import (
    TenantGate,
    caller_identity,
    caller_tenant,
    may_see,
)
from sandboxd.api.paths import PathGuard
from sandboxd.api.routing import TemplateNotingKlein
from sandboxd.api.requests import (
    MAX_EVENT_PAGE,
    event_json,
    parse_count,
    parse_label_filter,
    parse_pool_count,
    parse_update,
    read_json_object,
)
from sandboxd.api.session import SessionFactory
from sandboxd.api.templates import TemplateRoutes, install as install_template_routes
from sandboxd.api.ui import Dashboard
from sandboxd.api.volumes import install as install_volume_routes
from sandboxd.metrics import CONTENT_TYPE
from sandboxd.ratelimit import RateLimiter
from sandboxd.pausing import NotPausable
from sandboxd.runtimes.interface import PauseNotSupported, RuntimeFailure
from sandboxd.sandbox import State
from sandboxd.tenancy.quotas import QuotaExceeded, effective_ttl
from sandboxd.tunnels import TunnelFront, TunnelResource


class SandboxAPI:
    """
    Klein routes over a SandboxManager.
    """

    app = TemplateNotingKlein()
    # A path with doubled slashes matches no route (werkzeug would answer
    # it with a redirect to the merged path).
    app.url_map.merge_slashes = False
    log = Logger()

    def __init__(self, manager, config, clock, stats=None, events=None, metrics=None,
                 tunnels=None, templates=None, builder=None, relay_tap=None, volumes=None):
        self._manager = manager
        #: The volumes (sandboxd/volumes/registry.py), or None.
        self.volumes = volumes
        self.templates = TemplateRoutes(templates, manager, builder, config.limits)
        self._events = events
        self._metrics = metrics
        self._config = config
        self._clock = clock
        self._stats = stats
        self._creates = RateLimiter(
            config.limits.create_rate_limit, config.limits.rate_limit_entries, clock,
            burst=config.limits.create_rate_burst,
        )
        self._gate = None
        self._creator = Creator(manager, self._creates, self.templates, config.limits, clock,
                                volumes)
        factory = SessionFactory(manager, clock, metrics, tap=relay_tap)
        self._tokens = factory.tokens
        self._sessions = WebSocketResource(factory)
        self._tunnels = tunnels
        self._ports = tunnels and TunnelResource(tunnels, manager.get, clock, visible=_visible)
        self._dashboard = Dashboard()

    def resource(self):
        """
        The API's resource: every request passes the signature gate
        (sandboxd/api/identity.py) first.
        """
        routes = PathGuard(self.app.resource())
        if self._ports is not None:
            routes = TunnelFront(routes, self._ports)
        self._gate = TenantGate(routes, self._config.multi_tenant, self._clock, self._creates)
        self._gate.sessionTokens = self._tokens
        return self._gate

    def signedBodies(self, transport):
        """Whether bodies on this connection are signed (see TenantGate)."""
        return self._gate is not None and self._gate.signedBodies(transport)

    def reload(self, config):
        """
        Serve with a new configuration (its limits, rate limit, pool caps,
        tunnel settings).
        """
        self._config = config
        self._creator.limits = config.limits
        if self.volumes is not None:
            self.volumes.limits = config.limits
        self.templates.reload(config.limits)
        self._creates.reload(config.limits.create_rate_limit, config.limits.rate_limit_entries,
                             config.limits.create_rate_burst)
        if self._gate is not None:
            self._gate.reload(config.multi_tenant)
        if self._tunnels is not None:
            self._tunnels.reload(config.limits, config.tunnels)

    @app.handle_errors(ApiError)
    def _apiError(self, request, failure):
        error = failure.value
        for name, value in error.headers.items():
            request.setHeader(name, value)
        request.setResponseCode(error.status)
        request.setHeader(b"Content-Type", b"application/json")
        return sized(request, error.body())

    @app.handle_errors
    def _unexpected(self, request, failure):
        request.setHeader(b"Content-Type", b"application/json")
        return sized(request, self._unexpectedBody(request, failure))

    def _unexpectedBody(self, request, failure):
        if failure.check(RequestRedirect):
            # A trailing slash the route wants: go there (same method, body).
            moved = urlsplit(failure.value.new_url)
            target = moved.path + (f"?{moved.query}" if moved.query else "")
            request.setResponseCode(308)
            request.setHeader(b"Location", target.encode())
            return error_body("MOVED", f"the resource is at {moved.path}")
        if failure.check(NotFound):
            request.setResponseCode(404)
            return error_body("NOT_FOUND", f"no route for {request.path.decode()}")
        if failure.check(MethodNotAllowed):
            request.setResponseCode(405)
            return error_body(
                "METHOD_NOT_ALLOWED",
                f"{request.method.decode()} is not allowed on {request.path.decode()}",
            )
        self.log.failure("unhandled error in {path}", failure, path=request.path)
        request.setResponseCode(500)
        return error_body("INTERNAL", "internal error; see the daemon log")

    # Sandboxes

    @app.route("/sandboxes", methods=["POST"])
    async def create(self, request):
        sandbox = await self._creator.create(request, read_json_object(request))
        return json_answer(request, sandbox.toJSON(), 201)

    @app.route("/sandboxes", methods=["GET"])
    def list(self, request):
        wanted = parse_label_filter(request.args.get(b"label", []))
        caller = caller_identity(request)
        return json_answer(request, [s.toJSON() for s in self._manager.list(wanted)
                                     if may_see(caller, s.identity)])

    def _sandbox(self, sandbox_id, request):
        # Another tenant's sandbox answers exactly as a missing one.
        sandbox = self._manager.get(sandbox_id)
        if sandbox is None or not _visible(request, sandbox):
            raise ApiError(404, "SANDBOX_NOT_FOUND", f"sandbox {sandbox_id} not found")
        return sandbox

    @app.route("/sandboxes/<sandbox_id>", methods=["GET"])
    def get(self, request, sandbox_id):
        body = self._sandbox(sandbox_id, request).toJSON()
        if self._tunnels is not None:
            body["tunnels"] = self._tunnels.describe(sandbox_id)
        return json_answer(request, body)

    @app.route("/sandboxes/<sandbox_id>", methods=["PATCH"])
    def update(self, request, sandbox_id):
        sandbox = self._sandbox(sandbox_id, request)
        changes = parse_update(read_json_object(request), sandbox.labels, self._config.limits,
                               self._clock.seconds())
        tenant = caller_tenant(request)
        if tenant is not None:
            try:
                if "ttl" in changes:
                    changes["ttl"] = effective_ttl(tenant.quotas, changes["ttl"])
                check_expiry(tenant.quotas, changes.get("expires_at"), self._clock.seconds())
            except QuotaExceeded as e:
                raise ApiError(e.status, e.code, e.message)
        if not sandbox.alive:
            raise ApiError(409, "SANDBOX_NOT_RUNNING",
                           f"sandbox {sandbox_id} is {sandbox.state.value}")
        self._manager.update(sandbox, **changes)
        return json_answer(request, sandbox.toJSON())

    @app.route("/sandboxes/<sandbox_id>", methods=["DELETE"])
    def destroy(self, request, sandbox_id):
        self._sandbox(sandbox_id, request)
        if not self._manager.destroy(sandbox_id):
            raise ApiError(404, "SANDBOX_NOT_FOUND", f"sandbox {sandbox_id} not found")
        request.setResponseCode(204)
        return b""

    @app.route("/sandboxes/<sandbox_id>/stats", methods=["GET"])
    async def stats(self, request, sandbox_id):
        sandbox = self._sandbox(sandbox_id, request)
        if self._stats is None:
            raise ApiError(501, "NOT_AVAILABLE", "this daemon serves no stats")
        try:
            summary = await self._stats.read(sandbox)
        except RuntimeFailure as e:
            if self._manager.get(sandbox_id) is None:
                raise ApiError(404, "SANDBOX_NOT_FOUND", f"sandbox {sandbox_id} not found")
            raise ApiError(502, "RUNTIME_ERROR", str(e))
        return json_answer(request, summary)

    @app.route("/sandboxes/<sandbox_id>/pause", methods=["POST"])
    async def pause(self, request, sandbox_id):
        sandbox = self._sandbox(sandbox_id, request)
        await self._freeze(self._manager.pauser.pause, sandbox)
        return json_answer(request, sandbox.toJSON())

    @app.route("/sandboxes/<sandbox_id>/resume", methods=["POST"])
    async def resume(self, request, sandbox_id):
        sandbox = self._sandbox(sandbox_id, request)
        await self._freeze(self._manager.pauser.resume, sandbox)
        return json_answer(request, sandbox.toJSON())

    async def _freeze(self, change, sandbox):
        """Pause or resume ``sandbox`` with the errors named."""
        try:
            await change(sandbox)
        except NotPausable as e:
            raise ApiError(409, "SANDBOX_NOT_RUNNING", str(e))
        except PauseNotSupported as e:
            raise ApiError(501, "PAUSE_NOT_SUPPORTED", str(e))
        except RuntimeFailure as e:
            raise ApiError(502, "RUNTIME_ERROR", str(e))
        except Exception as e:
            if sandbox.state is State.FAILED:
                raise ApiError(409, "SANDBOX_NOT_RUNNING",
                               f"sandbox {sandbox.id} failed: {e}")
            raise

    @app.route("/sandboxes/<sandbox_id>/ws", methods=["GET"])
    def session(self, request, sandbox_id):
        if self._sandbox(sandbox_id, request).state is State.PAUSED:
            raise sandbox_paused(sandbox_id)
        return self._upgrade(request)

    @app.route("/sandboxes/new/ws", methods=["GET"])
    async def createWithSession(self, request):
        """
        Create a sandbox (the query holds the create body) and open its
        session on the same connection: the 101 carries the sandbox as
        ``X-Sandbox`` (docs/api.md).
        """
        if not is_websocket_upgrade(request):
            # Checked before creating: a plain GET must make no sandbox.
            raise ApiError(426, "UPGRADE_REQUIRED",
                           "GET /sandboxes/new/ws is a WebSocket upgrade",
                           headers={"Upgrade": "websocket"})
        sandbox = await self._creator.create(request, body_from_query(request.args))
        if request.channel is None:
            # The caller left while the sandbox was made: nobody will use it.
            self._manager.destroy(sandbox.id, reason="its creator disconnected")
            return b""
        request.uri = b"/sandboxes/%s/ws?created=1" % sandbox.id.encode()
        return self._upgrade(request)

    def _upgrade(self, request):
        """
        Hand the request to the WebSocket sessions, unless its connection
        is already gone (autobahn would trip over the missing channel).
        """
        if request.channel is None:
            return b""
        return self._sessions

    @app.route("/sandboxes/<sandbox_id>/session-token", methods=["POST"])
    def sessionToken(self, request, sandbox_id):
        sandbox = self._sandbox(sandbox_id, request)
        return json_answer(request, self._tokens.mint(sandbox.id, sandbox.identity), 201)

    # Templates (sandboxd/api/templates.py), volumes (sandboxd/api/volumes.py)
    install_template_routes(app)
    install_volume_routes(app)

    # Pools (admin: the Unix socket only)

    def _admin(self, request):
        if not isinstance(request.getHost(), UNIXAddress):
            raise ApiError(
                403, "ADMIN_ONLY", "pool administration is served on the Unix socket only"
            )

    def _pool(self, profile):
        if profile not in self._manager.pools.pools:
            raise ApiError(404, "UNKNOWN_PROFILE", f"no profile named {profile!r}")

    @app.route("/pools", methods=["GET"])
    def pools(self, request):
        self._admin(request)
        return json_answer(request, self._manager.pools.status())

    @app.route("/pools/<profile>", methods=["PUT"])
    def resizePool(self, request, profile):
        self._admin(request)
        self._pool(profile)
        body = read_json_object(request)
        count = parse_pool_count(body, self._config.pool.max_warm)
        self._manager.pools.resize(profile, count)
        self._record("pool.resized", profile=profile, count=count)
        return json_answer(request, self._manager.pools.status()[profile])

    @app.route("/pools/<profile>/flush", methods=["POST"])
    def flushPool(self, request, profile):
        self._admin(request)
        self._pool(profile)
        flushed = self._manager.pools.flush(profile)
        status = self._manager.pools.status()[profile]
        status["flushed"] = flushed
        self._record("pool.flushed", profile=profile, flushed=flushed)
        return json_answer(request, status)

    # Events

    def _record(self, type, **data):
        if self._events is not None:
            self._events.record(type, None, data)

    @app.route("/events", methods=["GET"])
    def eventStream(self, request):
        if self._events is None:
            raise ApiError(501, "NOT_AVAILABLE", "this daemon serves no event stream")
        after, wanted = parse_stream_request(request)
        if self._events.subscribers >= MAX_SUBSCRIBERS:
            raise ApiError(503, "AT_CAPACITY", f"{MAX_SUBSCRIBERS} event streams are open",
                           headers={"Retry-After": "5"})
        caller = caller_identity(request)
        if caller:
            wanted = _scoped(wanted, caller)
        return EventStreamResource(self._events, self._clock, after, wanted)

    @app.route("/events/history", methods=["GET"])
    def eventHistory(self, request):
        after = parse_count(request.args.get(b"after"), "after", 0, None)
        limit = parse_count(request.args.get(b"limit"), "limit", 100, MAX_EVENT_PAGE)
        sandbox_id = request.args.get(b"sandbox", [b""])[-1].decode("utf-8", "replace")
        events = self._manager.events(after, limit, sandbox_id or None,
                                      caller_identity(request) or None)
        return json_answer(request, [event_json(e) for e in events])

    # Profiles and health

    @app.route("/profiles", methods=["GET"])
    def profiles(self, request):
        return json_answer(
            request,
            [
                {
                    "name": p.name,
                    "image": p.image,
                    "memory": p.memory,
                    "cpu": p.cpu,
                    "storage": p.storage,
                    "runtime": p.runtime,
                }
                for p in self._manager.profiles.values()
            ],
        )

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request):
        if caller_identity(request):
            raise ApiError(403, "OPERATOR_ONLY", "metrics cover every tenant: ask the operator")
        if self._metrics is None:
            raise ApiError(501, "NOT_AVAILABLE", "this daemon serves no metrics")
        request.setHeader(b"Content-Type", CONTENT_TYPE.encode())
        return self._metrics.exposition()

    # The dashboard (sandboxd/api/ui.py, docs/ui.md)

    @app.route("/ui/", methods=["GET"])
    def dashboard(self, request):
        return self._dashboard.serve(request, self._config, "")

    @app.route("/ui/config.json", methods=["GET"])
    def dashboardSettings(self, request):
        return self._dashboard.settings(request, self._config)

    @app.route("/ui/<name>", methods=["GET"])
    def dashboardFile(self, request, name):
        return self._dashboard.serve(request, self._config, name)

    @app.route("/openapi.json", methods=["GET"])
    def openapi(self, request):
        return json_answer(request, openapi.document())

    @app.route("/health", methods=["GET"])
    def health(self, request):
        status = self._manager.health()
        caller = caller_identity(request)
        if caller:
            status["sandboxes"] = sum(1 for s in self._manager.list() if s.identity == caller)
        status.update(
            status="ok",
            version=__version__,
            uptime_seconds=round(self._clock.seconds() - self._manager.started, 3),
        )
        return json_answer(request, status)


def _visible(request, sandbox):
    """Whether the caller of ``request`` may see ``sandbox``."""
    return may_see(caller_identity(request), sandbox.identity)


def _scoped(wanted, caller):
    """An event filter that also keeps only ``caller``'s events."""
    return lambda event: event.identity == caller and wanted(event)
