"""
Multi-tenancy against a real daemon (``twistd -n sandboxd``, real
containers): two tenants A and B signing their TCP requests, the operator
on the Unix socket.  B never reaches A's sandbox and cannot tell it from a
missing one, on every route; quotas; unsigned TCP refused; the identity is
recorded and survives a restart.
"""

import http.client
import json
import os
import signal
import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from sandboxd.tenancy.signer import sign
from sandboxd.tenancy.verifier import Quotas
from tests.daemon import Daemon
from tests.tenancyutil import (
    KEY,
    NEW_KEY,
    multi_tenant_config,
    signed_request,
    upgrade_headers,
)


def _routes(sandbox_id):
    """(method, target, body, headers) of every route about one sandbox."""
    return [
        ("GET", f"/sandboxes/{sandbox_id}", None, None),
        ("GET", f"/sandboxes/{sandbox_id}/stats", None, None),
        ("GET", f"/sandboxes/{sandbox_id}/ws", None, upgrade_headers()),
        ("GET", f"/sandboxes/{sandbox_id}/ports", None, None),
        ("POST", f"/sandboxes/{sandbox_id}/ports/8080/expose", {"timeout": 0}, None),
        ("DELETE", f"/sandboxes/{sandbox_id}/ports/8080/expose", None, None),
        ("POST", f"/sandboxes/{sandbox_id}/ports/8080/url", {}, None),
        ("GET", f"/sandboxes/{sandbox_id}/ports/8080/index.html", None, None),
        ("DELETE", f"/sandboxes/{sandbox_id}", None, None),
    ]


def _sse_events(port, identity, until_sandbox, patience=30):
    """
    The events of ``GET /events?after=0`` as ``identity`` sees them, read
    until one of ``until_sandbox``'s events arrives.
    """
    headers = sign(KEY, "GET", "/events?after=0", b"", identity, time.time())
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=patience)
    connection.request("GET", "/events?after=0", headers=headers)
    response = connection.getresponse()
    events = []
    try:
        while True:
            line = response.fp.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                event = json.loads(line[len(b"data: "):])
                events.append(event)
                if event.get("sandbox_id") == until_sandbox:
                    break
    except (socket.timeout, TimeoutError):
        pass
    finally:
        connection.close()
    return response.status, events


