"""
The egress proxy: an HTTP forward proxy the daemon runs on the sandbox
bridge's gateway address, through which a sandbox with secrets sends its
net.fetch requests (``SANDBOX_EGRESS_PROXY`` in its environment).

A request arrives in absolute form (``GET http://host/path``, and
``GET https://host/path`` too: the sandbox-to-proxy hop is plain HTTP on the
host's own bridge, the proxy makes the TLS connection), from a source
address that names the sandbox.  The proxy resolves the host, keeps only
the addresses the sandbox's egress policy allows (and never the host's own
addresses, loopback, link-local or the sandbox bridge: the proxy must not
be a way around the host firewall or the bridge's isolation), puts each
secret in place of its placeholder in the headers when the host is one the
secret is bound to (L{sandboxd.egress.secrets.SecretVault}), connects to that
very address (no second lookup), and streams the answer back.  CONNECT is
refused: a secret cannot be put into a tunnel the proxy cannot read.

An error of the proxy is an answer with the header ``Sandbox-Proxy-Error``
naming it (``EGRESS_DENIED``, ``CONNECTION_REFUSED``, ``HOST_NOT_FOUND``,
``TIMEOUT``, ``TLS_ERROR``, ``NET_ERROR``); net.fetch raises
that code.  Values of secrets are never logged.
"""

import io
import ipaddress
import socket
import urllib.parse

from twisted.internet import error as neterror
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import CertificateOptions, optionsForClientTLS
from twisted.logger import Logger
from twisted.web import http
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers

from sandboxd.egress.policy import ALLOW, NONE

ERROR_HEADER = b"Sandbox-Proxy-Error"
INSECURE_HEADER = b"Sandbox-Proxy-Insecure"
_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
               b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
               ERROR_HEADER.lower(), INSECURE_HEADER.lower()}
CONNECT_TIMEOUT = 30


def local_addresses(path="/proc/net/fib_trie"):
    """
    The host's own IPv4 addresses (the kernel's local routes).
    """
    found, last = set(), None
    try:
        with open(path) as handle:
            for line in handle:
                words = line.split()
                if words[:1] == ["|--"]:
                    last = words[1]
                elif "/32 host LOCAL" in line and last:
                    found.add(last)
    except OSError:
        pass
    return found


def permitted(policy, host, address, port, forbidden):
    """
    Whether ``policy`` lets the sandbox reach ``address``:``port`` (named
    ``host`` in the request); ``forbidden`` (a list of networks) is never
    reachable.
    """
    ip = ipaddress.IPv4Address(address)
    if (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified
            or any(ip in network for network in forbidden)):
        return False
    if policy.mode == NONE:
        return False
    if policy.mode != ALLOW:
        return True
    for rule in policy.rules:
        if rule.port is not None and rule.port != port:
            continue
        if rule.host is not None and rule.host == host.lower():
            return True
        if rule.network is not None and ip in ipaddress.IPv4Network(rule.network):
            return True
    return False


def may_resolve(policy, host):
    """
    Whether the proxy may look ``host`` up for a sandbox under ``policy``:
    open, or an allow list naming that host (none: never).
    """
    if policy.mode == NONE:
        return False
    if policy.mode != ALLOW:
        return True
    return any(rule.host == host.lower() for rule in policy.rules)


class _Pinned:
    """
    Connects an Agent to the one address already checked (no second lookup).
    """

    def __init__(self, reactor, address, port, host, tls, verify):
        self._reactor, self._address, self._port = reactor, address, port
        self._host, self._tls, self._verify = host, tls, verify

    def endpointForURI(self, uri):
        endpoint = TCP4ClientEndpoint(self._reactor, self._address, self._port,
                                      timeout=CONNECT_TIMEOUT)
        if not self._tls:
            return endpoint
        options = (optionsForClientTLS(self._host) if self._verify
                   else CertificateOptions(verify=False))
        return wrapClientTLS(options, endpoint)


class _Relay(Protocol):
    """
    Writes a response body to the sandbox's request as it arrives.
    """

    def __init__(self, request, done):
        self._request, self._done = request, done

    def connectionMade(self):
        # Backpressure: a sandbox reading slowly pauses the upstream.
        self._request.registerProducer(self.transport, True)

    def dataReceived(self, data):
        if not self._request.finished:
            self._request.write(data)

    def connectionLost(self, reason):
        self._request.unregisterProducer()
        self._done.callback(None)


class _ProxyRequest(http.Request):
    def process(self):
        proxy = self.channel.factory.proxy
        done = Deferred.fromCoroutine(proxy.forward(self))
        done.addErrback(lambda f: proxy.log.failure("egress proxy request failed", f))


class _Factory(http.HTTPFactory):
    def __init__(self, proxy):
        super().__init__()
        self.proxy = proxy

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        channel.requestFactory = _ProxyRequest
        return channel


