"""
The router's one resource: which node answers what (docs/deploy.md "The
router").

- ``POST /sandboxes`` and ``GET /sandboxes/new/ws``: placed by
  placement.rank; a node that cannot be connected to is skipped for the
  next, but one that failed after the request may have reached it is not
  (503: a second node would make a second sandbox).
- ``/sandboxes/{id}`` and everything under it (HTTP, the WebSocket session,
  the tunnels' path proxy ``/sandboxes/{id}/ports/...``): forwarded to the
  node named in the id (``sbx-<node_id>-<hex>``); a node that is not live,
  or does not answer, is ``503 SANDBOX_UNAVAILABLE`` at once.
- ``GET /sandboxes`` and ``GET /templates``: every live node asked, lists
  merged (nodes that did not answer are named in ``X-Sandbox-Unavailable``).
- ``GET /events``: merged (events.py).
- ``POST /templates`` (from a sandbox): the sandbox's node;
  ``/templates/{id}``: the node holding it (templates stay where they were
  baked); ``POST /templates/build``: placed as a create.
- ``/pools...``, ``/profiles``: asked of every node, answered per node.
- ``GET /health``, ``GET /nodes``, ``GET /metrics``: the router's own.
"""

import json
import re
from urllib.parse import parse_qs

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from sandboxd.router.events import CursorError, MergedEventStream, parse_cursor
from sandboxd.router.forward import NodeUnreachable, error_body, forwarded_headers, no_delay
from sandboxd.router.metrics import CONTENT_TYPE
from sandboxd.router.placement import PlacementError, rank

#: ``sbx-<node_id>-<8 hex>``: the node part of a cluster sandbox id.
_SANDBOX_ID = re.compile(rb"sbx-([a-z0-9]{1,16})-[0-9a-f]{8}")
_TEMPLATE_ID = re.compile(rb"tpl-[0-9a-f]{8}")
#: Create bodies the router reads to place (the node checks them fully).
MAX_CREATE_BODY = 1 << 20


def _json(request, status, body, headers=()):
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    for name, value in headers:
        request.setHeader(name, value)
    return json.dumps(body).encode()


def unavailable(request, message):
    return error_body(request, 503, "SANDBOX_UNAVAILABLE", message,
                      [(b"retry-after", b"1")])


def _quota(request):
    """(identity, max_concurrent or None) from a signed request's headers."""
    if request.getHeader(b"x-sandbox-signature") is None:
        return "", None
    identity = (request.getHeader(b"x-sandbox-identity") or b"").decode("utf-8", "replace")
    raw = request.getHeader(b"x-sandbox-max-concurrent")
    try:
        return identity, int(raw) if raw is not None else None
    except ValueError:
        return identity, None


