"""
Unit tests of the Python SDK's client logic (``sandbox``) against the fake
daemon of tests/fakedaemon.py, over a Unix socket, TCP and TLS.

The SDK is asyncio; each test runs its client coroutine in a worker thread's
own event loop while the reactor serves the fake.  Integration tests against
the real daemon come from the daemon's author.
"""

import asyncio
import contextlib
import datetime
import io
import os
import shutil
import tempfile

from twisted.internet import reactor, threads
from twisted.trial.unittest import SynchronousTestCase, TestCase

import sandbox
from agent import wire
from sandbox import (
    CapacityError,
    RateLimitedError,
    Client,
    DaemonUnavailableError,
    FileError,
    InvalidEndpointError,
    InvalidRequestError,
    NotFoundError,
    PathNotFoundError,
    ProtocolError,
    RequestCancelledError,
    SandboxError,
    SandboxUnavailableError,
    ServerError,
    connect_sandbox,
    create_sandbox,
    parse_endpoint,
)
from sandbox.errors import error_from, error_from_http
from tests.fakedaemon import FakeDaemon

MiB = 1 << 20


class EndpointTests(SynchronousTestCase):
    """
    ``SANDBOX_ENDPOINT`` parsing.
    """

    def test_unix(self):
        """
        unix:///path and unix:/path name the socket path; Host is localhost.
        """
        for url in ("unix:///var/run/x.sock", "unix:/var/run/x.sock"):
            endpoint = parse_endpoint(url)
            self.assertEqual((endpoint.scheme, endpoint.path), ("unix", "/var/run/x.sock"))
            self.assertEqual(endpoint.ws_uri("/sandboxes/a/ws"), "ws://localhost/sandboxes/a/ws")

    def test_http_https(self):
        """
        http(s) take a host, an optional port (80/443 by default) and prefix.
        """
        endpoint = parse_endpoint("http://127.0.0.1:7522")
        self.assertEqual((endpoint.host, endpoint.port, endpoint.tls), ("127.0.0.1", 7522, False))
        endpoint = parse_endpoint("https://sandbox.example/api/")
        self.assertEqual((endpoint.port, endpoint.tls, endpoint.prefix), (443, True, "/api"))
        self.assertEqual(
            endpoint.ws_uri("/sandboxes/a/ws"), "wss://sandbox.example/api/sandboxes/a/ws"
        )
        self.assertEqual(parse_endpoint("http://[::1]:8000").host_header, "[::1]:8000")

    def test_bad(self):
        """
        Other schemes, missing hosts and credentials in the URL are refused
        with InvalidEndpointError, a ValueError.
        """
        for url in ("ftp://x", "http://", "unix://", "", "localhost:7522",
                    "http://u:p@host", "http://host:99999"):
            with self.assertRaises(InvalidEndpointError, msg=url) as caught:
                parse_endpoint(url)
            self.assertIsInstance(caught.exception, ValueError)

    def test_environment(self):
        """
        Without an argument, $SANDBOX_ENDPOINT then the default socket apply;
        $SANDBOX_AUTH is the default token.
        """
        self.patch(os, "environ", {"SANDBOX_ENDPOINT": "http://h:1", "SANDBOX_AUTH": "t"})
        self.assertEqual(parse_endpoint().url, "http://h:1")
        self.assertEqual(Client().auth, "t")
        self.patch(os, "environ", {})
        self.assertEqual(parse_endpoint().path, "/var/run/sandboxd/sandboxd.sock")
        self.assertIsNone(Client().auth)


