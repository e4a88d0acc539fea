"""
``sbx ui``: the dashboard of a daemon on its Unix socket, in a browser.

A browser cannot open a Unix socket, so this listens on a loopback port and
forwards to the socket.  The socket is the operator (root-equivalent), so
the port must not hand that power to any local user or any web page:

- every request needs ``Authorization: Bearer <key>``, a random key made at
  start and printed in the URL's fragment (``#key=...``: the page keeps it
  in the tab's sessionStorage; a fragment is never sent to a server);
  except the dashboard's own files (public, they hold no data) and a
  WebSocket upgrade carrying a session token, which the daemon checks
  (minting that token needed the key);
- the ``Host`` must be this port on 127.0.0.1 or localhost (DNS rebinding),
  and an ``Origin``, when sent, this port's own;
- one request per connection (``Connection: close`` upstream, the body cut
  at its ``Content-Length``), so no second request rides on a checked one;
- ``--read-only``: GET and HEAD only, no WebSocket, and the page is told to
  show no actions (``X-Sandboxd-UI-Read-Only``).
"""

import asyncio
import hmac
import json
import re
import secrets

from sandboxd.api.ui import READ_ONLY_HEADER, is_page_request

#: Largest request head read.
MAX_HEAD = 64 * 1024
_SESSION = re.compile(rb"^/sandboxes/[^/?]+/ws(\?|$)")
_DROPPED = {b"authorization", b"connection", b"keep-alive", b"proxy-connection",
            READ_ONLY_HEADER}


class Refused(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _answer(refused):
    body = json.dumps({"error": {"code": refused.code, "message": refused.message}}).encode()
    reason = {400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden",
              411: b"Length Required", 502: b"Bad Gateway"}.get(refused.status, b"Error")
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (refused.status, reason, len(body))) + body


def parse_head(head):
    """``(method, target, [(name, value)...])`` of a request head (bytes)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise Refused(400, "BAD_REQUEST", "not an HTTP/1.x request line")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise Refused(400, "BAD_REQUEST", "a malformed header line")
        headers.append((name.lower(), value.strip()))
    return parts[0], parts[1], headers


class Forwarder:
    """
    Forwards checked requests from a loopback port to the Unix socket
    ``socket_path``.
    """

    def __init__(self, socket_path, read_only=False, key=None):
        self.socket_path = socket_path
        self.read_only = read_only
        self.key = key or secrets.token_urlsafe(24)
        self.port = None
        self._server = None

    async def start(self, port=0):
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/ui/#key={self.key}"

    async def close(self):
        self._server.close()
        await self._server.wait_closed()

    def check(self, method, target, headers):
        """Refused, or whether the request is a WebSocket upgrade."""
        get = {}
        for name, value in headers:
            get.setdefault(name, value)
        hosts = {b"127.0.0.1:%d" % self.port, b"localhost:%d" % self.port}
        if get.get(b"host") not in hosts:
            raise Refused(403, "BAD_HOST", "the Host must be this loopback port")
        origin = get.get(b"origin")
        if origin is not None and origin not in {b"http://" + h for h in hosts}:
            raise Refused(403, "BAD_ORIGIN", "requests from another origin are refused")
        upgrade = get.get(b"upgrade", b"").lower() == b"websocket"
        if self.read_only and (method not in (b"GET", b"HEAD") or upgrade):
            raise Refused(403, "READ_ONLY", "this dashboard is read-only (sbx ui --read-only)")
        path = target.split(b"?", 1)[0]
        if is_page_request(method, path) and not upgrade:
            return False
        protocols = b",".join(v for n, v in headers if n == b"sec-websocket-protocol")
        if upgrade and _SESSION.match(target) and b"sandboxd.bearer." in protocols:
            return True
        scheme, _, key = get.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(key.strip(), self.key.encode()):
            raise Refused(401, "UI_KEY_INVALID", "open the URL sbx ui printed (it holds the key)")
        return upgrade

    async def _serve(self, reader, writer):
        try:
            await self._forward(reader, writer)
        except Refused as refused:
            writer.write(_answer(refused))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _forward(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD:
            raise Refused(400, "BAD_REQUEST", "the request head is too large")
        method, target, headers = parse_head(head[:-4])
        upgrade = self.check(method, target, headers)
        length = 0
        for name, value in headers:
            if name == b"transfer-encoding":
                raise Refused(411, "LENGTH_REQUIRED", "send the body with a Content-Length")
            if name == b"content-length":
                if not value.isdigit():
                    raise Refused(400, "BAD_REQUEST", "a malformed Content-Length")
                length = int(value)
        kept = [(n, v) for n, v in headers if n not in _DROPPED]
        if upgrade:
            kept.append((b"connection", b"Upgrade"))
        else:
            kept.append((b"connection", b"close"))
        if self.read_only:
            kept.append((READ_ONLY_HEADER, b"1"))
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError as e:
            raise Refused(502, "DAEMON_UNAVAILABLE", f"{self.socket_path}: {e.strerror}")
        up_writer.write(b"%s %s HTTP/1.1\r\n" % (method, target)
                        + b"".join(b"%s: %s\r\n" % kv for kv in kept) + b"\r\n")
        try:
            if upgrade:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            else:
                if length:
                    up_writer.write(await reader.readexactly(length))
                await _pipe(up_reader, writer)
        finally:
            up_writer.close()


async def _pipe(reader, writer):
    """Copy until end of file, then half-close."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except ConnectionError:
        pass
