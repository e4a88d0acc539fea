"""
Opening the WebSocket session of a sandbox (``GET /sandboxes/{id}/ws``) and
turning handshake failures into typed errors.
"""

import json
from urllib.parse import quote, urlencode

from agent import wire
from sandbox._http import USER_AGENT, _reason
from sandbox._session import Session
from sandbox.errors import (
    DaemonUnavailableError,
    NotFoundError,
    ProtocolError,
    SandboxTimeoutError,
    error_from_http,
)

#: The largest WebSocket message: one frame with the largest payload.
MAX_MESSAGE = wire.MAX_PAYLOAD + wire.HEADER_SIZE


async def open_session(client, sandbox_id, open_timeout=None, resume_for=0):
    """
    Open the WebSocket session of ``sandbox_id`` through ``client`` (a
    Client); if the connection drops, try to resume it for ``resume_for``
    seconds (the sandbox's ttl).
    """

    async def reopen(token, received):
        return await _open_ws(client, sandbox_id, open_timeout, (token, received))

    ws = await _open_ws(client, sandbox_id, open_timeout)
    token = ws.response.headers.get("X-Sandbox-Session") if ws.response else None
    return Session(ws, sandbox_id, token, reopen, resume_for)


async def create_with_session(client, fields, open_timeout=None):
    """
    Create a sandbox and open its session in one round trip (``GET
    /sandboxes/new/ws``); ``(info, Session)``, or None when the daemon does
    not serve that route (then POST and open as two steps).
    """
    query = [(name, str(value)) for name, value in fields.items()
             if value is not None and name not in ("labels", "volumes")]
    query += [("label", f"{key}={value}") for key, value in (fields.get("labels") or {}).items()]
    query += [("volume", f"{v['name']}:{v['path']}" + (":ro" if v.get("read_only") else ""))
              for v in fields.get("volumes") or ()]
    path = "/sandboxes/new/ws" + (f"?{urlencode(query)}" if query else "")
    try:
        ws = await _open_ws(client, None, open_timeout, path=path)
    except NotFoundError as e:
        # A daemon without the route: no route at all, or (one whose
        # /sandboxes/{id}/ws took "new" for an id) no sandbox "new".
        if e.code in ("NOT_FOUND", "SANDBOX_NOT_FOUND"):
            return None
        raise
    info = json.loads(ws.response.headers["X-Sandbox"])
    sandbox_id = info["id"]

    async def reopen(token, received):
        return await _open_ws(client, sandbox_id, open_timeout, (token, received))

    token = ws.response.headers.get("X-Sandbox-Session")
    return info, Session(ws, sandbox_id, token, reopen, info.get("ttl") or 0)


async def _open_ws(client, sandbox_id, open_timeout, resume=None, path=None):
    """
    A WebSocket to the daemon: the session of ``sandbox_id``, resuming
    ``resume`` (its token, and how many messages were read) if given, or at
    ``path``.
    """
    import websockets
    from websockets.asyncio.client import connect, unix_connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus

    endpoint = client.endpoint
    if path is None:
        path = f"/sandboxes/{quote(str(sandbox_id), safe='')}/ws"
        if resume is not None:
            token, received = resume
            path += f"?resume={quote(token, safe='')}&received={received}"
    uri = endpoint.ws_uri(path)
    options = dict(
        compression=None,
        max_size=MAX_MESSAGE,
        write_limit=1 << 20,
        open_timeout=open_timeout or client.http.timeout,
        ping_timeout=None,
        user_agent_header=USER_AGENT,
    )
    if client.auth:
        options["additional_headers"] = {"Authorization": f"Bearer {client.auth}"}
    if _websockets_version(websockets) >= (15,):
        options["proxy"] = None
    try:
        if endpoint.is_unix:
            ws = await unix_connect(endpoint.path, uri, **options)
        else:
            ssl = client.http.ssl_context if endpoint.tls else None
            ws = await connect(uri, ssl=ssl, **options)
    except InvalidStatus as e:
        response = e.response
        headers = {k.lower(): v for k, v in response.headers.raw_items()}
        body = bytes(response.body or b"")
        error = error_from_http(response.status_code, response.reason_phrase, headers, body)
        if sandbox_id is None:
            pass  # a create: the daemon's own error stands
        elif error.code == "HTTP_410":
            error = NotFoundError(
                "SESSION_EXPIRED", f"the session of sandbox {sandbox_id} cannot be resumed", 410
            )
        elif error.code == "HTTP_404":
            error = NotFoundError(
                "SANDBOX_NOT_FOUND", f"sandbox {sandbox_id} not found", 404
            )
        raise error from None
    except InvalidHandshake as e:
        raise ProtocolError(
            "HANDSHAKE_FAILED", f"WebSocket handshake with {endpoint} failed: {e}"
        ) from None
    except TimeoutError:
        raise SandboxTimeoutError(
            "TIMEOUT", f"no WebSocket session from the daemon at {endpoint} in time"
        ) from None
    except OSError as e:
        raise DaemonUnavailableError(endpoint, _reason(e, endpoint)) from None
    return ws


def _websockets_version(module):
    try:
        return tuple(int(p) for p in module.__version__.split(".")[:2])
    except ValueError:
        return (0,)