class ErrorMappingTests(SynchronousTestCase):
    """
    Error codes become typed exceptions.
    """

    def test_codes(self):
        """
        Each documented code maps to its class.
        """
        expected = {
            "INVALID_BODY": InvalidRequestError, "INVALID_FIELD": InvalidRequestError,
            "LIMIT_EXCEEDED": InvalidRequestError, "BAD_PARAMS": InvalidRequestError,
            "SANDBOX_NOT_FOUND": NotFoundError, "UNKNOWN_PROFILE": NotFoundError,
            "NOT_FOUND": NotFoundError, "ENOENT": PathNotFoundError,
            "EISDIR": FileError, "AT_CAPACITY": CapacityError,
            "RUNTIME_ERROR": ServerError, "INTERNAL": ServerError,
            "SANDBOX_UNAVAILABLE": SandboxUnavailableError,
            "WINDOW_EXCEEDED": ProtocolError, "CANCELLED": RequestCancelledError,
            "TIMEOUT": sandbox.SandboxTimeoutError,
        }
        for code, cls in expected.items():
            e = error_from(code, "m")
            self.assertIs(type(e), cls, code)
            self.assertEqual((e.code, str(e)), (code, "m"))
        self.assertIsInstance(error_from("ENOENT", "m"), NotFoundError)
        self.assertIsInstance(error_from("TIMEOUT", "m"), TimeoutError)
        self.assertIs(type(error_from("WHATEVER", "m", 503)), ServerError)
        self.assertIs(type(error_from("WHATEVER", "m", 418)), SandboxError)

    def test_http_bodies(self):
        """
        JSON error bodies give code, message, details and Retry-After; other
        bodies give HTTP_<status>.
        """
        body = b'{"error": {"code": "AT_CAPACITY", "message": "full", "limit": 100}}'
        e = error_from_http(503, "Service Unavailable", {"retry-after": "2"}, body)
        self.assertIsInstance(e, CapacityError)
        self.assertEqual((e.retry_after, e.status, e.details), (2.0, 503, {"limit": 100}))
        body = b'{"error": {"code": "RATE_LIMITED", "message": "slow down"}}'
        e = error_from_http(429, "Too Many Requests", {"retry-after": "20"}, body)
        self.assertIsInstance(e, RateLimitedError)
        self.assertIsInstance(e, CapacityError)
        self.assertEqual((e.retry_after, e.status), (20.0, 429))
        e = error_from_http(502, "Bad Gateway", {}, b"<html>oops</html>")
        self.assertIsInstance(e, ServerError)
        self.assertEqual(e.code, "HTTP_502")
        self.assertIn("<html>oops</html>", e.message)

    def test_daemon_unavailable(self):
        """
        DaemonUnavailableError names the endpoint and is a ConnectionError.
        """
        e = DaemonUnavailableError("unix:///x.sock", "no socket")
        self.assertIsInstance(e, ConnectionError)
        self.assertEqual(str(e), "cannot connect to the daemon at unix:///x.sock: no socket")


