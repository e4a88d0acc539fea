"""
Headless Chromium for the dashboard's tests: Debian's ``chromium`` driven by
Playwright (PyPI) through its ``executable_path``, a fresh profile each
launch, and a check that a screenshot shows something.
"""

import base64
import os
import shutil

from twisted.trial.unittest import FailTest, SkipTest

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover (setup.cfg's test extra installs it)
    sync_playwright = None

#: A browser with nothing of its own going out, no sandbox (root), no GPU.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Where a run keeps its screenshots for docs/ (unset: a temporary dir).
SCREENSHOTS = os.environ.get("SANDBOXD_UI_SCREENSHOTS")
#: Milliseconds Playwright waits for a selector or a condition.
WAIT_MS = 30000


def require_browser():
    """(chromium path, sync_playwright), or a skip (a failure under CI=true)."""
    binary = shutil.which("chromium")
    reason = None
    if binary is None:
        reason = "no chromium (scripts/setup.sh installs it)"
    elif sync_playwright is None:
        reason = "no playwright (make setup installs it)"
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            raise FailTest(reason)
        raise SkipTest(reason)
    return binary, sync_playwright


class Browser:
    """One headless Chromium (a fresh profile) and one page in it."""

    def __init__(self, width=1280, height=800):
        binary, playwright = require_browser()
        self._manager = playwright()
        self._playwright = self._manager.start()
        self.browser = self._playwright.chromium.launch(
            executable_path=binary, headless=True, args=FLAGS)
        self.context = self.browser.new_context(viewport={"width": width, "height": height})
        self.context.set_default_timeout(WAIT_MS)
        self.page = self.context.new_page()
        self.console = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def close(self):
        self.browser.close()
        self._manager.__exit__(None, None, None)

    def screenshot(self, testcase, name, directory):
        """
        Take a screenshot of the page into ``directory``/``name``.png and fail
        ``testcase`` if it is blank (one colour over nearly all of it, or
        hardly any colours).
        """
        path = os.path.join(SCREENSHOTS or directory, f"{name}.png")
        data = self.page.screenshot(path=path)
        colours, share = self.colour_stats(data)
        testcase.assertGreater(colours, 8, f"{name}: {colours} colours: blank?")
        testcase.assertLess(share, 0.97, f"{name}: one colour covers {share:.0%}")
        return path

    def colour_stats(self, png):
        """(distinct colours, share of the commonest) of a PNG, read by the browser."""
        page = self.context.new_page()
        try:
            return tuple(page.evaluate("""async (url) => {
                const img = new Image(); img.src = url; await img.decode();
                const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
                const g = c.getContext("2d"); g.drawImage(img, 0, 0);
                const d = g.getImageData(0, 0, c.width, c.height).data, n = new Map();
                for (let i = 0; i < d.length; i += 4) { const k = (d[i] << 16) | (d[i+1] << 8) | d[i+2]; n.set(k, (n.get(k) || 0) + 1); }
                return [n.size, Math.max(...n.values()) / (d.length / 4)];
            }""", "data:image/png;base64," + base64.b64encode(png).decode()))
        finally:
            page.close()
