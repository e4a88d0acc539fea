"""
A small HTTP/1.1 client over asyncio streams, made for one daemon.

Unix socket or TCP (TLS for https), persistent connections kept in a small
idle pool, Content-Length, chunked and until-close response bodies.  No
proxies, no redirects: the daemon answers directly.
"""

import asyncio

from sandbox.errors import DaemonUnavailableError, ProtocolError, SandboxTimeoutError

#: The largest response body accepted (a long sandbox list is a few MB).
MAX_BODY = 64 * 1024 * 1024
USER_AGENT = "sandbox-python/0.1.0"
_NO_BODY_STATUS = frozenset({204, 304})
_DEFAULT = object()


class Response:
    """
    One HTTP response; ``headers`` has lower-case names.
    """

    __slots__ = ("status", "reason", "headers", "body")

    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def __repr__(self):
        return f"Response({self.status} {self.reason}, {len(self.body)} bytes)"


class _Stale(Exception):
    """
    A kept-alive connection was closed by the server before answering.
    """


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    def close(self):
        self.writer.close()


class HTTPClient:
    """
    Requests to the daemon at ``endpoint`` (an Endpoint), reusing connections.
    """

    def __init__(self, endpoint, auth=None, timeout=60.0, ssl_context=None, max_idle=4,
                 ca_file=None):
        self.endpoint = endpoint
        self._ca_file = ca_file
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._idle = []
        headers = f"Host: {endpoint.host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
        if auth:
            headers += f"Authorization: Bearer {auth}\r\n"
        self._headers = headers

    @property
    def ssl_context(self):
        """
        The TLS context for https endpoints (the CA file given, else the
        system's trust store).
        """
        if self._ssl_context is None and self.endpoint.tls:
            import ssl

            self._ssl_context = ssl.create_default_context(cafile=self._ca_file)
        return self._ssl_context

    async def request(self, method, path, body=None, timeout=_DEFAULT):
        """
        Send one request (``body`` bytes, sent as JSON) and return its Response.

        Raise DaemonUnavailableError when the daemon cannot be reached or drops
        the connection, SandboxTimeoutError after ``timeout`` seconds.
        """
        if timeout is _DEFAULT:
            timeout = self.timeout
        head = f"{method} {self.endpoint.prefix}{path} HTTP/1.1\r\n{self._headers}"
        if body is not None:
            head += (
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            message = head.encode("latin-1") + body
        else:
            message = (head + "\r\n").encode("latin-1")
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(method, message)
        except TimeoutError as e:
            if isinstance(e, SandboxTimeoutError):
                raise
            raise SandboxTimeoutError(
                "TIMEOUT",
                f"no answer from the daemon at {self.endpoint} to {method} {path} "
                f"within {timeout:g}s",
            ) from None

    async def _exchange(self, method, message):
        while self._idle:
            connection = self._idle.pop()
            if connection.reader.at_eof():
                connection.close()
                continue
            try:
                return await self._on(connection, method, message, reused=True)
            except _Stale:
                continue
        connection = await self.connect()
        try:
            return await self._on(connection, method, message, reused=False)
        except _Stale:
            raise DaemonUnavailableError(
                self.endpoint, "the daemon closed the connection without answering"
            ) from None

    async def _on(self, connection, method, message, reused):
        try:
            connection.writer.write(message)
            if len(message) > 65536:
                await connection.writer.drain()
            response, keep = await _read_response(connection.reader, method)
        except _Stale:
            connection.close()
            raise
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            connection.close()
            raise DaemonUnavailableError(self.endpoint, f"connection lost: {e}") from None
        except BaseException:
            connection.close()
            raise
        if keep and len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.close()
        return response

    async def connect(self):
        """
        A new connection to the daemon, or DaemonUnavailableError.
        """
        endpoint = self.endpoint
        try:
            if endpoint.is_unix:
                reader, writer = await asyncio.open_unix_connection(endpoint.path)
            else:
                reader, writer = await asyncio.open_connection(
                    endpoint.host, endpoint.port, ssl=self.ssl_context
                )
        except OSError as e:
            raise DaemonUnavailableError(endpoint, _reason(e, endpoint)) from None
        return _Connection(reader, writer)

    async def close(self):
        """
        Close the idle connections.
        """
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        for connection in idle:
            try:
                await connection.writer.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass


def _reason(error, endpoint):
    if isinstance(error, FileNotFoundError) and endpoint.is_unix:
        return f"no socket at {endpoint.path}"
    if isinstance(error, PermissionError) and endpoint.is_unix:
        return f"permission denied on {endpoint.path}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return error.strerror or str(error) or type(error).__name__


async def _read_response(reader, method):
    """
    Read one response; return it and whether the connection may be reused.
    """
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            raise _Stale() from None
        raise
    except ConnectionResetError:
        raise _Stale() from None
    except asyncio.LimitOverrunError:
        raise ProtocolError("BAD_RESPONSE", "response headers too long") from None
    status, reason, version, headers = _parse_head(head)
    while 100 <= status < 200:
        head = await reader.readuntil(b"\r\n\r\n")
        status, reason, version, headers = _parse_head(head)
    framed = True
    if method == "HEAD" or status in _NO_BODY_STATUS:
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise ProtocolError("BAD_RESPONSE", "bad Content-Length") from None
        if not 0 <= length <= MAX_BODY:
            raise ProtocolError("BAD_RESPONSE", f"response body of {length} bytes")
        body = await reader.readexactly(length)
    else:
        body = await reader.read(MAX_BODY + 1)
        framed = False
    keep = (
        framed
        and version == "HTTP/1.1"
        and "close" not in headers.get("connection", "").lower()
    )
    return Response(status, reason, headers, body), keep


def _parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    try:
        version, status, *reason = lines[0].split(" ", 2)
        status = int(status)
    except ValueError:
        raise ProtocolError("BAD_RESPONSE", f"bad status line {lines[0][:80]!r}") from None
    if not version.startswith("HTTP/1."):
        raise ProtocolError("BAD_RESPONSE", f"not HTTP/1.x: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError("BAD_RESPONSE", f"bad header line {line[:80]!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return status, (reason[0] if reason else ""), version, headers


async def _read_chunked(reader):
    parts = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError("BAD_RESPONSE", "bad chunk size") from None
        if size == 0:
            break
        total += size
        if total > MAX_BODY:
            raise ProtocolError("BAD_RESPONSE", "response body too large")
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise ProtocolError("BAD_RESPONSE", "bad chunk terminator")
        parts.append(chunk[:-2])
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass  # trailers
    return b"".join(parts)
