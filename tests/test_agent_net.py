"""
The agent's net.fetch against an HTTP server the test runs on loopback.
"""

import base64
import http.server
import json
import threading

from agent import wire
from agent.wire import FrameType

from .test_agent import AgentTestCase


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path
        if path.startswith("/echo"):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            info = {"method": self.command, "path": path, "body": body.decode("latin-1"),
                    "x-test": self.headers.get("X-Test")}
            self._answer(200, json.dumps(info).encode(), [("Content-Type", "application/json")])
        elif path.startswith("/redirect/"):
            n = int(path.rsplit("/", 1)[1])
            target = f"/redirect/{n - 1}" if n > 1 else "/echo"
            self._answer(302, b"", [("Location", target)])
        elif path == "/big":
            self._answer(200, b"z" * (10 << 20))
        elif path == "/missing":
            self._answer(404, b"nope")
        elif path == "/slow":
            import time

            time.sleep(3)
            self._answer(200, b"late")
        else:
            self._answer(500, b"?")

    do_POST = do_PUT = do_DELETE = do_GET


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that stop reading (max_body) are expected


class FetchTests(AgentTestCase):
    """
    net.fetch.
    """

    def setUp(self):
        super().setUp()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def fetch(self, path, **params):
        return self.client.call("net.fetch", dict(params, url=self.base + path))

    def test_get_and_post(self):
        """
        The status and headers come first as an EVENT, the body as DATA,
        then the RESULT; method, headers and body reach the server.
        """
        reply = self.fetch("/echo", method="POST", headers={"X-Test": "yes"}, body="hello")
        self.assertEqual(reply.events[0]["status"], 200)
        self.assertIn(["Content-Type", "application/json"], reply.events[0]["headers"])
        self.assertEqual(
            json.loads(reply.body),
            {"method": "POST", "path": "/echo", "body": "hello", "x-test": "yes"},
        )
        result = reply.result
        self.assertEqual((result["status"], result["size"], result["truncated"]), (200, len(reply.body), False))
        reply = self.fetch("/echo", method="PUT", body_base64=base64.b64encode(b"\xff\x00").decode())
        self.assertEqual(json.loads(reply.body)["body"], "\xff\x00")

    def test_errors_are_answers(self):
        """
        A 404 is a response, not an error.
        """
        reply = self.fetch("/missing")
        self.assertEqual((reply.result["status"], reply.body), (404, b"nope"))

    def test_redirects(self):
        """
        Redirects are followed up to the limit (the final url reported);
        past it TOO_MANY_REDIRECTS; with 0 the 3xx itself comes back.
        """
        reply = self.fetch("/redirect/3")
        self.assertEqual((reply.result["status"], reply.result["url"]), (200, self.base + "/echo"))
        self.assertError(self.fetch("/redirect/3", max_redirects=2), "TOO_MANY_REDIRECTS")
        reply = self.fetch("/redirect/1", max_redirects=0)
        self.assertEqual(reply.result["status"], 302)

    def test_body_cap_and_window(self):
        """
        A 10 MiB body streams within the window; max_body truncates.
        """
        reply = self.fetch("/big")
        self.assertEqual((len(reply.body), reply.result["truncated"]), (10 << 20, False))
        windows = [f for f in reply.frames if f.type is FrameType.DATA]
        self.assertTrue(all(len(f.payload) <= wire.CHUNK_SIZE for f in windows))
        reply = self.fetch("/big", max_body=1000)
        self.assertEqual((len(reply.body), reply.result["truncated"]), (1000, True))

    def test_network_errors(self):
        """
        Refused connections, timeouts and bad URLs are named errors.
        """
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        reply = self.client.call("net.fetch", {"url": f"http://127.0.0.1:{port}/"})
        self.assertError(reply, "CONNECTION_REFUSED")
        self.assertError(self.fetch("/slow", timeout=0.3), "TIMEOUT")
        self.assertError(self.client.call("net.fetch", {"url": "file:///etc/passwd"}), "BAD_PARAMS")
        self.assertError(self.client.call("net.fetch", {"url": "http://x/", "method": "GET X"}), "BAD_PARAMS")


def _self_signed(directory):
    """
    A self-signed certificate for 127.0.0.1 and its key, as PEM files.
    """
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class HTTPSTests(AgentTestCase):
    """
    net.fetch over TLS (the agent loads ssl on first use).
    """

    def test_https_verify(self):
        """
        A self-signed server is TLS_ERROR with verification on and answers
        with it off.
        """
        import os
        import ssl

        directory = self.mktemp()
        os.mkdir(directory)
        cert, key = _self_signed(directory)
        server = _Server(("127.0.0.1", 0), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        url = f"https://127.0.0.1:{server.server_address[1]}/echo"
        self.assertError(self.client.call("net.fetch", {"url": url}), "TLS_ERROR")
        reply = self.client.call("net.fetch", {"url": url, "verify": False})
        self.assertEqual(reply.result["status"], 200)
        self.assertEqual(json.loads(reply.body)["path"], "/echo")