class Router(Resource):
    """Answers the sandboxd API for the nodes in ``directory``."""

    isLeaf = True
    log = Logger()

    def __init__(self, directory, forwarder, metrics, clock):
        super().__init__()
        self._directory = directory
        self._forwarder = forwarder
        self._metrics = metrics
        self._clock = clock

    def render(self, request):
        no_delay(request.transport)
        path = request.path.rstrip(b"/") or b"/"
        parts = path.split(b"/")[1:]
        route, answer = self._dispatch(request, path, parts)
        started = self._clock.seconds()

        def done(_):
            self._metrics.requests.labels(route, str(request.code)).inc()
            if route not in ("events", "ws"):
                self._metrics.seconds.labels(route).observe(self._clock.seconds() - started)
        request.notifyFinish().addBoth(done)
        return answer

    def _dispatch(self, request, path, parts):
        method = request.method
        head = parts[0] if parts else b""
        if head == b"sandboxes":
            if len(parts) == 1:
                if method == b"POST":
                    return "create", self._later(request, self._create(request))
                if method == b"GET":
                    return "list", self._later(request, self._merged(request, "sandboxes"))
            elif parts[1] == b"new" and len(parts) == 3 and parts[2] == b"ws":
                return "ws", self._createWithSession(request)
            else:
                return self._sandbox(request, parts)
        elif head == b"events" and len(parts) == 1 and method == b"GET":
            return "events", self._events(request)
        elif head == b"templates":
            return "templates", self._templates(request, parts)
        elif head in (b"pools", b"profiles"):
            return head.decode(), self._later(request, self._everyNode(request))
        elif path == b"/health" and method == b"GET":
            return "router", _json(request, 200, self._health())
        elif path == b"/nodes" and method == b"GET":
            return "router", _json(request, 200, [n.record for n in self._nodes()])
        elif path == b"/metrics" and method == b"GET":
            request.setHeader(b"content-type", CONTENT_TYPE.encode())
            return "router", self._metrics.render()
        elif path == b"/openapi.json" and method == b"GET":
            nodes = self._nodes()
            if nodes:
                return "router", self._forwarder.relay(request, nodes[0], None, unavailable)
        return "other", error_body(request, 404, "NOT_FOUND",
                                   f"{method.decode()} {request.path.decode()} is not a route "
                                   "of the router")

    def _nodes(self):
        return [self._directory.nodes[n] for n in sorted(self._directory.nodes)]

    def _later(self, request, coroutine):
        def failed(failure):
            self.log.failure("answering {uri}", failure, uri=request.uri)
            if not request.finished:
                request.write(error_body(request, 500, "INTERNAL",
                                         "internal error; see the router log"))
                request.finish()
        Deferred.fromCoroutine(coroutine).addErrback(failed)
        return NOT_DONE_YET

    def _finish(self, request, body):
        if not (request.finished or request._disconnected):
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
            request.finish()

    # Placement

    def _rank(self, request, profile, template):
        identity, max_concurrent = _quota(request)
        return rank(self._directory.nodes.values(), profile, template, identity,
                    max_concurrent, self._directory.counted(identity) if identity else 0)

    async def _create(self, request):
        request.content.seek(0)
        raw = request.content.read(MAX_CREATE_BODY + 1)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        if not isinstance(body, dict) or len(raw) > MAX_CREATE_BODY:
            # The node names what is wrong with the body exactly.
            body = {}
        profile = body.get("profile") if isinstance(body.get("profile"), str) else "default"
        template = body.get("template") if isinstance(body.get("template"), str) else None
        try:
            ranked = self._rank(request, profile, template)
        except PlacementError as e:
            return self._finish(request, error_body(request, e.status, e.code, e.message))
        headers = forwarded_headers(request)
        reasons = []
        for node in ranked:
            warm = "yes" if node.warm.get(profile, 0) > 0 else "no"
            try:
                response = await self._forwarder.request(node, b"POST", request.uri, headers,
                                                         request.content)
            except NodeUnreachable as e:
                reasons.append(str(e))
                if e.sent:
                    # It may have made the sandbox: never a second one elsewhere.
                    return self._finish(request, error_body(
                        request, 503, "CLUSTER_UNAVAILABLE",
                        f"{e}; it may have made the sandbox (reaped after its ttl if "
                        "nobody opens a session on it)"))
                continue
            if response.code == 201:
                self._directory.reserve(node.node_id, profile, _quota(request)[0])
                self._metrics.placements.labels(node.node_id, warm).inc()
            return self._forwarder.deliver(request, response, node.node_id)
        self._finish(request, error_body(request, 503, "CLUSTER_UNAVAILABLE",
                                         "no node took the sandbox: " + "; ".join(reasons)))

    def _createWithSession(self, request):
        query = parse_qs(request.uri.partition(b"?")[2].decode("utf-8", "replace"))
        profile = query.get("profile", ["default"])[-1]
        template = query.get("template", [None])[-1]
        try:
            node = self._rank(request, profile, template)[0]
        except PlacementError as e:
            return error_body(request, e.status, e.code, e.message)
        self._directory.reserve(node.node_id, profile, _quota(request)[0])
        self._metrics.placements.labels(
            node.node_id, "yes" if node.warm.get(profile, 0) > 0 else "no").inc()
        return self._forwarder.upgrade(request, node, unavailable)

    # One sandbox

    def _sandbox(self, request, parts):
        match = _SANDBOX_ID.fullmatch(parts[1])
        route = "ports" if len(parts) > 3 and parts[2] == b"ports" else (
            "ws" if len(parts) == 3 and parts[2] == b"ws" else "sandbox")
        if match is None:
            return route, error_body(request, 404, "SANDBOX_NOT_FOUND",
                                     f"sandbox {parts[1].decode('utf-8', 'replace')[:64]} "
                                     "not found (cluster ids are sbx-<node>-<hex>)")
        node = self._directory.get(match[1].decode())
        if node is None:
            self._metrics.unavailable.labels(match[1].decode()).inc()
            return route, unavailable(request, f"node {match[1].decode()} of sandbox "
                                               f"{parts[1].decode()} is not live")
        if (request.getHeader(b"upgrade") or b"").lower() == b"websocket":
            return route, self._forwarder.upgrade(request, node, self._unavailable(node))
        return route, self._forwarder.relay(request, node, request.content,
                                            self._unavailable(node))

    def _unavailable(self, node):
        def answer(request, message):
            self._metrics.unavailable.labels(node.node_id).inc()
            return unavailable(request, message)
        return answer

    # Merged answers

    async def _askAll(self, request, uri=None):
        """{node_id: (status, body)} of every live node; None for the silent."""
        nodes = self._nodes()
        headers = forwarded_headers(request)

        async def ask(node):
            try:
                return await self._forwarder.fetch_json(node, request.method,
                                                        uri or request.uri, headers)
            except NodeUnreachable:
                return None
        answers = await gatherResults([Deferred.fromCoroutine(ask(n)) for n in nodes],
                                      consumeErrors=True)
        return dict(zip((n.node_id for n in nodes), answers))

    async def _merged(self, request, kind):
        answers = await self._askAll(request)
        merged, silent = [], []
        for node_id, answer in sorted(answers.items()):
            if answer is None:
                silent.append(node_id)
                continue
            status, body = answer
            if status != 200 or not isinstance(body, list):
                # A node refusing the request (a bad filter, a bad
                # signature) refuses it for all: its answer is the answer.
                return self._finish(request, _json(request, status, body))
            merged.extend(body)
        merged.sort(key=lambda item: (str(item.get("created", "")), str(item.get("id", ""))))
        headers = [(b"x-sandbox-unavailable", ",".join(silent).encode())] if silent else []
        self._finish(request, _json(request, 200, merged, headers))

    async def _everyNode(self, request):
        answers = await self._askAll(request)
        body = {node_id: ({"status": 503, "body": None} if answer is None
                          else {"status": answer[0], "body": answer[1]})
                for node_id, answer in answers.items()}
        self._finish(request, _json(request, 200, {"nodes": body}))

    # Events and templates

    def _events(self, request):
        if b"after" in request.args:
            return error_body(request, 400, "INVALID_FIELD",
                              "after: the router's streams resume from Last-Event-ID "
                              "(a node:id cursor), not ?after=")
        try:
            cursors = parse_cursor((request.getHeader(b"last-event-id") or b"").decode(
                "utf-8", "replace"))
        except CursorError as e:
            return error_body(request, 400, "INVALID_FIELD", str(e))
        MergedEventStream(request, self._directory, self._forwarder, self._clock,
                          cursors).start()
        return NOT_DONE_YET

    def _templates(self, request, parts):
        method = request.method
        if len(parts) == 1 and method == b"GET":
            return self._later(request, self._merged(request, "templates"))
        if len(parts) == 1 and method == b"POST":
            return self._later(request, self._templateFromSandbox(request))
        if len(parts) == 2 and parts[1] == b"build" and method == b"POST":
            try:
                node = self._rank(request, "default", None)[0]
            except PlacementError as e:
                return error_body(request, e.status, e.code, e.message)
            return self._forwarder.relay(request, node, request.content, unavailable)
        if len(parts) == 2 and _TEMPLATE_ID.fullmatch(parts[1]):
            template = parts[1].decode()
            for node in self._nodes():
                if template in node.templates:
                    return self._forwarder.relay(request, node, request.content, unavailable)
            return error_body(request, 404, "TEMPLATE_NOT_FOUND",
                              f"no live node holds template {template}")
        return error_body(request, 404, "NOT_FOUND",
                          f"{method.decode()} {request.path.decode()} is not a route")

    async def _templateFromSandbox(self, request):
        request.content.seek(0)
        try:
            body = json.loads(request.content.read(MAX_CREATE_BODY) or b"{}")
        except ValueError:
            body = {}
        sandbox = body.get("sandbox_id") if isinstance(body, dict) else None
        match = _SANDBOX_ID.fullmatch(sandbox.encode()) if isinstance(sandbox, str) else None
        node = self._directory.get(match[1].decode()) if match else None
        if node is None:
            nodes = self._nodes()
            if match is not None or not nodes:
                return self._finish(request, unavailable(
                    request, f"the node of sandbox {sandbox} is not live"))
            # No cluster sandbox id: the node names what is wrong.
            node = nodes[0]
        self._forwarder.relay(request, node, request.content, unavailable)

    def _health(self):
        return {
            "router": "ok",
            "etcd": "ok" if self._directory.healthy else "unreachable",
            "nodes": {node.node_id: {"endpoint": node.endpoint, "free": node.free,
                                     "warm": node.warm, "load": node.load}
                      for node in self._nodes()},
        }
