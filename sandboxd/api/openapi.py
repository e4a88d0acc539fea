"""
The API's contract as an OpenAPI 3.1 document, served at
``GET /openapi.json`` (docs/api.md is the prose).

Written by hand, route by route; tests/test_openapi.py checks that every
Klein route and every tunnel route (sandboxd.tunnels.resource.ROUTES) is
described here and nothing else is, so a new route without an entry fails
there by name.
"""

from sandboxd import __version__
from sandboxd.api import openapi_machines
from sandboxd.api.oasparts import (  # noqa: F401 (the pieces the routes are written with)
    _JSON, _ref, _error, _ok, _SANDBOX_ID, _PROFILE, _INVALID, _NOT_SANDBOX, _ADMIN, _NO_PROFILE,
    _NO_TEMPLATE, _TEMPLATE_ID, _PORT, _PORT_RESERVED, _COMMON, _operation, _query, _SIZE, _COUNT,
)

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
    },
    "CreateRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "profile": {"type": ["string", "null"]},
            "template": {"type": ["string", "null"]},
            "memory": _SIZE, "storage": _SIZE,
            "cpu": {"type": "number", "exclusiveMinimum": 0},
            "ttl": {"type": "integer", "minimum": 0},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            **openapi_machines.CREATE_FIELDS,
            "network": _ref("Network"),
            "secrets": {
                "type": "object", "maxProperties": 32,
                "description": "NAME: value, or NAME: {value, hosts}; the sandbox sees a"
                               " placeholder in $NAME, the daemon's egress proxy puts the value"
                               " in net.fetch headers for the hosts (docs/egress.md)",
                "additionalProperties": {"oneOf": [
                    {"type": "string", "minLength": 1, "maxLength": 4096},
                    {"type": "object", "additionalProperties": False, "required": ["value"],
                     "properties": {
                         "value": {"type": "string", "minLength": 1, "maxLength": 4096},
                         "hosts": {"type": "array", "maxItems": 32,
                                   "items": {"type": "string"}}}}]}},
        },
    },
    "Network": {
        "description": "What the sandbox may reach (docs/egress.md): open, none, or an allow"
                       " list of host:port, host, IP, IP:port, CIDR, CIDR:port",
        "oneOf": [
            {"enum": ["open", "none"]},
            {"type": "object", "additionalProperties": False, "required": ["allow"],
             "properties": {"allow": {"type": "array", "maxItems": 64,
                                      "items": {"type": "string"}}}},
        ],
    },
    "UpdateRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "ttl": {"type": "integer", "minimum": 0},
            "expires_at": openapi_machines.CREATE_FIELDS["expires_at"],
            "labels": {"type": "object",
                       "additionalProperties": {"type": ["string", "null"]}},
        },
    },
    "Sandbox": {
        "type": "object",
        "required": ["id", "profile", "image", "runtime", "state", "created", "ttl", "labels"],
        "properties": {
            "id": {"type": "string"}, "profile": {"type": "string"},
            "template": {"type": ["string", "null"]}, "image": {"type": "string"},
            "runtime": {"type": "string"},
            "state": {"enum": ["creating", "ready", "running", "disconnected", "paused",
                               "failed", "destroying", "destroyed"]},
            "ttl_action": {"enum": ["destroy", "pause"]},
            "expires_at": {"type": ["string", "null"]},
            "volumes": openapi_machines.CREATE_FIELDS["volumes"],
            "created": {"type": "string"}, "ttl": {"type": "integer"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "memory": {"type": "integer"}, "cpu": {"type": "number"},
            "storage": {"type": "integer"}, "method": {"enum": ["warm", "cold"]},
            "identity": {"type": "string",
                         "description": "The tenant that created it; \"\" for none"},
            "network": _ref("Network"),
            "secrets": {"type": "array", "items": {"type": "string"},
                        "description": "The names of its secrets (never their values)"},
        },
    },
    "Stats": {
        "type": "object",
        "properties": {name: {"type": "number"} for name in (
            "cpu_percent", "memory_usage_bytes", "memory_limit_bytes", "network_rx_bytes",
            "network_tx_bytes", "pids", "uptime_seconds")},
    },
    "Event": {
        "type": "object", "required": ["id", "type", "sandbox_id", "identity", "timestamp", "data"],
        "properties": {
            "id": {"type": "integer"}, "type": {"type": "string"},
            "sandbox_id": {"type": ["string", "null"]}, "identity": {"type": "string"},
            "timestamp": {"type": "string"}, "data": {"type": "object"},
        },
    },
    "PoolStatus": {
        "type": "object",
        "properties": {
            "target": {"type": "integer"}, "ready": {"type": "integer"},
            "starting": {"type": "integer"}, "hits": {"type": "integer"},
            "misses": {"type": "integer"}, "hit_rate": {"type": ["number", "null"]},
            "failures": {"type": "integer"}, "replaced": {"type": "integer"},
            "last_error": {"type": ["string", "null"]}, "pinned": {"type": "boolean"},
            "flushed": {"type": "integer"},
        },
    },
    "ExposeRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {"timeout": {"type": "number", "minimum": 0, "maximum": 600}},
    },
    "Profile": {
        "type": "object", "required": ["name", "image", "memory", "cpu", "storage", "runtime"],
        "properties": {"name": {"type": "string"}, "image": {"type": "string"},
                       "memory": {"type": "integer"}, "cpu": {"type": "number"},
                       "storage": {"type": "integer"}, "runtime": {"type": "string"}},
    },
    "Tunnel": {
        "type": "object", "required": ["port", "host_port", "url"],
        "properties": {"port": {"type": "integer"}, "host_port": {"type": "integer"},
                       "url": {"type": "string"}, "bind_address": {"type": "string"},
                       "connections": {"type": "integer"}, "refused": {"type": "integer"}},
    },
    "Template": {
        "type": "object",
        "required": ["id", "label", "image", "profile", "runtime", "size", "created",
                     "last_used", "identity"],
        "properties": {"id": {"type": "string"}, "label": {"type": "string"},
                       "image": {"type": "string"}, "profile": {"type": "string"},
                       "runtime": {"type": "string"}, "size": {"type": "integer"},
                       "created": {"type": "string"}, "last_used": {"type": "string"},
                       "identity": {"type": "string"}},
    },
    "SaveTemplateRequest": {
        "type": "object", "additionalProperties": False, "required": ["sandbox_id", "label"],
        "properties": {"sandbox_id": {"type": "string", "minLength": 1},
                       "label": {"type": "string", "minLength": 1, "maxLength": 128}},
    },
    "Health": {
        "type": "object", "required": ["status", "version", "uptime_seconds", "sandboxes", "pool"],
        "properties": {"status": {"const": "ok"}, "version": {"type": "string"},
                       "uptime_seconds": {"type": "number"}, "sandboxes": {"type": "integer"},
                       "pool": {"type": "object",
                                "additionalProperties": _ref("PoolStatus")}},
    },
}

