"""
The Docker Engine API, spoken over the engine's Unix socket on the reactor.

No SDK and no threads: every call is one HTTP request through a Twisted
L{Agent} whose pool keeps a few connections to the socket open, JSON in and
JSON out, bounded by a timeout.  The API version is asked of the engine once
(C{GET /version}) and every later path carries it (C{/v1.41/...}).  The
client takes anything with treq's C{request} method, so tests drive it with
L{treq.testing.StubTreq}.

Failures come in two kinds, both L{RuntimeFailure}s: an answer of 400 or
above is an L{EngineError} carrying the engine's status and its own words;
an engine that cannot be reached, or does not answer in time, is a
L{RuntimeUnavailable} saying so.
"""

import json
from urllib.parse import quote, urlencode

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    DeferredLock,
    succeed,
)
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    ResponseDone,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from sandboxd.protocols.httprelay import BytesProducer
from sandboxd.runtimes.interface import RuntimeFailure, RuntimeUnavailable

DEFAULT_SOCKET = "/var/run/docker.sock"
# The newest API version we speak, and the oldest with every field we send
# (NanoCpus and Init came in 1.25).
API_VERSION = (1, 41)
MIN_API_VERSION = (1, 25)
DEFAULT_TIMEOUT = 60.0
# Idle connections kept open to the engine for later calls.
MAX_PERSISTENT = 8
# No answer of the engine we ask for comes near this.
MAX_BODY = 16 * 1024 * 1024
# Where requests go: the agent's endpoint factory ignores the host.
BASE_URL = "http://docker"


class EngineError(RuntimeFailure):
    """
    The engine answered with an error status; the message is its own.
    """

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def socket_path(environ):
    """
    The engine's Unix socket: C{DOCKER_HOST=unix://PATH} if set, else the
    default.  Any other C{DOCKER_HOST} is refused with L{RuntimeUnavailable}.
    """
    host = environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://") and len(host) > len("unix://"):
        return host[len("unix://") :]
    raise RuntimeUnavailable(
        f"DOCKER_HOST={host} is not supported: sandboxd reaches the Docker "
        f"engine over its Unix socket only (DOCKER_HOST=unix:///path/to/docker.sock)"
    )


def parse_version(text):
    """
    C{"1.41"} -> C{(1, 41)}.
    """
    major, minor = str(text).split(".")[:2]
    return int(major), int(minor)


def choose_version(engine):
    """
    The API version to speak with an engine whose C{GET /version} answer is
    C{engine}: ours, or the engine's if older; the engine's oldest if it
    no longer speaks ours.
    """
    try:
        newest = parse_version(engine["ApiVersion"])
        oldest = parse_version(engine.get("MinAPIVersion") or "1.12")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RuntimeUnavailable(
            f"the Docker engine's version answer has no API version: {engine!r:.200}"
        ) from e
    version = max(min(API_VERSION, newest), oldest)
    if version < MIN_API_VERSION:
        raise RuntimeUnavailable(
            f"the Docker engine speaks API {newest[0]}.{newest[1]}; sandboxd needs "
            f"{MIN_API_VERSION[0]}.{MIN_API_VERSION[1]} or newer"
        )
    return version


def path_part(name):
    """
    A container or network id or name, escaped as one path segment.
    """
    return quote(name, safe="")


@implementer(IAgentEndpointFactory)
class UNIXEndpointFactory:
    """
    Every URI's endpoint is the one Unix socket.
    """

    def __init__(self, reactor, path, timeout=DEFAULT_TIMEOUT):
        self._reactor = reactor
        self._path = path
        self._timeout = timeout

    def endpointForURI(self, uri):
        return UNIXClientEndpoint(self._reactor, self._path, timeout=self._timeout)


class AgentHTTP:
    """
    The part of treq's C{request} the engine client uses, straight on an
    L{Agent}.  treq's URL parsing, cookie jar and response wrapping cost
    more reactor time than the request itself, and the engine needs none
    of them; tests use L{treq.testing.StubTreq} in its place.
    """

    def __init__(self, agent):
        self._agent = agent

    def request(
        self,
        method,
        url,
        params=None,
        data=None,
        headers=None,
        allow_redirects=False,
        unbuffered=True,
    ):
        """
        Send C{method} to C{url} with query C{params}, body bytes C{data}
        and C{headers}; fire with the L{IResponse}.  The engine never
        redirects and bodies are read by the caller: the last two
        arguments, there for treq's sake, change nothing.
        """
        if params:
            url = f"{url}?{urlencode(params)}"
        if data is not None and not IBodyProducer.providedBy(data):
            data = BytesProducer(data)
        return self._agent.request(
            method.encode("ascii"), url.encode("ascii"), Headers(headers), data
        )


