"""
Where a tunnel goes and what it may reach: strict port parsing, the agent
port refusal, and the path-proxy rewrites (the prefix, ``Location``,
``Set-Cookie``, ``X-Forwarded-*``).

Pure functions with no I/O; the proxy and the host ports use them.
"""

import re
from urllib.parse import urlsplit

from sandboxd.api.errors import ApiError

_DIGITS = re.compile(rb"[1-9][0-9]{0,4}")
_COOKIE_PATH = re.compile(rb"(;\s*path\s*=\s*)([^;]*)", re.IGNORECASE)

#: Request headers that belong to one hop and are never passed on
#: (RFC 9110 7.6.1), plus the ones the proxy sets itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)


def parse_port(raw):
    """
    A port from its path segment or JSON value: 1 to 65535 written in
    decimal digits with no sign, no leading zero and no other character
    (``08080``, ``+80``, ``0x50``, `` 80`` are refused).  Raise a 400
    ``INVALID_PORT`` ApiError otherwise.
    """
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw).encode()
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    if not isinstance(raw, bytes) or not _DIGITS.fullmatch(raw) or int(raw) > 65535:
        shown = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else repr(raw)
        raise ApiError(
            400, "INVALID_PORT", f"{shown!r} is not a port (a decimal number from 1 to 65535)"
        )
    return int(raw)


def check_target(sandbox, port):
    """
    Refuse a port no tunnel may reach (403 ``PORT_RESERVED``) and a sandbox
    that has no address to reach (409 ``SANDBOX_NOT_RUNNING``); return the
    address to connect to.
    """
    if port in sandbox.reserved_ports:
        raise ApiError(
            403, "PORT_RESERVED",
            f"port {port} of sandbox {sandbox.id} is reserved for its agent",
        )
    address = sandbox.address
    if not sandbox.alive or address is None:
        raise ApiError(
            409, "SANDBOX_NOT_RUNNING",
            f"sandbox {sandbox.id} is {sandbox.state.value}: it has no port to reach",
        )
    return address


def split_proxy_path(path):
    """
    Split a raw request path ``/sandboxes/{id}/ports/{port}/rest`` into
    (id, port segment, rest) with ``rest`` raw and starting with ``/``
    (``/`` when there is none); None when the path is not of that form.
    """
    parts = path.split(b"/", 5)
    if len(parts) < 5 or parts[0] or parts[1] != b"sandboxes" or parts[3] != b"ports":
        return None
    rest = b"/" + parts[5] if len(parts) == 6 else b"/"
    return parts[2], parts[4], rest


def rewrite_location(value, prefix, upstream_authorities):
    """
    A ``Location`` the sandbox's app sent, made to stay under ``prefix``:
    an absolute path gets the prefix; an absolute URL naming the sandbox's
    own address (one of ``upstream_authorities``, ``b"host:port"``) becomes
    a prefixed path; anything else (relative, another site) is kept.
    """
    if value.startswith(b"//"):
        return value
    if value.startswith(b"/"):
        return prefix + value
    try:
        parts = urlsplit(value.decode("latin-1"))
    except ValueError:
        return value
    if parts.scheme in ("http", "https") and parts.netloc.encode("latin-1") in upstream_authorities:
        tail = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return prefix + tail.encode("latin-1") + (
            f"#{parts.fragment}".encode("latin-1") if parts.fragment else b""
        )
    return value


def rewrite_set_cookie(value, prefix):
    """
    A ``Set-Cookie`` with its ``Path`` put under ``prefix`` (``Path=/`` ->
    ``Path=/sandboxes/x/ports/8080/``); a cookie with no ``Path`` is kept
    (the browser scopes it to the request's directory, already under the
    prefix).
    """

    def under(match):
        path = match.group(2).strip()
        if not path.startswith(b"/"):
            path = b"/" + path
        return match.group(1) + prefix + path

    return _COOKIE_PATH.sub(under, value)


def forwarded_headers(request, prefix):
    """
    The ``X-Forwarded-*`` headers for a proxied request: the caller's
    address (appended to one it sent), the scheme and Host it used, and
    the stripped prefix.
    """
    peer = request.getClientAddress()
    client = getattr(peer, "host", None) or "unix"
    sent = request.getHeader(b"x-forwarded-for")
    chain = f"{sent.decode('latin-1')}, {client}" if sent else client
    host = request.getHeader(b"host") or b"localhost"
    return {
        b"x-forwarded-for": chain.encode("latin-1"),
        b"x-forwarded-proto": b"https" if request.isSecure() else b"http",
        b"x-forwarded-host": host,
        b"x-forwarded-prefix": prefix,
    }