class FakeDaemonTestCase(TestCase):
    """
    A fake daemon on a Unix socket and TCP; ``client(fn)`` runs ``await
    fn()`` in an asyncio loop on a worker thread.
    """

    def setUp(self):
        self.daemon = FakeDaemon(reactor)
        directory = tempfile.mkdtemp(prefix="sbxtest-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.directory = directory
        self.unix = self.daemon.listen_unix(os.path.join(directory, "d.sock"))
        self.tcp = self.daemon.listen_tcp()
        self.addCleanup(self.daemon.stop)

    def client(self, fn, *args, timeout=30):
        def target():
            return asyncio.run(asyncio.wait_for(fn(*args), timeout))

        return threads.deferToThread(target)

    def call_reactor(self, f, *args):
        """
        From the client thread: run ``f`` in the reactor thread, get its result.
        """
        return threads.blockingCallFromThread(reactor, f, *args)


class RestTests(FakeDaemonTestCase):
    """
    ``sandbox.Client`` against the REST routes.
    """

    async def _lifecycle(self, endpoint):
        async with Client(endpoint) as client:
            made = await client.create(ttl=60, labels={"env": "prod"}, memory="1g")
            other = await client.create()
            self.assertEqual(made["labels"], {"env": "prod"})
            listed = await client.list()
            self.assertEqual([s["id"] for s in listed], [made["id"], other["id"]])
            self.assertEqual([s["id"] for s in await client.list({"env": "prod"})], [made["id"]])
            self.assertEqual(await client.list(["env=dev"]), [])
            self.assertEqual((await client.get(made["id"]))["ttl"], 60)
            self.assertIsNone(await client.destroy(made["id"]))
            with self.assertRaises(NotFoundError) as caught:
                await client.get(made["id"])
            self.assertEqual((caught.exception.code, caught.exception.status),
                             ("SANDBOX_NOT_FOUND", 404))
            await client.destroy(other["id"])
            self.assertEqual(await client.list(), [])

    async def test_lifecycle_unix_and_tcp(self):
        """
        create/list/get/destroy work over both transports; only the given
        fields are sent.
        """
        await self.client(self._lifecycle, self.unix)
        await self.client(self._lifecycle, self.tcp)
        posts = [r for r in self.daemon.requests if r[0] == "POST"]
        self.assertEqual(posts[0][3], b'{"memory":"1g","ttl":60,"labels":{"env":"prod"}}')
        self.assertEqual(posts[1][3], b"{}")
        self.assertEqual(posts[0][2]["content-type"], "application/json")

    async def _many(self, endpoint):
        async with Client(endpoint) as client:
            for _ in range(20):
                await client.health()
                await client.profiles()  # chunked
            return await client.health(), await client.profiles()

    async def test_keep_alive(self):
        """
        Sequential requests reuse one connection, whatever the body framing
        (Content-Length for /health, chunked for /profiles).
        """
        health, profiles = await self.client(self._many, self.unix)
        self.assertEqual(health["version"], "0.1.0-fake")
        self.assertEqual(profiles[0]["name"], "default")
        self.assertEqual(self.daemon.connections_made, 1)

    async def _errors(self, endpoint):
        found = {}
        async with Client(endpoint) as client:
            cases = {
                "field": client.request("POST", "/sandboxes", {"bogus": 1}),
                "body": client.request("POST", "/sandboxes", [1]),
                "limit": client.create(ttl=100000),
                "profile": client.create(profile="nope"),
                "runtime": client.create(profile="broken"),
                "route": client.request("GET", "/nowhere"),
                "method": client.request("PUT", "/sandboxes"),
                "html": client.request("GET", "/html"),
            }
            for name, call in cases.items():
                try:
                    await call
                except SandboxError as e:
                    found[name] = e
            self.daemon.max_sandboxes = 0
            try:
                await client.create()
            except SandboxError as e:
                found["capacity"] = e
        return found

    async def test_error_mapping(self):
        """
        Every API error arrives as its typed exception with code and status.
        """
        found = await self.client(self._errors, self.tcp)
        expect = {
            "field": (InvalidRequestError, "INVALID_FIELD", 400),
            "body": (InvalidRequestError, "INVALID_BODY", 400),
            "limit": (InvalidRequestError, "LIMIT_EXCEEDED", 400),
            "profile": (NotFoundError, "UNKNOWN_PROFILE", 404),
            "runtime": (ServerError, "RUNTIME_ERROR", 502),
            "route": (NotFoundError, "NOT_FOUND", 404),
            "method": (InvalidRequestError, "METHOD_NOT_ALLOWED", 405),
            "html": (ServerError, "HTTP_502", 502),
            "capacity": (CapacityError, "AT_CAPACITY", 503),
        }
        for name, (cls, code, status) in expect.items():
            e = found[name]
            self.assertEqual((type(e), e.code, e.status), (cls, code, status), name)
        self.assertEqual(found["capacity"].retry_after, 2.0)
        self.assertIn("bogus", found["field"].message)

    async def _down(self, endpoint):
        async with Client(endpoint) as client:
            try:
                await client.health()
            except DaemonUnavailableError as e:
                return e

    async def test_daemon_down(self):
        """
        A missing socket or a closed port is DaemonUnavailableError naming the
        endpoint.
        """
        missing = f"unix://{self.directory}/missing.sock"
        e = await self.client(self._down, missing)
        self.assertIn(f"cannot connect to the daemon at {missing}: no socket", str(e))
        port = self.tcp
        await self.daemon.stop()
        e = await self.client(self._down, port)
        self.assertIn(f"at {port}: connection refused", str(e))

    async def _with_token(self, endpoint, token):
        async with Client(endpoint, auth=token) as client:
            return await client.health()

    async def test_auth(self):
        """
        The token goes as ``Authorization: Bearer``; a refusal is a SandboxError.
        """
        self.daemon.auth = "s3cret"
        health = await self.client(self._with_token, self.unix, "s3cret")
        self.assertEqual(health["status"], "ok")
        with self.assertRaises(SandboxError) as caught:
            await self.client(self._with_token, self.unix, "wrong")
        self.assertEqual((caught.exception.code, caught.exception.status), ("UNAUTHORIZED", 401))
        self.assertEqual(self.daemon.requests[0][2]["authorization"], "Bearer s3cret")
        self.assertTrue(self.daemon.requests[0][2]["user-agent"].startswith("sandbox-python/"))

    async def test_https(self):
        """
        https endpoints speak TLS, REST and WebSocket alike, verifying the
        server's certificate.
        """
        key_pem, cert_pem = _self_signed()
        from twisted.internet import ssl as tssl

        options = tssl.PrivateCertificate.loadPEM(key_pem + cert_pem).options()
        endpoint = self.daemon.listen_tls(options)

        async def scenario():
            import ssl

            context = ssl.create_default_context(cadata=cert_pem.decode())
            async with Client(endpoint, ssl_context=context) as client:
                async with await create_sandbox(client=client) as sbx:
                    result = await sbx.process.exec_("echo tls")
            try:
                async with Client(endpoint) as client:
                    await client.health()
            except DaemonUnavailableError as e:
                return result, e

        result, refused = await self.client(scenario)
        self.assertEqual(result.stdout, "tls\n")
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(refused))


