"""
AF_VSOCK, host side: a guest (CID, port) reached through the host kernel's
vhost-vsock, as QEMU's ``vhost-vsock-pci`` device offers.

Twisted has no AF_VSOCK transport, so the connect runs in the reactor's
thread pool (a blocking connect with a timeout) and the connected socket is
then driven by Twisted's generic stream-socket connection.  On a host
without vhost-vsock (this project's CI machine) the socket is created but
the connect fails: L{VsockUnavailable}.
"""

import errno
import socket

import attr
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IStreamClientEndpoint
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

#: The CID of the host as seen from a guest, and the lowest guest CID.
VMADDR_CID_HOST = 2
MIN_GUEST_CID = 3


class VsockUnavailable(ConnectionError):
    """
    The host cannot open AF_VSOCK connections (no vsock transport), or the
    guest refused the port.
    """


@implementer(IAddress)
@attr.s(frozen=True, auto_attribs=True)
class VsockAddress:
    cid: int
    port: int


class _VsockConnection(tcp.Connection):
    """
    A connected AF_VSOCK socket under Twisted's stream-socket machinery.
    """

    def __init__(self, skt, protocol, reactor, peer):
        super().__init__(skt, protocol, reactor)
        self._peer = peer

    def getPeer(self):
        return self._peer

    def getHost(self):
        cid, port = self.socket.getsockname()[:2]
        return VsockAddress(cid, port)


def _connect(cid, port, timeout):
    family = getattr(socket, "AF_VSOCK", None)
    if family is None:
        raise VsockUnavailable("this Python has no AF_VSOCK")
    try:
        skt = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise VsockUnavailable(f"cannot create an AF_VSOCK socket: {e.strerror}") from e
    try:
        skt.settimeout(timeout)
        skt.connect((cid, port))
        skt.setblocking(False)
    except OSError as e:
        skt.close()
        name = errno.errorcode.get(e.errno, str(e.errno))
        raise VsockUnavailable(
            f"cannot connect to vsock {cid}:{port}: {e.strerror or e} ({name})"
        ) from e
    return skt


@implementer(IStreamClientEndpoint)
class VsockClientEndpoint:
    """
    Connects to guest C{cid}, vsock port C{port}.
    """

    def __init__(self, reactor, cid, port, timeout=10.0):
        self._reactor = reactor
        self.cid = cid
        self.port = port
        self._timeout = timeout

    def connect(self, factory):
        pool = self._reactor.getThreadPool()
        connecting = deferToThreadPool(
            self._reactor, pool, _connect, self.cid, self.port, self._timeout
        )
        done = Deferred()

        def connected(skt):
            peer = VsockAddress(self.cid, self.port)
            protocol = factory.buildProtocol(peer)
            if protocol is None:
                skt.close()
                raise VsockUnavailable("the factory refused the connection")
            transport = _VsockConnection(skt, protocol, self._reactor, peer)
            transport.connected = 1
            transport.startReading()
            protocol.makeConnection(transport)
            return protocol

        connecting.addCallback(connected).chainDeferred(done)
        return done
