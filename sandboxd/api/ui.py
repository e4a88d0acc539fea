"""
The web dashboard's files (docs/ui.md): ``GET /ui/`` and the bundle it
loads, built from ui/ by esbuild into sandboxd/ui/static and shipped with
the package.

The files are public: they hold no data, so a TCP request for them needs no
signature (L{is_page_request}; the signing gateway passes them unsigned
too) and every page's data comes from the API under its usual rules.  The
Unix socket always serves them (the operator's; ``sbx ui`` opens a loopback
port to it); the TCP listener only with ``[ui] enabled``.
"""

import json
import os

from twisted.internet.address import UNIXAddress

from sandboxd.api.errors import ApiError

#: Where the built bundle is.
STATIC = os.path.join(os.path.dirname(os.path.dirname(__file__)), "ui", "static")
#: The files served, with their types.
FILES = {
    "index.html": b"text/html; charset=utf-8",
    "app.js": b"text/javascript; charset=utf-8",
    "app.css": b"text/css; charset=utf-8",
}
#: A request header by which a forwarder (``sbx ui --read-only``) asks for
#: the viewer's page.
READ_ONLY_HEADER = b"x-sandboxd-ui-read-only"
#: Nothing but this origin's own files and API; inline styles for xterm.js.
_HEADERS = {
    b"Content-Security-Policy": b"default-src 'self'; connect-src 'self' ws: wss:; "
                                b"style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-cache",
}


def is_page_request(method, path):
    """Whether a request (method, raw path: bytes) is for the dashboard's files."""
    return method in (b"GET", b"HEAD") and (path == b"/ui" or path.startswith(b"/ui/"))


class Dashboard:
    """
    Serves the files of ``directory`` (read once, on first use: about
    400 kB) under ``/ui/``.
    """

    def __init__(self, directory=STATIC):
        self._directory = directory
        self._files = None

    def _file(self, name):
        if self._files is None:
            files = {}
            for file in FILES:
                try:
                    with open(os.path.join(self._directory, file), "rb") as f:
                        files[file] = f.read()
                except OSError:
                    pass
            self._files = files
        return self._files.get(name)

    def _check(self, request, config):
        if not (isinstance(request.getHost(), UNIXAddress) or config.ui.enabled):
            raise ApiError(404, "UI_DISABLED",
                           "the dashboard is off on TCP ([ui] enabled in the configuration)")

    def serve(self, request, config, name):
        """The bytes of file ``name`` (``""``: the page), or ApiError."""
        self._check(request, config)
        name = name or "index.html"
        body = self._file(name) if name in FILES else None
        if body is None:
            raise ApiError(404, "NOT_FOUND", f"the dashboard has no file {name!r}")
        for header, value in _HEADERS.items():
            request.setHeader(header, value)
        request.setHeader(b"Content-Type", FILES[name])
        return body

    def settings(self, request, config):
        """``/ui/config.json``: what the page needs to know of the configuration."""
        self._check(request, config)
        read_only = config.ui.read_only or request.getHeader(READ_ONLY_HEADER) is not None
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-cache")
        return json.dumps({"read_only": read_only}).encode()
