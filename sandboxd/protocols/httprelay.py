"""
Pieces of an HTTP relay shared by the signing gateway and the cluster
router: which headers never cross, a small body sent at once, and the
Protocol that copies an upstream response body to the caller's request.
"""

from twisted.internet.defer import succeed
from twisted.internet.protocol import Protocol
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

#: Request headers a relay never forwards: hop by hop, or framed again by
#: Twisted (host, content-length).
HOP_BY_HOP_REQUEST = frozenset({
    b"connection", b"keep-alive", b"proxy-authorization", b"proxy-connection",
    b"te", b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length",
})
#: Response headers not copied back (Twisted frames the answer itself).
HOP_BY_HOP_RESPONSE = frozenset({
    b"connection", b"keep-alive", b"transfer-encoding", b"content-length",
})


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body that is already in memory, written at once (a
    FileBodyProducer would take reactor turns).
    """

    def __init__(self, data):
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer):
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class ResponseRelay(Protocol):
    """
    Copies an upstream response body to the caller's ``request`` and
    finishes it at the end, unless ``done`` (a list shared with whoever
    may end the request first) says it was finished already.
    """

    def __init__(self, request, done):
        self._request = request
        self._done = done

    def dataReceived(self, data):
        if not self._done:
            self._request.write(data)

    def connectionLost(self, reason):
        if not self._done:
            self._done.append(True)
            self._request.finish()