class _Body(Protocol):
    """
    Collects a response body, up to a limit.
    """

    def __init__(self, finished, limit):
        self._finished = finished
        self._limit = limit
        self._parts = []
        self._size = 0

    def dataReceived(self, data):
        self._size += len(data)
        if self._size > self._limit:
            self._parts = []
            self.transport.stopProducing()
            if not self._finished.called:
                self._finished.errback(
                    RuntimeFailure(f"the Docker engine's answer exceeds {self._limit} bytes")
                )
            return
        self._parts.append(data)

    def connectionLost(self, reason):
        if self._finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._parts))
        else:
            self._finished.errback(reason)


class _JSONLines(Protocol):
    """
    Splits a streamed body into JSON lines for a callback; a line longer
    than C{MAX_BODY} or not JSON ends the stream with L{RuntimeFailure}.
    """

    finished = None

    def __init__(self, line_received):
        self._line_received = line_received
        self._buffer = b""

    def dataReceived(self, data):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        try:
            if len(self._buffer) > MAX_BODY:
                raise ValueError("a line is too long")
            for line in lines:
                if line.strip():
                    self._line_received(json.loads(line))
        except ValueError as e:
            self.transport.stopProducing()
            if not self.finished.called:
                self.finished.errback(RuntimeFailure(f"bad event stream: {e}"))

    def connectionLost(self, reason):
        if not self.finished.called:
            self.finished.callback(None)


def read_body(response, limit=MAX_BODY):
    """
    Fire with the whole body of C{response}; cancelling drops the
    connection.
    """
    if response.length == 0:
        return succeed(b"")
    body = None

    def cancel(d):
        if body.transport is not None:
            body.transport.stopProducing()

    finished = Deferred(cancel)
    body = _Body(finished, limit)
    response.deliverBody(body)
    return finished


def describe(error):
    """
    Why a request got no answer, in words.
    """
    if isinstance(error, ResponseNeverReceived) and error.reasons:
        return "; ".join(reason.getErrorMessage() for reason in error.reasons)
    return str(error) or type(error).__name__