def _self_signed():
    """
    A key and certificate for 127.0.0.1 (PEM bytes).
    """
    import ipaddress

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
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


class SessionTests(FakeDaemonTestCase):
    """
    ``create_sandbox``/``connect_sandbox`` and the multiplexed WebSocket.
    """

    async def test_create_and_close(self):
        """
        create_sandbox POSTs then opens the session; both ``async with``
        forms close the session (and leave the sandbox); ping round-trips.
        """
        async def scenario(endpoint):
            async with await create_sandbox(labels={"a": "b"}, endpoint=endpoint) as sbx:
                await sbx.ping()
                first = (sbx.id, sbx.info["labels"], sbx.closed)
            async with create_sandbox(endpoint=endpoint) as sbx2:
                await sbx2.ping()
            return first, sbx.closed, sbx2.closed

        for endpoint in (self.unix, self.tcp):
            (sid, labels, closed), after, after2 = await self.client(scenario, endpoint)
            self.assertEqual((labels, closed, after, after2), ({"a": "b"}, False, True, True))
            self.assertIn(sid, self.daemon.sandboxes)
        self.assertEqual(self.daemon.ws_connections, 4)

    async def test_connect(self):
        """
        connect_sandbox opens the session of an existing sandbox and fills
        ``info``; an unknown id is NotFoundError; the token reaches the
        WebSocket handshake.
        """
        sid = self.daemon.add_sandbox(labels={"k": "v"})["id"]
        self.daemon.auth = "tok"

        async def scenario():
            async with await connect_sandbox(sid, endpoint=self.unix, auth="tok") as sbx:
                await sbx.ping()
                info = sbx.info
            try:
                await connect_sandbox("sbx-nope", endpoint=self.unix, auth="tok")
            except NotFoundError as e:
                return info, e

        info, missing = await self.client(scenario)
        self.assertEqual(info["labels"], {"k": "v"})
        self.assertEqual(missing.code, "SANDBOX_NOT_FOUND")
        ws = [r for r in self.daemon.requests if r[1].endswith("/ws")]
        self.assertEqual(ws[0][2]["authorization"], "Bearer tok")

    async def test_destroy_over_session(self):
        """
        ``destroy()`` asks over the session (``sandbox.destroy``): no HTTP
        request; with a daemon that relays the method to the agent (an
        older one: UNKNOWN_METHOD) it sends ``DELETE`` instead.  The
        sandbox is gone and the session closed either way.
        """
        async def scenario():
            async with Client(self.unix) as client:
                sbx = await create_sandbox(client=client)
                await sbx.destroy()
                return sbx.id, sbx.closed

        for over_session in (True, False):
            self.daemon.session_destroy = over_session
            del self.daemon.requests[:]
            sid, closed = await self.client(scenario)
            self.assertTrue(closed)
            self.assertNotIn(sid, self.daemon.sandboxes)
            deletes = [r[:2] for r in self.daemon.requests if r[0] == "DELETE"]
            self.assertEqual(deletes, [] if over_session else [("DELETE", f"/sandboxes/{sid}")])
            self.assertIn((wire.DESTROY_METHOD, {}), self.daemon.calls)

    async def test_session_refused_destroys(self):
        """
        When the WebSocket is refused after a create, the error is typed and
        the new sandbox is destroyed rather than leaked.
        """
        self.daemon.reject_ws = True

        async def scenario():
            try:
                await create_sandbox(endpoint=self.unix)
            except SandboxError as e:
                return e

        e = await self.client(scenario)
        self.assertIsInstance(e, InvalidRequestError)
        self.assertEqual(e.code, "METHOD_NOT_ALLOWED")
        self.assertEqual(self.daemon.sandboxes, {})

    async def test_exec(self):
        """
        exec_ returns decoded output, exit code, flags; passes its params;
        a command that cannot start is PathNotFoundError.
        """
        self.daemon.scripts["bad-utf8"] = [
            ("stdout", b"ok \xff\n"), ("stderr", b"warn\n"),
            ("result", {"exit_code": 0, "timed_out": False, "truncated": True}),
        ]

        async def scenario():
            async with await create_sandbox(endpoint=self.unix) as sbx:
                hello = await sbx.process.exec_(
                    "echo hello", cwd="/tmp", env={"A": 1}, timeout=5, stdin=b"in"
                )
                failed = await sbx.process.exec(["exit", "3"])
                unknown = await sbx.process.exec_("frobnicate")
                timed = await sbx.process.exec_("timeout")
                bad = await sbx.process.exec_("bad-utf8")
                try:
                    await sbx.process.exec_(["missing-binary"])
                except PathNotFoundError as e:
                    missing = e
                return hello, failed, unknown, timed, bad, missing

        hello, failed, unknown, timed, bad, missing = await self.client(scenario)
        self.assertEqual((hello.stdout, hello.stderr, hello.exit_code, hello.ok),
                         ("hello\n", "", 0, True))
        self.assertEqual(self.daemon.exec_params[0], {
            "cmd": "echo hello", "cwd": "/tmp", "env": {"A": "1"}, "timeout": 5,
            "stdin_stream": True})
        self.assertEqual(self.daemon.exec_params[1]["cmd"], ["exit", "3"])
        self.assertEqual(failed.exit_code, 3)
        self.assertEqual((unknown.exit_code, unknown.stderr),
                         (127, "sh: 1: frobnicate: not found\n"))
        self.assertEqual((timed.timed_out, timed.exit_code, timed.stdout), (True, 137, "partial"))
        self.assertEqual((bad.stdout, bad.stdout_bytes, bad.stderr, bad.truncated),
                         ("ok \ufffd\n", b"ok \xff\n", "warn\n", True))
        self.assertEqual((missing.code, missing.path), ("ENOENT", "missing-binary"))
        self.assertIsInstance(missing, NotFoundError)

    async def test_stream_events(self):
        """
        stream_exec yields events in order with channel, text and raw bytes,
        decoding UTF-8 split across chunks; exit_code follows.
        """
        e_acute = "é".encode()
        self.daemon.scripts["mixed"] = [
            ("stdout", b"one\n"), ("stderr", b"two\n"), ("delay", 0.01),
            ("stdout", b"caf" + e_acute[:1]), ("stdout", e_acute[1:] + b"\n"),
            ("stderr", b"three\n"),
            ("result", {"exit_code": 5, "timed_out": False, "truncated": False}),
        ]

        async def scenario():
            async with await create_sandbox(endpoint=self.tcp) as sbx:
                handle = await sbx.process.stream_exec("mixed")
                events = [(e.channel, e.data, e.raw) async for e in handle]
                return events, await handle.exit_code()

        events, code = await self.client(scenario)
        self.assertEqual(events, [
            ("stdout", "one\n", b"one\n"), ("stderr", "two\n", b"two\n"),
            ("stdout", "caf", b"caf\xc3"), ("stdout", "é\n", b"\xa9\n"),
            ("stderr", "three\n", b"three\n"),
        ])
        self.assertEqual(code, 5)

    async def test_stream_windows(self):
        """
        10 MiB of streamed output flows through 4 MiB windows: the fake agent
        had to wait for the credit the client grants as it consumes.
        """
        async def scenario():
            async with await create_sandbox(endpoint=self.unix) as sbx:
                handle = await sbx.process.stream_exec(f"yes {10 * MiB}")
                total = 0
                async for event in handle:
                    total += len(event.raw)
                return total, await handle.exit_code()

        total, code = await self.client(scenario)
        self.assertEqual((total, code), (10 * MiB, 0))
        self.assertGreater(self.daemon.send_stalls, 0)

    async def test_stream_cancel(self):
        """
        cancel() kills the command: the agent gets CANCEL, iteration ends,
        exit_code raises RequestCancelledError.
        """
        async def scenario():
            async with await create_sandbox(endpoint=self.unix) as sbx:
                handle = await sbx.process.stream_exec("hang")
                first = await handle.__anext__()
                await handle.cancel()
                rest = [e async for e in handle]
                try:
                    await handle.exit_code()
                except RequestCancelledError as e:
                    return first.data, rest, e

        first, rest, error = await self.client(scenario)
        self.assertEqual((first, rest, error.code), ("started\n", [], "CANCELLED"))
        self.assertEqual([c[2] for c in self.daemon.cancelled], ["process.stream"])

    async def test_task_cancel_sends_cancel(self):
        """
        A caller giving up (its task cancelled) CANCELs its request on the
        agent and the session stays usable.
        """
        async def scenario():
            async with await create_sandbox(endpoint=self.unix) as sbx:
                call = asyncio.ensure_future(sbx.process.exec_("hang"))
                while not self.call_reactor(lambda: self.daemon.exec_params):
                    await asyncio.sleep(0.005)
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
                return (await sbx.process.exec_("echo still")).stdout

        self.assertEqual(await self.client(scenario), "still\n")
        self.assertEqual([c[2] for c in self.daemon.cancelled], ["process.exec"])

    async def test_concurrent(self):
        """
        Many calls run at once on one WebSocket, each getting its own answer.
        """
        async def scenario():
            async with await create_sandbox(endpoint=self.unix) as sbx:
                await sbx.fs.write("/root/big", os.urandom(3 * MiB))
                calls = [sbx.process.exec_(f"barrier 60 {i}") for i in range(60)]
                calls += [sbx.fs.read("/root/big"), sbx.ping(), sbx.fs.list("/root")]
                return await asyncio.gather(*calls)

        results = await self.client(scenario)
        self.assertEqual([r.stdout for r in results[:60]], [f"{i}\n" for i in range(60)])
        self.assertEqual(len(results[60]), 3 * MiB)
        self.assertEqual(self.daemon.ws_connections, 1)
        self.assertGreaterEqual(self.daemon.max_open_streams, 60)


