"""
``sbx.net``: network requests made from inside the sandbox (``net.fetch``
of docs/protocol.md), and port tunnels into it (docs/tunnels.md).
"""

import base64
import json
from dataclasses import dataclass, field

from agent.wire import FrameType
from sandbox._stream import frame_json


@dataclass(frozen=True)
class FetchResponse:
    """
    The answer to ``fetch``: ``status``, ``reason``, ``headers`` (a list of
    (name, value) pairs, in order), ``url`` (after redirects), ``body``
    (bytes, at most ``max_body``) and whether it was ``truncated``.
    """

    status: int
    reason: str
    headers: list
    url: str
    body: bytes = field(repr=False)
    truncated: bool = False

    def header(self, name, default=None):
        """
        The first header called ``name`` (any case).
        """
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return default

    @property
    def ok(self):
        return 200 <= self.status < 300

    def text(self, encoding="utf-8", errors="replace"):
        return self.body.decode(encoding, errors)

    def json(self):
        return json.loads(self.body)


@dataclass(frozen=True)
class Tunnel:
    """
    A dedicated host port: ``port`` in the sandbox is reachable at
    ``host_port`` on the daemon's host (``url``).
    """

    port: int
    host_port: int
    url: str
    connections: int = 0
    refused: int = 0

    @classmethod
    def fromJSON(cls, obj):
        return cls(int(obj["port"]), int(obj["host_port"]), str(obj["url"]),
                   int(obj.get("connections", 0)), int(obj.get("refused", 0)))


class Network:
    """
    Network operations run by the sandbox's agent, and tunnels to its
    ports through the daemon.
    """

    def __init__(self, session, client=None, sandbox_id=None):
        self._session = session
        self._client = client
        self._id = sandbox_id

    def url(self, port):
        """
        The path-proxy URL of ``port`` (``.../sandboxes/{id}/ports/{port}/``):
        usable at once, nothing is opened.
        """
        return self._client.port_url(self._id, port)

    async def signed_url(self, port, expires=None):
        """
        The path-proxy URL of ``port`` carrying a signature valid for
        ``expires`` seconds (for a daemon with ``[tunnels] auth = "token"``;
        without it, the plain URL).
        """
        return (await self._client.signed_port_url(self._id, port, expires))["url"]

    async def expose(self, port, timeout=None):
        """
        A Tunnel: a dedicated host port relaying to ``port``, returned once
        the port accepts connections (SandboxError ``PORT_NOT_READY`` after
        ``timeout`` seconds; the daemon's default when None).
        """
        return Tunnel.fromJSON(await self._client.expose(self._id, port, timeout))

    async def ports(self):
        """
        The sandbox's dedicated host ports, as Tunnels.
        """
        return [Tunnel.fromJSON(t) for t in await self._client.ports(self._id)]

    async def close(self, port):
        """
        Close the dedicated host port of ``port`` (its connections too).
        """
        await self._client.close_port(self._id, port)

    async def fetch(
        self,
        url,
        method="GET",
        headers=None,
        body=None,
        timeout=None,
        max_redirects=None,
        max_body=None,
        verify=True,
    ):
        """
        Make an HTTP(S) request from inside the sandbox and return a
        FetchResponse; 4xx and 5xx are responses, not errors.  ``body``:
        str or bytes.  Network failures raise SandboxError with the code
        ``CONNECTION_REFUSED``, ``HOST_NOT_FOUND``, ``TIMEOUT``,
        ``TLS_ERROR``, ``TOO_MANY_REDIRECTS`` or ``NET_ERROR``.
        """
        params = {"url": str(url), "method": str(method)}
        if headers:
            params["headers"] = {str(k): str(v) for k, v in dict(headers).items()}
        if isinstance(body, str):
            params["body"] = body
        elif body is not None:
            params["body_base64"] = base64.b64encode(bytes(body)).decode()
        if timeout is not None:
            params["timeout"] = timeout
        if max_redirects is not None:
            params["max_redirects"] = int(max_redirects)
        if max_body is not None:
            params["max_body"] = int(max_body)
        if not verify:
            params["verify"] = False
        stream = await self._session.open("net.fetch", params)
        parts = []
        async with stream:
            while True:
                frame = await stream.next()
                if frame.type is FrameType.DATA:
                    parts.append(frame.payload)
                    await stream.consumed(len(frame.payload))
                elif frame.type is FrameType.RESULT:
                    result = frame_json(frame)
                    break
        return FetchResponse(
            int(result.get("status", 0)),
            str(result.get("reason", "")),
            [tuple(pair) for pair in result.get("headers", [])],
            str(result.get("url", url)),
            b"".join(parts),
            bool(result.get("truncated", False)),
        )
