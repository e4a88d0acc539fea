"""
Where the daemon is: parsing ``SANDBOX_ENDPOINT`` and ``SANDBOX_AUTH``.
"""

import os
from urllib.parse import urlsplit

from sandbox.errors import InvalidEndpointError

DEFAULT_ENDPOINT = "unix:///var/run/sandboxd/sandboxd.sock"


class Endpoint:
    """
    A parsed endpoint: ``unix:///path.sock``, ``http://host[:port][/prefix]``
    or ``https://host[:port][/prefix]``.
    """

    __slots__ = ("url", "scheme", "path", "host", "port", "prefix")

    def __init__(self, url, scheme, path=None, host=None, port=None, prefix=""):
        self.url = url
        self.scheme = scheme
        self.path = path
        self.host = host
        self.port = port
        self.prefix = prefix

    def __repr__(self):
        return f"Endpoint({self.url!r})"

    def __str__(self):
        return self.url

    def __eq__(self, other):
        if not isinstance(other, Endpoint):
            return NotImplemented
        return (self.scheme, self.path, self.host, self.port, self.prefix) == (
            other.scheme,
            other.path,
            other.host,
            other.port,
            other.prefix,
        )

    @property
    def is_unix(self):
        return self.scheme == "unix"

    @property
    def tls(self):
        return self.scheme == "https"

    @property
    def host_header(self):
        """
        The ``Host`` header value.
        """
        if self.is_unix:
            return "localhost"
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    def ws_uri(self, path):
        """
        The WebSocket URI of the API ``path`` (which starts with "/").
        """
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://{self.host_header}{self.prefix}{path}"


def parse_endpoint(url=None):
    """
    Parse ``url``, else ``$SANDBOX_ENDPOINT``, else the default Unix socket.
    Raise InvalidEndpointError when it is not one of the three forms.
    """
    if url is None:
        url = os.environ.get("SANDBOX_ENDPOINT") or DEFAULT_ENDPOINT
    if isinstance(url, Endpoint):
        return url
    if not isinstance(url, str) or not url.strip():
        raise InvalidEndpointError(f"invalid endpoint {url!r}: empty")
    url = url.strip()
    if url.startswith("unix:"):
        path = url[len("unix://") :] if url.startswith("unix://") else url[len("unix:") :]
        if not path:
            raise InvalidEndpointError(
                f"invalid endpoint {url!r}: expected unix:///path/to.sock"
            )
        return Endpoint(url, "unix", path=path)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidEndpointError(f"invalid endpoint {url!r}: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidEndpointError(
            f"invalid endpoint {url!r}: use unix:///path, http://host:port "
            "or https://host:port"
        )
    if not parts.hostname:
        raise InvalidEndpointError(f"invalid endpoint {url!r}: no host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidEndpointError(
            f"invalid endpoint {url!r}: no query, fragment or credentials allowed "
            "(put the token in SANDBOX_AUTH)"
        )
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return Endpoint(
        url, parts.scheme, host=parts.hostname, port=port, prefix=parts.path.rstrip("/")
    )


def resolve_ca_file(ca_file=None):
    """
    The CA certificate file (PEM) an https endpoint is verified with:
    ``ca_file``, else ``$SANDBOX_CA_FILE``, else None (the system's trust
    store).
    """
    return ca_file or os.environ.get("SANDBOX_CA_FILE") or None


def resolve_auth(auth=None):
    """
    The bearer token: ``auth``, else ``$SANDBOX_AUTH``, else None.
    """
    if auth is None:
        auth = os.environ.get("SANDBOX_AUTH") or None
    return auth
