"""
Request bodies streamed through the path proxy as they arrive.

Twisted Web hands a request to its resource only once the whole body has
been received (kept in memory up to 100 kB, in a temporary file beyond).
For a path-proxy request with a body, L{StreamingRequest} (the API site's
``requestFactory``) instead starts processing as soon as the headers are
in, on the next reactor turn (after any ``100 Continue``), and feeds the
body to the sandbox through a L{BodyStream} while it is still coming: the
sandbox's app reads an upload as it is sent, and a slow app pauses reading
from the caller (the stream is the upstream connection's streaming
producer).  The request finishes only once its body is all in, whatever
the answer, so HTTP/1.1's one-request-at-a-time channel stays in step.

It reads the request line from ``HTTPChannel``'s private ``_command``,
``_path`` and ``_version`` when the headers are complete (no public hook
gives them then); tests/test_tunnels_streaming.py pins that down.
"""

from io import BytesIO

from twisted.internet.defer import Deferred
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from twisted.web.server import Request
from zope.interface import implementer

#: Body bytes a stream holds while nothing consumes it (before the
#: upstream connection is made) before it stops reading from the caller.
HELD = 1 << 20


def streams(path):
    """
    Whether a request to this raw path (query stripped) may have its body
    streamed: a path-proxy path below the port, other than the expose and
    signed-URL routes (those read their JSON body as usual).
    """
    parts = path.split(b"/")
    if len(parts) < 6 or parts[1] != b"sandboxes" or parts[3] != b"ports" or not parts[2]:
        return False
    return not (len(parts) == 6 and parts[5] in (b"expose", b"url"))


@implementer(IBodyProducer)
class BodyStream:
    """
    A request body as it arrives, as an IBodyProducer for Twisted's HTTP
    client.  Pausing it stops reading from the caller; it resumes reading
    only what it paused itself.
    """

    def __init__(self, transport, length):
        self._transport = transport
        self.length = UNKNOWN_LENGTH if length is None else length
        self._consumer = None
        self._held = []
        self._heldBytes = 0
        self._wantsPause = False
        self._readingPaused = False
        self._complete = False
        self._dropping = False
        self._done = None

    def _pauseReading(self):
        if not self._complete:
            self._readingPaused = True
            self._transport.pauseProducing()

    def _resumeReading(self):
        if self._readingPaused:
            self._readingPaused = False
            if not self._complete:
                self._transport.resumeProducing()

    def write(self, data):
        """
        A piece of the body arrived from the caller.
        """
        if self._dropping:
            return
        if self._consumer is not None:
            self._consumer.write(data)
            if self._wantsPause:
                # Something else (the channel) resumed reading meanwhile.
                self._pauseReading()
            return
        self._held.append(data)
        self._heldBytes += len(data)
        if self._heldBytes > HELD:
            self._pauseReading()

    def complete(self):
        """
        The whole body has arrived.
        """
        self._complete = True
        self._readingPaused = False
        if self._done is not None:
            done, self._done = self._done, None
            done.callback(None)

    def drop(self):
        """
        The body is not wanted (the answer was given without it): read and
        discard the rest.
        """
        self._dropping = True
        self._held, self._heldBytes = [], 0
        self._consumer = None
        self._done = None
        self._wantsPause = False
        self._resumeReading()

    def startProducing(self, consumer):
        done = Deferred()
        if self._dropping:
            return done
        self._consumer = consumer
        held, self._held, self._heldBytes = self._held, [], 0
        for data in held:
            consumer.write(data)
        if self._complete:
            done.callback(None)
            return done
        self._done = done
        if not self._wantsPause:
            self._resumeReading()
        return done

    def pauseProducing(self):
        self._wantsPause = True
        self._pauseReading()

    def resumeProducing(self):
        self._wantsPause = False
        self._resumeReading()

    def stopProducing(self):
        # What still comes is dropped; the Deferred of startProducing never
        # fires (IBodyProducer).
        self.drop()


class StreamingRequest(Request):
    """
    A Request that, for a path-proxy request with a body, is processed as
    soon as its headers are in and streams the body (``bodyStream``).
    """

    bodyStream = None
    _early = False
    _finishWanted = False

    def gotLength(self, length):
        channel = self.channel
        path = getattr(channel, "_path", b"")
        chunked = self.requestHeaders.hasHeader(b"transfer-encoding")
        if (length or chunked) and streams(path.split(b"?", 1)[0]) and not (
            self.requestHeaders.hasHeader(b"upgrade")
        ) and self._mayStream():
            self.content = BytesIO()
            self.bodyStream = BodyStream(channel.transport, length)
            self._early = True
            line = (channel._command, path, channel._version)
            channel.site.reactor.callLater(0, self._processEarly, *line)
            return
        Request.gotLength(self, length)

    def _mayStream(self):
        # A signed request's body is hashed before anything is served: the
        # site's ``signedBodies(transport)`` says so (sandboxd/api/identity.py).
        signed = getattr(self.channel.site, "signedBodies", None)
        return signed is None or not signed(self.channel.transport)

    def _processEarly(self, command, path, version):
        if self.channel is None:
            return
        Request.requestReceived(self, command, path, version)

    def handleContentChunk(self, data):
        if self.bodyStream is not None:
            self.bodyStream.write(data)
        else:
            Request.handleContentChunk(self, data)

    def requestReceived(self, command, path, version):
        if not self._early:
            return Request.requestReceived(self, command, path, version)
        # The whole body is in: the channel now waits for our answer.
        self._early = False
        self.bodyStream.complete()
        if self._finishWanted:
            Request.finish(self)

    def finish(self):
        if self._early:
            # Answered before the body is all in: finish once it is.
            self._finishWanted = True
            self.bodyStream.drop()
            return
        Request.finish(self)
