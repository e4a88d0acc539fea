"""
Unit tests of the HTTP routes (sandboxd/api/app.py) over a fake manager.

The routes' logic (validation, status codes, error shapes) is tested here
with treq's StubTreq; tests/test_e2e.py drives the same routes through a real
daemon and real containers.
"""

import json

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.test.requesthelper import DummyRequest

from sandboxd.api.app import SandboxAPI
from sandboxd.api.creating import body_from_query
from sandboxd.api.errors import ApiError
from sandboxd.config import parse_config
from sandboxd.manager import AtCapacity, UnknownProfile
from sandboxd.runtimes.interface import RuntimeFailure
from sandboxd.lifecycle import Lifecycle
from sandboxd.sandbox import Sandbox, State


class FakeManager:
    """
    Records create calls and answers from a dict of sandboxes.
    """

    def __init__(self, config):
        self.profiles = dict(config.profiles)
        self.sandboxes = {}
        self.created = []
        self.fail_with = None
        self.started = 0.0
        self.pools = FakePools(self.profiles)
        self.lifecycle = Lifecycle()

    async def create(self, **kwargs):
        self.created.append(kwargs)
        if self.fail_with is not None:
            raise self.fail_with
        profile = self.profiles[kwargs["profile"] or "default"]
        sandbox = Sandbox(
            id=f"sbx-{len(self.created):08x}",
            profile=profile.name,
            image=profile.image,
            runtime=profile.runtime,
            memory=kwargs["memory"] or profile.memory,
            cpu=kwargs["cpu"] or profile.cpu,
            storage=kwargs["storage"] or profile.storage,
            secret="s",
            ttl=kwargs["ttl"],
            labels=kwargs["labels"],
            identity=kwargs.get("identity", ""),
            created=float(len(self.created)),
            state=State.RUNNING,
            method="warm",
        )
        self.sandboxes[sandbox.id] = sandbox
        return sandbox

    def get(self, sandbox_id):
        return self.sandboxes.get(sandbox_id)

    def list(self, labels=None):
        wanted = labels or {}
        return [
            s
            for s in self.sandboxes.values()
            if all(s.labels.get(k) == v for k, v in wanted.items())
        ]

    def destroy(self, sandbox_id, reason="DELETE"):
        return self.sandboxes.pop(sandbox_id, None) is not None

    def update(self, sandbox, ttl=None, labels=None, expires_at=None):
        if expires_at is not None:
            sandbox.expires_at = expires_at
        if ttl is not None:
            sandbox.ttl = ttl
        if labels is not None:
            sandbox.labels = labels

    def health(self):
        return {"sandboxes": len(self.sandboxes), "pool": {}}


class FakePools:
    """
    Records resize and flush calls like PoolSet.
    """

    def __init__(self, names):
        self.pools = {name: None for name in names}
        self.resized = []
        self.flushed = []

    def status(self):
        return {name: {"target": 2, "ready": 2} for name in self.pools}

    def resize(self, name, count):
        self.resized.append((name, count))

    def flush(self, name):
        self.flushed.append(name)
        return 2


