"""
``sbx.net``: network requests made from inside the sandbox (``net.fetch``
of docs/protocol.md).
"""

import base64
import json
from dataclasses import dataclass, field

from agent.wire import FrameType
from sandbox._session import _json


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


class Network:
    """
    Network operations run by the sandbox's agent.
    """

    def __init__(self, session):
        self._session = session

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
                    result = _json(frame)
                    break
        return FetchResponse(
            int(result.get("status", 0)),
            str(result.get("reason", "")),
            [tuple(pair) for pair in result.get("headers", [])],
            str(result.get("url", url)),
            b"".join(parts),
            bool(result.get("truncated", False)),
        )
