"""
The web dashboard end to end: a real daemon (Docker), ``sbx ui`` forwarding a
loopback port to its Unix socket, and headless Chromium (tests/uibrowser.py)
on the page.  The page lists a sandbox the test creates, shows its
``sandbox.created`` event from the live stream, runs ``echo hi`` in a
browser terminal (and follows a resize), destroys it with a confirmation;
a read-only forwarder refuses every change; screenshots of each page are
taken and checked not to be blank (docs/ui.md shows them).
"""

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

from twisted.python import log
from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import shared_daemon
from tests.uibrowser import Browser, require_browser


def start_forwarder(daemon, *options):
    """``sbx ui`` on ``daemon``'s socket: (process, URL with its key)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sbx.main", "--endpoint", daemon.endpoint, "ui", *options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:  # ends when the process does
        lines.append(line)
        if line.strip().startswith("http://"):
            return process, line.strip()
    process.wait()
    raise AssertionError(f"sbx ui printed no URL: {''.join(lines)}")


def stop(process):
    process.terminate()
    process.wait(30)
    process.stdout.close()


def forwarder_request(url, method, path, key=True, headers=None):
    """One request through a forwarder: (status, decoded JSON or None)."""
    match = re.match(r"http://127\.0\.0\.1:(\d+)/ui/#key=(.+)$", url)
    port, secret = int(match[1]), match[2]
    sent = dict(headers or {})
    if key:
        sent["Authorization"] = f"Bearer {secret}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        kind = response.getheader("Content-Type") or ""
        return response.status, json.loads(raw) if raw and "json" in kind else raw
    finally:
        connection.close()


class DashboardTests(SynchronousTestCase):
    """The operator's dashboard through ``sbx ui``."""

    def setUp(self):
        require_browser()
        self.daemon = shared_daemon()
        self.forwarder, self.url = start_forwarder(self.daemon)
        self.addCleanup(stop, self.forwarder)
        self.browser = Browser()
        self.addCleanup(self.browser.close)
        self.addCleanup(lambda: log.msg("browser console:\n" + "\n".join(self.browser.console)))
        self.shots = tempfile.mkdtemp(prefix="sandboxd-ui-shots-")
        self.page = self.browser.page

    def create(self):
        """A sandbox with a label of its own, destroyed after the test."""
        status, body = self.daemon.request(
            "POST", "/sandboxes", {"labels": {"ui-test": uuid.uuid4().hex[:12]}})
        self.assertEqual(status, 201, body)
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{body['id']}")
        return body

    def open(self, fragment="#/"):
        self.page.goto(self.url)
        self.page.wait_for_selector("header nav")
        self.page.evaluate("(f) => { location.hash = f; }", fragment)

    def test_lists_sandbox_and_its_created_event(self):
        """
        With the events page open, a sandbox created over the socket shows
        its ``sandbox.created`` event (from the live stream: that page never
        polls), then the sandboxes page lists it with its profile, state and
        label.
        """
        self.open("#/events")
        self.page.wait_for_selector("#stream-status:has-text('live')")
        started = time.monotonic()
        sandbox = self.create()
        sid = sandbox["id"]
        self.page.wait_for_selector(f"tr[data-type='sandbox.created'][data-sandbox='{sid}']")
        log.msg(f"sandbox.created of {sid} shown {time.monotonic() - started:.3f} s "
                "after the create was sent")
        self.browser.screenshot(self, "events", self.shots)
        self.page.evaluate("() => { location.hash = '#/'; }")
        row = self.page.wait_for_selector(f"#sandboxes tr[data-id='{sid}']")
        cells = row.inner_text()
        self.assertIn("default", cells)
        self.assertIn("running", cells)
        self.assertIn(f"ui-test:{sandbox['labels']['ui-test']}", cells)
        # The label filter keeps it alone.
        self.page.fill("#filter-label", f"ui-test:{sandbox['labels']['ui-test']}")
        self.page.press("#filter-label", "Enter")
        self.page.wait_for_selector("#sandbox-count:has-text('1 of 1 sandboxes')")
        # Its CPU and memory come from the stats route.
        self.page.wait_for_selector(f"#sandboxes tr[data-id='{sid}'] td.num:has-text('MiB')")
        self.browser.screenshot(self, "sandboxes", self.shots)

    def test_terminal_and_destroy(self):
        """
        The sandbox page's terminal (xterm.js on a pty through the session
        WebSocket, a session token in place of a key) runs ``echo hi`` and
        shows ``hi``; a smaller window resizes the pty (``stty size``
        agrees); Destroy, confirmed, removes the sandbox.
        """
        sid = self.create()["id"]
        self.open(f"#/sandbox/{sid}")
        self.page.wait_for_selector("dd[data-field='state']:has-text('running')")
        self.page.click("#open-terminal")
        self.page.wait_for_selector("#terminal .xterm-rows")
        self.page.wait_for_function(
            "() => document.querySelector('#terminal').dataset.pid !== undefined")
        self.page.click("#terminal .xterm")
        self.page.keyboard.type("echo hi\r")
        self.page.wait_for_function("""() => [...document.querySelectorAll('#terminal .xterm-rows > div')]
            .some((row) => row.textContent.trim() === 'hi')""")
        before = self.page.get_attribute("#terminal", "data-size")
        self.page.set_viewport_size({"width": 640, "height": 700})
        self.page.wait_for_function(
            "(before) => document.querySelector('#terminal').dataset.size !== before", arg=before)
        self.page.wait_for_function(
            "() => document.querySelector('#terminal').dataset.resized"
            " === document.querySelector('#terminal').dataset.size")
        cols, rows = self.page.get_attribute("#terminal", "data-size").split("x")
        self.page.keyboard.type("stty size\r")
        self.page.wait_for_function("""(want) => [...document.querySelectorAll('#terminal .xterm-rows > div')]
            .some((row) => row.textContent.trim() === want)""", arg=f"{rows} {cols}")
        self.page.wait_for_selector(".charts figure")
        self.browser.screenshot(self, "sandbox", self.shots)
        self.page.click("#destroy")
        self.page.click("#confirm-ok")
        self.page.wait_for_selector("#gone")
        status, body = self.daemon.request("GET", f"/sandboxes/{sid}")
        self.assertEqual(status, 404, body)

    def test_pause_and_resume(self):
        """
        Pause, confirmed, freezes the sandbox (the daemon says paused and the
        button offers Resume); Resume, confirmed, brings it back.
        """
        sid = self.create()["id"]
        self.open(f"#/sandbox/{sid}")
        self.page.wait_for_selector("dd[data-field='state']:has-text('running')")
        self.page.click("#pause:has-text('Pause')")
        self.page.click("#confirm-ok")
        self.page.wait_for_selector("dd[data-field='state']:has-text('paused')")
        self.page.wait_for_selector("#pause:has-text('Resume')")
        status, body = self.daemon.request("GET", f"/sandboxes/{sid}")
        self.assertEqual((status, body["state"]), (200, "paused"))
        self.page.click("#pause")
        self.page.click("#confirm-ok")
        self.page.wait_for_selector("#pause:has-text('Pause')")
        status, body = self.daemon.request("GET", f"/sandboxes/{sid}")
        self.assertEqual(status, 200, body)
        self.assertIn(body["state"], ("running", "disconnected"))

    def test_pools_page(self):
        """The pools page shows each profile's ready and target counts."""
        self.open("#/pools")
        section = self.page.wait_for_selector("section.pool[data-profile='default']")
        self.assertRegex(section.inner_text(), r"ready \d+ / target \d+")
        self.browser.screenshot(self, "pools", self.shots)

    def test_cancel_keeps_sandbox(self):
        """Destroy answered with Cancel in the confirmation leaves the sandbox."""
        sid = self.create()["id"]
        self.open(f"#/sandbox/{sid}")
        self.page.wait_for_selector("dd[data-field='state']:has-text('running')")
        self.page.click("#destroy")
        self.page.click("#confirm-cancel")
        self.page.wait_for_selector("#confirm", state="detached")
        status, body = self.daemon.request("GET", f"/sandboxes/{sid}")
        self.assertEqual((status, body["state"]), (200, "running"))


