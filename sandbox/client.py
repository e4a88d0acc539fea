"""
The REST side of the API (docs/api.md): sandboxes, profiles, health.

``Client`` is shared by the SDK (``create_sandbox``, ``Sandbox.destroy``) and
the ``sbx`` CLI.  Sandbox and profile objects are returned as the daemon's
JSON (dicts).
"""

import json
from urllib.parse import quote, urlencode

from sandbox._endpoint import parse_endpoint, resolve_auth, resolve_ca_file
from sandbox._events import stream_events
from sandbox._http import HTTPClient
from sandbox._templates import Templates
from sandbox._volumes import Volumes
from sandbox.errors import ProtocolError, error_from_http

_CREATE_FIELDS = ("profile", "template", "memory", "cpu", "storage", "ttl", "labels",
                  "ttl_action", "expires_at", "volumes", "network", "secrets")


def create_fields(expires_at=None, volumes=None, **fields):
    """
    A create body's fields: ``expires_at`` a ``datetime`` (with a zone) or an
    ISO 8601 string; ``volumes`` ``{"name", "path", "read_only"}`` dicts or
    ``(name, path)`` / ``(name, path, read_only)`` tuples.
    """
    if expires_at is not None and not isinstance(expires_at, str):
        expires_at = expires_at.isoformat().replace("+00:00", "Z")
    if volumes is not None:
        volumes = [dict(v) if isinstance(v, dict)
                   else dict(zip(("name", "path", "read_only"), v)) for v in volumes]
    return dict(fields, expires_at=expires_at, volumes=volumes)


class Client:
    """
    A connection to the daemon's HTTP API.

    ``endpoint`` defaults to ``$SANDBOX_ENDPOINT``, then the default Unix
    socket; ``auth`` to ``$SANDBOX_AUTH`` (sent as a bearer token).
    ``timeout`` bounds each request, in seconds (None: no bound).  An
    https endpoint is verified with ``ca_file`` (PEM; default
    ``$SANDBOX_CA_FILE``, else the system's trust store) unless an
    ``ssl_context`` is given.
    """

    def __init__(self, endpoint=None, auth=None, timeout=60.0, ssl_context=None,
                 ca_file=None):
        self.endpoint = parse_endpoint(endpoint)
        self.auth = resolve_auth(auth)
        self.http = HTTPClient(self.endpoint, self.auth, timeout, ssl_context,
                               ca_file=resolve_ca_file(ca_file))
        #: ``list``, ``get``, ``delete``, ``save``, ``build`` (docs/templates.md).
        self.templates = Templates(self)
        self.volumes = Volumes(self)

    def __repr__(self):
        return f"Client({str(self.endpoint)!r})"

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    async def close(self):
        """
        Close the kept-alive connections.
        """
        await self.http.close()

    async def request(self, method, path, body=None, timeout=...):
        """
        Send a request with an optional JSON ``body``; return the decoded JSON
        (None for an empty body), or raise the typed error of the response.
        """
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
        if timeout is ...:
            response = await self.http.request(method, path, data)
        else:
            response = await self.http.request(method, path, data, timeout=timeout)
        if response.status >= 400:
            raise error_from_http(
                response.status, response.reason, response.headers, response.body
            )
        if not response.body:
            return None
        try:
            return json.loads(response.body)
        except ValueError as e:
            raise ProtocolError(
                "BAD_RESPONSE", f"{method} {path}: the daemon sent invalid JSON: {e}"
            ) from None

    async def create(
        self,
        profile=None,
        template=None,
        memory=None,
        cpu=None,
        storage=None,
        ttl=None,
        labels=None,
        network=None,
        secrets=None,
        timeout=...,
        ttl_action=None,
        expires_at=None,
        volumes=None,
    ):
        """
        ``POST /sandboxes``: create a sandbox, return its object (``id``,
        ``profile``, ``state``, ``created``, ``ttl``, ``labels``, ...).
        Fields left None are not sent (the daemon's defaults apply); see
        L{create_fields} for ``expires_at`` and ``volumes``.
        ``network``: "open", "none" or {"allow": ["host:port", "CIDR", ...]};
        ``secrets``: {NAME: value or {"value": ..., "hosts": [...]}}
        (docs/egress.md).
        """
        fields = create_fields(
            profile=profile, template=template, memory=memory, cpu=cpu, storage=storage,
            ttl=ttl, labels=labels, ttl_action=ttl_action, expires_at=expires_at,
            volumes=volumes, network=network, secrets=secrets)
        body = {k: fields[k] for k in _CREATE_FIELDS if fields[k] is not None}
        return await self.request("POST", "/sandboxes", body, timeout=timeout)

    async def list(self, labels=None):
        """
        ``GET /sandboxes``: the sandboxes, oldest first, keeping those having
        every label of ``labels`` (a dict, or "k:v" / "k=v" strings).
        """
        path = "/sandboxes"
        query = [("label", f"{k}:{v}") for k, v in _label_pairs(labels)]
        if query:
            path += "?" + urlencode(query)
        return await self.request("GET", path)

    async def get(self, sandbox_id):
        """
        ``GET /sandboxes/{id}``; NotFoundError (``SANDBOX_NOT_FOUND``) if none.
        """
        return await self.request("GET", f"/sandboxes/{_segment(sandbox_id)}")

    async def pause(self, sandbox_id):
        """
        ``POST /sandboxes/{id}/pause``: freeze the sandbox, keeping its
        memory and processes; return the sandbox object (state ``paused``).
        """
        return await self.request("POST", f"/sandboxes/{_segment(sandbox_id)}/pause")

    async def resume(self, sandbox_id):
        """
        ``POST /sandboxes/{id}/resume``: thaw a paused sandbox; return it.
        """
        return await self.request("POST", f"/sandboxes/{_segment(sandbox_id)}/resume")

    async def update(self, sandbox_id, ttl=None, labels=None, expires_at=None):
        """
        ``PATCH /sandboxes/{id}``: a new ``ttl`` (seconds the sandbox
        outlives its last session), ``expires_at`` (see L{create_fields})
        and/or ``labels`` merged into its own (a None value removes that
        label); return the sandbox object.
        """
        body = {}
        expires_at = create_fields(expires_at=expires_at)["expires_at"]
        if expires_at is not None:
            body["expires_at"] = expires_at
        if ttl is not None:
            body["ttl"] = ttl
        if labels is not None:
            body["labels"] = dict(labels)
        return await self.request("PATCH", f"/sandboxes/{_segment(sandbox_id)}", body)

    async def destroy(self, sandbox_id):
        """
        ``DELETE /sandboxes/{id}``: destroy the sandbox and its sessions.
        """
        await self.request("DELETE", f"/sandboxes/{_segment(sandbox_id)}")

    async def stats(self, sandbox_id):
        """
        ``GET /sandboxes/{id}/stats``: cpu, memory, network, pids, uptime.
        """
        return await self.request("GET", f"/sandboxes/{_segment(sandbox_id)}/stats")

    async def expose(self, sandbox_id, port, timeout=None):
        """
        ``POST /sandboxes/{id}/ports/{port}/expose``: a dedicated host port
        relaying to ``port``, once it accepts connections (``timeout``
        seconds at most; the daemon's default when None).  Returns
        ``{"port", "host_port", "url", ...}``.
        """
        body = {}
        wait = ...
        if timeout is not None:
            body["timeout"] = timeout
            if self.http.timeout is not None:
                # The daemon answers only once the port is ready.
                wait = timeout + self.http.timeout
        return await self.request(
            "POST", f"{_ports(sandbox_id, port)}/expose", body, timeout=wait)

    async def ports(self, sandbox_id):
        """
        ``GET /sandboxes/{id}/ports``: the sandbox's dedicated host ports.
        """
        return await self.request("GET", f"/sandboxes/{_segment(sandbox_id)}/ports")

    async def close_port(self, sandbox_id, port):
        """
        ``DELETE /sandboxes/{id}/ports/{port}/expose``: close the host port.
        """
        await self.request("DELETE", f"{_ports(sandbox_id, port)}/expose")

    async def signed_port_url(self, sandbox_id, port, expires=None):
        """
        ``POST /sandboxes/{id}/ports/{port}/url``: with the daemon's
        ``[tunnels] auth = "token"``, a path-proxy URL valid for ``expires``
        seconds (the daemon's default, an hour, when None) and the tunnel's
        token: ``{"port", "path", "expires", "token", "auth"}``, and
        ``"url"``: the path made absolute on this client's endpoint.
        """
        body = {} if expires is None else {"expires": expires}
        answer = await self.request("POST", f"{_ports(sandbox_id, port)}/url", body)
        answer["url"] = self._absolute(answer["path"])
        return answer

    def port_url(self, sandbox_id, port):
        """
        The path-proxy URL of ``port`` (nothing is asked of the daemon):
        ``http(s)://host:port/sandboxes/{id}/ports/{port}/`` for a TCP
        endpoint, ``http+unix://<socket path, %-escaped>/sandboxes/...``
        for a Unix socket.
        """
        return self._absolute(f"{_ports(sandbox_id, port)}/")

    def _absolute(self, path):
        endpoint = self.endpoint
        if endpoint.is_unix:
            return f"http+unix://{quote(endpoint.path, safe='')}{path}"
        scheme = "https" if endpoint.tls else "http"
        return f"{scheme}://{endpoint.host_header}{endpoint.prefix}{path}"

    async def profiles(self):
        """
        ``GET /profiles``: ``[{"name", "image", "memory", "cpu", "storage",
        "runtime"}]``.
        """
        return await self.request("GET", "/profiles")

    async def health(self):
        """
        ``GET /health``: ``{"status", "version", "uptime_seconds",
        "sandboxes", "pool"}``.
        """
        return await self.request("GET", "/health")

    def events(self, after=None, sandbox=None, types=(), reconnect=True):
        """
        ``GET /events``: an async iterator of ``Event``s, those after id
        ``after`` first (None: only new ones), of one ``sandbox`` and some
        ``types`` (names or prefixes like ``"sandbox."``) if given.  It
        reconnects by itself (``Last-Event-ID``) unless ``reconnect`` is
        false.  See docs/events.md.
        """
        return stream_events(self.http, after, sandbox, types, reconnect)

    async def event_history(self, after=0, limit=100, sandbox=None):
        """
        ``GET /events/history``: at most ``limit`` kept events after id
        ``after``, oldest first, as dicts.
        """
        query = {"after": after, "limit": limit}
        if sandbox:
            query["sandbox"] = sandbox
        return await self.request("GET", "/events/history?" + urlencode(query))


def _ports(sandbox_id, port):
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer from 1 to 65535, not {port!r}")
    return f"/sandboxes/{_segment(sandbox_id)}/ports/{port}"


def _segment(value):
    return quote(str(value), safe="")


def _label_pairs(labels):
    """
    ``labels`` as (key, value) pairs: a dict, or "k:v" / "k=v" strings.
    """
    if not labels:
        return []
    if isinstance(labels, dict):
        return [(str(k), str(v)) for k, v in labels.items()]
    if isinstance(labels, str):
        labels = [labels]
    pairs = []
    for label in labels:
        if isinstance(label, tuple):
            pairs.append((str(label[0]), str(label[1])))
            continue
        sep = "=" if "=" in label else ":"
        key, _, value = label.partition(sep)
        pairs.append((key, value))
    return pairs
