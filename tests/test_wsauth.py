"""
Session tokens for browsers (sandboxd.api.wsauth): minted by POST
/sandboxes/{id}/session-token, sent in Sec-WebSocket-Protocol or
?access_token= on the WebSocket handshake.
"""

import asyncio
import json
import time

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource

from agent import wire
from sandbox import create_sandbox
from sandboxd.api import wsauth
from sandboxd.api.identity import TenantGate, caller_identity
from sandboxd.config import parse_config
from tests.daemon import shared_daemon
from tests.dockerutil import require_docker
from tests.tenancyutil import KEY, multi_tenant_config


class TokenTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.tokens = wsauth.SessionTokens(self.clock, key=b"k" * 32)

    def test_round_trip(self):
        """
        A fresh token verifies for its sandbox and gives back its identity;
        it is made only of characters a subprotocol name may hold.
        """
        minted = self.tokens.mint("sbx-1", "tenant-a")
        self.assertEqual(self.tokens.verify(minted["token"], "sbx-1"), "tenant-a")
        self.assertEqual(minted["protocol"], "sandboxd.v1")
        self.assertRegex(minted["token"], r"^[A-Za-z0-9_.-]+$")

    def test_refused(self):
        """
        A token for another sandbox, a token past its lifetime, one with a
        changed claim or MAC, one signed by another key, and garbage are
        all InvalidToken.
        """
        token = self.tokens.mint("sbx-1")["token"]
        self.assertRaises(wsauth.InvalidToken, self.tokens.verify, token, "sbx-2")
        claims, mac = token.split(".")
        forged = wsauth._b64(json.dumps({"s": "sbx-2", "i": "", "e": 10**12}).encode())
        for bad in (f"{forged}.{mac}", f"{claims}.{mac[:-2]}AA", "", "x", "a.b.c",
                    wsauth.SessionTokens(self.clock).mint("sbx-1")["token"]):
            self.assertRaises(wsauth.InvalidToken, self.tokens.verify, bad, "sbx-1")
        self.clock.advance(wsauth.LIFETIME + 1)
        self.assertRaises(wsauth.InvalidToken, self.tokens.verify, token, "sbx-1")


class BrowserSessionTests(SynchronousTestCase):
    """
    Against a real daemon: the handshake a browser makes.
    """

    def setUp(self):
        require_docker()
        self.daemon = shared_daemon()

    def play(self, body):
        async def run():
            sbx = await create_sandbox(endpoint=self.daemon.endpoint)
            try:
                return await asyncio.wait_for(body(sbx), 60)
            finally:
                await sbx.destroy()

        return asyncio.run(run())

    async def handshake(self, sbx, query="", protocols=None):
        from websockets.asyncio.client import unix_connect
        from websockets.exceptions import InvalidStatus

        try:
            ws = await unix_connect(self.daemon.socket, f"ws://localhost/sandboxes/{sbx.id}/ws{query}",
                                    subprotocols=protocols, max_size=2 << 20)
        except InvalidStatus as e:
            return e.response.status_code, None
        async with ws:
            await ws.send(wire.request(1, "ping"))
            frame = wire.decode_one(await ws.recv())
            return ws.subprotocol, frame.type.name

    async def token(self, sbx):
        from sandbox import Client

        async with Client(endpoint=self.daemon.endpoint) as client:
            return await client.request("POST", f"/sandboxes/{sbx.id}/session-token")

    def test_subprotocol(self):
        """
        A minted token offered as ``sandboxd.bearer.<token>`` beside
        ``sandboxd.v1`` opens a working session; the daemon selects
        ``sandboxd.v1`` (never the token).
        """
        async def body(sbx):
            minted = await self.token(sbx)
            self.assertEqual(minted["expires_in"], wsauth.LIFETIME)
            return await self.handshake(sbx, protocols=["sandboxd.v1", "sandboxd.bearer." + minted["token"]])

        self.assertEqual(self.play(body), ("sandboxd.v1", "RESULT"))

    def test_query(self):
        """
        The same token works as ``?access_token=``.
        """
        async def body(sbx):
            minted = await self.token(sbx)
            return await self.handshake(sbx, query="?access_token=" + minted["token"])

        self.assertEqual(self.play(body), (None, "RESULT"))

    def test_bad_token_refused(self):
        """
        A forged token, in either place, is refused with 401; the sandbox
        still serves a session without one.
        """
        async def body(sbx):
            forged = "eyJzIjoieCJ9.AAAA"
            return (await self.handshake(sbx, protocols=["sandboxd.v1", "sandboxd.bearer." + forged]),
                    await self.handshake(sbx, query="?access_token=" + forged),
                    await self.handshake(sbx))

        self.assertEqual(self.play(body), ((401, None), (401, None), (None, "RESULT")))

    def test_unknown_sandbox(self):
        """
        A token for an unknown sandbox is not minted: 404 SANDBOX_NOT_FOUND.
        """
        status, body = self.daemon.request("POST", "/sandboxes/sbx-00000000/session-token")
        self.assertEqual((status, body["error"]["code"]), (404, "SANDBOX_NOT_FOUND"))


class _Echo(Resource):
    """Answers with the caller's identity."""

    isLeaf = True

    def render(self, request):
        return json.dumps({"identity": caller_identity(request)}).encode()


class GateTests(TestCase):
    """
    With multi-tenancy, the signature gate takes a session token on a
    session upgrade (a browser cannot sign), as the token's identity.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(time.time())
        config = parse_config(multi_tenant_config(KEY))
        self.gate = TenantGate(_Echo(), config.multi_tenant, self.clock)
        self.gate.sessionTokens = wsauth.SessionTokens(self.clock)
        self.treq = StubTreq(self.gate)

    async def get(self, path, headers=None):
        response = await self.treq.get("http://daemon" + path, headers=headers or {})
        return response.code, json.loads(await response.content())

    async def test_token_stands_for_a_signature(self):
        """
        An unsigned upgrade of /sandboxes/{id}/ws with that sandbox's token,
        in the subprotocols or the query, reaches the route as the token's
        identity.
        """
        token = self.gate.sessionTokens.mint("sbx-1", "alice")["token"]
        protocols = {"Sec-WebSocket-Protocol": f"sandboxd.v1, sandboxd.bearer.{token}"}
        self.assertEqual(await self.get("/sandboxes/sbx-1/ws", protocols), (200, {"identity": "alice"}))
        self.assertEqual(await self.get(f"/sandboxes/sbx-1/ws?access_token={token}"),
                         (200, {"identity": "alice"}))

    async def test_token_is_no_signature_elsewhere(self):
        """
        A token for another sandbox is refused 401 SESSION_TOKEN_INVALID; on
        any other route, or with no token, the signature is still required.
        """
        token = self.gate.sessionTokens.mint("sbx-2", "alice")["token"]
        code, body = await self.get(f"/sandboxes/sbx-1/ws?access_token={token}")
        self.assertEqual((code, body["error"]["code"]), (401, "SESSION_TOKEN_INVALID"))
        for path in (f"/sandboxes/sbx-2?access_token={token}", "/sandboxes/sbx-2/ws"):
            code, body = await self.get(path)
            self.assertEqual(code, 401)
            self.assertNotEqual(body["error"]["code"], "SESSION_TOKEN_INVALID")
