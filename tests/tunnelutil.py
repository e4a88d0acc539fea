"""
Helpers for the tunnel integration tests: the web app of
L{tests.tunnel_app} started in a sandbox, HTTP through the daemon's Unix
socket or a host port, and a small stdlib WebSocket client.
"""

import asyncio
import base64
import http.client
import os
import socket
import struct
import time

from tests.daemon import UnixHTTPConnection

APP = os.path.join(os.path.dirname(__file__), "tunnel_app.py")
#: The app's HTTP port inside the sandbox (its raw TCP echo is APP_PORT + 1).
APP_PORT = 8080


def start_app(daemon, sandbox_id, port=APP_PORT):
    """
    Upload the app into the sandbox and start it in its own session (it
    outlives the SDK session that starts it).
    """

    async def scenario():
        from sandbox import connect_sandbox

        async with connect_sandbox(sandbox_id, endpoint=daemon.endpoint) as sbx:
            with open(APP, "rb") as f:
                await sbx.fs.write("/root/tunnel_app.py", f.read())
            result = await sbx.process.exec_(
                f"setsid python3 /root/tunnel_app.py {port} >/root/app.log 2>&1 </dev/null &"
            )
            assert result.exit_code == 0, result

    asyncio.run(scenario())


def proxied(daemon, method, path, body=None, headers=None, timeout=60):
    """
    One request over the daemon's Unix socket: (status, headers dict with
    lower-case names, body bytes).
    """
    connection = UnixHTTPConnection(daemon.socket, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def direct(host, port, method, path, body=None, headers=None, timeout=60):
    """
    One request to ``host:port`` over TCP, answered as L{proxied}.
    """
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def wait_until_serving(daemon, sandbox_id, port=APP_PORT, timeout=60):
    """
    Poll the app through the path proxy until it answers 200.
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = proxied(daemon, "GET", f"/sandboxes/{sandbox_id}/ports/{port}/headers")
        if last[0] == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"the app never answered: {last}")


class WebSocket:
    """
    A minimal RFC 6455 client over a connected socket (text messages only).
    """

    def __init__(self, sock, path, host="localhost", headers=()):
        self.sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(1)
            if not data:
                raise ConnectionError(f"closed during the handshake: {head!r}")
            head += data
        self.status = int(head.split(b" ", 2)[1])
        self.head = head

    def send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        if len(data) < 126:
            head = struct.pack("!BB", 0x81, 0x80 | len(data))
        else:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, len(data))
        self.sock.sendall(head + mask + masked)

    def _exactly(self, n):
        data = b""
        while len(data) < n:
            more = self.sock.recv(n - len(data))
            if not more:
                raise ConnectionError("closed")
            data += more
        return data

    def receive(self):
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._exactly(8))[0]
        return self._exactly(length).decode()


def unix_socket(path, timeout=30):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock
