"""
Multi-tenancy against a real daemon (``twistd -n sandboxd``, real
containers): two tenants A and B signing their TCP requests, the operator
on the Unix socket.  B never reaches A's sandbox and cannot tell it from a
missing one, on every route; quotas; unsigned TCP refused; the identity is
recorded and survives a restart.
"""

import json
import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from sandboxd.tenancy.verifier import Quotas
from tests.daemon import Daemon
from tests.tenancyutil import multi_tenant_config, signed_request, upgrade_headers


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
    import http.client

    from sandboxd.tenancy.signer import sign
    from tests.tenancyutil import KEY

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
        60: ttl 120 is 400 QUOTA_EXCEEDED, no ttl gets 60.
        """
        one = Quotas(max_concurrent=1, max_ttl=60)
        first = self.create("tenant-q", quotas=one)
        self.assertEqual(first["ttl"], 60)
        status, body, headers = self.call("tenant-q", "POST", "/sandboxes", {}, quotas=one)
        self.assertEqual((status, body["error"]["code"]), (429, "QUOTA_EXCEEDED"))
        self.assertIn("retry-after", headers)
        status, body, _ = self.call("tenant-r", "POST", "/sandboxes", {"ttl": 120}, quotas=one)
        self.assertEqual((status, body["error"]["code"]), (400, "QUOTA_EXCEEDED"))
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
