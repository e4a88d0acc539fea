"""
A small web app for tunnel tests, run inside a sandbox with its stdlib
python3: ``python3 tunnel_app.py PORT``.

- ``GET /``: an HTML page whose script echoes a message over a WebSocket
  (``ws`` relative to the page) and writes the answer into the DOM.
- ``GET /hold?key=K``: answers once the WebSocket got ``done:K`` (or
  ``/release?key=K`` was asked), at most 60 s later.
- ``GET /headers``: the request line and headers it received, as JSON.
- ``GET /redirect``: 302 to ``/target``; ``GET /cookie``: a cookie with
  ``Path=/``.
- ``GET /bytes?n=N``: N bytes (Content-Length), or chunks until close with
  ``&chunked=1``.
- ``POST /echo``: the request body back, read and written in 64 kB pieces;
  ``POST /count``: the number of body bytes received.
- ``GET /ws``: a WebSocket that echoes every text or binary message.
- ``/raw`` on ``PORT+1``: a plain TCP echo (not HTTP).
"""

import base64
import hashlib
import json
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PIECE = 65536

PAGE = b"""<!doctype html>
<html><head><title>tunnel app</title></head>
<body><h1 id="title">served from the sandbox</h1><p id="echo">waiting</p>
<script>
// A headless browser dumping the DOM after a virtual time budget lets that
// time pass only while no fetch is pending: "hold" stays pending until the
// page has written the echo into the DOM and said "done" on the socket.
var key = String(Math.random()).slice(2);
fetch("hold?key=" + key);
var url = new URL("ws", location.href);
url.protocol = url.protocol.replace("http", "ws");
var ws = new WebSocket(url.href);
ws.onopen = function () { ws.send("ping through the tunnel"); };
ws.onmessage = function (e) {
  document.getElementById("echo").textContent = "echo:" + e.data;
  ws.send("done:" + key);
};
ws.onerror = function () {
  document.getElementById("echo").textContent = "websocket error";
  fetch("release?key=" + key);
};
</script></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY the
    # body waits for the client's delayed ACK (40 ms) on a kept-alive
    # connection.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send(self, status, body, content_type="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/":
            self.send(200, PAGE, "text/html")
        elif url.path == "/hold":
            held(query["key"][0]).wait(60)
            self.send(200, b"released")
        elif url.path == "/release":
            held(query["key"][0]).set()
            self.send(200, b"released")
        elif url.path == "/headers":
            body = json.dumps({"path": self.path, "headers": dict(self.headers.items())})
            self.send(200, body.encode(), "application/json")
        elif url.path == "/redirect":
            self.send(302, b"", extra=[("Location", "/target")])
        elif url.path == "/cookie":
            self.send(200, b"ok", extra=[("Set-Cookie", "a=b; Path=/; HttpOnly")])
        elif url.path == "/bytes":
            self.sendBytes(int(query["n"][0]), "chunked" in query)
        elif url.path == "/ws":
            self.websocket()
        else:
            self.send(404, b"no such page")

    do_HEAD = do_GET

    def sendBytes(self, n, until_close):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if until_close:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(n))
        self.end_headers()
        piece = b"x" * PIECE
        while n > 0:
            self.wfile.write(piece[: min(n, PIECE)])
            n -= PIECE

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        url = urlsplit(self.path)
        if url.path == "/echo":
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            while length > 0:
                data = self.rfile.read(min(length, PIECE))
                if not data:
                    break
                self.wfile.write(data)
                length -= len(data)
        elif url.path == "/count":
            total = 0
            while total < length:
                data = self.rfile.read(min(length - total, PIECE))
                if not data:
                    break
                total += len(data)
            self.send(200, str(total).encode())
        else:
            self.send(404, b"no such page")

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode = head[0] & 0x0F
            length = head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", self.rfile.read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytearray(self.rfile.read(length))
            for i in range(len(data)):
                data[i] ^= mask[i % 4]
            if opcode == 8:
                self.wfile.write(b"\x88\x00")
                return
            if opcode == 1 and data.startswith(b"done:"):
                held(data[5:].decode()).set()
            elif opcode in (1, 2):
                self.wfile.write(frame(opcode, bytes(data)))
                self.wfile.flush()


_held = {}
_held_lock = threading.Lock()


def held(key):
    """
    The event ``/hold?key=`` waits on.
    """
    with _held_lock:
        return _held.setdefault(key, threading.Event())


def frame(opcode, data):
    """
    An unmasked (server) WebSocket frame.
    """
    if len(data) < 126:
        head = struct.pack("!BB", 0x80 | opcode, len(data))
    elif len(data) < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, len(data))
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, len(data))
    return head + data


def raw_echo(port):
    server = socket.create_server(("0.0.0.0", port))
    while True:
        connection, _ = server.accept()
        threading.Thread(target=echo, args=(connection,), daemon=True).start()


def echo(connection):
    with connection:
        while data := connection.recv(PIECE):
            connection.sendall(data)


def main():
    port = int(sys.argv[1])
    threading.Thread(target=raw_echo, args=(port + 1,), daemon=True).start()
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
