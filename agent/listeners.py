"""
Where the agent listens: ``--listen`` (or SANDBOX_AGENT_LISTEN) names a
byte stream.

- ``tcp:PORT`` or ``tcp:HOST:PORT``: a TCP server (containers).
- ``vsock:PORT``: an AF_VSOCK server on any CID (Firecracker, vhost-vsock).
- ``vserial:PATH``: a virtio-serial port's character device
  (``/dev/vport0p1``), where the daemon speaks first (agent/vserial.py).
"""

import socket

from .vserial import SerialLink

#: Any CID: the guest's own, whatever it is.
VMADDR_CID_ANY = 0xFFFFFFFF


class ListenError(Exception):
    """
    A --listen value the agent cannot serve; the message says why.
    """


class Listen:
    """
    A parsed --listen value.
    """

    __slots__ = ("kind", "host", "port", "path")

    def __init__(self, kind, host=None, port=None, path=None):
        self.kind, self.host, self.port, self.path = kind, host, port, path

    def __str__(self):
        if self.kind == "tcp":
            return f"tcp:{self.host}:{self.port}"
        if self.kind == "vsock":
            return f"vsock:{self.port}"
        return f"vserial:{self.path}"


def parse_listen(text, default_host="0.0.0.0"):
    """
    The Listen that ``text`` names, or ListenError.
    """
    kind, _, rest = text.partition(":")
    if kind == "tcp":
        host, colon, port = rest.rpartition(":")
        return Listen("tcp", host=host if colon and host else default_host,
                      port=_port(port, text, 65535))
    if kind == "vsock":
        return Listen("vsock", port=_port(rest, text, 0xFFFFFFFE))
    if kind == "vserial":
        if not rest.startswith("/"):
            raise ListenError(f"--listen {text!r}: vserial needs an absolute device path")
        return Listen("vserial", path=rest)
    raise ListenError(f"--listen {text!r}: use tcp:[HOST:]PORT, vsock:PORT or vserial:PATH")


def _port(text, whole, high):
    if not text.isdigit() or not 0 <= int(text) <= high:
        raise ListenError(f"--listen {whole!r}: {text!r} is not a port (0-{high})")
    return int(text)


async def open_listener(loop, listen, new_protocol):
    """
    Start serving ``new_protocol()`` connections on ``listen``; return an
    object with ``close()`` and the address actually bound (a string).
    """
    if listen.kind == "tcp":
        server = await loop.create_server(
            new_protocol, listen.host, listen.port, reuse_address=True, backlog=128
        )
        host, port = server.sockets[0].getsockname()[:2]
        return server, f"{host}:{port}"
    if listen.kind == "vsock":
        family = getattr(socket, "AF_VSOCK", None)
        if family is None:
            raise ListenError("this Python has no AF_VSOCK")
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((VMADDR_CID_ANY, listen.port))
        except OSError as e:
            sock.close()
            raise ListenError(f"cannot listen on vsock port {listen.port}: {e}") from e
        server = await loop.create_server(new_protocol, sock=sock, backlog=128)
        return server, f"vsock:{listen.port}"
    try:
        link = SerialLink(loop, listen.path, new_protocol)
    except OSError as e:
        raise ListenError(f"cannot open {listen.path}: {e.strerror}") from e
    return link, f"vserial:{listen.path}"