PATHS = {
    "/sandboxes": {
        "post": _operation(
            "createSandbox", "Create a sandbox (warm from the pool when its shape matches)", {
                "201": {**_ok("The sandbox, running", _ref("Sandbox")), "links": {
                    name: {"operationId": operation,
                           "parameters": {"sandbox_id": "$response.body#/id"}}
                    for name, operation in (("GetSandbox", "getSandbox"),
                                            ("SandboxStats", "sandboxStats"),
                                            ("DestroySandbox", "destroySandbox"))}},
                "400": _INVALID,
                "404": _error("No profile or template has this name",
                              "UNKNOWN_PROFILE", "TEMPLATE_NOT_FOUND"),
                "409": _error("Deleted before it was up, or a volume is mounted elsewhere",
                              "SANDBOX_DESTROYED", "VOLUME_IN_USE"),
                "413": _error("The body is too large", "BODY_TOO_LARGE"),
                "429": _error("Too many creates from this caller, or over its"
                              " X-Sandbox-Max-Concurrent", "RATE_LIMITED", "QUOTA_EXCEEDED"),
                "502": _error("The container engine failed, or the sandbox's egress rules or"
                              " proxy could not be set up", "RUNTIME_ERROR", "EGRESS_FAILED"),
                "503": _error("A capacity limit is reached", "AT_CAPACITY"),
            }, body=_ref("CreateRequest"), tags=["sandboxes"]),
        "get": _operation(
            "listSandboxes", "List sandboxes, oldest first", {
                "200": _ok("The sandboxes", {"type": "array", "items": _ref("Sandbox")}),
                "400": _INVALID,
            }, [_query("label", {"type": "array", "items": {"type": "string"}},
                       "k:v; repeatable; every one must match")], tags=["sandboxes"]),
    },
    "/sandboxes/{sandbox_id}": {
        "get": _operation("getSandbox", "One sandbox", {
            "200": _ok("The sandbox", _ref("Sandbox")), "404": _NOT_SANDBOX,
        }, [_SANDBOX_ID], tags=["sandboxes"]),
        "patch": _operation(
            "updateSandbox", "Change a sandbox's ttl and labels (a JSON merge patch of labels)", {
                "200": _ok("The sandbox", _ref("Sandbox")), "400": _INVALID,
                "404": _NOT_SANDBOX,
                "409": _error("The sandbox has failed or is ending", "SANDBOX_NOT_RUNNING"),
            }, [_SANDBOX_ID], body=_ref("UpdateRequest"), tags=["sandboxes"]),
        "delete": _operation("destroySandbox", "Destroy a sandbox and its sessions", {
            "204": _ok("Destroyed"), "404": _NOT_SANDBOX,
        }, [_SANDBOX_ID], tags=["sandboxes"]),
    },
    "/sandboxes/{sandbox_id}/stats": {
        "get": _operation("sandboxStats", "Resource use, read from the engine", {
            "200": _ok("The stats", _ref("Stats")), "404": _NOT_SANDBOX,
            "501": _error("No stats on this daemon", "NOT_AVAILABLE"),
            "502": _error("The container engine failed", "RUNTIME_ERROR"),
        }, [_SANDBOX_ID], tags=["sandboxes"]),
    },
    "/sandboxes/new/ws": {
        "get": _operation(
            "createSandboxSession",
            "Create a sandbox and open its WebSocket session in one round trip; the 101"
            " carries the sandbox as X-Sandbox (JSON)", {
                "101": _ok("Switching protocols (the new sandbox's session)"),
                "400": _INVALID,
                "404": _error("No such profile or template", "UNKNOWN_PROFILE",
                              "TEMPLATE_NOT_FOUND"),
                "426": _error("Not a WebSocket upgrade request: nothing was created",
                              "UPGRADE_REQUIRED"),
                "429": _error("Too many creates", "RATE_LIMITED", "QUOTA_EXCEEDED"),
                "503": _error("At capacity", "AT_CAPACITY"),
            }, [_query(name, schema, f"as {name} of POST /sandboxes") for name, schema in (
                ("profile", {"type": "string"}), ("template", {"type": "string"}),
                ("memory", {"type": "string"}), ("cpu", {"type": "number"}),
                ("storage", {"type": "string"}), ("ttl", {"type": "integer", "minimum": 0}),
                ("ttl_action", {"enum": ["destroy", "pause"]}), ("expires_at", {"type": "string"}))]
            + [_query("label", {"type": "array", "items": {"type": "string"}},
                      "KEY=VALUE; repeatable"),
               _query("volume", {"type": "array", "items": {"type": "string"}},
                      "NAME:PATH[:ro]; repeatable")],
            tags=["sandboxes", "sessions"]),
    },
    "/sandboxes/{sandbox_id}/ws": {
        "get": _operation(
            "sandboxSession",
            "WebSocket session: binary messages are agent frames (docs/protocol.md)", {
                "101": _ok("Switching protocols (the session)"),
                "404": _NOT_SANDBOX,
                "409": _error("The sandbox is paused", "SANDBOX_PAUSED"),
                "400": _ok("?received= is not a count, or more than the session sent"),
                "410": _ok("?resume= names a session no longer kept, or messages after ?received= are gone"),
                "426": _ok("Not a WebSocket upgrade request"),
                "401": _ok("A bad or expired session token (?access_token= or Sec-WebSocket-Protocol)"),
            }, [_SANDBOX_ID, _query("resume", {"type": "string"}, "a detached session's token"),
                _query("received", _COUNT, "with resume: the messages the client read (sent again after)"),
                _query("access_token", {"type": "string"}, "a session token (for browsers)")],
            tags=["sessions"]),
    },
    "/sandboxes/{sandbox_id}/session-token": {
        "post": _operation("sessionToken", "A short-lived token a browser sends on the WebSocket handshake", {
            "201": _ok("The token", {"type": "object", "properties": {
                "token": {"type": "string"}, "expires_in": {"type": "integer"},
                "protocol": {"type": "string"}}}),
            "404": _NOT_SANDBOX,
        }, [_SANDBOX_ID], tags=["sessions"]),
    },
    "/sandboxes/{sandbox_id}/ports": {
        "get": _operation("listPorts", "The sandbox's dedicated host ports", {
            "200": _ok("The tunnels", {"type": "array", "items": _ref("Tunnel")}),
            "404": _NOT_SANDBOX,
        }, [_SANDBOX_ID], tags=["tunnels"]),
    },
    "/sandboxes/{sandbox_id}/ports/{port}/expose": {
        "post": _operation("exposePort", "Give a port of the sandbox a host port, once it listens", {
            "200": _ok("Already exposed", _ref("Tunnel")),
            "201": _ok("Exposed", _ref("Tunnel")),
            "400": _error("Bad port or body", "INVALID_PORT", "INVALID_FIELD", "INVALID_BODY"),
            "403": _PORT_RESERVED, "404": _NOT_SANDBOX,
            "409": _error("Being exposed, the sandbox ended or is paused",
                          "EXPOSE_IN_PROGRESS", "SANDBOX_NOT_RUNNING", "SANDBOX_PAUSED"),
            "429": _error("limits.max_tunnels reached", "TOO_MANY_TUNNELS"),
            "503": _error("No free host port in the range", "NO_HOST_PORT"),
            "504": _error("The port did not accept connections in time", "PORT_NOT_READY"),
        }, [_SANDBOX_ID, _PORT], body=_ref("ExposeRequest"), tags=["tunnels"]),
        "delete": _operation("closePort", "Close a dedicated host port and its connections", {
            "204": _ok("Closed"),
            "400": _error("Bad port", "INVALID_PORT"),
            "404": _error("No such sandbox or tunnel", "SANDBOX_NOT_FOUND", "TUNNEL_NOT_FOUND"),
        }, [_SANDBOX_ID, _PORT], tags=["tunnels"]),
    },
    "/sandboxes/{sandbox_id}/ports/{port}/url": {
        "post": _operation("signedPortURL", "A path-proxy URL, signed and expiring with private ingress", {
            "200": _ok("The path (and token, expiry)", {"type": "object"}),
            "400": _error("Bad port or body", "INVALID_PORT", "INVALID_FIELD", "INVALID_BODY"),
            "403": _PORT_RESERVED, "404": _NOT_SANDBOX,
        }, [_SANDBOX_ID, _PORT], body={"type": "object", "properties": {
            "expires": {"type": "integer", "minimum": 1}}}, tags=["tunnels"]),
    },
    "/sandboxes/{sandbox_id}/ports/{port}/{path}": {
        method: _operation(f"proxy{method.capitalize()}", "The path proxy: the request goes to the "
                           "sandbox's port, with the prefix stripped (any method; WebSocket "
                           "upgrades too)", {
            "200": _ok("What the sandbox's server answered"),
            "400": _error("Bad port", "INVALID_PORT"),
            "401": _error("Private ingress: no valid token", "TUNNEL_UNAUTHORIZED"),
            "403": _PORT_RESERVED, "404": _NOT_SANDBOX,
            "502": _error("Nothing listens on the port", "PORT_NOT_LISTENING"),
        }, [_SANDBOX_ID, _PORT, {"name": "path", "in": "path", "required": True,
                                 "schema": {"type": "string"}}], tags=["tunnels"])
        for method in ("get", "post", "put", "delete", "patch")
    },
    "/templates": {
        "post": _operation(
            "saveTemplate", "Save a running sandbox's /root as a template (docs/templates.md)", {
                "201": _ok("The template", _ref("Template")), "400": _INVALID,
                "404": _NOT_SANDBOX,
                "409": _error("The label is taken, or the sandbox is not running",
                              "LABEL_TAKEN", "SANDBOX_NOT_RUNNING", "SANDBOX_PAUSED"),
                "413": _error("The writable state exceeds limits.max_template_size",
                              "TEMPLATE_TOO_LARGE", "BODY_TOO_LARGE"),
                "422": _error("The sandbox's runtime cannot be saved", "NOT_SUPPORTED"),
                "429": _error("limits.max_templates is reached", "TEMPLATE_LIMIT"),
                "501": _error("No templates on this daemon", "NOT_AVAILABLE"),
                "502": _error("The agent or the engine failed", "TEMPLATE_FAILED"),
            }, body=_ref("SaveTemplateRequest"), tags=["templates"]),
        "get": _operation("listTemplates", "The caller's templates, oldest first", {
            "200": _ok("The templates", {"type": "array", "items": _ref("Template")}),
            "501": _error("No templates on this daemon", "NOT_AVAILABLE"),
        }, tags=["templates"]),
    },
    "/templates/build": {
        "post": {**_operation(
            "buildTemplate",
            "Build a template from a Dockerfile; the body is the context as a tar", {
                "200": _ok("JSON lines: {progress}..., then {template} or {error}",
                           {"type": "string"}, "application/x-ndjson"),
                "201": _ok("The template (no progress was sent)", {
                    "type": "object", "properties": {"template": _ref("Template")}}),
                "400": _INVALID,
                "409": _error("The label is taken", "LABEL_TAKEN"),
                "413": _error("The context exceeds limits.max_template_size",
                              "TEMPLATE_TOO_LARGE"),
                "422": _error("The build failed, or its image cannot run the agent",
                              "BUILD_FAILED"),
                "429": _error("limits.max_templates is reached", "TEMPLATE_LIMIT"),
                "501": _error("No templates on this daemon", "NOT_AVAILABLE"),
            }, [_query("label", {"type": "string", "minLength": 1, "maxLength": 128},
                       "the template's label (required)"),
                _query("dockerfile", {"type": "string"},
                       "the Dockerfile's path in the context (Dockerfile)")],
            tags=["templates"]),
            "requestBody": {"required": True, "content": {
                "application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}},
    },
    "/templates/{template_id}": {
        "get": _operation("getTemplate", "One template", {
            "200": _ok("The template", _ref("Template")), "404": _NO_TEMPLATE,
            "501": _error("No templates on this daemon", "NOT_AVAILABLE"),
        }, [_TEMPLATE_ID], tags=["templates"]),
        "delete": _operation(
            "deleteTemplate", "Delete a template (sandboxes using it keep running)", {
                "204": _ok("Deleted"), "404": _NO_TEMPLATE,
                "501": _error("No templates on this daemon", "NOT_AVAILABLE"),
            }, [_TEMPLATE_ID], tags=["templates"]),
    },
    "/pools": {
        "get": _operation("poolStatus", "Every pool's status (Unix socket only)", {
            "200": _ok("By profile", {"type": "object",
                                      "additionalProperties": _ref("PoolStatus")}),
            "403": _ADMIN,
        }, tags=["pools"]),
    },
    "/pools/{profile}": {
        "put": _operation("resizePool", "Pin a profile's warm count (null: automatic)", {
            "200": _ok("The pool", _ref("PoolStatus")), "400": _INVALID, "403": _ADMIN,
            "404": _NO_PROFILE, "413": _error("The body is too large", "BODY_TOO_LARGE"),
        }, [_PROFILE], body={"type": "object", "required": ["count"], "properties": {
            "count": {"type": ["integer", "null"], "minimum": 0}}}, tags=["pools"]),
    },
    "/pools/{profile}/flush": {
        "post": _operation("flushPool", "Replace every warm sandbox of a profile", {
            "200": _ok("The pool, with flushed", _ref("PoolStatus")), "403": _ADMIN,
            "404": _NO_PROFILE,
        }, [_PROFILE], tags=["pools"]),
    },
    "/events": {
        "get": _operation("eventStream", "Server-Sent Events (docs/events.md)", {
            "200": _ok("The stream: id, event and data lines", {"type": "string"},
                       "text/event-stream"),
            "400": _INVALID,
            "503": _error("Too many event streams are open", "AT_CAPACITY"),
        }, [
            {"name": "Last-Event-ID", "in": "header", "required": False,
             "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
             "description": "continue after this event id"},
            _query("after", _COUNT, "continue after this event id (the header wins)"),
            _query("sandbox", {"type": "string"}, "only this sandbox's events"),
            _query("type", {"type": "string"},
                   "types or prefixes (sandbox. or sandbox.*), comma-separated"),
        ], tags=["events"]),
    },
    "/events/history": {
        "get": _operation("eventHistory", "Recorded events, oldest first", {
            "200": _ok("The events", {"type": "array", "items": _ref("Event")}),
            "400": _INVALID,
        }, [_query("after", _COUNT, "events with a greater id"),
            _query("limit", _COUNT, "at most this many (1000)"),
            _query("sandbox", {"type": "string"}, "only this sandbox's events")],
            tags=["events"]),
    },
    "/profiles": {
        "get": _operation("listProfiles", "The profiles sandboxes are made from", {
            "200": _ok("The profiles", {"type": "array", "items": _ref("Profile")}),
        }, tags=["daemon"]),
    },
    "/health": {
        "get": _operation("health", "Liveness, version, counts and pools", {
            "200": _ok("Healthy", _ref("Health")),
        }, tags=["daemon"]),
    },
    "/metrics": {
        "get": _operation("metrics", "Prometheus metrics, no auth (docs/metrics.md)", {
            "200": _ok("Text exposition format 0.0.4", {"type": "string"}, "text/plain"),
        }, tags=["daemon"]),
    },
    "/ui/": {
        "get": _operation("dashboard", "The web dashboard's page, no auth (docs/ui.md)", {
            "200": _ok("The page", {"type": "string"}, "text/html"),
            "404": _error("Off on TCP", "UI_DISABLED"),
        }, tags=["dashboard"]),
    },
    "/ui/config.json": {
        "get": _operation("dashboardSettings", "What the dashboard's page needs of the "
                          "configuration", {
            "200": _ok("Settings", {"type": "object", "required": ["read_only"],
                                    "properties": {"read_only": {"type": "boolean"}}}),
            "404": _error("Off on TCP", "UI_DISABLED"),
        }, tags=["dashboard"]),
    },
    "/ui/{name}": {
        "get": _operation("dashboardFile", "A file of the dashboard (app.js, app.css, "
                          "index.html), no auth", {
            "200": {"description": "The file",
                    "content": {kind: {"schema": {"type": "string"}}
                                for kind in ("text/javascript", "text/css", "text/html")}},
            "404": _error("No such file, or off on TCP", "NOT_FOUND", "UI_DISABLED"),
        }, parameters=[{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string", "maxLength": 256}}], tags=["dashboard"]),
    },
    "/openapi.json": {
        "get": _operation("openapi", "This document", {
            "200": _ok("OpenAPI 3.1", {"type": "object"}),
        }, tags=["daemon"]),
    },
}


def document():
    """
    The OpenAPI 3.1 document (a new dict each call).
    """
    return {
        "openapi": "3.1.0",
        "info": {"title": "sandboxd", "version": __version__,
                 "description": "Sandboxes as a service. Every error body is "
                                "{\"error\": {\"code\", \"message\"}} (docs/api.md). With "
                                "multi-tenancy on, every request on the TCP listener carries "
                                "X-Sandbox-* signature headers or is refused 401 "
                                "(SIGNATURE_*, BODY_TAMPERED; docs/multi-tenant.md)."},
        "servers": [{"url": "/"}],
        "paths": {**PATHS, **openapi_machines.PATHS},
        "components": {"schemas": {**SCHEMAS, **openapi_machines.SCHEMAS}},
    }
