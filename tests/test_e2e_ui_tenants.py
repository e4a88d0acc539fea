"""
The dashboard with two tenants: a multi-tenant daemon (``[ui] enabled``)
behind the signing gateway (tests/test_e2e_gateway.py's, on plain TCP
here), and headless Chromium on the gateway's ``/ui/`` with team A's API
key.  Team A's page lists, streams and opens a terminal on team A's
sandbox; nothing on any page or through any action the page can take
reaches team B's sandbox.
"""

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import time

from twisted.python import log
from twisted.trial.unittest import SynchronousTestCase

from sandboxd.gateway.keys import key_digest
from tests.daemon import TWISTD, Daemon, free_port
from tests.tenancyutil import multi_tenant_config
from tests.uibrowser import Browser, require_browser


def start_plain_gateway(directory, upstream_port):
    """A sandboxd-gateway on plain TCP with keys for team-a and team-b: (process, port)."""
    port = free_port()
    key_file = os.path.join(directory, "gateway.key")
    with open(key_file, "w") as f:
        f.write(base64.b64encode(bytes(range(32))).decode())
    config = os.path.join(directory, "gateway.toml")
    with open(config, "w") as f:
        f.write(f'listen = "tcp:{port}:interface=127.0.0.1"\n'
                f'upstream = "http://127.0.0.1:{upstream_port}"\n'
                f'signing_key = "{key_file}"\n'
                f'[[keys]]\nsha256 = "{key_digest("team-a-key")}"\nidentity = "team-a"\n'
                f'[[keys]]\nsha256 = "{key_digest("team-b-key")}"\nidentity = "team-b"\n')
    log_file = open(os.path.join(directory, "gateway.log"), "wb")
    process = subprocess.Popen(
        [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "sandboxd-gateway", "--config", config],
        stdout=log_file, stderr=subprocess.STDOUT, cwd=directory)
    log_file.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(open(os.path.join(directory, "gateway.log")).read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the gateway did not listen in time")


class TwoTenantsTests(SynchronousTestCase):
    def setUp(self):
        require_browser()
        self.daemon = Daemon(min_base=1,
                             extra_config=multi_tenant_config() + "[ui]\nenabled = true\n")
        self.daemon.start()
        self.addCleanup(self.daemon.stop)
        self.gateway, self.port = start_plain_gateway(self.daemon.dir, self.daemon.port)
        self.addCleanup(lambda: (self.gateway.terminate(), self.gateway.wait(30)))
        self.browser = Browser()
        self.addCleanup(self.browser.close)
        self.addCleanup(lambda: log.msg("browser console:\n" + "\n".join(self.browser.console)))
        self.page = self.browser.page

    def gateway_request(self, method, path, key, body=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=json.dumps(body) if body is not None else None,
                               headers={"Authorization": f"Bearer {key}"})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def create(self, key):
        status, body = self.gateway_request("POST", "/sandboxes", key, {"ttl": 600})
        self.assertEqual(status, 201, body)
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{body['id']}")
        return body["id"]

    def test_other_tenant_unreachable(self):
        """
        Team A's page lists and streams team A's sandbox only; B's sandbox
        page says not found; the page's own API calls and WebSocket
        sessions for B's sandbox (destroy, ttl, stats, session token, a
        session with A's token or none) are all refused, and B's sandbox is
        untouched; A's terminal works through the gateway.
        """
        self.page.goto(f"http://127.0.0.1:{self.port}/ui/#/events&key=team-a-key")
        self.page.wait_for_selector("#stream-status:has-text('live')")
        theirs = self.create("team-b-key")
        mine = self.create("team-a-key")
        self.page.wait_for_selector(f"tr[data-type='sandbox.created'][data-sandbox='{mine}']")
        self.page.evaluate("() => { location.hash = '#/'; }")
        self.page.wait_for_selector(f"#sandboxes tr[data-id='{mine}']")
        self.page.evaluate("() => { location.hash = '#/events'; }")
        self.page.wait_for_selector(f"tr[data-sandbox='{mine}']")
        self.assertEqual(self.page.query_selector_all(f"[data-sandbox='{theirs}'], [data-id='{theirs}']"), [])
        self.page.evaluate("() => { location.hash = '#/'; }")
        self.page.wait_for_selector(f"#sandboxes tr[data-id='{mine}']")
        self.assertIsNone(self.page.query_selector(f"#sandboxes tr[data-id='{theirs}']"))

        self.page.evaluate(f"() => {{ location.hash = '#/sandbox/{theirs}'; }}")
        self.page.wait_for_selector("#gone")
        outcomes = self.page.evaluate("""async ([theirs, mine]) => {
            const key = sessionStorage.getItem('sandboxd.key'), auth = { Authorization: `Bearer ${key}` };
            const call = async (method, path, body) => {
                const r = await fetch(path, { method, headers: { ...auth, 'Content-Type': 'application/json' }, body });
                return `${r.status} ${(await r.json()).error?.code}`;
            };
            const ws = (id, protocols) => new Promise((resolve) => {
                const s = new WebSocket(`ws://${location.host}/sandboxes/${id}/ws`, protocols);
                s.onopen = () => { s.close(); resolve('opened'); };
                s.onerror = () => resolve('refused');
            });
            const token = await (await fetch(`/sandboxes/${mine}/session-token`, { method: 'POST', headers: auth })).json();
            return {
              destroy: await call('DELETE', `/sandboxes/${theirs}`),
              ttl: await call('PATCH', `/sandboxes/${theirs}`, JSON.stringify({ ttl: 5 })),
              stats: await call('GET', `/sandboxes/${theirs}/stats`),
              token: await call('POST', `/sandboxes/${theirs}/session-token`),
              wsWithMyToken: await ws(theirs, [token.protocol, `sandboxd.bearer.${token.token}`]),
              wsWithout: await ws(theirs, ['sandboxd.v1']),
              wsMine: await ws(mine, [token.protocol, `sandboxd.bearer.${token.token}`]),
            };
        }""", [theirs, mine])
        self.assertEqual(outcomes, {
            "destroy": "404 SANDBOX_NOT_FOUND", "ttl": "404 SANDBOX_NOT_FOUND",
            "stats": "404 SANDBOX_NOT_FOUND", "token": "404 SANDBOX_NOT_FOUND",
            "wsWithMyToken": "refused", "wsWithout": "refused", "wsMine": "opened"})
        status, body = self.daemon.request("GET", f"/sandboxes/{theirs}")
        self.assertEqual((status, body["state"], body["ttl"]), (200, "running", 600))

        self.page.evaluate(f"() => {{ location.hash = '#/sandbox/{mine}'; }}")
        # (Its state is "disconnected" now: the session above closed.)
        self.page.wait_for_selector(f"h2:has-text('{mine}') ~ #details dd[data-field='state']")
        self.page.click("#open-terminal")
        self.page.wait_for_function(
            "() => document.querySelector('#terminal').dataset.pid !== undefined")
        self.page.click("#terminal .xterm")
        self.page.keyboard.type("echo hi\r")
        self.page.wait_for_function("""() => [...document.querySelectorAll('#terminal .xterm-rows > div')]
            .some((row) => row.textContent.trim() === 'hi')""")
