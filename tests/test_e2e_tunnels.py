"""
Port tunnels end to end: a real daemon, real containers (runc, and gVisor
through L{on_gvisor}), a real web app inside the sandbox
(L{tests.tunnel_app}, stdlib python3), reached through the path proxy and
through dedicated host ports: HTTP both ways, WebSocket echo, raw TCP,
the named errors, the limits, closing when the sandbox goes, re-binding
after a daemon restart, and 1 GiB streams with the daemon's RSS watched.
"""

import json
import socket
import subprocess
import sys
import threading

from twisted.python import log
from twisted.trial.unittest import TestCase

from tests.daemon import NO_RATE_LIMIT, Daemon, on_gvisor, runtime_daemon
from tests.tunnelutil import (
    APP_PORT,
    WebSocket,
    direct,
    proxied,
    start_app,
    unix_socket,
    wait_until_serving,
)

#: The agent's port inside every sandbox (sandboxd/runtimes/docker.py).
AGENT_PORT = 7070
GiB = 1 << 30
#: The most the daemon's RSS may grow while 1 GiB streams through it.
RSS_BOUND = 50 << 20


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RSSWatch:
    """
    Samples a process's RSS in a thread; ``peak`` is the largest seen.
    """

    def __init__(self, pid):
        self.pid = pid
        self.start = self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss(self.pid))

    @property
    def growth(self):
        return self.peak - self.start


def cut(sock):
    """
    Whether the peer closed or reset the connection (reading what is left).
    """
    try:
        read_all(sock)
    except ConnectionResetError:
        pass
    return True


def read_all(sock, expect=None):
    """
    Read until the peer closes (or ``expect`` bytes); the byte count.
    """
    total = 0
    while expect is None or total < expect:
        data = sock.recv(1 << 20)
        if not data:
            break
        total += len(data)
    return total


class TunnelTestCase(TestCase):
    runtime = "docker"

    def setUp(self):
        self.daemon = runtime_daemon(self.runtime, min_base=1)
        self.sandbox = self.create()
        start_app(self.daemon, self.sandbox)
        wait_until_serving(self.daemon, self.sandbox)

    def create(self):
        status, body = self.daemon.request("POST", "/sandboxes", {"ttl": 600})
        self.assertEqual(status, 201, body)
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{body['id']}")
        return body["id"]

    def path(self, rest, port=APP_PORT):
        return f"/sandboxes/{self.sandbox}/ports/{port}{rest}"

    def expose(self, port=APP_PORT, timeout=30):
        status, body = self.daemon.request(
            "POST", self.path("/expose", port), {"timeout": timeout})
        self.assertEqual(status, 201, body)
        return body


