"""
The path proxy: ``ANY /sandboxes/{id}/ports/{port}/{path...}`` answered by
the app listening on that port inside the sandbox.

Plain HTTP goes through Twisted's own HTTP/1.1 client (``Agent`` over a
persistent pool per sandbox, connecting with a bounded timeout): the
response body is relayed as it comes, with the upstream connection
registered as the caller's streaming producer (a slow caller pauses the
sandbox's app).  The request body streams to the app as it arrives when
the request was made by L{streaming.StreamingRequest} (the API's site
does); otherwise it is the body Twisted Web has already received (in
memory up to 100 kB, in a temporary file beyond), streamed from there.

A request with ``Upgrade`` (a WebSocket above all) is sent to the sandbox
by hand and its connection handed over (L{relay.take_over}): from then on
both directions are relayed as raw bytes, the sandbox's ``101`` first.
"""

from twisted.internet.error import ConnectError, ConnectionRefusedError, TimeoutError
from twisted.internet.defer import CancelledError, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    ResponseDone,
    _HTTP11ClientFactory,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer
from twisted.web.iweb import IAgentEndpointFactory

from sandboxd.api.errors import ApiError
from sandboxd.tunnels.addressing import (
    HOP_BY_HOP,
    forwarded_headers,
    rewrite_location,
    rewrite_set_cookie,
)
from sandboxd.tunnels.relay import CONNECT_TIMEOUT, connect_sandbox, take_over

#: Idle kept-alive connections per sandbox port.
POOL_SIZE = 8


def not_listening(sandbox, port, reason):
    return ApiError(
        502, "PORT_NOT_LISTENING",
        f"nothing accepts connections on port {port} of sandbox {sandbox.id}: {reason}",
    )


class _QuietClientFactory(_HTTP11ClientFactory):
    noisy = False


class _QuietPool(HTTPConnectionPool):
    # Twisted's pool logs every connection's factory starting and stopping.
    _factory = _QuietClientFactory


@implementer(IAgentEndpointFactory)
class _SandboxEndpoints:
    def __init__(self, reactor, proxy):
        self._reactor = reactor
        self._proxy = proxy

    def endpointForURI(self, uri):
        return TCP4ClientEndpoint(
            self._reactor, uri.host.decode("ascii"), uri.port,
            timeout=self._proxy.connect_timeout,
        )


class _BodyRelay(Protocol):
    """
    Writes a response body to the caller as it arrives; the upstream
    connection is the caller's streaming producer meanwhile.
    """

    def __init__(self, request, done):
        self._request = request
        self._done = done

    def connectionMade(self):
        self._request.registerProducer(self.transport, True)

    def dataReceived(self, data):
        self._request.write(data)

    def connectionLost(self, reason):
        if self._request.channel is not None:
            self._request.unregisterProducer()
        self._done(reason.check(ResponseDone, PotentialDataLoss) is not None)


