"""
Relaying requests to nodes: plain HTTP (answers streamed back as they come,
SSE and path-proxy bodies included), WebSocket upgrades (the head sent to
the node, then bytes relayed both ways unparsed, as the gateway does), and
whole JSON answers for the routes the router merges.

Headers pass through unchanged, the multi-tenant signature among them:
nodes verify it (docs/deploy.md "Trust").  A node that cannot be reached,
or that drops the connection before answering, makes the request fail at
once with ``SANDBOX_UNAVAILABLE``; when the directory reports a node lost,
every request still waiting on it is failed the same way and every relayed
WebSocket to it closed, so nothing waits on a dead node.
"""

import json
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    FileBodyProducer,
    HTTPConnectionPool,
    readBody,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.server import NOT_DONE_YET

from sandboxd.protocols.httprelay import (
    HOP_BY_HOP_REQUEST, HOP_BY_HOP_RESPONSE, BytesProducer, ResponseRelay,
)
from sandboxd.tunnels.relay import Pipe, take_over

#: Request headers never forwarded (hop by hop; Twisted frames the body).
DROPPED = HOP_BY_HOP_REQUEST
#: Response headers not copied back (a known length is set again).
_HOP = HOP_BY_HOP_RESPONSE


def no_delay(transport):
    """
    Turn Nagle's algorithm off on ``transport`` (if it is TCP): a request's
    head and body, or a response's last chunk, are separate small writes
    that would otherwise wait for the peer's delayed ACK (tens of ms).
    """
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)


class _NoDelayEndpoint:
    """A client endpoint whose connections have TCP_NODELAY set."""

    def __init__(self, endpoint):
        self._endpoint = endpoint

    def connect(self, factory):
        def connected(protocol):
            no_delay(protocol.transport)
            return protocol
        return self._endpoint.connect(factory).addCallback(connected)


class _NodeEndpoints:
    """The Agent's endpoint factory: TCP (or TLS) to a node, no Nagle delay."""

    def __init__(self, reactor, timeout, policy):
        self._reactor = reactor
        self._timeout = timeout
        self._policy = policy

    def endpointForURI(self, uri):
        host = uri.host.decode("ascii")
        endpoint = HostnameEndpoint(self._reactor, host, uri.port, timeout=self._timeout)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(self._policy.creatorForNetloc(uri.host, uri.port), endpoint)
        return _NoDelayEndpoint(endpoint)


#: Bodies up to this size are sent in one write (bigger ones are streamed
#: from the request's file by a FileBodyProducer).
SMALL_BODY = 1 << 16


def body_producer(body):
    """An IBodyProducer for ``body`` (a file, read from its start), or None if empty."""
    if body is None:
        return None
    body.seek(0)
    head = body.read(SMALL_BODY + 1)
    if not head:
        return None
    if len(head) <= SMALL_BODY:
        return BytesProducer(head)
    body.seek(0)
    return FileBodyProducer(body)


#: Failures that mean no connection was made: the request never left.
_NOT_CONNECTED = (ConnectError, ConnectingCancelledError, DNSLookupError)


class NodeUnreachable(Exception):
    """
    The node did not answer the request (refused, timed out, dropped,
    lost).  ``sent``: whether the request may have reached it (False only
    when no connection was made).
    """

    def __init__(self, message, sent=True):
        super().__init__(message)
        self.sent = sent


def error_body(request, status, code, message, headers=()):
    """Write the status and headers of a named error; return its body."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    for name, value in headers:
        request.setHeader(name, value)
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def forwarded_headers(request):
    """The caller's headers a node should see."""
    headers = Headers()
    for name, values in request.requestHeaders.getAllRawHeaders():
        if name.lower() not in DROPPED:
            headers.setRawHeaders(name, values)
    return headers