class EgressProxy:
    """
    The proxy, for the sandboxes ``admit`` names.  ``vault`` holds their
    secrets; ``forbidden`` (networks) are never reached, whatever a policy
    says.  C{resolve(host)} fires with IPv4 addresses.
    """

    log = Logger()

    def __init__(self, reactor, vault, resolve, forbidden=()):
        self._reactor = reactor
        self._vault = vault
        self._resolve = resolve
        self._forbidden = list(forbidden)
        self._bySource = {}
        self.port = None

    def listen(self, address):
        """
        Listen on ``address`` (the bridge's gateway), port chosen by the OS.
        """
        self._forbidden += [ipaddress.IPv4Network(f"{a}/32") for a in local_addresses()]
        self.port = self._reactor.listenTCP(0, _Factory(self), interface=address)
        return self.port.getHost().port

    def forbid(self, network):
        self._forbidden.append(ipaddress.IPv4Network(network, strict=False))

    def admit(self, sandbox):
        """
        Serve ``sandbox`` (its ``address``, ``id`` and ``network``).
        """
        self._bySource[sandbox.address] = sandbox

    def forget(self, sandbox):
        if self._bySource.get(sandbox.address) is sandbox:
            del self._bySource[sandbox.address]

    def _fail(self, request, status, code, message):
        request.setResponseCode(status)
        request.setHeader(ERROR_HEADER, code.encode())
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.write(message.encode())
        request.finish()

    async def forward(self, request):
        source = request.getClientAddress().host
        sandbox = self._bySource.get(source)
        if sandbox is None:
            return self._fail(request, 403, "EGRESS_DENIED", "not a sandbox of this proxy")
        if request.method == b"CONNECT":
            return self._fail(request, 405, "EGRESS_DENIED", "CONNECT is not served: send "
                              "the request in absolute form (net.fetch does)")
        url = request.uri.decode("latin-1")
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
            return self._fail(request, 400, "EGRESS_DENIED", "not an absolute http(s) URL")
        host = parts.hostname
        if not _is_ipv4(host) and not may_resolve(sandbox.network, host):
            # No lookup on the sandbox's behalf that its policy would not
            # let it make itself (a DNS query is a way out too).
            return self._fail(request, 403, "EGRESS_DENIED",
                              f"{host}:{port}: not allowed by the sandbox's network policy")
        try:
            addresses = [host] if _is_ipv4(host) else await self._resolve(host)
        except Exception as e:
            return self._fail(request, 502, "HOST_NOT_FOUND", f"{host}: {e}")
        allowed = [a for a in addresses
                   if permitted(sandbox.network, host, a, port, self._forbidden)]
        if not allowed:
            return self._fail(request, 403, "EGRESS_DENIED",
                              f"{host}:{port}: not allowed by the sandbox's network policy")
        headers = Headers()
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.lower() in _HOP_BY_HOP:
                continue
            for value in values:
                text = self._vault.substitute(sandbox.id, host, value.decode("latin-1"))
                headers.addRawHeader(name, text.encode("latin-1"))
        verify = request.getHeader(INSECURE_HEADER) != b"1"
        agent = Agent.usingEndpointFactory(
            self._reactor,
            _Pinned(self._reactor, allowed[0], port, host, parts.scheme == "https", verify))
        request.content.seek(0)
        body = request.content.read()
        producer = FileBodyProducer(io.BytesIO(body)) if body else None
        try:
            response = await agent.request(request.method, url.encode("latin-1"), headers,
                                           producer)
        except Exception as e:
            code, message = _error_code(e)
            return self._fail(request, 502, code, f"{host}:{port}: {message}")
        request.setResponseCode(response.code, response.phrase)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in _HOP_BY_HOP:
                request.responseHeaders.setRawHeaders(name, values)
        done = Deferred()
        gone = []
        request.notifyFinish().addBoth(gone.append)
        response.deliverBody(_Relay(request, done))
        await done
        if not request.finished and not gone:
            request.finish()


def _is_ipv4(host):
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        return False


def _error_code(failure):
    """(code, message) for an outbound request's failure."""
    errors = getattr(failure, "reasons", None) or [failure]
    for reason in errors:
        value = getattr(reason, "value", reason)
        if isinstance(value, neterror.ConnectionRefusedError):
            return "CONNECTION_REFUSED", "connection refused"
        if isinstance(value, (neterror.TimeoutError, neterror.TCPTimedOutError)):
            return "TIMEOUT", "timed out"
        if isinstance(value, socket.gaierror):
            return "HOST_NOT_FOUND", str(value)
        if "SSL" in type(value).__name__ or "TLS" in type(value).__name__:
            return "TLS_ERROR", str(value)
    return "NET_ERROR", str(errors[0].value if hasattr(errors[0], "value") else errors[0])