class TwoTenantTests(SynchronousTestCase):
    """
    Tenants A and B and the operator on one multi-tenant daemon.
    """

    def setUp(self):
        self.daemon = Daemon(min_base=1, extra_config=multi_tenant_config())
        self.daemon.start()
        self.addCleanup(self.daemon.stop)
        self.port = self.daemon.port

    def call(self, identity, method, target, body=None, headers=None, quotas=Quotas()):
        return signed_request(self.port, method, target, body, identity=identity,
                              quotas=quotas, headers=headers,
                              timeout=self.daemon.request_timeout)

    def create(self, identity, body=None, quotas=Quotas()):
        status, sandbox, _ = self.call(identity, "POST", "/sandboxes", body or {}, quotas=quotas)
        self.assertEqual(status, 201, sandbox)
        return sandbox

    def test_matrix(self):
        """
        For every route about a sandbox (get, stats, ws, tunnels' routes and
        path proxy, delete) B's answer about A's live sandbox is exactly the
        answer once that sandbox is gone (404 SANDBOX_NOT_FOUND, same body);
        list, events history and the SSE stream show B none of A's; A and
        the operator still reach it, and it is recorded with A's identity.
        """
        a = self.create("tenant-a", {"labels": {"who": "a"}, "ttl": 600})
        b = self.create("tenant-b")
        seen_by_b = [self.call("tenant-b", m, t, body, h)[:2] for m, t, body, h in _routes(a["id"])]
        for (status, body), route in zip(seen_by_b, _routes(a["id"])):
            self.assertEqual(
                (status, body),
                (404, {"error": {"code": "SANDBOX_NOT_FOUND",
                                 "message": f"sandbox {a['id']} not found"}}), route)
        # A still has it (B's DELETE did nothing), and reaches it.
        self.assertEqual(self.call("tenant-a", "GET", f"/sandboxes/{a['id']}")[0], 200)
        self.assertEqual(self.call("tenant-a", "GET", f"/sandboxes/{a['id']}/stats")[0], 200)
        self.assertEqual(self.call("tenant-a", "GET", f"/sandboxes/{a['id']}/ws",
                                   headers=upgrade_headers())[0], 101)
        # Lists and event history are scoped.
        self.assertEqual([s["id"] for s in self.call("tenant-b", "GET", "/sandboxes")[1]],
                         [b["id"]])
        self.assertEqual([s["id"] for s in self.call("tenant-a", "GET", "/sandboxes")[1]],
                         [a["id"]])
        history = self.call("tenant-b", "GET", "/events/history?limit=1000")[1]
        self.assertTrue(history)
        self.assertEqual({e["identity"] for e in history}, {"tenant-b"})
        self.assertEqual(
            self.call("tenant-b", "GET", f"/events/history?sandbox={a['id']}")[1], [])
        status, streamed = _sse_events(self.port, "tenant-b", b["id"])
        self.assertEqual(status, 200)
        self.assertIn(b["id"], {e["sandbox_id"] for e in streamed})
        self.assertEqual({e["identity"] for e in streamed}, {"tenant-b"})
        # The operator (Unix socket, unsigned) sees both, with identities.
        status, listed = self.daemon.request("GET", "/sandboxes")
        self.assertEqual({s["id"] for s in listed} >= {a["id"], b["id"]}, True)
        status, events = self.daemon.request("GET", f"/events/history?sandbox={a['id']}")
        self.assertEqual({e["identity"] for e in events}, {"tenant-a"})
        # Once A's sandbox is gone, B gets the very same answers.
        self.assertEqual(self.call("tenant-a", "DELETE", f"/sandboxes/{a['id']}")[0], 204)
        after = [self.call("tenant-b", m, t, body, h)[:2] for m, t, body, h in _routes(a["id"])]
        self.assertEqual(after, seen_by_b)

    def test_refusals(self):
        """
        Against the real listener, each bad signature is 401 with its code:
        forged, wrong key, expired, future, replayed, body tampered; the
        same query in another order is accepted.
        """
        def send(method, target, headers, body=b""):
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                connection.request(method, target, body=body or None, headers=headers)
                response = connection.getresponse()
                return response.status, json.loads(response.read())
            finally:
                connection.close()

        def code(method, target, headers, body=b""):
            status, answer = send(method, target, headers, body)
            return status, answer["error"]["code"] if status >= 400 else None

        now = time.time()
        forged = sign(KEY, "GET", "/sandboxes", b"", "tenant-a", now)
        forged["X-Sandbox-Signature"] = forged["X-Sandbox-Signature"][::-1]
        self.assertIn(code("GET", "/sandboxes", forged)[1],
                      ("SIGNATURE_INVALID", "SIGNATURE_MALFORMED"))
        self.assertEqual(code("GET", "/sandboxes", sign(NEW_KEY, "GET", "/sandboxes", b"",
                                                        "tenant-a", now)),
                         (401, "SIGNATURE_INVALID"))
        self.assertEqual(code("GET", "/sandboxes", sign(KEY, "GET", "/sandboxes", b"",
                                                        "tenant-a", now - 60)),
                         (401, "SIGNATURE_EXPIRED"))
        self.assertEqual(code("GET", "/sandboxes", sign(KEY, "GET", "/sandboxes", b"",
                                                        "tenant-a", now + 60)),
                         (401, "SIGNATURE_FUTURE"))
        once = sign(KEY, "GET", "/sandboxes", b"", "tenant-a", now)
        self.assertEqual(code("GET", "/sandboxes", once), (200, None))
        self.assertEqual(code("GET", "/sandboxes", once), (401, "SIGNATURE_REPLAYED"))
        body = json.dumps({"ttl": 5}).encode()
        tampered = sign(KEY, "POST", "/sandboxes", body, "tenant-a", now)
        self.assertEqual(code("POST", "/sandboxes", tampered, b'{"ttl": 6}'),
                         (401, "BODY_TAMPERED"))
        reordered = sign(KEY, "GET", "/events/history?limit=5&after=0", b"", "tenant-a", now)
        self.assertEqual(code("GET", "/events/history?after=0&limit=5", reordered),
                         (200, None))

    def test_unsigned_tcp_refused(self):
        """
        Over TCP an unsigned request is 401 SIGNATURE_MISSING (the WebSocket
        upgrade too); the Unix socket needs no signature.
        """
        status, body = self.daemon.tcpRequest("GET", "/sandboxes")
        self.assertEqual((status, body["error"]["code"]), (401, "SIGNATURE_MISSING"))
        self.assertEqual(self.daemon.request("GET", "/sandboxes")[0], 200)
        self.assertEqual(self.daemon.request("GET", "/pools")[0], 200)
        # Admin routes stay Unix-only even for a signed tenant.
        status, body, _ = self.call("tenant-a", "GET", "/pools")
        self.assertEqual((status, body["error"]["code"]), (403, "ADMIN_ONLY"))
        status, body, _ = self.call("tenant-a", "GET", "/metrics")
        self.assertEqual((status, body["error"]["code"]), (403, "OPERATOR_ONLY"))

    def test_quotas(self):
        """
        X-Sandbox-Max-Concurrent 1: a second create is 429 QUOTA_EXCEEDED
        with Retry-After (another identity is unaffected); X-Sandbox-Max-TTL
        60: ttl 120 is 400 LIMIT_EXCEEDED, no ttl gets 60.
        """
        one = Quotas(max_concurrent=1, max_ttl=60)
        first = self.create("tenant-q", quotas=one)
        self.assertEqual(first["ttl"], 60)
        status, body, headers = self.call("tenant-q", "POST", "/sandboxes", {}, quotas=one)
        self.assertEqual((status, body["error"]["code"]), (429, "QUOTA_EXCEEDED"))
        self.assertIn("retry-after", headers)
        status, body, _ = self.call("tenant-r", "POST", "/sandboxes", {"ttl": 120}, quotas=one)
        self.assertEqual((status, body["error"]["code"]), (400, "LIMIT_EXCEEDED"))
        self.assertEqual(self.call("tenant-q", "DELETE", f"/sandboxes/{first['id']}")[0], 204)
        self.create("tenant-q", quotas=one)

    def test_identity_survives_restart(self):
        """
        A tenant's sandbox is adopted by a restarted daemon with its
        identity: still A's, still invisible to B.
        """
        a = self.create("tenant-a")
        self.daemon.stop(remove=False)
        self.daemon.process = None
        self.daemon.start()
        status, body = self.daemon.request("GET", f"/sandboxes/{a['id']}")
        self.assertEqual((status, body["identity"]), (200, "tenant-a"))
        self.assertEqual(self.call("tenant-a", "GET", f"/sandboxes/{a['id']}")[0], 200)
        self.assertEqual(self.call("tenant-b", "GET", f"/sandboxes/{a['id']}")[0], 404)