class ForwarderTests(SynchronousTestCase):
    """What ``sbx ui`` lets through to the operator's socket."""

    def setUp(self):
        self.daemon = shared_daemon()

    def test_key_host_and_origin(self):
        """
        The page's files need no key; the API needs the printed key; a
        foreign Host (DNS rebinding) or Origin is refused.
        """
        process, url = start_forwarder(self.daemon)
        self.addCleanup(stop, process)
        port = int(re.search(r":(\d+)/", url)[1])
        status, body = forwarder_request(url, "GET", "/ui/", key=False)
        self.assertEqual(status, 200)
        self.assertIn(b'<script type="module" src="app.js">', body)
        status, body = forwarder_request(url, "GET", "/sandboxes", key=False)
        self.assertEqual((status, body["error"]["code"]), (401, "UI_KEY_INVALID"))
        status, body = forwarder_request(url, "GET", "/sandboxes")
        self.assertEqual(status, 200)
        self.assertIsInstance(body, list)
        status, body = forwarder_request(url, "GET", "/sandboxes",
                                         headers={"Host": f"evil.example:{port}"})
        self.assertEqual((status, body["error"]["code"]), (403, "BAD_HOST"))
        status, body = forwarder_request(url, "GET", "/sandboxes",
                                         headers={"Origin": "http://evil.example"})
        self.assertEqual((status, body["error"]["code"]), (403, "BAD_ORIGIN"))

    def test_read_only(self):
        """
        ``sbx ui --read-only``: reads pass, a DELETE is refused (the sandbox
        stays), and the page shows the badge and no actions.
        """
        require_browser()
        process, url = start_forwarder(self.daemon, "--read-only")
        self.addCleanup(stop, process)
        status, body = self.daemon.request("POST", "/sandboxes", {})
        sid = body["id"]
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{sid}")
        status, body = forwarder_request(url, "DELETE", f"/sandboxes/{sid}")
        self.assertEqual((status, body["error"]["code"]), (403, "READ_ONLY"))
        self.assertEqual(self.daemon.request("GET", f"/sandboxes/{sid}")[0], 200)
        status, body = forwarder_request(url, "GET", "/ui/config.json")
        self.assertEqual((status, body), (200, {"read_only": True}))
        browser = Browser()
        self.addCleanup(browser.close)
        browser.page.goto(url.replace("#key=", f"#/sandbox/{sid}&key="))
        browser.page.wait_for_selector("#read-only")
        browser.page.wait_for_selector("dd[data-field='state']")
        self.assertEqual(browser.page.query_selector_all("#destroy, #open-terminal, #pause"), [])

    def test_tcp_off_by_default(self):
        """Without ``[ui] enabled`` the TCP listener does not serve the page."""
        status, body = self.daemon.tcpRequest("GET", "/ui/")
        self.assertEqual((status, body["error"]["code"]), (404, "UI_DISABLED"))
