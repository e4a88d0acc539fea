"""
Tests for L{sandboxd.runtimes._engine} and the engine requests of
L{sandboxd.runtimes.docker.DockerRuntime}, against a fake engine: a
twisted.web resource answering the Engine API's routes, reached through
L{treq.testing.StubTreq} or over a real Unix socket.
"""

import json
import os
import tempfile

from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from sandboxd.runtimes._engine import (
    DEFAULT_SOCKET,
    EngineClient,
    EngineError,
    path_part,
    socket_path,
)
from sandboxd.runtimes.docker import DockerRuntime
from sandboxd.runtimes.interface import (
    RuntimeFailure,
    RuntimeUnavailable,
    SandboxSpec,
    Started,
)

NETWORK = "sandboxd-net"
CONTAINER = "c0ffee" * 10 + "abcd"


class FakeEngine(Resource):
    """
    A Docker engine that answers what a test set up with L{route}, and
    records every request as (method, path, query dict, JSON body).
    Unknown routes answer 404 as the engine does.
    """

    isLeaf = True

    def __init__(self, api_version="1.41", min_version="1.12"):
        super().__init__()
        self.routes = {}
        self.requests = []
        self.pending = []
        self.route(
            "GET", "/version", 200, {"ApiVersion": api_version, "MinAPIVersion": min_version}
        )

    def route(self, method, path, code, body=None):
        """
        Answer C{method path} with C{code} and JSON C{body} (raw if bytes;
        no body if None); C{code} may instead be a callable taking the
        request and returning (code, body) or NOT_DONE_YET.
        """
        self.routes[(method, path)] = code if callable(code) else (code, body)

    def hold(self, method, path):
        """
        Leave C{method path} unanswered; the requests wait in C{pending}.
        """

        def held(request):
            self.pending.append(request)
            return NOT_DONE_YET

        self.route(method, path, held)

    def paths(self, method=None):
        return [path for m, path, _, _ in self.requests if method in (None, m)]

    def render(self, request):
        method, path = request.method.decode(), request.path.decode()
        raw = request.content.read()
        query = {k.decode(): v[0].decode() for k, v in request.args.items()}
        self.requests.append((method, path, query, json.loads(raw) if raw else None))
        answer = self.routes.get((method, path))
        if answer is None:
            answer = (404, {"message": f"page not found: {path}"})
        elif callable(answer):
            answer = answer(request)
            if answer is NOT_DONE_YET:
                return NOT_DONE_YET
        code, body = answer
        request.setResponseCode(code)
        if body is None:
            return b""
        if isinstance(body, bytes):
            return body
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(body).encode()


class Reactor(MemoryReactorClock):
    """
    A memory reactor whose system event triggers can also be removed.
    """

    def addSystemEventTrigger(self, phase, eventType, f, *args, **kw):
        super().addSystemEventTrigger(phase, eventType, f, *args, **kw)
        return (phase, eventType, (f, args, kw))

    def removeSystemEventTrigger(self, triggerID):
        phase, eventType, trigger = triggerID
        self.triggers[phase][eventType].remove(trigger)


def docker_engine(runtimes=("runc",), icc="false"):
    """
    A fake engine ready for L{DockerRuntime.prepare}: the given container
    runtimes, and the sandbox network with ICC as given.
    """
    engine = FakeEngine()
    engine.route("GET", "/v1.41/info", 200, {"Runtimes": {name: {} for name in runtimes}})
    engine.route(
        "GET",
        f"/v1.41/networks/{NETWORK}",
        200,
        {"Name": NETWORK, "Id": "n1", "Options": {"com.docker.network.bridge.enable_icc": icc}},
    )
    return engine


def running_engine(ip="172.30.0.5"):
    """
    A fake engine that creates, starts and inspects a container.
    """
    engine = docker_engine()
    engine.route("POST", "/v1.41/containers/create", 201, {"Id": CONTAINER, "Warnings": []})
    engine.route("POST", f"/v1.41/containers/{CONTAINER}/start", 204)
    engine.route(
        "GET",
        f"/v1.41/containers/{CONTAINER}/json",
        200,
        {
            "Id": CONTAINER,
            "State": {"Running": True, "ExitCode": 0, "Error": ""},
            "NetworkSettings": {"Networks": {NETWORK: {"IPAddress": ip}}},
        },
    )
    engine.route("DELETE", f"/v1.41/containers/{CONTAINER}", 204)
    return engine


def spec(**kwargs):
    values = dict(
        sandbox_id="sbx-1234",
        image="sandbox-base:latest",
        runtime="docker",
        memory=256 * 1024 * 1024,
        cpu=0.5,
        storage=64 * 1024 * 1024,
        secret="s3cret",
    )
    values.update(kwargs)
    return SandboxSpec(**values)


