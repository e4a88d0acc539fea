"""
Private ingress over loopback (``[tunnels] auth = "token"``): the path
proxy over TCP wants the tunnel's token or a signed URL, and the
credential never reaches the app.
"""

import json

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import Site

from sandboxd.api.errors import ApiError
from sandboxd.config import LimitsConfig, TunnelsConfig
from sandboxd.tunnels import Tunnels
from tests.tunnelloop import LoopbackTestCase, Reader


class HeadersResource(Resource):
    """
    Answers every request with the URI and headers it received, as JSON.
    """

    isLeaf = True

    def render(self, request):
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({
            "uri": request.uri.decode(),
            "headers": {k.decode().lower(): [v.decode() for v in vs]
                        for k, vs in request.requestHeaders.getAllRawHeaders()},
        }).encode()


class IngressTests(LoopbackTestCase):
    """
    ``[tunnels] auth = "token"``: the path proxy over TCP wants the tunnel's
    token or a signed URL, and the credential never reaches the app.
    """

    def setUp(self):
        LoopbackTestCase.setUp(self)
        self.tunnels = Tunnels(reactor, self.store, self.limits,
                               TunnelsConfig(connect_timeout=2.0, auth="token"),
                               ingress_key=b"k" * 32)
        self.addCleanup(self.tunnels.closeAll, self.sandbox, "test over")
        self.app_port = self.listen(Site(HeadersResource()))
        self.proxy_port = self.proxySite()
        self.prefix = f"/sandboxes/{self.sandbox.id}/ports/{self.app_port}"

    async def get(self, path, headers=""):
        reader = await self.connect(self.proxy_port, Reader(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n"
            .encode(), pause=False))
        await reader.lost
        head, _, body = reader.head.partition(b"\r\n\r\n")
        return head.decode(), body

    async def test_refused_without_token(self):
        """
        No credential, a wrong token, a wrong cookie: 401
        TUNNEL_UNAUTHORIZED.
        """
        for headers in ("", "X-Sandbox-Tunnel-Token: nope\r\n", "Cookie: sbx_tunnel=nope\r\n"):
            head, body = await self.get(f"{self.prefix}/", headers)
            self.assertIn("HTTP/1.1 401", head, headers)
            self.assertEqual(json.loads(body)["error"]["code"], "TUNNEL_UNAUTHORIZED")
        head, _ = await self.get(f"{self.prefix}/?sbx_token=nope")
        self.assertIn("HTTP/1.1 401", head)

    async def test_header(self):
        """
        The token in the header lets the request through; the app does not
        see it.
        """
        token = self.tunnels.ingress.token(self.sandbox.id, self.app_port)
        head, body = await self.get(f"{self.prefix}/x", f"X-Sandbox-Tunnel-Token: {token}\r\n")
        self.assertIn("HTTP/1.1 200", head)
        self.assertNotIn("x-sandbox-tunnel-token", json.loads(body)["headers"])
        other = self.tunnels.ingress.token(self.sandbox.id, self.app_port + 1)
        head, _ = await self.get(f"{self.prefix}/x", f"X-Sandbox-Tunnel-Token: {other}\r\n")
        self.assertIn("HTTP/1.1 401", head)

    async def test_query_becomes_cookie(self):
        """
        ``?sbx_token=`` is answered with a redirect to the URL without it
        that sets a cookie scoped to the prefix; that cookie lets requests
        through, and the app sees the other cookies only.
        """
        token = self.tunnels.ingress.token(self.sandbox.id, self.app_port)
        head, _ = await self.get(f"{self.prefix}/page?a=1&sbx_token={token}")
        self.assertIn("HTTP/1.1 303", head)
        self.assertIn(f"Location: {self.prefix}/page?a=1", head)
        self.assertIn(f"Set-Cookie: sbx_tunnel={token}; Path={self.prefix}/; HttpOnly", head)
        head, body = await self.get(f"{self.prefix}/page?a=1",
                                    f"Cookie: theirs=1; sbx_tunnel={token}\r\n")
        self.assertIn("HTTP/1.1 200", head)
        seen = json.loads(body)
        self.assertEqual(seen["headers"]["cookie"], ["theirs=1"])
        self.assertEqual(seen["uri"], "/page?a=1")

    async def test_signed_url(self):
        """
        A signed URL is turned into a cookie expiring with it; once expired
        (or tampered with) it is a 401.
        """
        ingress = self.tunnels.ingress
        until = int(reactor.seconds()) + 60
        query = ingress.signedQuery(self.sandbox.id, self.app_port, until)
        head, _ = await self.get(f"{self.prefix}/?{query}")
        self.assertIn("HTTP/1.1 303", head)
        cookie = head.split("Set-Cookie: sbx_tunnel=")[1].split(";")[0]
        self.assertIn("Max-Age=", head)
        head, _ = await self.get(f"{self.prefix}/", f"Cookie: sbx_tunnel={cookie}\r\n")
        self.assertIn("HTTP/1.1 200", head)
        past = int(reactor.seconds()) - 1
        for bad in (ingress.signedQuery(self.sandbox.id, self.app_port, past),
                    query.replace(str(until), str(until + 1000))):
            head, _ = await self.get(f"{self.prefix}/?{bad}")
            self.assertIn("HTTP/1.1 401", head, bad)

    async def test_reload(self):
        """
        A reload applies ``[tunnels]`` live: ``auth = "none"`` lets requests
        through without a token; back to ``"token"`` they are refused again,
        and a token handed out before is still good (same key).  The
        connect timeout reaches the path proxy; ``[limits]`` the next expose.
        """
        token = self.tunnels.ingress.token(self.sandbox.id, self.app_port)
        self.tunnels.reload(self.limits, TunnelsConfig(connect_timeout=3.5, auth="none"))
        self.assertIsNone(self.tunnels.ingress)
        self.assertEqual(self.tunnels.proxy.connect_timeout, 3.5)
        head, _ = await self.get(f"{self.prefix}/")
        self.assertIn("HTTP/1.1 200", head)
        self.tunnels.reload(self.limits, TunnelsConfig(connect_timeout=2.0, auth="token"))
        head, _ = await self.get(f"{self.prefix}/")
        self.assertIn("HTTP/1.1 401", head)
        head, _ = await self.get(f"{self.prefix}/", f"X-Sandbox-Tunnel-Token: {token}\r\n")
        self.assertIn("HTTP/1.1 200", head)
        self.tunnels.reload(LimitsConfig(max_tunnels=1),
                            TunnelsConfig(connect_timeout=2.0, auth="token"))
        await self.tunnels.expose(self.sandbox, self.app_port)
        error = await self.assertFailure(
            ensureDeferred(self.tunnels.expose(self.sandbox, self.proxy_port)), ApiError)
        self.assertEqual(error.code, "TOO_MANY_TUNNELS")
