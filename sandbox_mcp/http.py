"""
The streamable HTTP transport: the MCP server's Starlette app behind a
bearer-token check, served by uvicorn.  The token comes from ``--token`` or
``$SANDBOX_MCP_TOKEN``; without one, only a loopback address may be listened
on (whoever reaches the endpoint drives the sandboxes, and reads and writes
the server's upload and download directories).
"""

import hmac
import ipaddress
import json

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host):
    """
    Whether ``host`` (an address or "localhost") is a loopback address.
    """
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BearerToken:
    """
    ASGI middleware: HTTP requests without ``Authorization: Bearer TOKEN``
    get 401 ``UNAUTHORIZED``; other scopes (lifespan) pass through.
    """

    def __init__(self, app, token):
        self.app = app
        self.expected = b"Bearer " + token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps(
                    {"error": {"code": "UNAUTHORIZED", "message": "a bearer token is required"}}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


async def serve_http(server, host, port, path, token=None, log_level="warning"):
    """
    Serve ``server`` (an MCPServer) over streamable HTTP at
    ``http://host:port/path``, behind BearerToken when ``token`` is set.
    """
    import uvicorn

    app = server.streamable_http_app(streamable_http_path=path, host=host)
    if token:
        app = BearerToken(app, token)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level.lower())
    await uvicorn.Server(config).serve()