class ClientTests(TestCase):
    """
    L{EngineClient}: versions, answers, errors and timeouts.
    """

    def client(self, engine, timeout=5):
        self.clock = MemoryReactorClock()
        self.stub = StubTreq(engine)
        return EngineClient(self.clock, self.stub, timeout=timeout)

    def test_negotiates_version_once(self):
        """
        The first call asks GET /version (unversioned); every call then goes
        to the /v1.41 prefix without asking again.
        """
        engine = FakeEngine()
        engine.route("GET", "/v1.41/info", 200, {"ID": "x"})
        client = self.client(engine)
        self.assertEqual({"ID": "x"}, self.successResultOf(client.call("GET", "/info")))
        self.assertEqual({"ID": "x"}, self.successResultOf(client.call("GET", "/info")))
        self.assertEqual(["/version", "/v1.41/info", "/v1.41/info"], engine.paths())

    def test_concurrent_first_calls_negotiate_once(self):
        """
        Calls made while the version question is pending wait for its
        answer instead of asking again.
        """
        engine = FakeEngine()
        engine.hold("GET", "/version")
        engine.route("GET", "/v1.41/info", 200, {})
        client = self.client(engine)
        first, second = client.call("GET", "/info"), client.call("GET", "/info")
        self.assertNoResult(first)
        [request] = engine.pending
        request.setHeader(b"Content-Type", b"application/json")
        request.write(json.dumps({"ApiVersion": "1.41"}).encode())
        request.finish()
        self.stub.flush()
        self.assertEqual({}, self.successResultOf(first))
        self.assertEqual({}, self.successResultOf(second))
        self.assertEqual(1, engine.paths().count("/version"))

    def test_older_engine(self):
        """
        An engine older than 1.41 is spoken to in its own version.
        """
        engine = FakeEngine(api_version="1.30")
        engine.route("GET", "/v1.30/info", 200, {})
        client = self.client(engine)
        self.successResultOf(client.call("GET", "/info"))
        self.assertEqual((1, 30), client.version)

    def test_newer_engine(self):
        """
        A newer engine is spoken to in 1.41.
        """
        engine = FakeEngine(api_version="1.47", min_version="1.24")
        engine.route("GET", "/v1.41/info", 200, {})
        self.successResultOf(self.client(engine).call("GET", "/info"))
        self.assertIn("/v1.41/info", engine.paths())

    def test_engine_without_our_version(self):
        """
        An engine that no longer speaks 1.41 is spoken to in its oldest
        version.
        """
        engine = FakeEngine(api_version="1.52", min_version="1.44")
        engine.route("GET", "/v1.44/info", 200, {})
        self.successResultOf(self.client(engine).call("GET", "/info"))
        self.assertIn("/v1.44/info", engine.paths())

    def test_too_old_engine(self):
        """
        An engine older than 1.25 is refused, naming both versions, and no
        versioned request is made.
        """
        engine = FakeEngine(api_version="1.24")
        failure = self.failureResultOf(self.client(engine).call("GET", "/info"), RuntimeUnavailable)
        self.assertEqual(
            "the Docker engine speaks API 1.24; sandboxd needs 1.25 or newer",
            failure.getErrorMessage(),
        )
        self.assertEqual(["/version"], engine.paths())

    def test_failed_negotiation_is_retried(self):
        """
        When the version question fails, the next call asks again.
        """
        engine = FakeEngine()
        engine.route("GET", "/version", 500, {"message": "starting up"})
        engine.route("GET", "/v1.41/info", 200, {})
        client = self.client(engine)
        self.failureResultOf(client.call("GET", "/info"), EngineError)
        engine.route("GET", "/version", 200, {"ApiVersion": "1.41"})
        self.successResultOf(client.call("GET", "/info"))
        self.assertEqual(["/version", "/version", "/v1.41/info"], engine.paths())

    def test_query_and_body(self):
        """
        Query parameters reach the engine, and the body travels as JSON with
        its content type.
        """
        engine = FakeEngine()
        seen = []

        def create(request):
            seen.append(request.getHeader(b"content-type"))
            return 201, {"Id": "abc"}

        engine.route("POST", "/v1.41/containers/create", create)
        result = self.client(engine).call(
            "POST", "/containers/create", params={"name": "x"}, body={"Image": "i"}
        )
        self.assertEqual({"Id": "abc"}, self.successResultOf(result))
        self.assertEqual(
            ("POST", "/v1.41/containers/create", {"name": "x"}, {"Image": "i"}),
            engine.requests[-1],
        )
        self.assertEqual([b"application/json"], seen)

    def test_empty_answer(self):
        """
        A 204 answer fires with None.
        """
        engine = FakeEngine()
        engine.route("POST", "/v1.41/containers/x/start", 204)
        self.assertIsNone(
            self.successResultOf(self.client(engine).call("POST", "/containers/x/start"))
        )

    def test_error_message(self):
        """
        An error answer fails with L{EngineError} carrying the status and
        the engine's own message.
        """
        engine = FakeEngine()
        engine.route("GET", "/v1.41/info", 500, {"message": "driver failed: boom"})
        error = self.failureResultOf(self.client(engine).call("GET", "/info"), EngineError).value
        self.assertEqual((500, "driver failed: boom"), (error.status, error.message))
        self.assertEqual("driver failed: boom", str(error))
        self.assertIsInstance(error, RuntimeFailure)

    def test_error_without_json(self):
        """
        An error answer that is not JSON carries its text, or the status
        when empty.
        """
        engine = FakeEngine()
        engine.route("GET", "/v1.41/info", 502, b"bad gateway\n")
        engine.route("GET", "/v1.41/ping", 503)
        client = self.client(engine)
        error = self.failureResultOf(client.call("GET", "/info"), EngineError).value
        self.assertEqual((502, "bad gateway"), (error.status, error.message))
        error = self.failureResultOf(client.call("GET", "/ping"), EngineError).value
        self.assertEqual("HTTP status 503", error.message)

    def test_invalid_json(self):
        """
        A success answer that is not JSON is a L{RuntimeFailure} naming
        the request.
        """
        engine = FakeEngine()
        engine.route("GET", "/v1.41/info", 200, b"<html>")
        failure = self.failureResultOf(self.client(engine).call("GET", "/info"), RuntimeFailure)
        self.assertIn("GET /v1.41/info", failure.getErrorMessage())
        self.assertIn("not JSON", failure.getErrorMessage())

    def test_body_limit(self):
        """
        An answer larger than the body limit is refused.
        """
        engine = FakeEngine()
        engine.route("GET", "/v1.41/containers/json", 200, [{"Id": "x" * 100}] * 20)
        client = EngineClient(MemoryReactorClock(), StubTreq(engine), body_limit=1000)
        failure = self.failureResultOf(client.call("GET", "/containers/json"), RuntimeFailure)
        self.assertIn("exceeds 1000 bytes", failure.getErrorMessage())

    def test_timeout_before_answer(self):
        """
        A call the engine does not answer within the timeout fails with
        L{RuntimeUnavailable} naming the request, and drops its
        connection.
        """
        engine = FakeEngine()
        engine.hold("POST", "/v1.41/containers/create")
        client = self.client(engine, timeout=5)
        d = client.call("POST", "/containers/create", body={})
        [request] = engine.pending
        lost = request.notifyFinish()
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        failure = self.failureResultOf(d, RuntimeUnavailable)
        self.assertEqual(
            "cannot reach the Docker engine: no answer to POST /v1.41/containers/create"
            " in 5 s (the engine)",
            failure.getErrorMessage(),
        )
        self.stub.flush()
        self.failureResultOf(lost)

    def test_timeout_during_body(self):
        """
        The timeout also bounds reading the answer: a body that stops
        arriving fails the call and drops the connection.
        """
        engine = FakeEngine()
        engine.hold("GET", "/v1.41/containers/json")
        client = self.client(engine, timeout=5)
        d = client.call("GET", "/containers/json")
        [request] = engine.pending
        lost = request.notifyFinish()
        request.setHeader(b"Content-Length", b"100")
        request.write(b'[{"Id": ')
        self.stub.flush()
        self.assertNoResult(d)
        self.clock.advance(5)
        self.assertIn("no answer", self.failureResultOf(d, RuntimeUnavailable).getErrorMessage())
        self.stub.flush()
        self.failureResultOf(lost)

    def test_version_timeout(self):
        """
        The version question is bounded by the timeout too.
        """
        engine = FakeEngine()
        engine.hold("GET", "/version")
        client = self.client(engine, timeout=3)
        d = client.call("GET", "/info")
        self.clock.advance(3)
        self.assertIn(
            "no answer to GET /version in 3 s",
            self.failureResultOf(d, RuntimeUnavailable).getErrorMessage(),
        )

    def test_close_keeps_errors(self):
        """
        close() waits for running calls without taking their failures from
        the callers.
        """
        engine = FakeEngine()
        engine.hold("GET", "/v1.41/info")
        client = self.client(engine)
        d = client.call("GET", "/info")
        closed = client.close()
        self.assertNoResult(closed)
        request = engine.pending[0]
        request.setResponseCode(500)
        request.write(b'{"message": "boom"}')
        request.finish()
        self.stub.flush()
        self.assertIsNone(self.successResultOf(closed))
        self.assertEqual("boom", self.failureResultOf(d, EngineError).value.message)

    def test_no_connection(self):
        """
        A request that cannot be sent fails with L{RuntimeUnavailable}
        saying the engine cannot be reached, and why.
        """

        class Refusing:
            def request(self, method, url, **kwargs):
                return Deferred.fromCoroutine(self.refuse())

            async def refuse(self):
                raise ConnectionRefusedError("Connection refused")

        client = EngineClient(MemoryReactorClock(), Refusing(), address="unix:///x.sock")
        failure = self.failureResultOf(client.call("GET", "/info"), RuntimeUnavailable)
        self.assertEqual(
            "cannot reach the Docker engine: Connection refused (unix:///x.sock)",
            failure.getErrorMessage(),
        )