async def _agen(pieces):
    for piece in pieces:
        await asyncio.sleep(0)
        yield piece


async def _endless():
    while True:
        await asyncio.sleep(0)
        yield b"a" * 65536


class FilesystemTests(FakeDaemonTestCase):
    """
    ``sbx.fs`` over the fake agent's in-memory files.
    """

    async def test_large_roundtrip(self):
        """
        10 MiB written and read back in CHUNK_SIZE pieces: the client never
        sends past the agent's credit (a violation would fail the write), waits
        for its WINDOW frames (granted late on purpose), and grants credit back
        when reading.
        """
        self.daemon.grant_delay = 0.005
        content = os.urandom(10 * MiB)

        async def scenario():
            async with await create_sandbox(endpoint=self.unix) as sbx:
                size = await sbx.fs.write("/root/big.bin", content, mode=0o600)
                sizes = [len(c) async for c in sbx.fs.read_stream("/root/big.bin")]
                back = await sbx.fs.read("/root/big.bin")
                part = await sbx.fs.read("/root/big.bin", offset=5, length=10)
                return size, sizes, back, part

        size, sizes, back, part = await self.client(scenario)
        self.assertEqual(size, 10 * MiB)
        self.assertEqual(back, content)
        self.assertEqual(part, content[5:15])
        self.assertEqual(max(sizes), wire.CHUNK_SIZE)
        self.assertEqual(sum(sizes), 10 * MiB)
        self.assertEqual(self.daemon.window_violations, 0)
        self.assertGreaterEqual(self.daemon.windows_sent, 3)
        self.assertGreater(self.daemon.send_stalls, 0)

    async def test_write_sources(self):
        """
        write takes str, bytes, sync and async iterables, binary and text file
        objects; append extends; big iterables stream as CHUNK_SIZE pieces.
        """
        big = [b"x" * 100_000] * 50

        async def scenario():
            async with await create_sandbox(endpoint=self.tcp) as sbx:
                await sbx.fs.write("/root/s", "héllo")
                await sbx.fs.write("/root/b", b"bytes")
                await sbx.fs.write("/root/i", iter([b"a", "b", bytearray(b"c")]))
                await sbx.fs.write("/root/g", _agen([b"1", b"2"]))
                await sbx.fs.write("/root/f", io.BytesIO(b"file"))
                await sbx.fs.write("/root/t", io.StringIO("text"))
                await sbx.fs.write("/root/t", "+more", append=True)
                await sbx.fs.write("/root/e", b"")
                size = await sbx.fs.write("/root/big", iter(big))
                text = await sbx.fs.read_text("/root/s")
                try:
                    await sbx.fs.write("/root/x", 42)
                except TypeError as e:
                    return size, text, e

        size, text, error = await self.client(scenario)
        files = self.daemon.files[next(iter(self.daemon.files))]
        self.assertEqual(
            {k: v for k, v in files.items() if k != "/root/big"},
            {"/root/s": "héllo".encode(), "/root/b": b"bytes", "/root/i": b"abc",
             "/root/g": b"12", "/root/f": b"file", "/root/t": b"text+more",
             "/root/e": b""},
        )
        self.assertEqual((size, files["/root/big"]), (5_000_000, b"".join(big)))
        self.assertEqual(text, "héllo")
        self.assertIn("int", str(error))

    async def test_errors(self):
        """
        Missing files are PathNotFoundError with the path, directories EISDIR;
        an agent refusing a write early stops the upload at once.
        """
        async def scenario():
            found = []
            async with await create_sandbox(endpoint=self.unix) as sbx:
                calls = [
                    sbx.fs.read("/root/missing"),
                    sbx.fs.read("/root"),
                    sbx.fs.write("/nowhere/file", b"z" * (10 * MiB)),
                    sbx.fs.write("/root", b"z"),
                    sbx.fs.list("/root/missing"),
                    sbx.fs.stat("/root/missing"),
                ]
                for call in calls:
                    try:
                        await call
                    except FileError as e:
                        found.append((type(e), e.code, e.path))
                await sbx.ping()
            return found

        found = await self.client(scenario)
        self.assertEqual(found, [
            (PathNotFoundError, "ENOENT", "/root/missing"),
            (FileError, "EISDIR", "/root"),
            (PathNotFoundError, "ENOENT", "/nowhere/file"),
            (FileError, "EISDIR", "/root"),
            (PathNotFoundError, "ENOENT", "/root/missing"),
            (PathNotFoundError, "ENOENT", "/root/missing"),
        ])

    async def test_list_and_stat(self):
        """
        list gives FileInfo entries sorted by name with full paths; stat too.
        """
        async def scenario():
            async with await create_sandbox(endpoint=self.unix) as sbx:
                await sbx.fs.write("/root/b.txt", b"12345")
                await sbx.fs.write("/root/a.py", b"1")
                return await sbx.fs.list("/root"), await sbx.fs.stat("/root/b.txt")

        entries, info = await self.client(scenario)
        self.assertEqual([(e.name, e.path, e.size, e.is_file) for e in entries],
                         [("a.py", "/root/a.py", 1, True), ("b.txt", "/root/b.txt", 5, True)])
        self.assertEqual((info.path, info.type, info.mode, info.mtime),
                         ("/root/b.txt", "file", 0o644, 1700000000.5))

    async def test_read_stream_stop_early(self):
        """
        Leaving read_stream early cancels the read on the agent.
        """
        async def scenario():
            async with await create_sandbox(endpoint=self.unix) as sbx:
                await sbx.fs.write("/root/big", b"y" * (8 * MiB))
                async with contextlib.aclosing(sbx.fs.read_stream("/root/big")) as chunks:
                    async for chunk in chunks:
                        break
                await sbx.ping()
                return len(chunk)

        self.assertEqual(await self.client(scenario), wire.CHUNK_SIZE)
        self.assertEqual([c[2] for c in self.daemon.cancelled], ["fs.read"])


