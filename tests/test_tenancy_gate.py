"""
The request-identity seam (sandboxd/api/identity.py) over StubTreq, the
quota logic (sandboxd/tenancy/quotas.py) and the gateway's keys file.
"""

import base64
import json
import os
import tempfile
import time

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource

from sandboxd.api.identity import TenantGate, caller_identity, may_see
from sandboxd.config import parse_config
from sandboxd.gateway.keys import GatewayConfigError, key_digest, parse_gateway_config
from sandboxd.ratelimit import RateLimiter
from sandboxd.tenancy.quotas import ConcurrencyQuota, QuotaExceeded, effective_ttl
from sandboxd.tenancy.signer import sign
from sandboxd.tenancy.verifier import Quotas
from tests.tenancyutil import KEY, NEW_KEY, multi_tenant_config


class _Echo(Resource):
    """Answers with the caller's identity."""

    isLeaf = True

    def render(self, request):
        return json.dumps({"identity": caller_identity(request)}).encode()


class GateTests(TestCase):
    """
    TenantGate in front of a resource, over a (TCP) StubTreq.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(time.time())
        config = parse_config(multi_tenant_config(KEY))
        self.limiter = RateLimiter(60, 100, self.clock, burst=3)
        self.gate = TenantGate(_Echo(), config.multi_tenant, self.clock, self.limiter)
        self.treq = StubTreq(self.gate)

    async def get(self, headers):
        response = await self.treq.get("http://daemon/sandboxes", headers=headers)
        return response, json.loads(await response.content())

    async def test_identity_reaches_the_route(self):
        """
        A signed request reaches the route with its identity.
        """
        response, body = await self.get(
            sign(KEY, "GET", "/sandboxes", b"", "alice", self.clock.seconds()))
        self.assertEqual((response.code, body), (200, {"identity": "alice"}))

    async def test_refusals_count_toward_the_peer(self):
        """
        Refused signatures spend the peer's create allowance: past the
        burst, they are answered 429 RATE_LIMITED with Retry-After.
        """
        codes = []
        for _ in range(4):
            response, body = await self.get(
                sign(NEW_KEY, "GET", "/sandboxes", b"", "alice", self.clock.seconds()))
            codes.append((response.code, body["error"]["code"]))
        self.assertEqual(codes, [(401, "SIGNATURE_INVALID")] * 3 + [(429, "RATE_LIMITED")])
        self.assertEqual(response.headers.getRawHeaders("Retry-After"), ["1"])

    async def test_disabled_is_the_operator(self):
        """
        With multi-tenancy off, an unsigned TCP caller is the operator ("").
        """
        self.gate.reload(parse_config("").multi_tenant)
        response, body = await self.get({})
        self.assertEqual((response.code, body), (200, {"identity": ""}))


class SeamTests(SynchronousTestCase):
    """
    may_see: the operator sees all, a tenant its own.
    """

    def test_may_see(self):
        """
        "" sees every owner; a tenant only itself (not the operator's own).
        """
        self.assertTrue(may_see("", "alice"))
        self.assertTrue(may_see("", ""))
        self.assertTrue(may_see("alice", "alice"))
        self.assertFalse(may_see("alice", "bob"))
        self.assertFalse(may_see("alice", ""))


class QuotaTests(SynchronousTestCase):
    """
    Concurrency and TTL quotas.
    """

    def test_concurrency_counts_creates_under_way(self):
        """
        Two creates at once under Max-Concurrent 2: a third is refused 429
        with a Retry-After; releasing one makes room; no quota: no limit.
        """
        quota = ConcurrencyQuota(lambda who: 0)
        one = quota.reserve("a", Quotas(max_concurrent=2))
        quota.reserve("a", Quotas(max_concurrent=2))
        with self.assertRaises(QuotaExceeded) as caught:
            quota.reserve("a", Quotas(max_concurrent=2))
        self.assertEqual((caught.exception.status, caught.exception.code), (429, "QUOTA_EXCEEDED"))
        self.assertTrue(caught.exception.retry_after)
        one()
        one()  # a second call is a no-op
        quota.reserve("a", Quotas(max_concurrent=2))
        for _ in range(10):
            quota.reserve("b", Quotas())

    def test_ttl(self):
        """
        Max-TTL caps the TTL asked (400 beyond) and is the TTL when none is.
        """
        self.assertEqual(effective_ttl(Quotas(max_ttl=60), 0), 60)
        self.assertEqual(effective_ttl(Quotas(max_ttl=60), 30), 30)
        self.assertEqual(effective_ttl(Quotas(), 0), 0)
        with self.assertRaises(QuotaExceeded) as caught:
            effective_ttl(Quotas(max_ttl=60), 61)
        self.assertEqual((caught.exception.status, caught.exception.code),
                         (400, "LIMIT_EXCEEDED"))


class GatewayKeysTests(SynchronousTestCase):
    """
    The gateway's keys file.
    """

    def setUp(self):
        directory = tempfile.mkdtemp()
        self.key_file = os.path.join(directory, "g.key")
        with open(self.key_file, "w") as f:
            f.write(base64.b64encode(bytes(32)).decode())

    def test_lookup(self):
        """
        A key is found by its SHA-256 with its identity and quotas; an
        unknown one is None.
        """
        config = parse_gateway_config(
            f'signing_key = "{self.key_file}"\n[[keys]]\nsha256 = "{key_digest("k1")}"\n'
            'identity = "team-a"\nmax_ttl = 60\n')
        self.assertEqual(config.lookup("k1").identity, "team-a")
        self.assertEqual(config.lookup("k1").quotas, Quotas(max_ttl=60))
        self.assertIsNone(config.lookup("k2"))

    def test_errors_name_the_key(self):
        """
        A bad identity or an unknown key is an error naming it.
        """
        with self.assertRaises(GatewayConfigError) as caught:
            parse_gateway_config(
                f'signing_key = "{self.key_file}"\n[[keys]]\nsha256 = "{key_digest("k")}"\n'
                'identity = "a b"\n')
        self.assertIn("keys[0].identity", str(caught.exception))
        with self.assertRaises(GatewayConfigError) as caught:
            parse_gateway_config(f'signing_key = "{self.key_file}"\ncolour = 1\n')
        self.assertIn("colour", str(caught.exception))
