"""
Firecracker's hybrid vsock, host side: the VM's vsock device is a Unix
socket on the host; a client connects to it, writes ``CONNECT <port>\\n``
and Firecracker answers ``OK <host-side port>\\n`` once a guest process
listening on vsock port ``<port>`` accepted, or closes the connection when
none does (Firecracker's docs/vsock.md).  After the reply the socket is the
stream.
"""

import re

from twisted.internet.endpoints import UNIXClientEndpoint

from sandboxd.vsock._handshake import HANDSHAKE_TIMEOUT, HandshakeFailed, PreambleEndpoint

#: The longest reply line taken (``OK 4294967295`` is 13 bytes).
MAX_REPLY = 64
_OK = re.compile(rb"OK ([0-9]{1,10})")


class VsockConnectFailed(HandshakeFailed):
    """
    The hybrid-vsock peer refused or garbled the ``CONNECT``.
    """


class HybridVsockDialogue:
    """
    One ``CONNECT port`` exchange (sans-IO): L{request}, then L{feed} bytes
    until it returns what followed the ``OK`` line.
    """

    def __init__(self, port):
        self.port = port
        self.name = f"hybrid vsock CONNECT {port}"
        self._buffer = b""
        #: The host-side port Firecracker named in its OK.
        self.host_port = None

    def request(self):
        return b"CONNECT %d\n" % self.port

    def feed(self, data):
        self._buffer += data
        line, newline, rest = self._buffer.partition(b"\n")
        if not newline:
            if len(self._buffer) > MAX_REPLY:
                raise VsockConnectFailed(
                    f"{self.name}: reply longer than {MAX_REPLY} bytes without a newline"
                )
            return None
        match = _OK.fullmatch(line)
        if match is None:
            shown = line[:MAX_REPLY].decode("ascii", "replace")
            raise VsockConnectFailed(f"{self.name}: expected 'OK <port>', got {shown!r}")
        self.host_port = int(match[1])
        return rest

    def closed(self, reason):
        return (
            f"{self.name}: the peer closed the connection before OK"
            f" (does anything in the guest listen on vsock port {self.port}?)"
        )


def hybrid_vsock_endpoint(reactor, uds_path, port, timeout=HANDSHAKE_TIMEOUT):
    """
    An IStreamClientEndpoint to guest vsock port C{port} through the
    Firecracker vsock Unix socket at C{uds_path}.
    """
    inner = UNIXClientEndpoint(reactor, uds_path, timeout=timeout)
    return PreambleEndpoint(inner, lambda: HybridVsockDialogue(port), reactor, timeout)
