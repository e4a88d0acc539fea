"""
The dashboard's files and routes without a browser: the committed bundle
rebuilds byte for byte from ui/ (esbuild at the lock file's versions), stays
under 1 MB, and the screenshots docs/ui.md shows are there; ``GET /ui/``
over StubTreq (a TCP caller) is off unless ``[ui] enabled``, serves the page
with its security headers, needs no signature with multi-tenancy while the
API still does; the gateway lets only the page's files and token-carrying
session upgrades through without a key.
"""

import os
import shutil
import subprocess

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import FailTest, SkipTest, SynchronousTestCase, TestCase
from twisted.web.test.requesthelper import DummyRequest

from sandboxd.api.app import SandboxAPI
from sandboxd.api.ui import FILES, STATIC, is_page_request
from sandboxd.config import parse_config
from sandboxd.gateway.proxy import Gateway
from tests.tenancyutil import multi_tenant_config
from tests.test_api import FakeManager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOTS = ("sandboxes", "pools", "events", "sandbox")


class BundleTests(SynchronousTestCase):
    def test_rebuild_reproduces_the_bundle(self):
        """
        ``node ui/build.mjs --check`` rebuilds the bundle into a temporary
        directory and finds it equal to sandboxd/ui/static (a source edited
        without a rebuild fails here).
        """
        node = shutil.which("node")
        if node is None or not os.path.isdir(os.path.join(ROOT, "ui", "node_modules", "esbuild")):
            reason = "no node or ui/node_modules (make setup installs them)"
            if os.environ.get("CI", "").lower() == "true":
                raise FailTest(reason)
            raise SkipTest(reason)
        done = subprocess.run([node, "build.mjs", "--check"], cwd=os.path.join(ROOT, "ui"),
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr + done.stdout)

    def test_small(self):
        """The files the package ships for the page add up to less than 1 MB."""
        total = sum(os.path.getsize(os.path.join(STATIC, name)) for name in FILES)
        self.assertLess(total, 1_000_000)
        self.assertEqual(sorted(os.listdir(STATIC)), sorted(FILES))

    def test_screenshots_kept(self):
        """docs/ui.md's screenshots (taken by tests/test_e2e_ui.py) are PNGs."""
        for name in SHOTS:
            with open(os.path.join(ROOT, "docs", "ui", f"{name}.png"), "rb") as f:
                data = f.read()
            self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n", name)
            self.assertGreater(len(data), 5000, name)


class RouteTests(TestCase):
    def api(self, text=""):
        config = parse_config(text)
        return StubTreq(SandboxAPI(FakeManager(config), config, Clock()).resource())

    async def get(self, treq, path, headers=None):
        response = await treq.get(f"http://127.0.0.1{path}", headers=headers)
        return response, await response.content()

    async def test_off_on_tcp_by_default(self):
        """Without ``[ui] enabled`` a TCP caller gets 404 UI_DISABLED."""
        response, body = await self.get(self.api(), "/ui/")
        self.assertEqual(response.code, 404)
        self.assertIn(b"UI_DISABLED", body)

    async def test_served_when_enabled(self):
        """
        ``[ui] enabled``: the page, its script and style with their types
        and a Content-Security-Policy; ``/ui`` moves to ``/ui/``; another
        name is 404.
        """
        treq = self.api("[ui]\nenabled = true\n")
        response, body = await self.get(treq, "/ui/")
        self.assertEqual(response.code, 200)
        self.assertIn(b"app.js", body)
        self.assertIn(b"default-src 'self'", response.headers.getRawHeaders(b"content-security-policy")[0])
        self.assertEqual(response.headers.getRawHeaders(b"x-frame-options"), [b"DENY"])
        response, body = await self.get(treq, "/ui/app.js")
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [FILES["app.js"]])
        self.assertGreater(len(body), 10000)
        response, body = await self.get(treq, "/ui/secret.txt")
        self.assertEqual(response.code, 404)
        response, body = await self.get(treq, "/ui/..%2fapp.py")
        self.assertEqual(response.code, 404)
        response = await treq.get("http://127.0.0.1/ui", allow_redirects=False)
        self.assertEqual((response.code, response.headers.getRawHeaders(b"location")), (308, [b"/ui/"]))

    async def test_read_only(self):
        """``/ui/config.json`` says read-only from the file or a forwarder's header."""
        response, body = await self.get(self.api("[ui]\nenabled = true\n"), "/ui/config.json")
        self.assertEqual(body, b'{"read_only": false}')
        response, body = await self.get(self.api("[ui]\nenabled = true\n"), "/ui/config.json",
                                        headers={"X-Sandboxd-UI-Read-Only": "1"})
        self.assertEqual(body, b'{"read_only": true}')
        response, body = await self.get(self.api("[ui]\nenabled = true\nread_only = true\n"),
                                        "/ui/config.json")
        self.assertEqual(body, b'{"read_only": true}')

    async def test_public_with_multi_tenancy(self):
        """
        With multi-tenancy the page's files need no signature; the API
        still does (401), so the page learns nothing without a key.
        """
        treq = self.api(multi_tenant_config() + "[ui]\nenabled = true\n")
        response, _ = await self.get(treq, "/ui/")
        self.assertEqual(response.code, 200)
        response, body = await self.get(treq, "/sandboxes")
        self.assertEqual(response.code, 401)


class PublicRequestTests(SynchronousTestCase):
    def test_is_page_request(self):
        """Only GET and HEAD of /ui and below are the page's."""
        self.assertTrue(is_page_request(b"GET", b"/ui/"))
        self.assertTrue(is_page_request(b"HEAD", b"/ui/app.js"))
        self.assertTrue(is_page_request(b"GET", b"/ui"))
        self.assertFalse(is_page_request(b"POST", b"/ui/"))
        self.assertFalse(is_page_request(b"GET", b"/uix"))
        self.assertFalse(is_page_request(b"GET", b"/sandboxes"))

    def request(self, method, path, headers=()):
        request = DummyRequest(path.lstrip(b"/").split(b"/"))
        request.method, request.path, request.uri = method, path, path
        for name, value in headers:
            request.requestHeaders.addRawHeader(name, value)
        return request

    def test_gateway_unsigned(self):
        """
        Without a key the gateway forwards the page's files and a session
        upgrade carrying a token, nothing else (an upgrade without a token,
        another route, a POST to /ui/).
        """
        unsigned = Gateway._unsigned
        self.assertTrue(unsigned(self.request(b"GET", b"/ui/app.js"), False))
        self.assertFalse(unsigned(self.request(b"POST", b"/ui/"), False))
        self.assertFalse(unsigned(self.request(b"GET", b"/sandboxes"), False))
        token = [(b"Sec-WebSocket-Protocol", b"sandboxd.v1, sandboxd.bearer.abc.def")]
        self.assertTrue(unsigned(self.request(b"GET", b"/sandboxes/sbx-1/ws", token), True))
        self.assertFalse(unsigned(self.request(b"GET", b"/sandboxes/sbx-1/ws"), True))
        self.assertFalse(unsigned(self.request(b"GET", b"/events", token), True))