class PathProxyTests(TunnelTestCase):
    """
    The path proxy to a real app in a real sandbox.
    """

    def test_http(self):
        """
        A GET reaches the app with the prefix stripped, the query kept and
        X-Forwarded-* set (over the Unix socket and over TCP); a POST body
        goes up and comes back whole; a redirect and a cookie stay under
        the prefix.
        """
        status, _, body = proxied(self.daemon, "GET", self.path("/headers?a=1&b=%2F"))
        self.assertEqual(status, 200)
        seen = json.loads(body)
        self.assertEqual(seen["path"], "/headers?a=1&b=%2F")
        headers = {k.lower(): v for k, v in seen["headers"].items()}
        self.assertEqual(headers["x-forwarded-prefix"], self.path(""))
        self.assertEqual(headers["x-forwarded-proto"], "http")
        status, _, body = direct("127.0.0.1", self.daemon.port, "GET", self.path("/headers"),
                                 headers={"X-Forwarded-For": "10.9.8.7"})
        headers = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
        self.assertEqual(headers["x-forwarded-for"], "10.9.8.7, 127.0.0.1")
        payload = bytes(range(256)) * 4096
        status, _, body = proxied(self.daemon, "POST", self.path("/echo"), body=payload)
        self.assertEqual((status, body), (200, payload))
        status, headers, _ = proxied(self.daemon, "GET", self.path("/redirect"))
        self.assertEqual((status, headers["location"]), (302, self.path("/target")))
        _, headers, _ = proxied(self.daemon, "GET", self.path("/cookie"))
        self.assertEqual(headers["set-cookie"], f"a=b; Path={self.path('/')}; HttpOnly")

    def test_websocket(self):
        """
        A WebSocket upgrade through the path proxy answers 101 and echoes
        messages both ways.
        """
        sock = unix_socket(self.daemon.socket)
        with sock:
            ws = WebSocket(sock, self.path("/ws"))
            self.assertEqual(ws.status, 101)
            for message in ("one", "two" * 100):
                ws.send(message)
                self.assertEqual(ws.receive(), message)

    def test_errors(self):
        """
        A port nobody listens on is a 502 PORT_NOT_LISTENING naming it;
        malformed ports are 400; the agent's port is 403 whatever the path.
        """
        status, _, body = proxied(self.daemon, "GET", self.path("/", port=9))
        error = json.loads(body)["error"]
        self.assertEqual((status, error["code"]), (502, "PORT_NOT_LISTENING"))
        self.assertIn("port 9 ", error["message"])
        for bad in ("08080", "+80", "0x50", "65536", "0", "%38080"):
            status, _, _ = proxied(self.daemon, "GET", f"/sandboxes/{self.sandbox}/ports/{bad}/")
            self.assertEqual(status, 400, bad)
        for rest in ("/", "/../8080/", "/%2e%2e/"):
            status, _, body = proxied(self.daemon, "GET", self.path(rest, port=AGENT_PORT))
            self.assertEqual((status, json.loads(body)["error"]["code"]),
                             (403, "PORT_RESERVED"), rest)

    def test_stream_gib(self):
        """
        1 GiB down from the app and 1 GiB up to it (streamed as it is
        sent) through the path proxy: every byte arrives and the daemon's
        RSS grows by less than 50 MB.
        """
        with RSSWatch(self.daemon.process.pid) as watch:
            sock = unix_socket(self.daemon.socket, timeout=300)
            with sock:
                sock.sendall(f"GET {self.path(f'/bytes?n={GiB}')} HTTP/1.1\r\n"
                             "Host: localhost\r\nConnection: close\r\n\r\n".encode())
                head = b""
                while b"\r\n\r\n" not in head:
                    head += sock.recv(1)
                self.assertIn(f"Content-Length: {GiB}".encode(), head)
                self.assertEqual(read_all(sock), GiB)
            sock = unix_socket(self.daemon.socket, timeout=300)
            with sock:
                sock.sendall(f"POST {self.path('/count')} HTTP/1.1\r\nHost: localhost\r\n"
                             f"Content-Length: {GiB}\r\nConnection: close\r\n\r\n".encode())
                piece = b"u" * (1 << 20)
                for _ in range(GiB // len(piece)):
                    sock.sendall(piece)
                answer = b""
                while data := sock.recv(65536):
                    answer += data
            self.assertTrue(answer.endswith(str(GiB).encode()), answer[-200:])
        log.msg(f"{self.id()}: daemon RSS {watch.start >> 20} MiB, grew {watch.growth / 1e6:.1f} MB")
        self.assertLess(watch.growth, RSS_BOUND)


class HostPortTests(TunnelTestCase):
    """
    Dedicated host ports to a real app in a real sandbox.
    """

    def test_expose(self):
        """
        expose returns a host port on 127.0.0.1 serving the app (HTTP,
        WebSocket) and another relaying a raw TCP echo; both are listed and
        shown on the sandbox, announced by tunnel.opened; DELETE closes one
        (its port refuses connections, tunnel.closed).
        """
        http = self.expose()
        self.assertEqual(http["url"], f"http://127.0.0.1:{http['host_port']}")
        status, _, body = direct("127.0.0.1", http["host_port"], "GET", "/headers")
        self.assertEqual(json.loads(body)["path"], "/headers")
        with socket.create_connection(("127.0.0.1", http["host_port"]), timeout=30) as sock:
            ws = WebSocket(sock, "/ws")
            ws.send("through a host port")
            self.assertEqual(ws.receive(), "through a host port")
        raw = self.expose(APP_PORT + 1)
        with socket.create_connection(("127.0.0.1", raw["host_port"]), timeout=30) as sock:
            sock.sendall(b"not http at all\n")
            self.assertEqual(sock.recv(100), b"not http at all\n")
        status, ports = self.daemon.request("GET", f"/sandboxes/{self.sandbox}/ports")
        self.assertEqual([p["port"] for p in ports], [APP_PORT, APP_PORT + 1])
        status, info = self.daemon.request("GET", f"/sandboxes/{self.sandbox}")
        self.assertEqual([t["host_port"] for t in info["tunnels"]],
                         [http["host_port"], raw["host_port"]])
        status, _ = self.daemon.request("DELETE", self.path("/expose", APP_PORT + 1))
        self.assertEqual(status, 204)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", raw["host_port"]), timeout=30)
        status, events = self.daemon.request("GET", f"/events/history?sandbox={self.sandbox}")
        kinds = [(e["type"], e["data"]["port"]) for e in events if e["type"].startswith("tunnel")]
        self.assertEqual(kinds, [("tunnel.opened", APP_PORT), ("tunnel.opened", APP_PORT + 1),
                                 ("tunnel.closed", APP_PORT + 1)])

    def test_errors(self):
        """
        Exposing a port that never listens is a 504 PORT_NOT_READY after
        its timeout; the agent's port is a 403; a bad port a 400; closing a
        port never exposed a 404.
        """
        status, body = self.daemon.request("POST", self.path("/expose", 9), {"timeout": 1})
        self.assertEqual((status, body["error"]["code"]), (504, "PORT_NOT_READY"))
        status, body = self.daemon.request("POST", self.path("/expose", AGENT_PORT))
        self.assertEqual((status, body["error"]["code"]), (403, "PORT_RESERVED"))
        status, body = self.daemon.request(
            "POST", f"/sandboxes/{self.sandbox}/ports/0x50/expose")
        self.assertEqual((status, body["error"]["code"]), (400, "INVALID_PORT"))
        status, body = self.daemon.request("DELETE", self.path("/expose", 9))
        self.assertEqual((status, body["error"]["code"]), (404, "TUNNEL_NOT_FOUND"))

    def test_closed_on_destroy(self):
        """
        Destroying the sandbox closes its host ports and cuts the
        connections open through them.
        """
        tunnel = self.expose(APP_PORT + 1)
        sock = socket.create_connection(("127.0.0.1", tunnel["host_port"]), timeout=30)
        with sock:
            sock.sendall(b"ping")
            self.assertEqual(sock.recv(4), b"ping")
            status, _ = self.daemon.request("DELETE", f"/sandboxes/{self.sandbox}")
            self.assertEqual(status, 204)
            self.assertTrue(cut(sock))
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", tunnel["host_port"]), timeout=30)

    def test_stream_gib(self):
        """
        1 GiB each way through a host port (the raw echo: up and back at
        once): every byte returns and the daemon's RSS grows by less than
        50 MB.
        """
        tunnel = self.expose(APP_PORT + 1)
        with RSSWatch(self.daemon.process.pid) as watch:
            sock = socket.create_connection(("127.0.0.1", tunnel["host_port"]), timeout=300)
            received = []
            reader = threading.Thread(target=lambda: received.append(read_all(sock, GiB)))
            reader.start()
            piece = b"e" * (1 << 20)
            for _ in range(GiB // len(piece)):
                sock.sendall(piece)
            reader.join()
            sock.close()
        self.assertEqual(received, [GiB])
        log.msg(f"{self.id()}: daemon RSS {watch.start >> 20} MiB, grew {watch.growth / 1e6:.1f} MB")
        self.assertLess(watch.growth, RSS_BOUND)


on_gvisor(globals(), PathProxyTests, HostPortTests)


class LimitTests(TestCase):
    """
    max_tunnels and max_connections_per_tunnel on a daemon of their own.
    """

    def setUp(self):
        self.daemon = Daemon(limits_config=f"{NO_RATE_LIMIT}\nmax_tunnels = 1\n"
                                           "max_connections_per_tunnel = 2\n")
        self.daemon.start()
        self.addCleanup(self.daemon.stop)

    def test_limits(self):
        """
        A second tunnel is a 429 TOO_MANY_TUNNELS; a third connection
        through the one tunnel is closed at once and counted as refused,
        the first two still relay.
        """
        status, box = self.daemon.request("POST", "/sandboxes", {"ttl": 600})
        sid = box["id"]
        start_app(self.daemon, sid)
        wait_until_serving(self.daemon, sid)
        status, tunnel = self.daemon.request(
            "POST", f"/sandboxes/{sid}/ports/{APP_PORT + 1}/expose")
        self.assertEqual(status, 201, tunnel)
        status, body = self.daemon.request("POST", f"/sandboxes/{sid}/ports/{APP_PORT}/expose")
        self.assertEqual((status, body["error"]["code"]), (429, "TOO_MANY_TUNNELS"))
        address = ("127.0.0.1", tunnel["host_port"])
        first = socket.create_connection(address, timeout=30)
        second = socket.create_connection(address, timeout=30)
        for sock in (first, second):
            sock.sendall(b"hi")
            self.assertEqual(sock.recv(2), b"hi")
        with socket.create_connection(address, timeout=30) as third:
            self.assertEqual(read_all(third), 0)
        first.sendall(b"still")
        self.assertEqual(first.recv(5), b"still")
        first.close()
        second.close()
        status, [shown] = self.daemon.request("GET", f"/sandboxes/{sid}/ports")
        self.assertEqual(shown["refused"], 1)


class RestartTests(TestCase):
    """
    Tunnels of adopted sandboxes come back after a daemon restart.
    """

    def setUp(self):
        self.daemon = Daemon()
        self.daemon.start()
        self.addCleanup(self.daemon.stop)

    def test_rebound(self):
        """
        After SIGKILL and a start on the same data dir, the adopted
        sandbox's tunnel listens on the same host port again and relays;
        a tunnel.opened event says it was re-bound.
        """
        status, box = self.daemon.request("POST", "/sandboxes", {"ttl": 600})
        sid = box["id"]
        start_app(self.daemon, sid)
        wait_until_serving(self.daemon, sid)
        status, tunnel = self.daemon.request(
            "POST", f"/sandboxes/{sid}/ports/{APP_PORT}/expose")
        self.assertEqual(status, 201, tunnel)
        self.daemon.kill()
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", tunnel["host_port"]), timeout=30)
        self.daemon.process = None
        self.daemon.start()
        status, _, body = direct("127.0.0.1", tunnel["host_port"], "GET", "/headers")
        self.assertEqual(status, 200)
        status, ports = self.daemon.request("GET", f"/sandboxes/{sid}/ports")
        self.assertEqual([p["host_port"] for p in ports], [tunnel["host_port"]])
        status, events = self.daemon.request("GET", f"/events/history?sandbox={sid}")
        reasons = [e["data"].get("reason") for e in events if e["type"] == "tunnel.opened"]
        self.assertEqual(reasons, [None, "re-bound after a restart"])


class ClientTests(TunnelTestCase):
    """
    The SDK's ``sbx.net`` tunnel calls and ``sbx port`` against a real
    sandbox.
    """

    def test_sdk(self):
        """
        net.url gives the path-proxy URL of the Unix socket; net.expose a
        Tunnel whose host port serves the app; net.ports lists it,
        net.close closes it; a port that never listens is a
        SandboxTimeoutError PORT_NOT_READY.
        """
        import asyncio

        from sandbox import SandboxTimeoutError, Tunnel, connect_sandbox

        async def scenario():
            async with connect_sandbox(self.sandbox, endpoint=self.daemon.endpoint) as sbx:
                url = sbx.net.url(APP_PORT)
                tunnel = await sbx.net.expose(APP_PORT, timeout=30)
                listed = await sbx.net.ports()
                status = direct("127.0.0.1", tunnel.host_port, "GET", "/headers")[0]
                await sbx.net.close(APP_PORT)
                after = await sbx.net.ports()
                with self.assertRaises(SandboxTimeoutError) as caught:
                    await sbx.net.expose(9, timeout=0.5)
                return url, tunnel, listed, status, after, caught.exception.code

        url, tunnel, listed, status, after, code = asyncio.run(scenario())
        quoted = self.daemon.socket.replace("/", "%2F")
        self.assertEqual(url, f"http+unix://{quoted}{self.path('/')}")
        self.assertIsInstance(tunnel, Tunnel)
        self.assertEqual(tunnel.url, f"http://127.0.0.1:{tunnel.host_port}")
        self.assertEqual(listed, [tunnel])
        self.assertEqual((status, after, code), (200, [], "PORT_NOT_READY"))

    def test_cli(self):
        """
        sbx port expose prints the host port's URL, ls lists it, url prints
        the path-proxy URL, close closes it.
        """
        def sbx(*args):
            done = subprocess.run([sys.executable, "-m", "sbx.main", "port", *args],
                                  env=self.daemon.env, capture_output=True, text=True,
                                  timeout=120)
            self.assertEqual(done.returncode, 0, done.stderr)
            return done.stdout

        url = sbx("expose", self.sandbox, str(APP_PORT + 1)).strip()
        self.assertTrue(url.startswith("http://127.0.0.1:"), url)
        listing = sbx("ls", self.sandbox)
        self.assertIn(url, listing)
        self.assertIn(f"/sandboxes/{self.sandbox}/ports/{APP_PORT}/",
                      sbx("url", self.sandbox, str(APP_PORT)))
        sbx("close", self.sandbox, str(APP_PORT + 1))
        self.assertEqual(json.loads(sbx("ls", self.sandbox, "--json")), [])


class IngressTests(TestCase):
    """
    Private ingress on a real daemon (``[tunnels] auth = "token"``) to a
    real app in a real sandbox.
    """

    def setUp(self):
        self.daemon = Daemon(extra_config='[tunnels]\nauth = "token"\n')
        self.daemon.start()
        self.addCleanup(self.daemon.stop)

    def test_token_and_signed_url(self):
        """
        Over TCP the path proxy refuses a request without a credential
        (401); the Unix socket needs none; a signed URL from POST .../url is
        answered with a cookie that then lets requests and a WebSocket
        through; the app never sees the token, the cookie or the query
        parameters.
        """
        status, box = self.daemon.request("POST", "/sandboxes", {"ttl": 600})
        sid = box["id"]
        start_app(self.daemon, sid)
        wait_until_serving(self.daemon, sid)
        prefix = f"/sandboxes/{sid}/ports/{APP_PORT}"
        status, _, body = direct("127.0.0.1", self.daemon.port, "GET", f"{prefix}/headers")
        self.assertEqual((status, json.loads(body)["error"]["code"]),
                         (401, "TUNNEL_UNAUTHORIZED"))
        status, signed = self.daemon.request("POST", f"{prefix}/url", {"expires": 300})
        self.assertEqual(status, 200, signed)
        self.assertTrue(signed["path"].startswith(f"{prefix}/?sbx_expires="), signed)
        status, headers, _ = direct("127.0.0.1", self.daemon.port, "GET", signed["path"])
        self.assertEqual((status, headers["location"]), (303, f"{prefix}/"))
        cookie = headers["set-cookie"].split(";")[0]
        status, _, body = direct("127.0.0.1", self.daemon.port, "GET", f"{prefix}/headers",
                                 headers={"Cookie": f"app=1; {cookie}"})
        self.assertEqual(status, 200)
        seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
        self.assertEqual(seen["cookie"], "app=1")
        status, _, body = direct("127.0.0.1", self.daemon.port, "GET", f"{prefix}/headers",
                                 headers={"X-Sandbox-Tunnel-Token": signed["token"]})
        self.assertEqual(status, 200)
        self.assertNotIn(signed["token"], body.decode())
        import asyncio

        from sandbox import Client

        async def sdk():
            async with Client(f"http://127.0.0.1:{self.daemon.port}") as client:
                return await client.signed_port_url(sid, APP_PORT, expires=60)

        answer = asyncio.run(sdk())
        done = subprocess.run(
            [sys.executable, "-m", "sbx.main", "port", "url", "--expires", "60", sid,
             str(APP_PORT)], env=self.daemon.env, capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn(f"{prefix}/?sbx_expires=", done.stdout)
        self.assertEqual(answer["url"], f"http://127.0.0.1:{self.daemon.port}{answer['path']}")
        self.assertEqual(answer["token"], signed["token"])
        with socket.create_connection(("127.0.0.1", self.daemon.port), timeout=30) as sock:
            ws = WebSocket(sock, f"{prefix}/ws", headers=[("Cookie", cookie)])
            self.assertEqual(ws.status, 101)
            ws.send("private")
            self.assertEqual(ws.receive(), "private")

