"""
Headless Chromium (Debian's ``chromium``, installed by scripts/setup.sh)
loads the web app of L{tests.tunnel_app} from a real sandbox through the
path proxy (the daemon's TCP listener) and through a dedicated host port:
the page renders, its script opens a WebSocket back through the same
tunnel, and the echo it writes into the DOM is what the test reads from
``--dump-dom``.
"""

import shutil
import subprocess
import tempfile

from twisted.python import log

from tests.daemon import on_gvisor
from tests.dockerutil import missing
from tests.test_e2e_tunnels import TunnelTestCase

#: Flags for a browser on a machine with no network beyond loopback and the
#: bridge: nothing of its own goes out, no sandbox (we run as root), no GPU.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Virtual time passes only while no fetch is pending; the page holds
    # one open until its echo is in the DOM (tests/tunnel_app.py).
    "--virtual-time-budget=30000",
)


def require_chromium():
    """
    The chromium binary, or a skip (a failure under CI=true).
    """
    binary = shutil.which("chromium")
    if binary is None:
        missing("no chromium (scripts/setup.sh installs it)")
    return binary


#: Browser runs before giving up on seeing ``until`` in the DOM.
ATTEMPTS = 3


def dump_dom(url, until=None):
    """
    The DOM Chromium has after loading ``url`` (a fresh profile each time).
    With ``until``, load again (at most ATTEMPTS times) while the DOM lacks
    it: on a loaded machine the page's pending "hold" fetch has once ended
    (under gVisor) before the echo came, and the virtual time budget then
    ran out at once.  Each miss is logged.
    """
    for attempt in range(1, ATTEMPTS + 1):
        dom = _dump_dom(url)
        if until is None or until in dom:
            return dom
        log.msg(f"chromium attempt {attempt} on {url} did not show {until!r}: {dom[:400]!r}")
    return dom


def _dump_dom(url):
    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="sandboxd-chromium-") as profile:
        done = subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True, text=True, timeout=180,
        )
    if done.returncode != 0:
        raise AssertionError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


class BrowserTests(TunnelTestCase):
    """
    A browser through each kind of tunnel.
    """

    def setUp(self):
        require_chromium()
        return TunnelTestCase.setUp(self)

    def assertEchoed(self, url):
        echoed = '<p id="echo">echo:ping through the tunnel</p>'
        dom = dump_dom(url, until=echoed)
        self.assertIn('<h1 id="title">served from the sandbox</h1>', dom)
        self.assertIn(echoed, dom)

    def test_path_proxy(self):
        """
        Through the path proxy on the daemon's TCP port, the page renders
        and its WebSocket (a URL relative to the page, so under the
        prefix) echoes.
        """
        self.assertEchoed(f"http://127.0.0.1:{self.daemon.port}{self.path('/')}")

    def test_host_port(self):
        """
        Through a dedicated host port, the page renders and its WebSocket
        echoes.
        """
        tunnel = self.expose()
        self.assertEchoed(tunnel["url"] + "/")


on_gvisor(globals(), BrowserTests)