class SessionLossTests(FakeDaemonTestCase):
    """
    Every pending call fails at once with SandboxUnavailableError when the
    session goes away, however it goes.
    """

    async def _pending(self, lose):
        """
        Start four calls that would not finish (one waiting for credit to
        send), lose the session with
        ``lose(sbx)``, and return what each call raised plus a later call's.
        """
        async with await create_sandbox(endpoint=self.unix) as sbx:
            handle = await sbx.process.stream_exec("hang")
            await handle.__anext__()
            calls = [
                asyncio.ensure_future(sbx.process.exec_("hang")),
                asyncio.ensure_future(handle.exit_code()),
                asyncio.ensure_future(sbx.fs.read("/dev/hang")),
                asyncio.ensure_future(sbx.fs.write("/dev/nogrant", _endless())),
            ]
            await asyncio.sleep(0.05)
            await lose(sbx)
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            try:
                await sbx.ping()
            except SandboxError as e:
                later = e
            return outcomes, later, sbx.closed

    def _check(self, result, words):
        outcomes, later, closed = result
        for outcome in outcomes + [later]:
            self.assertIsInstance(outcome, SandboxUnavailableError, repr(outcome)[:200])
            self.assertEqual(outcome.code, "SANDBOX_UNAVAILABLE")
            self.assertIn(words, outcome.message)
        self.assertTrue(closed)

    async def test_agent_lost(self):
        """
        ERROR SANDBOX_UNAVAILABLE on every stream and close 1011.
        """
        async def lose(sbx):
            self.call_reactor(self.daemon.lose_agent, sbx.id)

        result = await self.client(self._pending, lose)
        self._check(result, "")
        self.assertIn("agent was lost", result[1].message)

    async def test_destroyed(self):
        """
        sbx.destroy() deletes the sandbox; pending calls fail, nothing hangs,
        and a later call says the sandbox was destroyed.
        """
        async def lose(sbx):
            await sbx.destroy()

        result = await self.client(self._pending, lose)
        self._check(result, "")
        self.assertIn("the sandbox was destroyed", result[1].message)
        self.assertEqual(self.daemon.sandboxes, {})

    async def test_closed(self):
        """
        sbx.close() with calls in flight fails them.
        """
        async def lose(sbx):
            await sbx.close()

        self._check(await self.client(self._pending, lose), "session was closed")

    async def test_connection_dropped(self):
        """
        A connection cut without a close frame fails every pending call.
        """
        async def lose(sbx):
            self.call_reactor(self.daemon.stop)

        self._check(await self.client(self._pending, lose), "connection to the daemon was lost")