class EngineClient:
    """
    Calls the Engine API through C{http}, anything with treq's C{request}
    method (L{AgentHTTP}, a L{treq.client.HTTPClient}, or
    L{treq.testing.StubTreq} in tests).  Each call is bounded by C{timeout} seconds on C{reactor}'s
    clock, and its answer by C{body_limit} bytes; C{address} names the
    engine in messages; C{pool}, if given, is the connection pool
    L{close} closes.
    """

    log = Logger()

    def __init__(
        self,
        reactor,
        http,
        timeout=DEFAULT_TIMEOUT,
        address="the engine",
        pool=None,
        body_limit=MAX_BODY,
    ):
        self._reactor = reactor
        self._body_limit = body_limit
        self._http = http
        self._timeout = timeout
        self._pool = pool
        self.address = address
        self.version = None
        self._negotiating = DeferredLock()
        self._running = set()

    @classmethod
    def over_unix_socket(
        cls, reactor, path, timeout=DEFAULT_TIMEOUT, max_persistent=MAX_PERSISTENT
    ):
        """
        A client of the engine at Unix socket C{path}, keeping up to
        C{max_persistent} idle connections open for later calls.
        """
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = max_persistent
        agent = Agent.usingEndpointFactory(
            reactor, UNIXEndpointFactory(reactor, path, timeout), pool=pool
        )
        return cls(
            reactor, AgentHTTP(agent), timeout=timeout, address=f"unix://{path}", pool=pool
        )

    def close(self):
        """
        Once running calls finish, close the idle connections; fire when
        done.
        """
        running = DeferredList(list(self._running))
        if self._pool is None:
            return running.addCallback(lambda _: None)
        return running.addCallback(lambda _: self._pool.closeCachedConnections())

    # -- calls --------------------------------------------------------------

    def call(self, method, path, params=None, body=None):
        """
        Fire with the decoded JSON answer (None when empty) to C{method} at
        the versioned C{path} with query C{params} and JSON C{body}.
        """
        d = Deferred.fromCoroutine(self._call(method, path, params, body))
        if d.called:
            return d
        # For close() to wait on, leaving d's result to the caller alone.
        finished = Deferred()
        self._running.add(finished)

        def done(result):
            self._running.discard(finished)
            finished.callback(None)
            return result

        return d.addBoth(done)

    async def negotiate(self):
        """
        Ask the engine its API version once; fire with the one we speak.
        """
        async with self._negotiating:
            if self.version is None:
                self.version = choose_version(await self._request("GET", "/version"))
                self.log.debug(
                    "Docker engine API {major}.{minor}",
                    major=self.version[0],
                    minor=self.version[1],
                )
        return self.version

    async def _call(self, method, path, params, body):
        major, minor = self.version or await self.negotiate()
        return await self._request(method, f"/v{major}.{minor}{path}", params, body)

    async def _request(self, method, path, params=None, body=None):
        exchange = Deferred.fromCoroutine(self._exchange(method, path, params, body))
        expired = []

        def expire():
            expired.append(True)
            exchange.cancel()

        timer = self._reactor.callLater(self._timeout, expire)
        try:
            code, data = await exchange
        except Exception as e:
            if expired:
                raise RuntimeUnavailable(
                    f"cannot reach the Docker engine: no answer to {method} {path} "
                    f"in {self._timeout:g} s ({self.address})"
                ) from None
            if isinstance(e, (CancelledError, RuntimeFailure)):
                raise
            raise RuntimeUnavailable(
                f"cannot reach the Docker engine: {describe(e)} ({self.address})"
            ) from e
        finally:
            if timer.active():
                timer.cancel()
        if code >= 400:
            raise EngineError(code, self._message(code, data))
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise RuntimeFailure(
                f"the Docker engine answered {method} {path} with {data[:100]!r}, not JSON"
            ) from None

    async def _exchange(self, method, path, params, body):
        headers = {b"Content-Type": [b"application/json"]} if body is not None else None
        response = await self._http.request(
            method,
            BASE_URL + path,
            params=params,
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
            allow_redirects=False,
            unbuffered=True,
        )
        return response.code, await read_body(response, self._body_limit)

    async def upload(self, method, path, params, producer, content_type, line_received=None):
        """
        Send C{producer} (an L{IBodyProducer}, streamed with backpressure)
        to the versioned C{path}; fire with the decoded JSON answer, or,
        given C{line_received}, call it with each JSON line of the answer
        (C{/build}'s progress) and fire with None.  No timeout: the body
        lasts as long as its producer; a producer that fails aborts the
        request.
        """
        major, minor = self.version or await self.negotiate()
        response = await self._http.request(
            method, BASE_URL + f"/v{major}.{minor}{path}", params=params, data=producer,
            headers={b"Content-Type": [content_type.encode()]},
            allow_redirects=False, unbuffered=True,
        )
        if response.code < 400 and line_received is not None:
            lines = _JSONLines(line_received)
            lines.finished = Deferred(lambda _: lines.transport.stopProducing())
            response.deliverBody(lines)
            await lines.finished
            return None
        data = await read_body(response, self._body_limit)
        if response.code >= 400:
            raise EngineError(response.code, self._message(response.code, data))
        return json.loads(data) if data.strip() else None

    async def follow(self, path, params, line_received):
        """
        GET the versioned C{path}, a stream of JSON lines (C{/events}), and
        call C{line_received} with each decoded line until the engine ends
        the stream or the returned coroutine is cancelled.  No timeout: the
        stream is meant to last.
        """
        major, minor = self.version or await self.negotiate()
        response = await self._http.request(
            "GET", BASE_URL + f"/v{major}.{minor}{path}", params=params,
            allow_redirects=False, unbuffered=True,
        )
        if response.code >= 400:
            data = await read_body(response, self._body_limit)
            raise EngineError(response.code, self._message(response.code, data))
        lines = _JSONLines(line_received)
        finished = Deferred(lambda _: lines.transport.stopProducing())
        lines.finished = finished
        response.deliverBody(lines)
        await finished

    @staticmethod
    def _message(code, data):
        """
        The engine's own words for an error answer.
        """
        try:
            message = json.loads(data).get("message")
        except (ValueError, AttributeError):
            message = None
        if message:
            return str(message)
        text = data.decode("utf-8", "replace").strip()[:500]
        return text or f"HTTP status {code}"