class Forwarder:
    """
    Sends requests to nodes (L{Node}s) over one keep-alive pool; TLS to
    ``https://`` endpoints trusts ``ca_file`` (or the system roots).
    """

    log = Logger()

    def __init__(self, reactor, connect_timeout=3.0, ca_file=""):
        self._reactor = reactor
        self._timeout = connect_timeout
        trust = None
        if ca_file:
            with open(ca_file, "rb") as f:
                trust = Certificate.loadPEM(f.read())
        self._trust = trust
        self._pool = HTTPConnectionPool(reactor)
        self._pool.maxPersistentPerHost = 16
        self._pool.retryAutomatically = False
        self._agent = Agent.usingEndpointFactory(
            reactor, _NodeEndpoints(reactor, connect_timeout, BrowserLikePolicyForHTTPS(trust)),
            pool=self._pool)
        self._inflight = {}  # node_id -> set of cancellable things

    def close(self):
        return self._pool.closeCachedConnections()

    # The directory's observer

    def nodeJoined(self, node):
        pass

    def nodeLost(self, node_id):
        """Fail what is waiting on a lost node; close its relayed sockets."""
        for cancel in list(self._inflight.pop(node_id, ())):
            try:
                cancel()
            except Exception:
                self.log.failure("ending a request to lost node {node}", node=node_id)

    def _track(self, node_id, cancel):
        self._inflight.setdefault(node_id, set()).add(cancel)
        return lambda *_: self._inflight.get(node_id, set()).discard(cancel)

    # Requests

    def request(self, node, method, uri, headers, body=None):
        """
        Send one request to ``node``; fires with the response (headers
        read, body not), or fails with L{NodeUnreachable}.
        """
        answer = self._agent.request(method, node.endpoint.rstrip("/").encode() + uri,
                                     headers, body_producer(body))
        untrack = self._track(node.node_id, answer.cancel)
        answer.addBoth(lambda result: (untrack(), result)[1])

        def unreachable(failure):
            if failure.check(CancelledError):
                raise NodeUnreachable(f"node {node.node_id} was lost")
            raise NodeUnreachable(f"node {node.node_id} did not answer: "
                                  f"{failure.getErrorMessage()}",
                                  sent=not failure.check(*_NOT_CONNECTED))
        return answer.addErrback(unreachable)

    async def fetch_json(self, node, method, uri, headers):
        """One request; (status, decoded JSON or None).  NodeUnreachable if down."""
        response = await self.request(node, method, uri, headers)
        try:
            raw = await readBody(response)
        except Exception as e:
            raise NodeUnreachable(f"node {node.node_id} dropped the answer: {e}") from None
        try:
            return response.code, json.loads(raw) if raw else None
        except ValueError:
            return response.code, None

    def deliver(self, request, response, node_id):
        """Stream ``response`` (from node ``node_id``) back to ``request``."""
        gone = []
        request.notifyFinish().addErrback(gone.append)
        if request.finished or request._disconnected:
            response.deliverBody(_Discard())
            return
        request.setResponseCode(response.code, response.phrase)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in _HOP:
                request.responseHeaders.setRawHeaders(name, values)
        if response.length is not UNKNOWN_LENGTH:
            request.setHeader(b"content-length", b"%d" % response.length)
        relay = ResponseRelay(request, gone)
        response.deliverBody(relay)
        untrack = self._track(node_id, lambda *_: relay.transport.stopProducing())
        # A caller that leaves (an SSE stream closed) ends the node read.
        finished = request.notifyFinish()
        finished.addErrback(lambda _: relay.transport.stopProducing())
        finished.addBoth(untrack)

    def relay(self, request, node, body, unreachable):
        """
        Forward ``request`` (with ``body``, a file, or None) to ``node`` and
        stream the answer back; ``unreachable(request, message)`` writes the
        answer when the node cannot be reached.  Returns NOT_DONE_YET.
        """
        answer = self.request(node, request.method, request.uri, forwarded_headers(request),
                              body)

        def failed(failure):
            failure.trap(NodeUnreachable)
            if not (request.finished or request._disconnected):
                request.write(unreachable(request, failure.getErrorMessage()))
                request.finish()

        answer.addCallbacks(lambda response: self.deliver(request, response, node.node_id),
                            failed).addErrback(
            lambda f: self.log.failure("forwarding {uri}", f, uri=request.uri))
        return NOT_DONE_YET

    def _endpoint(self, node):
        parts = urlsplit(node.endpoint)
        tls = parts.scheme == "https"
        endpoint = HostnameEndpoint(self._reactor, parts.hostname,
                                      parts.port or (443 if tls else 80), timeout=self._timeout)
        if tls:
            endpoint = wrapClientTLS(
                optionsForClientTLS(parts.hostname, trustRoot=self._trust), endpoint)
        return endpoint, parts.netloc

    def upgrade(self, request, node, unreachable):
        """
        Relay a WebSocket upgrade to ``node``: the node answers the
        handshake itself, then bytes flow both ways.  Returns NOT_DONE_YET.
        """
        endpoint, host = self._endpoint(node)
        head = [b"%s %s HTTP/1.1" % (request.method, request.uri), b"Host: " + host.encode(),
                b"Connection: Upgrade", b"Upgrade: websocket"]
        for name, values in forwarded_headers(request).getAllRawHeaders():
            head.extend(b"%s: %s" % (name, value) for value in values)
        head = b"\r\n".join(head) + b"\r\n\r\n"
        gone = []
        request.notifyFinish().addErrback(gone.append)

        def connected(outbound):
            if gone:
                outbound.transport.loseConnection()
                return
            no_delay(outbound.transport)
            outbound.transport.write(head)
            take_over(request, outbound)
            self._track(node.node_id, outbound.transport.abortConnection)

        def failed(failure):
            if not gone:
                request.write(unreachable(
                    request, f"node {node.node_id} did not answer: {failure.getErrorMessage()}"))
                request.finish()

        connecting = endpoint.connect(Factory.forProtocol(Pipe))
        untrack = self._track(node.node_id, connecting.cancel)
        connecting.addBoth(lambda result: (untrack(), result)[1])
        connecting.addCallbacks(connected, failed).addErrback(
            lambda f: self.log.failure("upgrading {uri}", f, uri=request.uri))
        return NOT_DONE_YET


class _Discard(Protocol):
    """Reads a body nobody wants."""