class PathProxy:
    """
    Proxies path-proxy requests to sandboxes; ``render`` takes a request
    already checked (sandbox found, port allowed) and answers it.
    """

    log = Logger()

    def __init__(self, reactor, connect_timeout=CONNECT_TIMEOUT):
        self._reactor = reactor
        #: Seconds a new connection to a sandbox's port may take (reloadable).
        self.connect_timeout = connect_timeout
        self._agents = {}
        self._live = {}
        self._cooperator = Cooperator(scheduler=lambda f: reactor.callLater(0, f))

    def _agent(self, sandbox_id):
        entry = self._agents.get(sandbox_id)
        if entry is None:
            pool = _QuietPool(self._reactor, persistent=True)
            pool.maxPersistentPerHost = POOL_SIZE
            pool.cachedConnectionTimeout = 30
            agent = Agent.usingEndpointFactory(
                self._reactor, _SandboxEndpoints(self._reactor, self), pool
            )
            entry = self._agents[sandbox_id] = (agent, pool)
        return entry[0]

    def forget(self, sandbox_id):
        """
        The sandbox is gone: cut its proxied exchanges, drop its pool.
        A Deferred fires once the pool's idle connections are closed.
        """
        for cut in list(self._live.pop(sandbox_id, ())):
            cut()
        entry = self._agents.pop(sandbox_id, None)
        if entry is None:
            return succeed(None)
        return entry[1].closeCachedConnections()

    def live(self, sandbox_id):
        """
        How many proxied exchanges of the sandbox are under way.
        """
        return len(self._live.get(sandbox_id, ()))

    def _track(self, sandbox_id, cut):
        self._live.setdefault(sandbox_id, set()).add(cut)

        def untrack():
            live = self._live.get(sandbox_id)
            if live is not None:
                live.discard(cut)
                if not live:
                    del self._live[sandbox_id]

        return untrack

    def render(self, request, sandbox, address, port, rest):
        """
        Answer ``request`` from ``address:port``; ``rest`` is the raw path
        (and query) under the prefix.  Returns NOT_DONE_YET; errors are
        written as the API's JSON errors.
        """
        prefix = b"/sandboxes/%s/ports/%d" % (sandbox.id.encode(), port)
        headers = _forwardable(request)
        for name, value in forwarded_headers(request, prefix).items():
            headers.setRawHeaders(name, [value])
        if _is_upgrade(request):
            self._upgrade(request, sandbox, address, port, rest, headers)
        else:
            self._exchange(request, sandbox, address, port, rest, prefix, headers)
        return NOT_DONE_YET

    def _exchange(self, request, sandbox, address, port, rest, prefix, headers):
        url = b"http://%s:%d%s" % (address.encode("ascii"), port, rest)
        body = getattr(request, "bodyStream", None)
        if body is None and (request.getHeader(b"content-length") is not None or
                             request.getHeader(b"transfer-encoding") is not None):
            body = FileBodyProducer(request.content, cooperator=self._cooperator)
        state = {"relay": None, "gone": False}

        def cut():
            state["gone"] = True
            if state["relay"] is not None and state["relay"].transport is not None:
                state["relay"].transport.stopProducing()
            else:
                answer.cancel()
            request.loseConnection()

        untrack = self._track(sandbox.id, cut)
        answer = self._agent(sandbox.id).request(request.method, url, headers, body)

        def lost(failure):
            state["gone"] = True
            if state["relay"] is None:
                answer.cancel()
            elif state["relay"].transport is not None:
                state["relay"].transport.stopProducing()

        request.notifyFinish().addErrback(lost).addBoth(lambda _: untrack())
        authorities = {b"%s:%d" % (address.encode(), port)}
        if port == 80:
            authorities.add(address.encode())

        def respond(response):
            if state["gone"]:
                response.deliverBody(Protocol())
                return
            request.setResponseCode(response.code, response.phrase)
            # No Content-Type of Twisted's when the app sent none.
            request.defaultContentType = None
            request.responseHeaders = Headers()
            for name, values in response.headers.getAllRawHeaders():
                lower = name.lower()
                if lower in HOP_BY_HOP:
                    continue
                if lower == b"location":
                    values = [rewrite_location(v, prefix, authorities) for v in values]
                elif lower == b"set-cookie":
                    values = [rewrite_set_cookie(v, prefix) for v in values]
                request.responseHeaders.setRawHeaders(name, values)
            if response.length is not UNKNOWN_LENGTH and request.method != b"HEAD" and (
                response.code not in (204, 304)
            ):
                request.setHeader(b"content-length", b"%d" % response.length)
            state["relay"] = _BodyRelay(request, done)
            response.deliverBody(state["relay"])

        def done(complete):
            if state["gone"]:
                return
            if complete:
                request.finish()
            else:
                # Cut short: the caller must not take it for the whole body.
                request.loseConnection()

        def failed(failure):
            if state["gone"] or failure.check(CancelledError):
                return
            if failure.check(ConnectionRefusedError):
                error = not_listening(sandbox, port, "connection refused")
            elif failure.check(TimeoutError):
                error = not_listening(sandbox, port, f"no answer within {self.connect_timeout:g} s")
            elif failure.check(ConnectError):
                error = not_listening(sandbox, port, failure.getErrorMessage())
            else:
                error = ApiError(
                    502, "UPSTREAM_FAILED",
                    f"port {port} of sandbox {sandbox.id} closed the connection"
                    " without a complete answer",
                )
            write_error(request, error)

        answer.addCallbacks(respond, failed).addErrback(
            lambda f: self.log.failure("proxying to {sandbox}:{port}", f,
                                       sandbox=sandbox.id, port=port)
        )

    def _upgrade(self, request, sandbox, address, port, rest, headers):
        if request.content.seek(0, 2) > 0:
            write_error(request, ApiError(
                400, "INVALID_UPGRADE", "an Upgrade request carries no body"))
            return
        for name in (b"connection", b"upgrade"):
            values = request.requestHeaders.getRawHeaders(name)
            headers.setRawHeaders(name, values)
        head = [b"%s %s HTTP/1.1" % (request.method, rest)]
        for name, values in headers.getAllRawHeaders():
            head.extend(b"%s: %s" % (name, value) for value in values)
        head = b"\r\n".join(head) + b"\r\n\r\n"
        gone = []
        request.notifyFinish().addErrback(lambda f: gone.append(f))
        connecting = connect_sandbox(self._reactor, address, port, self.connect_timeout)

        def connected(outbound):
            if gone:
                outbound.transport.loseConnection()
                return
            outbound.transport.write(head)
            caller = take_over(request, outbound)

            def cut():
                caller.transport.abortConnection()
                outbound.transport.abortConnection()

            untrack = self._track(sandbox.id, cut)
            closed = caller.connectionLost

            def connectionLost(reason):
                untrack()
                closed(reason)

            caller.connectionLost = connectionLost

        def failed(failure):
            if gone:
                return
            if failure.check(ConnectionRefusedError):
                reason = "connection refused"
            elif failure.check(TimeoutError):
                reason = f"no answer within {self.connect_timeout:g} s"
            else:
                reason = failure.getErrorMessage()
            write_error(request, not_listening(sandbox, port, reason))

        connecting.addCallbacks(connected, failed).addErrback(
            lambda f: self.log.failure("upgrading to {sandbox}:{port}", f,
                                       sandbox=sandbox.id, port=port)
        )


def write_error(request, error):
    """
    Answer ``request`` with ``error``'s JSON and finish it.
    """
    request.setResponseCode(error.status)
    request.responseHeaders = Headers()
    for name, value in error.headers.items():
        request.setHeader(name, value)
    request.setHeader(b"content-type", b"application/json")
    body = error.body()
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()


def _is_upgrade(request):
    connection = request.getHeader(b"connection") or b""
    tokens = {t.strip().lower() for t in connection.split(b",")}
    return b"upgrade" in tokens and request.getHeader(b"upgrade") is not None


def _forwardable(request):
    """
    The caller's headers minus the hop-by-hop ones (and those its
    ``Connection`` header names).
    """
    named = {
        t.strip().lower()
        for value in request.requestHeaders.getRawHeaders(b"connection", [])
        for t in value.split(b",")
    }
    headers = Headers()
    for name, values in request.requestHeaders.getAllRawHeaders():
        lower = name.lower()
        if (lower in HOP_BY_HOP or lower in named or lower == b"expect"
                or lower.startswith(b"x-forwarded-")):
            # (Twisted Web has answered any Expect: 100-continue itself.)
            continue
        headers.setRawHeaders(name, values)
    return headers