class APITests(TestCase):
    """
    The routes of docs/api.md.
    """

    def setUp(self):
        self.config = parse_config(
            '[limits]\nmax_memory = "1g"\nmax_cpu = 2.0\nmax_ttl = 600\n'
        )
        self.manager = FakeManager(self.config)
        self.clock = Clock()
        self.api = api = SandboxAPI(self.manager, self.config, self.clock)
        self.treq = StubTreq(api.resource())

    async def call(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (
            json.dumps(body).encode() if body is not None else None
        )
        response = await self.treq.request(method, "http://sandboxd" + path, data=data)
        content = await response.content()
        return response, json.loads(content) if content else None

    async def assertError(self, method, path, body, status, code, raw=None):
        response, parsed = await self.call(method, path, body, raw)
        self.assertEqual(response.code, status, parsed)
        self.assertEqual(parsed["error"]["code"], code)
        self.assertTrue(parsed["error"]["message"])
        return response, parsed

    async def test_create_returns_201_with_the_sandbox(self):
        """
        POST /sandboxes answers 201 with the documented fields and passes the
        parsed options to the manager.
        """
        response, body = await self.call(
            "POST", "/sandboxes",
            {"memory": "512m", "cpu": 1.5, "ttl": 30, "labels": {"team": "a"}},
        )
        self.assertEqual(response.code, 201)
        for field in ("id", "profile", "template", "image", "runtime", "state",
                      "created", "ttl", "labels"):
            self.assertIn(field, body)
        self.assertEqual(body["state"], "running")
        self.assertTrue(body["created"].endswith("Z"))
        self.assertEqual(
            self.manager.created[0],
            {"profile": None, "memory": 512 << 20, "cpu": 1.5, "storage": None,
             "ttl": 30, "labels": {"team": "a"}, "identity": "",
             "template": None, "ttl_action": None, "expires_at": None, "volumes": (),
             "network": None, "secrets": {}},
        )

    async def test_create_with_empty_body(self):
        """
        An empty body means every default.
        """
        response, body = await self.call("POST", "/sandboxes")
        self.assertEqual(response.code, 201)
        self.assertEqual(body["profile"], "default")

    async def test_bad_bodies(self):
        """
        Invalid JSON, a non-object, unknown and mistyped fields are 400s with
        named codes, and the manager is never asked.
        """
        await self.assertError("POST", "/sandboxes", None, 400, "INVALID_BODY", raw=b"{")
        await self.assertError("POST", "/sandboxes", [1], 400, "INVALID_BODY")
        cases = [
            {"colour": "red"},
            {"memory": "12x"},
            {"memory": True},
            {"cpu": "two"},
            {"cpu": -1},
            {"ttl": -5},
            {"ttl": 1.5},
            {"labels": ["a"]},
            {"labels": {"k": 5}},
            {"labels": {f"k{i}": "v" for i in range(65)}},
            {"labels": {"k" * 129: "v"}},
            {"profile": ""},
            {"template": ""},
            {"template": 7},
        ]
        for body in cases:
            _, parsed = await self.assertError(
                "POST", "/sandboxes", body, 400, "INVALID_FIELD"
            )
        self.assertEqual(self.manager.created, [])

    async def test_limits_are_named(self):
        """
        Memory, cpu and ttl above the configured limits are refused with
        LIMIT_EXCEEDED naming the limit.
        """
        for body, limit in [
            ({"memory": "2g"}, "limits.max_memory"),
            ({"cpu": 3}, "limits.max_cpu"),
            ({"ttl": 601}, "limits.max_ttl"),
        ]:
            _, parsed = await self.assertError(
                "POST", "/sandboxes", body, 400, "LIMIT_EXCEEDED"
            )
            self.assertIn(limit, parsed["error"]["message"])

    async def test_manager_failures_map_to_statuses(self):
        """
        Unknown profile is 404, capacity 503 with Retry-After, engine trouble
        502.
        """
        self.manager.fail_with = UnknownProfile("gpu")
        await self.assertError("POST", "/sandboxes", {"profile": "gpu"}, 404, "UNKNOWN_PROFILE")
        self.manager.fail_with = AtCapacity("full")
        response, _ = await self.assertError("POST", "/sandboxes", {}, 503, "AT_CAPACITY")
        self.assertEqual(response.headers.getRawHeaders("Retry-After"), ["1"])
        self.manager.fail_with = RuntimeFailure("engine down")
        await self.assertError("POST", "/sandboxes", {}, 502, "RUNTIME_ERROR")

    async def test_get_list_delete(self):
        """
        A created sandbox is listed, fetched, filtered by label and deleted;
        afterwards it is 404.
        """
        _, a = await self.call("POST", "/sandboxes", {"labels": {"env": "prod"}})
        _, b = await self.call("POST", "/sandboxes", {"labels": {"env": "dev"}})
        response, listed = await self.call("GET", "/sandboxes")
        self.assertEqual([s["id"] for s in listed], [a["id"], b["id"]])
        _, filtered = await self.call("GET", "/sandboxes?label=env:dev")
        self.assertEqual([s["id"] for s in filtered], [b["id"]])
        await self.assertError("GET", "/sandboxes?label=nocolon", None, 400, "INVALID_FIELD")
        response, got = await self.call("GET", f"/sandboxes/{a['id']}")
        self.assertEqual(got["id"], a["id"])
        response, _ = await self.call("DELETE", f"/sandboxes/{a['id']}")
        self.assertEqual(response.code, 204)
        await self.assertError("GET", f"/sandboxes/{a['id']}", None, 404, "SANDBOX_NOT_FOUND")
        await self.assertError("DELETE", f"/sandboxes/{a['id']}", None, 404, "SANDBOX_NOT_FOUND")
        await self.assertError("GET", "/sandboxes/sbx-nope/ws", None, 404, "SANDBOX_NOT_FOUND")

    async def test_answers_carry_their_length(self):
        """
        JSON answers, named errors and unknown routes are sent with
        Content-Length (not in chunks): their length is the body's.
        """
        for method, path, body, status in [
            ("POST", "/sandboxes", {}, 201),
            ("GET", "/sandboxes", None, 200),
            ("GET", "/sandboxes/sbx-nope", None, 404),
            ("GET", "/nowhere", None, 404),
            ("POST", "/sandboxes", {"memory": "lots"}, 400),
        ]:
            data = json.dumps(body).encode() if body is not None else None
            response = await self.treq.request(method, "http://sandboxd" + path, data=data)
            content = await response.content()
            self.assertEqual(response.code, status, content)
            # Twisted's client takes Content-Length out of the headers.
            self.assertEqual(response.original.length, len(content), (method, path))

    async def test_create_with_session_needs_an_upgrade(self):
        """
        ``GET /sandboxes/new/ws`` that is not a WebSocket upgrade is 426
        UPGRADE_REQUIRED and creates nothing; a bad query is a named 400
        before any create.
        """
        response, _ = await self.assertError(
            "GET", "/sandboxes/new/ws?profile=default", None, 426, "UPGRADE_REQUIRED")
        self.assertEqual(self.manager.created, [])

    async def test_create_with_session_caller_gone(self):
        """
        When the caller of ``GET /sandboxes/new/ws`` leaves while its
        sandbox is made, the sandbox is destroyed at once and nothing is
        handed to the WebSocket layer (which would trip over the missing
        channel and log an unhandled error).
        """
        request = DummyRequest([b"sandboxes", b"new", b"ws"])
        for name, value in ((b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
                            (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                            (b"Sec-WebSocket-Version", b"13")):
            request.requestHeaders.setRawHeaders(name, [value])
        request.channel = None
        answer = await self.api.createWithSession(request)
        self.assertEqual(answer, b"")
        self.assertEqual(len(self.manager.created), 1)
        self.assertEqual(self.manager.sandboxes, {})

    def test_body_from_query(self):
        """
        The query of ``GET /sandboxes/new/ws`` becomes the create body:
        numbers as numbers, ``label=k=v`` repeated into labels; a ttl or
        cpu that is not a number, a label without ``=``, or a ``network`` or
        ``secrets`` (never in a URL) is INVALID_FIELD.
        """
        args = {b"profile": [b"python"], b"memory": [b"1g"], b"cpu": [b"1.5"],
                b"ttl": [b"30"], b"label": [b"a=1", b"b=x=y"]}
        self.assertEqual(body_from_query(args), {
            "profile": "python", "memory": "1g", "cpu": 1.5, "ttl": 30,
            "labels": {"a": "1", "b": "x=y"}})
        self.assertEqual(body_from_query({}), {})
        for bad in ({b"ttl": [b"-1"]}, {b"ttl": [b"x"]}, {b"cpu": [b"lots"]},
                    {b"label": [b"novalue"]}, {b"network": [b"none"]},
                    {b"secrets": [b"x"]}):
            with self.assertRaises(ApiError) as caught:
                body_from_query(bad)
            self.assertEqual(caught.exception.code, "INVALID_FIELD", bad)

    async def test_update(self):
        """
        PATCH sets the ttl and merges labels (null removes one); bad fields,
        a ttl over limits.max_ttl, too many labels and an unknown sandbox
        are named errors that change nothing.
        """
        _, a = await self.call("POST", "/sandboxes", {"ttl": 5, "labels": {"a": "1", "b": "2"}})
        response, patched = await self.call(
            "PATCH", f"/sandboxes/{a['id']}", {"ttl": 60, "labels": {"b": None, "c": "3"}})
        self.assertEqual(response.code, 200, patched)
        self.assertEqual((patched["ttl"], patched["labels"]), (60, {"a": "1", "c": "3"}))
        for body, code in [({"ttl": -1}, "INVALID_FIELD"), ({"ttl": "60"}, "INVALID_FIELD"),
                           ({"ttl": 10 ** 9}, "LIMIT_EXCEEDED"), ({"memory": "1g"}, "INVALID_FIELD"),
                           ({"labels": ["a"]}, "INVALID_FIELD"),
                           ({"labels": {"x": 1}}, "INVALID_FIELD"),
                           ({"labels": {f"k{i}": "v" for i in range(64)}}, "INVALID_FIELD")]:
            await self.assertError("PATCH", f"/sandboxes/{a['id']}", body, 400, code)
        _, got = await self.call("GET", f"/sandboxes/{a['id']}")
        self.assertEqual((got["ttl"], got["labels"]), (60, {"a": "1", "c": "3"}))
        await self.assertError("PATCH", "/sandboxes/sbx-nope", {"ttl": 1}, 404,
                               "SANDBOX_NOT_FOUND")

    async def test_lifecycle_fields(self):
        """
        ``ttl_action`` and ``expires_at`` (ISO 8601 with a zone, in the
        future, within limits.max_ttl) reach the manager on create and
        PATCH; a bad action, an unzoned, unparsable or past time is
        INVALID_FIELD, one too far LIMIT_EXCEEDED, and nothing is created;
        a create's volumes with no volumes served is 501 NOT_AVAILABLE.
        """
        self.clock.advance(1_800_000_000)  # 2027-01-15T08:00:00Z
        response, made = await self.call("POST", "/sandboxes", {
            "ttl_action": "pause", "expires_at": "2027-01-15T08:05:00Z"})
        self.assertEqual(response.code, 201, made)
        asked = self.manager.created[-1]
        self.assertEqual((asked["ttl_action"], asked["expires_at"]), ("pause", 1_800_000_300))
        cases = [({"ttl_action": "sleep"}, "INVALID_FIELD"),
                 ({"expires_at": "tomorrow"}, "INVALID_FIELD"),
                 ({"expires_at": 1_800_000_300}, "INVALID_FIELD"),
                 ({"expires_at": "2027-01-15T08:05:00"}, "INVALID_FIELD"),
                 ({"expires_at": "2027-01-15T07:59:59Z"}, "INVALID_FIELD"),
                 ({"expires_at": "2027-01-15T09:10:01+01:00"}, "LIMIT_EXCEEDED")]
        for body, code in cases:
            await self.assertError("POST", "/sandboxes", body, 400, code)
        self.assertEqual(len(self.manager.created), 1)
        await self.assertError("POST", "/sandboxes", {"volumes": [{"name": "v", "path": "/v"}]},
                               501, "NOT_AVAILABLE")
        response, patched = await self.call("PATCH", f"/sandboxes/{made['id']}",
                                            {"expires_at": "2027-01-15T09:08:00+01:00"})
        self.assertEqual((response.code, patched["expires_at"]), (200, "2027-01-15T08:08:00Z"),
                         patched)
        for body, code in cases[1:]:
            await self.assertError("PATCH", f"/sandboxes/{made['id']}", body, 400, code)

    async def test_unknown_routes_and_methods(self):
        """
        Unknown paths are 404 NOT_FOUND and wrong methods 405, both as JSON.
        """
        await self.assertError("GET", "/nowhere", None, 404, "NOT_FOUND")
        await self.assertError("PUT", "/sandboxes", None, 405, "METHOD_NOT_ALLOWED")

    async def test_profiles_and_health(self):
        """
        /profiles lists the configured profiles; /health says ok with the
        version and the manager's figures.
        """
        _, profiles = await self.call("GET", "/profiles")
        self.assertEqual(
            profiles,
            [{"name": "default", "image": "sandbox-base:latest", "memory": 512 << 20,
              "cpu": 1.0, "storage": 500 << 20, "runtime": "docker"}],
        )
        self.clock.advance(5)
        _, health = await self.call("GET", "/health")
        self.assertEqual(health["status"], "ok")
        self.assertEqual(health["uptime_seconds"], 5.0)
        self.assertIn("version", health)
        self.assertEqual(health["sandboxes"], 0)


class _Stats:
    """
    Answers SandboxStats.read from a dict, or fails.
    """

    def __init__(self):
        self.fail_with = None

    async def read(self, sandbox):
        if self.fail_with is not None:
            raise self.fail_with
        return {"pids": 3, "sandbox": sandbox.id}


class LimitAndStatsTests(TestCase):
    """
    The create rate limit (429) and the stats route.
    """

    def setUp(self):
        self.config = parse_config("[limits]\ncreate_rate_limit = 2\n")
        self.manager = FakeManager(self.config)
        self.clock = Clock()
        self.stats = _Stats()
        api = SandboxAPI(self.manager, self.config, self.clock, stats=self.stats)
        self.treq = StubTreq(api.resource())

    call = APITests.call
    assertError = APITests.assertError

    async def test_rate_limited(self):
        """
        Past limits.create_rate_limit creates in a minute, POST /sandboxes is
        a 429 RATE_LIMITED with Retry-After, without reaching the manager;
        the allowance comes back with time.
        """
        for _ in range(2):
            response, _ = await self.call("POST", "/sandboxes", {})
            self.assertEqual(response.code, 201)
        response, parsed = await self.assertError("POST", "/sandboxes", {}, 429, "RATE_LIMITED")
        self.assertEqual(response.headers.getRawHeaders("Retry-After"), ["30"])
        self.assertIn("limits.create_rate_limit", parsed["error"]["message"])
        self.assertEqual(len(self.manager.created), 2)
        self.clock.advance(30)
        response, _ = await self.call("POST", "/sandboxes", {})
        self.assertEqual(response.code, 201)

    async def test_stats(self):
        """
        GET /sandboxes/{id}/stats answers what the stats reader gives; an
        unknown id is 404 and an engine failure 502.
        """
        _, sandbox = await self.call("POST", "/sandboxes", {})
        response, stats = await self.call("GET", f"/sandboxes/{sandbox['id']}/stats")
        self.assertEqual((response.code, stats), (200, {"pids": 3, "sandbox": sandbox["id"]}))
        await self.assertError("GET", "/sandboxes/sbx-nope/stats", None, 404, "SANDBOX_NOT_FOUND")
        self.stats.fail_with = RuntimeFailure("engine down")
        await self.assertError("GET", f"/sandboxes/{sandbox['id']}/stats", None, 502, "RUNTIME_ERROR")
        self.manager.destroy(sandbox["id"])
        await self.assertError("GET", f"/sandboxes/{sandbox['id']}/stats", None, 404, "SANDBOX_NOT_FOUND")

    async def test_no_stats_reader(self):
        """
        A daemon built without a stats reader answers 501 NOT_AVAILABLE.
        """
        api = SandboxAPI(self.manager, self.config, self.clock)
        self.treq = StubTreq(api.resource())
        _, sandbox = await self.call("POST", "/sandboxes", {})
        await self.assertError("GET", f"/sandboxes/{sandbox['id']}/stats", None, 501, "NOT_AVAILABLE")


class UnixSocketAPI(SandboxAPI):
    """
    The API as served on the Unix socket (StubTreq's requests come from TCP
    addresses).
    """

    def _admin(self, request):
        pass


class AdminTests(TestCase):
    """
    The pool routes: Unix socket only, validated bodies.
    """

    def setUp(self):
        self.config = parse_config("[pool]\nmax_warm = 10\n")
        self.manager = FakeManager(self.config)
        self.tcp = StubTreq(SandboxAPI(self.manager, self.config, Clock()).resource())
        self.unix = StubTreq(UnixSocketAPI(self.manager, self.config, Clock()).resource())

    async def call(self, treq, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        response = await treq.request(method, "http://sandboxd" + path, data=data)
        content = await response.content()
        return response.code, json.loads(content) if content else None

    async def test_refused_over_tcp(self):
        """
        Every admin route answers 403 ADMIN_ONLY off the Unix socket and
        changes nothing.
        """
        for method, path, body in [
            ("GET", "/pools", None),
            ("PUT", "/pools/default", {"count": 3}),
            ("POST", "/pools/default/flush", None),
        ]:
            code, parsed = await self.call(self.tcp, method, path, body)
            self.assertEqual((code, parsed["error"]["code"]), (403, "ADMIN_ONLY"))
        self.assertEqual((self.manager.pools.resized, self.manager.pools.flushed), ([], []))

    async def test_status_resize_flush(self):
        """
        On the Unix socket: status lists the pools, resize pins a count (null
        unpins), flush reports how many it replaced.
        """
        code, status = await self.call(self.unix, "GET", "/pools")
        self.assertEqual((code, list(status)), (200, ["default"]))
        code, _ = await self.call(self.unix, "PUT", "/pools/default", {"count": 3})
        self.assertEqual(code, 200)
        code, _ = await self.call(self.unix, "PUT", "/pools/default", {"count": None})
        self.assertEqual(self.manager.pools.resized, [("default", 3), ("default", None)])
        code, flushed = await self.call(self.unix, "POST", "/pools/default/flush")
        self.assertEqual((code, flushed["flushed"]), (200, 2))

    async def test_bad_resizes(self):
        """
        Unknown pools are 404; counts that are missing, negative, not
        integers or above pool.max_warm are 400s naming the problem.
        """
        code, parsed = await self.call(self.unix, "PUT", "/pools/gpu", {"count": 1})
        self.assertEqual((code, parsed["error"]["code"]), (404, "UNKNOWN_PROFILE"))
        code, parsed = await self.call(self.unix, "POST", "/pools/gpu/flush")
        self.assertEqual(code, 404)
        for body, error in [
            ({}, "INVALID_FIELD"),
            ({"count": -1}, "INVALID_FIELD"),
            ({"count": "3"}, "INVALID_FIELD"),
            ({"count": 2, "extra": 1}, "INVALID_FIELD"),
            ({"count": 11}, "LIMIT_EXCEEDED"),
        ]:
            code, parsed = await self.call(self.unix, "PUT", "/pools/default", body)
            self.assertEqual((code, parsed["error"]["code"]), (400, error), body)
        self.assertIn("pool.max_warm", parsed["error"]["message"])
        self.assertEqual(self.manager.pools.resized, [])
