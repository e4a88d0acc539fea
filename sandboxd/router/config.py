"""
The router's configuration file (TOML)::

    listen = "tcp:7700:interface=127.0.0.1"   # strports description
    etcd = ["http://127.0.0.1:2379"]          # etcd client URLs
    prefix = "/sandboxd/"                     # the nodes' cluster.prefix
    poll = "1s"                               # how often node records are read
    connect_timeout = "3s"                    # a node that does not accept by then is unreachable
    node_ca = ""                              # CA file for nodes advertising https://

Every key has the default shown; unknown keys are errors naming the key.
"""

import tomllib

import attrs

from sandboxd.configvalues import parse_duration

_KEYS = {"listen", "etcd", "prefix", "poll", "connect_timeout", "node_ca"}


class RouterConfigError(Exception):
    """The router's configuration is unusable; the message names the key."""


@attrs.frozen
class RouterConfig:
    listen: str = "tcp:7700:interface=127.0.0.1"
    etcd: tuple = ("http://127.0.0.1:2379",)
    prefix: str = "/sandboxd/"
    poll: float = 1.0
    connect_timeout: float = 3.0
    node_ca: str = ""


def _fail(source, key, reason):
    raise RouterConfigError(f"{source}: {key}: {reason}")


def parse_router_config(text, source="<string>"):
    """A L{RouterConfig} from TOML text; L{RouterConfigError} if unusable."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RouterConfigError(f"{source}: invalid TOML: {e}") from None
    for name in sorted(set(document) - _KEYS):
        _fail(source, name, f"unknown key (known: {', '.join(sorted(_KEYS))})")
    settings = {}
    for name in ("listen", "prefix", "node_ca"):
        if name in document:
            if not isinstance(document[name], str):
                _fail(source, name, "must be a string")
            settings[name] = document[name]
    if not settings.get("listen", "x"):
        _fail(source, "listen", "must not be empty")
    prefix = settings.get("prefix", "/sandboxd/")
    if not (prefix.startswith("/") and prefix.endswith("/")):
        _fail(source, "prefix", f"must start and end with '/', got {prefix!r}")
    if "etcd" in document:
        urls = document["etcd"]
        if (not isinstance(urls, list) or not urls
                or not all(isinstance(u, str) and u.startswith(("http://", "https://"))
                           for u in urls)):
            _fail(source, "etcd", "must be a non-empty array of http:// or https:// URLs")
        settings["etcd"] = tuple(urls)
    for name in ("poll", "connect_timeout"):
        if name in document:
            try:
                value = parse_duration(document[name])
            except (TypeError, ValueError) as e:
                _fail(source, name, str(e))
            if value <= 0:
                _fail(source, name, "must be greater than 0")
            settings[name] = value
    return RouterConfig(**settings)


def load_router_config(path):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RouterConfigError(f"{path}: cannot read: {e}") from None
    return parse_router_config(text, path)
