"""
The gateway's one resource: authenticate the caller's API key (``Authorization:
Bearer <key>``), sign the request for its identity and quotas, forward it to
sandboxd and relay the answer as it comes (SSE streams included).  A
WebSocket upgrade is signed the same way and then relayed byte for byte
(sandboxd/tunnels/relay.py's pipes, producers both ways).

Headers a caller sends that the signature covers (``X-Sandbox-*``) are
dropped: only the gateway says who a caller is.

Two kinds of request pass without a key, unsigned, for a browser (which
cannot send ``Authorization`` on a page load or a WebSocket): the web
dashboard's public files (``GET /ui/...``, docs/ui.md) and a session upgrade
carrying a session token (sandboxd/api/wsauth.py), which sandboxd checks
in place of a signature; the token was minted by a keyed request.
"""

import json
from io import BytesIO
from urllib.parse import urlsplit

from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, FileBodyProducer
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from sandboxd.api import wsauth
from sandboxd.api.ui import is_page_request
from sandboxd.tenancy import canonical
from sandboxd.tenancy.signer import sign
from sandboxd.protocols.httprelay import HOP_BY_HOP_REQUEST, HOP_BY_HOP_RESPONSE, ResponseRelay
from sandboxd.tunnels.relay import Pipe, take_over

#: Request headers never forwarded (hop by hop, or the gateway's to set).
_DROPPED = HOP_BY_HOP_REQUEST | {b"authorization"} | {h.lower().encode() for h in canonical.ALL}
#: Response headers not copied back (Twisted frames the answer itself).
_HOP = HOP_BY_HOP_RESPONSE
MAX_BODY = 1 << 20


def _error(request, status, code, message, headers=()):
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    for name, value in headers:
        request.setHeader(name, value)
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def bearer(request):
    """The API key of ``Authorization: Bearer <key>``, or None."""
    value = request.getHeader(b"authorization")
    if value is None:
        return None
    scheme, _, key = value.decode("latin-1").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


class Gateway(Resource):
    """
    Signs and forwards everything to ``config.upstream`` (a GatewayConfig).
    """

    isLeaf = True
    log = Logger()

    def __init__(self, config, reactor):
        super().__init__()
        self._config = config
        self._reactor = reactor
        parts = urlsplit(config.upstream)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._base = config.upstream.rstrip("/").encode()
        self._tls_options = None
        policy = BrowserLikePolicyForHTTPS()
        if self._tls:
            trust = None
            if config.upstream_ca:
                with open(config.upstream_ca, "rb") as f:
                    trust = Certificate.loadPEM(f.read())
                policy = BrowserLikePolicyForHTTPS(trust)
            self._tls_options = optionsForClientTLS(self._host, trustRoot=trust)
        self._agent = Agent(reactor, contextFactory=policy)

    def render(self, request):
        upgrade = (request.getHeader(b"upgrade") or b"").lower() == b"websocket"
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() not in _DROPPED:
                headers.setRawHeaders(name, values)
        if bearer(request) is None and self._unsigned(request, upgrade):
            # A browser's: the dashboard's public files, or a session
            # upgrade carrying a session token (sandboxd checks it).
            if upgrade:
                self._upgrade(request, headers)
            else:
                self._forward(request, headers, b"")
            return NOT_DONE_YET
        key = bearer(request)
        if key is None:
            return _error(request, 401, "API_KEY_MISSING",
                          "send the API key as Authorization: Bearer <key>",
                          [(b"www-authenticate", b'Bearer realm="sandboxd-gateway"')])
        found = self._config.lookup(key)
        if found is None:
            return _error(request, 401, "API_KEY_INVALID", "this API key is not known",
                          [(b"www-authenticate", b'Bearer realm="sandboxd-gateway"')])
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _error(request, 413, "BODY_TOO_LARGE", f"the body exceeds {MAX_BODY} bytes")
        signed = sign(self._config.signing_key, request.method, request.uri, body,
                      found.identity, self._reactor.seconds(), found.quotas)
        for name, value in signed.items():
            headers.setRawHeaders(name.encode(), [value.encode()])
        if upgrade:
            self._upgrade(request, headers)
        else:
            self._forward(request, headers, body)
        return NOT_DONE_YET

    @staticmethod
    def _unsigned(request, upgrade):
        """
        Whether a request without an API key goes upstream unsigned: the
        dashboard's files (docs/ui.md), or a WebSocket session upgrade with
        a session token, which a browser sends in place of a key.
        """
        if upgrade:
            return wsauth.upgrade_token(request) is not None
        return is_page_request(request.method, request.path)

    def _forward(self, request, headers, body):
        gone = []
        request.notifyFinish().addErrback(gone.append)
        producer = FileBodyProducer(BytesIO(body)) if body else None
        answer = self._agent.request(request.method, self._base + request.uri, headers,
                                     producer)

        def respond(response):
            if gone:
                response.deliverBody(Protocol())
                return
            request.setResponseCode(response.code, response.phrase)
            for name, values in response.headers.getAllRawHeaders():
                if name.lower() not in _HOP:
                    request.responseHeaders.setRawHeaders(name, values)
            relay = ResponseRelay(request, gone)
            response.deliverBody(relay)
            # A caller that leaves (an SSE stream closed) ends the upstream read.
            request.notifyFinish().addErrback(lambda _: relay.transport.stopProducing())

        def failed(failure):
            if gone:
                return
            self.log.info("upstream failed: {why}", why=failure.getErrorMessage())
            request.write(_error(request, 502, "UPSTREAM_UNAVAILABLE",
                                 f"sandboxd did not answer: {failure.getErrorMessage()}"))
            request.finish()

        answer.addCallbacks(respond, failed).addErrback(
            lambda f: self.log.failure("forwarding {uri}", f, uri=request.uri))

    def _endpoint(self):
        endpoint = TCP4ClientEndpoint(self._reactor, self._host, self._port, timeout=10)
        if self._tls:
            endpoint = wrapClientTLS(self._tls_options, endpoint)
        return endpoint

    def _upgrade(self, request, headers):
        host = self._host if self._port in (80, 443) else f"{self._host}:{self._port}"
        head = [b"%s %s HTTP/1.1" % (request.method, request.uri), b"Host: " + host.encode(),
                b"Connection: Upgrade", b"Upgrade: websocket"]
        for name, values in headers.getAllRawHeaders():
            head.extend(b"%s: %s" % (name, value) for value in values)
        head = b"\r\n".join(head) + b"\r\n\r\n"
        gone = []
        request.notifyFinish().addErrback(gone.append)

        def connected(outbound):
            if gone:
                outbound.transport.loseConnection()
                return
            outbound.transport.write(head)
            take_over(request, outbound)

        def failed(failure):
            if not gone:
                request.write(_error(request, 502, "UPSTREAM_UNAVAILABLE",
                                     f"sandboxd did not answer: {failure.getErrorMessage()}"))
                request.finish()

        self._endpoint().connect(Factory.forProtocol(Pipe)).addCallbacks(connected, failed).addErrback(
            lambda f: self.log.failure("upgrading {uri}", f, uri=request.uri))