class CapabilityTests(FakeDaemonTestCase):
    """
    env, fs name operations, spawn, net.fetch and fs.watch: the requests the
    SDK sends and what it makes of the answers (against the fake agent).
    """

    async def test_env_and_fs_names(self):
        """
        env.* and fs.mkdir/remove/rename/list(depth) send their params and
        decode their results; errors are typed with the path.
        """
        from sandbox import FileError

        async def scenario():
            async with await create_sandbox(endpoint=self.unix) as sbx:
                await sbx.env.set({"A": 1}, B="two")
                got = (await sbx.env.get("A"), await sbx.env.get("Z", "dflt"))
                deleted = await sbx.env.delete("A", "Z")
                listed = await sbx.env.list()
                made = await sbx.fs.mkdir("/root/d", parents=True, mode=0o700)
                await sbx.fs.write("/root/f", "x")
                await sbx.fs.rename("/root/f", "/root/g", overwrite=False)
                await sbx.fs.remove("/root/g", recursive=True)
                try:
                    await sbx.fs.remove("/root/g")
                except FileError as e:
                    missing = e
                await sbx.fs.list("/root", depth=3)
                return got, deleted, listed, made, missing

        got, deleted, listed, made, missing = await self.client(scenario)
        self.assertEqual(got, ("1", "dflt"))
        self.assertEqual((deleted, listed), (["A"], {"B": "two"}))
        self.assertEqual(made, "/root/d")
        self.assertEqual((missing.code, missing.path), ("ENOENT", "/root/g"))
        calls = dict((m, p) for m, p in self.daemon.calls)
        self.assertEqual(calls["env.set"], {"vars": {"A": "1", "B": "two"}})
        self.assertEqual(calls["fs.mkdir"], {"path": "/root/d", "parents": True, "mode": 0o700})
        self.assertEqual(calls["fs.rename"], {"src": "/root/f", "dst": "/root/g", "overwrite": False})
        self.assertEqual(calls["fs.list"], {"path": "/root", "depth": 3})

    async def test_spawn(self):
        """
        spawn returns the pid from the first EVENT; write sends stdin as
        DATA; signal goes by pid; a command that cannot start raises.
        """
        from sandbox import NotFoundError, PathNotFoundError

        async def scenario():
            async with await create_sandbox(endpoint=self.unix) as sbx:
                proc = await sbx.process.spawn(["cat"])
                await proc.write("hello")
                echoed = (await proc.__anext__()).data
                await proc.resize(100, 40)
                await proc.signal("INT")
                code = await proc.exit_code()
                try:
                    await proc.signal()
                except NotFoundError as e:
                    gone = e.code
                try:
                    await sbx.process.spawn(["missing-binary"])
                except PathNotFoundError as e:
                    missing = e.path
                other = await sbx.process.spawn(["cat"])
                await other.write(b"abc")
                await other.close_stdin()
                rest = [e.raw async for e in other]
                return proc.pid, echoed, code, gone, missing, rest, await other.exit_code()

        pid, echoed, code, gone, missing, rest, other_code = await self.client(scenario)
        self.assertEqual((pid, echoed, code, gone, missing), (4242, "hello", 143, "ESRCH", "missing-binary"))
        self.assertEqual((rest, other_code), ([b"abc"], 0))
        self.assertEqual(self.daemon.spawn_stdin[:1], [b"hello"])
        signals = [p for m, p in self.daemon.calls if m == "process.signal"]
        self.assertEqual(signals[0], {"pid": 4242, "signal": "INT", "group": True})

    async def test_fetch_and_watch(self):
        """
        fetch sends method, headers and a binary body as base64 and returns
        a FetchResponse; watch yields WatchEvents after the ready EVENT and
        close cancels it.
        """

        async def scenario():
            async with await create_sandbox(endpoint=self.unix) as sbx:
                response = await sbx.net.fetch(
                    "http://127.0.0.1:9/x", method="POST", headers={"A": "b"}, body=b"\xff", max_body=10
                )
                async with sbx.fs.watch("/root", recursive=True) as watcher:
                    events = [await watcher.__anext__(), await watcher.__anext__()]
                return response, events

        response, events = await self.client(scenario)
        self.assertEqual((response.status, response.body, response.header("content-type")),
                         (201, b"fetched", "text/plain"))
        self.assertEqual(dict(self.daemon.calls)["net.fetch"], {
            "url": "http://127.0.0.1:9/x", "method": "POST", "headers": {"A": "b"},
            "body_base64": "/w==", "max_body": 10})
        self.assertEqual([(e.type, e.path, e.cookie) for e in events],
                         [("create", "/root/a", None), ("move_from", "/root/a", 7)])
        self.assertIn("fs.watch", [m for _, _, m in self.daemon.cancelled])