class SocketPathTests(TestCase):
    """
    Where the engine's socket is.
    """

    def test_default(self):
        """
        Without DOCKER_HOST the engine is at /var/run/docker.sock.
        """
        self.assertEqual("/var/run/docker.sock", DEFAULT_SOCKET)
        self.assertEqual(DEFAULT_SOCKET, socket_path({}))
        self.assertEqual(DEFAULT_SOCKET, socket_path({"DOCKER_HOST": ""}))

    def test_unix_docker_host(self):
        """
        DOCKER_HOST=unix://PATH names the socket.
        """
        self.assertEqual("/run/user/1000/docker.sock", socket_path(
            {"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}
        ))

    def test_tcp_docker_host(self):
        """
        A TCP (or SSH) DOCKER_HOST is refused, saying what is supported.
        """
        for host in ("tcp://10.0.0.1:2376", "ssh://me@box", "unix://"):
            with self.assertRaises(RuntimeUnavailable) as caught:
                socket_path({"DOCKER_HOST": host})
            self.assertIn(f"DOCKER_HOST={host} is not supported", str(caught.exception))
            self.assertIn("unix://", str(caught.exception))

    def test_path_part(self):
        """
        Names in paths are escaped so they cannot leave their segment.
        """
        self.assertEqual("sandboxd-net", path_part("sandboxd-net"))
        self.assertEqual("..%2Finfo%3Fx%3D1", path_part("../info?x=1"))


class UnixSocketTests(TestCase):
    """
    L{EngineClient.over_unix_socket} against a fake engine listening on a
    real Unix socket.
    """

    def setUp(self):
        self.engine = FakeEngine()
        self.engine.route("GET", "/v1.41/info", 200, {"ok": True})
        self.connections = []
        self.closed = []
        site = Site(self.engine)
        build = site.buildProtocol

        def buildProtocol(addr):
            protocol = build(addr)
            lost = protocol.connectionLost
            self.connections.append(protocol)

            def connectionLost(reason):
                self.closed.append(protocol)
                return lost(reason)

            protocol.connectionLost = connectionLost
            return protocol

        site.buildProtocol = buildProtocol
        directory = tempfile.mkdtemp()
        self.path = os.path.join(directory, "docker.sock")
        self.port = reactor.listenUNIX(self.path, site)
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(self.port.stopListening)

    async def wait_closed(self, n):
        for _ in range(200):
            if len(self.closed) >= n:
                return
            d = Deferred()
            reactor.callLater(0.01, d.callback, None)
            await d
        self.fail(f"{n} connections should have closed, {len(self.closed)} did")

    async def test_reuses_connection(self):
        """
        Successive calls share one connection to the socket; close() closes
        it, and the server sees it go.
        """
        client = EngineClient.over_unix_socket(reactor, self.path)
        for _ in range(3):
            self.assertEqual({"ok": True}, await client.call("GET", "/info"))
        self.assertEqual(1, len(self.connections))
        self.assertEqual(f"unix://{self.path}", client.address)
        await client.close()
        await self.wait_closed(1)

    async def test_query_and_body(self):
        """
        Over the socket too, query parameters are encoded and the JSON body
        arrives with its content type and length.
        """
        seen = []

        def create(request):
            seen.append(
                (request.getHeader(b"content-type"), request.getHeader(b"content-length"))
            )
            return 201, {"Id": "abc"}

        self.engine.route("POST", "/v1.41/containers/create", create)
        client = EngineClient.over_unix_socket(reactor, self.path)
        self.addCleanup(client.close)
        body = {"Image": "i", "Labels": {"k": "v w"}}
        answer = await client.call(
            "POST", "/containers/create", params={"name": "a b&c"}, body=body
        )
        self.assertEqual({"Id": "abc"}, answer)
        self.assertEqual(
            ("POST", "/v1.41/containers/create", {"name": "a b&c"}, body),
            self.engine.requests[-1],
        )
        self.assertEqual([(b"application/json", str(len(json.dumps(body))).encode())], seen)

    async def test_concurrent_calls(self):
        """
        Concurrent calls open connections as needed and all succeed.
        """
        client = EngineClient.over_unix_socket(reactor, self.path, max_persistent=2)
        self.addCleanup(client.close)
        await client.negotiate()
        results = await Deferred.fromCoroutine(self.gather(client, 4))
        self.assertEqual([{"ok": True}] * 4, results)
        self.assertGreater(len(self.connections), 1)

    async def gather(self, client, n):
        calls = [client.call("GET", "/info") for _ in range(n)]
        return [await call for call in calls]

    async def test_missing_socket(self):
        """
        A socket path where nothing listens fails with
        L{RuntimeUnavailable} naming the socket.
        """
        missing = self.path + ".missing"
        client = EngineClient.over_unix_socket(reactor, missing)
        with self.assertRaises(RuntimeUnavailable) as caught:
            await client.call("GET", "/info")
        message = str(caught.exception)
        self.assertTrue(message.startswith("cannot reach the Docker engine: "), message)
        self.assertIn(f"unix://{missing}", message)
        await client.close()

    async def test_close_waits_for_running_calls(self):
        """
        close() fires only once the calls under way have their answer.
        """
        self.engine.hold("GET", "/v1.41/containers/json")
        client = EngineClient.over_unix_socket(reactor, self.path)
        await client.negotiate()
        call = client.call("GET", "/containers/json")
        while not self.engine.pending:
            d = Deferred()
            reactor.callLater(0.01, d.callback, None)
            await d
        closed = client.close()
        self.assertNoResult(closed)
        request = self.engine.pending[0]
        request.setResponseCode(200)
        request.write(b"[]")
        request.finish()
        self.assertEqual([], await call)
        await closed
        await self.wait_closed(len(self.connections))


class RuntimeTests(TestCase):
    """
    The engine requests L{DockerRuntime} makes, and how it maps the
    answers.
    """

    def runtime(self, engine, **kwargs):
        self.clock = Reactor()
        self.stub = StubTreq(engine)
        return DockerRuntime(self.clock, bridge_name=NETWORK, http=self.stub, **kwargs)

    def turn(self, d):
        """
        Let the reactor take its pass over I/O that start() and destroy()
        wait for; return C{d}.
        """
        self.clock.advance(0)
        return d

    def test_waits_for_io(self):
        """
        start() and destroy() send nothing to the engine in the caller's
        turn, only once the reactor has had its next pass over I/O.
        """
        engine = running_engine()
        runtime = self.runtime(engine)
        self.successResultOf(runtime.prepare(["docker"]))
        sent = len(engine.requests)
        started, destroyed = runtime.start(spec()), runtime.destroy("other")
        self.assertEqual(sent, len(engine.requests))
        self.assertNoResult(started)
        self.clock.advance(0)
        self.assertIsInstance(self.successResultOf(started), Started)
        self.assertIsNone(self.successResultOf(destroyed))
        self.assertIn(("DELETE", "/v1.41/containers/other"), [r[:2] for r in engine.requests])

    def test_create_body(self):
        """
        The create request names the container and carries every
        hardening setting, the labels, the agent's environment and the
        network.
        """
        engine = running_engine()
        runtime = self.runtime(engine)
        wanted = spec(
            runtime="docker+gvisor", profile="small", owner="/var/lib/x", labels={"team": "qa"}
        )
        started = self.successResultOf(self.turn(runtime.start(wanted)))
        self.assertEqual(Started("sbx-1234", CONTAINER, "tcp:172.30.0.5:7070", "172.30.0.5"), started)
        [create] = [r for r in engine.requests if r[1] == "/v1.41/containers/create"]
        _, _, query, body = create
        self.assertEqual({"name": "sandboxd-sbx-1234"}, query)
        self.assertEqual(
            {
                "ReadonlyRootfs": True,
                "Tmpfs": {
                    "/tmp": "rw,noexec,nosuid,nodev,size=100m",
                    "/root": "rw,exec,nosuid,nodev,size=67108864,mode=0700",
                },
                "CapDrop": ["ALL"],
                # gVisor: for the agent's PID 1 alone (agent/init.py
                # leave_root); its server drops them for good.
                "CapAdd": ["KILL", "SETGID", "SETUID", "SETPCAP"],
                "SecurityOpt": ["no-new-privileges"],
                # gVisor: the process cap is enforced inside the Sentry;
                # the host cgroup leaves room for its threads.
                "PidsLimit": 3072,
                "Ulimits": [{"Name": "nproc", "Soft": 256, "Hard": 256}],
                "Memory": 268435456,
                "MemorySwap": 268435456,
                "NanoCpus": 500_000_000,
                "NetworkMode": NETWORK,
                "Runtime": "runsc",
                "Init": False,
                "AutoRemove": False,
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}},
            },
            body["HostConfig"],
        )
        self.assertEqual("sandbox-base:latest", body["Image"])
        self.assertEqual("sbx-1234", body["Hostname"])
        self.assertEqual("SIGKILL", body["StopSignal"])
        self.assertEqual(["SANDBOX_AGENT_SECRET=s3cret", "SANDBOX_AGENT_PORT=7070"], body["Env"])
        self.assertEqual(
            {
                "sandboxd.managed": "1",
                "sandboxd.id": "sbx-1234",
                "sandboxd.profile": "small",
                "sandboxd.owner": "/var/lib/x",
                "sandboxd.label.team": "qa",
            },
            body["Labels"],
        )
        self.assertEqual({"EndpointsConfig": {NETWORK: {}}}, body["NetworkingConfig"])
        self.assertFalse(body["Tty"])
        self.assertFalse(body["OpenStdin"])

    def test_plain_docker_uses_default_runtime(self):
        """
        The docker runtime leaves the engine's default OCI runtime (runc).
        """
        engine = running_engine()
        self.successResultOf(self.turn(self.runtime(engine).start(spec())))
        body = engine.requests[1][3]
        self.assertNotIn("Runtime", body["HostConfig"])

    def test_start_is_three_requests(self):
        """
        A start is create, start, inspect: nothing more.
        """
        engine = running_engine()
        self.successResultOf(self.turn(self.runtime(engine).start(spec())))
        self.assertEqual(
            [
                ("GET", "/version"),
                ("POST", "/v1.41/containers/create"),
                ("POST", f"/v1.41/containers/{CONTAINER}/start"),
                ("GET", f"/v1.41/containers/{CONTAINER}/json"),
            ],
            [(m, p) for m, p, _, _ in engine.requests],
        )

    def test_missing_image(self):
        """
        A 404 'No such image' on create is L{RuntimeUnavailable} telling to
        build the image; nothing is removed.
        """
        engine = running_engine()
        engine.route(
            "POST", "/v1.41/containers/create", 404, {"message": "No such image: nope:latest"}
        )
        started = self.turn(self.runtime(engine).start(spec(image="nope:latest")))
        failure = self.failureResultOf(started)
        self.assertIs(RuntimeUnavailable, failure.type)
        self.assertEqual(
            "image nope:latest not found: build it with make images", failure.getErrorMessage()
        )
        self.assertEqual([], engine.paths("DELETE"))

    def test_other_404_on_create(self):
        """
        Another 404 on create (a missing network) is a plain
        L{RuntimeFailure} with the engine's message.
        """
        engine = running_engine()
        engine.route(
            "POST", "/v1.41/containers/create", 404, {"message": "network sandboxd-net not found"}
        )
        failure = self.failureResultOf(self.turn(self.runtime(engine).start(spec())))
        self.assertIs(RuntimeFailure, failure.type)
        self.assertEqual(
            "cannot create sandbox sbx-1234: network sandboxd-net not found",
            failure.getErrorMessage(),
        )

    def test_conflict_on_create(self):
        """
        A 409 name conflict fails with the engine's message and removes
        nothing: the container with that name is not ours to remove.
        """
        engine = running_engine()
        engine.route(
            "POST",
            "/v1.41/containers/create",
            409,
            {"message": 'Conflict. The container name "/sandboxd-sbx-1234" is already in use'},
        )
        started = self.turn(self.runtime(engine).start(spec()))
        failure = self.failureResultOf(started, RuntimeFailure)
        self.assertIn("Conflict. The container name", failure.getErrorMessage())
        self.assertEqual([], engine.paths("DELETE"))

    def test_failed_start_removes(self):
        """
        When start answers 500, the runtime fails with the engine's message
        and force-removes the container with its volumes.
        """
        engine = running_engine()
        engine.route(
            "POST",
            f"/v1.41/containers/{CONTAINER}/start",
            500,
            {"message": 'exec: "/no/such/entrypoint": stat /no/such/entrypoint: no such file'},
        )
        started = self.turn(self.runtime(engine).start(spec()))
        failure = self.failureResultOf(started, RuntimeFailure)
        self.assertEqual(
            'cannot start sandbox sbx-1234: exec: "/no/such/entrypoint": '
            "stat /no/such/entrypoint: no such file",
            failure.getErrorMessage(),
        )
        deletes = [(p, q) for m, p, q, _ in engine.requests if m == "DELETE"]
        self.assertEqual([(f"/v1.41/containers/{CONTAINER}", {"force": "1", "v": "1"})], deletes)

    def test_stopped_at_once(self):
        """
        A container that is not running once started (or has no address)
        is removed, and the failure gives its exit code and error.
        """
        engine = running_engine()
        engine.route(
            "GET",
            f"/v1.41/containers/{CONTAINER}/json",
            200,
            {
                "State": {"Running": False, "ExitCode": 127, "Error": "oops"},
                "NetworkSettings": {"Networks": {}},
            },
        )
        started = self.turn(self.runtime(engine).start(spec()))
        failure = self.failureResultOf(started, RuntimeFailure)
        self.assertEqual(
            "sandbox sbx-1234 stopped at once (exit code 127) oops", failure.getErrorMessage()
        )
        self.assertEqual([f"/v1.41/containers/{CONTAINER}"], engine.paths("DELETE"))

    def test_create_timeout_removes_by_name(self):
        """
        A create the engine does not answer in time fails with
        L{RuntimeUnavailable}, and the container the engine may yet have
        made is removed by name.
        """
        engine = running_engine()
        engine.hold("POST", "/v1.41/containers/create")
        engine.route("DELETE", "/v1.41/containers/sandboxd-sbx-1234", 404, {"message": "gone"})
        runtime = self.runtime(engine, timeout=10)
        d = self.turn(runtime.start(spec()))
        self.clock.advance(10)
        self.stub.flush()
        failure = self.failureResultOf(d, RuntimeUnavailable)
        self.assertEqual(
            "cannot create sandbox sbx-1234: cannot reach the Docker engine: no answer to"
            " POST /v1.41/containers/create in 10 s (the engine)",
            failure.getErrorMessage(),
        )
        self.assertEqual(["/v1.41/containers/sandboxd-sbx-1234"], engine.paths("DELETE"))

    def test_starts_are_bounded(self):
        """
        At most max_starting creations are in flight; the next starts when
        one finishes.
        """
        engine = running_engine()
        engine.hold("POST", "/v1.41/containers/create")
        runtime = self.runtime(engine, max_starting=2)
        starts = [runtime.start(spec(sandbox_id=f"sbx-{i}")) for i in range(3)]
        self.clock.advance(0)
        self.assertEqual(2, len(engine.pending))
        request = engine.pending.pop(0)
        request.setResponseCode(201)
        request.write(json.dumps({"Id": CONTAINER}).encode())
        request.finish()
        self.stub.flush()
        self.assertIsInstance(self.successResultOf(starts[0]), Started)
        self.assertEqual(2, len(engine.pending))
        self.assertNoResult(starts[2])
        self.assertEqual(
            ["sandboxd-sbx-0", "sandboxd-sbx-1", "sandboxd-sbx-2"],
            [q["name"] for m, p, q, _ in engine.requests if p.endswith("/create")],
        )

    def test_destroy(self):
        """
        destroy() force-removes with volumes; 404 and a removal already in
        progress count as done.
        """
        engine = running_engine()
        runtime = self.runtime(engine)
        self.assertIsNone(self.successResultOf(self.turn(runtime.destroy(CONTAINER))))
        self.assertEqual({"force": "1", "v": "1"}, engine.requests[-1][2])
        engine.route("DELETE", f"/v1.41/containers/{CONTAINER}", 404, {"message": "No such"})
        self.assertIsNone(self.successResultOf(self.turn(runtime.destroy(CONTAINER))))
        engine.route(
            "DELETE",
            f"/v1.41/containers/{CONTAINER}",
            409,
            {"message": "removal of container x is already in progress"},
        )
        self.assertIsNone(self.successResultOf(self.turn(runtime.destroy(CONTAINER))))
        self.assertEqual(3, len(engine.paths("DELETE")))

    def test_destroy_failures(self):
        """
        Any other refusal to remove is a L{RuntimeFailure} with the engine's
        message.
        """
        engine = running_engine()
        runtime = self.runtime(engine)
        for code, message in [(409, "container is paused"), (500, "device busy")]:
            engine.route("DELETE", f"/v1.41/containers/{CONTAINER}", code, {"message": message})
            failure = self.failureResultOf(self.turn(runtime.destroy(CONTAINER)), RuntimeFailure)
            self.assertEqual(
                f"cannot remove container {CONTAINER}: {message}", failure.getErrorMessage()
            )

    def test_list_owned(self):
        """
        list_owned() asks for all containers with the managed label and
        returns their ids and labels.
        """
        engine = FakeEngine()
        engine.route(
            "GET",
            "/v1.41/containers/json",
            200,
            [{"Id": "a", "Labels": {"sandboxd.id": "x"}}, {"Id": "b", "Labels": None}],
        )
        owned = self.successResultOf(self.runtime(engine).list_owned())
        self.assertEqual([("a", {"sandboxd.id": "x"}), ("b", {})], owned)
        query = engine.requests[-1][2]
        self.assertEqual("1", query["all"])
        self.assertEqual({"label": ["sandboxd.managed=1"]}, json.loads(query["filters"]))

    def test_stats(self):
        """
        stats() asks for one sample, one-shot only when told, and fails
        with the engine's message for an unknown container.
        """
        engine = FakeEngine()
        engine.route("GET", "/v1.41/containers/abc/stats", 200, {"pids_stats": {"current": 3}})
        runtime = self.runtime(engine)
        self.assertEqual(
            {"pids_stats": {"current": 3}}, self.successResultOf(runtime.stats("abc"))
        )
        self.assertEqual({"stream": "0"}, engine.requests[-1][2])
        self.successResultOf(runtime.stats("abc", one_shot=True))
        self.assertEqual({"stream": "0", "one-shot": "1"}, engine.requests[-1][2])
        engine.route(
            "GET", "/v1.41/containers/zzz/stats", 404, {"message": "No such container: zzz"}
        )
        failure = self.failureResultOf(runtime.stats("zzz"), RuntimeFailure)
        self.assertEqual("No such container: zzz", failure.getErrorMessage())

    def test_prepare_creates_network(self):
        """
        A missing network is created as a labelled bridge without ICC.
        """
        engine = docker_engine()
        del engine.routes[("GET", f"/v1.41/networks/{NETWORK}")]
        engine.route("POST", "/v1.41/networks/create", 201, {"Id": "n2"})
        self.successResultOf(self.runtime(engine).prepare(["docker"]))
        self.assertEqual(
            {
                "Name": NETWORK,
                "Driver": "bridge",
                "Options": {"com.docker.network.bridge.enable_icc": "false"},
                "Labels": {"sandboxd.managed": "1"},
                "CheckDuplicate": True,
            },
            engine.requests[-1][3],
        )

    def test_prepare_network_race(self):
        """
        When another daemon creates the network between our look and our
        create (409), the runtime looks again and uses it.
        """
        engine = docker_engine()
        network = engine.routes.pop(("GET", f"/v1.41/networks/{NETWORK}"))
        engine.route("GET", f"/v1.41/networks/{NETWORK}", 404, {"message": "not found"})

        def conflict(request):
            engine.routes[("GET", f"/v1.41/networks/{NETWORK}")] = network
            return 409, {"message": "network with name sandboxd-net already exists"}

        engine.route("POST", "/v1.41/networks/create", conflict)
        self.successResultOf(self.runtime(engine).prepare(["docker"]))
        self.assertEqual(
            [f"/v1.41/networks/{NETWORK}", "/v1.41/networks/create", f"/v1.41/networks/{NETWORK}"],
            engine.paths()[2:],
        )

    def test_prepare_ignores_id_match(self):
        """
        A network the engine finds by id prefix rather than by name is not
        ours: the runtime creates its own.
        """
        engine = docker_engine()
        engine.route("GET", f"/v1.41/networks/{NETWORK}", 200, {"Name": "other", "Options": {}})
        engine.route("POST", "/v1.41/networks/create", 201, {"Id": "n2"})
        self.successResultOf(self.runtime(engine).prepare(["docker"]))
        self.assertEqual("/v1.41/networks/create", engine.paths()[-1])

    def test_prepare_refuses_icc(self):
        """
        An existing network with ICC on is refused.
        """
        engine = docker_engine(icc="true")
        failure = self.failureResultOf(
            self.runtime(engine).prepare(["docker"]), RuntimeUnavailable
        )
        self.assertIn("exists without com.docker.network.bridge.enable_icc=false",
                      failure.getErrorMessage())

    def test_prepare_gvisor(self):
        """
        docker+gvisor is ready when /info lists runsc.
        """
        engine = docker_engine(runtimes=("runc", "runsc"))
        self.assertIsNone(
            self.successResultOf(self.runtime(engine).prepare(["docker", "docker+gvisor"]))
        )

    def test_prepare_engine_error(self):
        """
        An engine that answers /info with an error is unavailable, with
        its message.
        """
        engine = docker_engine()
        engine.route("GET", "/v1.41/info", 500, {"message": "daemon is shutting down"})
        failure = self.failureResultOf(
            self.runtime(engine).prepare(["docker"]), RuntimeUnavailable
        )
        self.assertEqual(
            "cannot reach the Docker engine: daemon is shutting down", failure.getErrorMessage()
        )

    def test_tcp_docker_host(self):
        """
        With a TCP DOCKER_HOST and no socket given, prepare() fails with
        L{RuntimeUnavailable} saying so.
        """
        self.patch(os, "environ", {"DOCKER_HOST": "tcp://127.0.0.1:2375"})
        runtime = DockerRuntime(Reactor())
        failure = self.failureResultOf(runtime.prepare(["docker"]), RuntimeUnavailable)
        self.assertIn("DOCKER_HOST=tcp://127.0.0.1:2375 is not supported",
                      failure.getErrorMessage())

    def test_shutdown_closes(self):
        """
        The runtime closes its connections before the reactor shuts down,
        and stop() removes that trigger.
        """
        runtime = self.runtime(running_engine())
        self.successResultOf(runtime.prepare(["docker"]))
        self.assertEqual(1, len(self.clock.triggers["before"]["shutdown"]))
        self.successResultOf(runtime.stop())
        self.assertEqual([], self.clock.triggers["before"]["shutdown"])