class DefaultLimitTests(SynchronousTestCase):
    """
    The create rate limit with the default configuration (600 a minute in
    bursts of 100), on a daemon without multi-tenancy.
    """

    def setUp(self):
        self.daemon = Daemon(min_base=1, limits_config="")
        self.daemon.start()
        self.addCleanup(self.daemon.stop)

    def test_unix_socket_is_never_limited(self):
        """
        200 creates in a loop over the Unix socket all succeed (each
        destroyed after: capacity is not what this measures).
        """
        for number in range(200):
            status, body = self.daemon.request("POST", "/sandboxes", {"ttl": 60})
            self.assertEqual(status, 201, (number, body))
            self.assertEqual(self.daemon.request("DELETE", f"/sandboxes/{body['id']}")[0], 204)

    def test_tcp_limit_at_the_documented_point(self):
        """
        Over TCP a peer's creates (here of an unknown profile: the attempt
        is what counts) are refused past the burst of 100, plus the 10 a
        second that came back meanwhile: 429 RATE_LIMITED, Retry-After 1.
        """
        connection = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=30)
        self.addCleanup(connection.close)
        body = json.dumps({"profile": "no-such-profile"})
        started = time.monotonic()
        for number in range(1, 1000):
            connection.request("POST", "/sandboxes", body=body,
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            if response.status == 429:
                break
            self.assertEqual((response.status, answer["error"]["code"]),
                             (404, "UNKNOWN_PROFILE"))
        elapsed = time.monotonic() - started
        self.assertEqual(answer["error"]["code"], "RATE_LIMITED")
        self.assertEqual(response.getheader("Retry-After"), "1")
        self.assertGreater(number, 100)
        self.assertLessEqual(number, 101 + int(10 * elapsed) + 1)


class RotationTests(SynchronousTestCase):
    """
    Key rotation through hot reload (SIGHUP), no restart.
    """

    def setUp(self):
        self.daemon = Daemon(min_base=0, pool_config="total_warm = 0\n",
                             extra_config=multi_tenant_config(KEY))
        self.daemon.start()
        self.addCleanup(self.daemon.stop)

    def reload_with(self, *keys):
        with open(self.daemon.config) as f:
            text = f.read()
        head = text[:text.index("[multi_tenant]")]
        with open(self.daemon.config, "w") as f:
            f.write(head + multi_tenant_config(*keys))
        _, before = self.daemon.request("GET", "/events/history?limit=1000")
        seen = {e["id"] for e in before}
        os.kill(self.daemon.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            _, events = self.daemon.request("GET", "/events/history?limit=1000")
            new = [e for e in events if e["id"] not in seen and e["type"].startswith("config.")]
            if new:
                self.assertEqual(new[-1]["type"], "config.reloaded", new[-1])
                return
            time.sleep(0.1)
        self.fail("no config event after SIGHUP")

    def status(self, key):
        return signed_request(self.daemon.port, "GET", "/sandboxes", key=key)[:2]

    def test_rotation(self):
        """
        Add the new key beside the old: both are accepted; remove the old:
        it is refused (SIGNATURE_INVALID) and the new one still accepted.
        """
        self.assertEqual(self.status(NEW_KEY)[1]["error"]["code"], "SIGNATURE_INVALID")
        self.reload_with(KEY, NEW_KEY)
        self.assertEqual(self.status(KEY)[0], 200)
        self.assertEqual(self.status(NEW_KEY)[0], 200)
        self.reload_with(NEW_KEY)
        status, body = self.status(KEY)
        self.assertEqual((status, body["error"]["code"]), (401, "SIGNATURE_INVALID"))
        self.assertEqual(self.status(NEW_KEY)[0], 200)
