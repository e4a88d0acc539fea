"""
Unit tests of L{sandboxd.tunnels}' logic: strict port parsing, the agent
port refusal, the path-proxy rewrites, and the relay's wiring (the accepted
side paused until the sandbox side connects, producers both ways, the
connection limit) on StringTransports.
"""

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from sandboxd.api.errors import ApiError
from sandboxd.sandbox import Sandbox, State
from sandboxd.tunnels.addressing import (
    check_target,
    parse_port,
    rewrite_location,
    rewrite_set_cookie,
    split_proxy_path,
)
from sandboxd.tunnels.relay import HostPortFactory, Pipe


def sandbox(state=State.RUNNING, host="172.18.0.5", port=7070):
    """
    A sandbox whose agent listens on TCP ``host``:``port``, or (``host``
    None) on a stream with no network, as a VM's.
    """
    endpoint = f"tcp:{host}:{port}" if host is not None else "vserial:/run/vm/agent.sock"
    return Sandbox(
        id="sbx-0a0b0c0d", profile="default", image="i", runtime="docker",
        memory=1, cpu=1.0, storage=1, secret="s", state=state, endpoint=endpoint,
    )


class PortParsingTests(SynchronousTestCase):
    def test_accepts_plain_decimal(self):
        """
        1 to 65535 in plain decimal digits, as bytes, str or int.
        """
        for raw, port in ((b"1", 1), (b"80", 80), ("8080", 8080), (65535, 65535), (b"443", 443)):
            self.assertEqual(parse_port(raw), port)

    def test_refuses_everything_else(self):
        """
        Leading zeros, signs, hex, spaces, 0, above 65535, empty, booleans,
        non-ASCII digits: each a 400 INVALID_PORT.
        """
        for raw in (b"08080", b"+80", b"0x50", b" 80", b"80 ", b"0", b"65536", b"",
                    b"-1", b"8e3", b"80.0", "\u0668\u0660", True, 1.5, None, b"%38080",
                    b"99999999999999999999"):
            with self.assertRaises(ApiError, msg=repr(raw)) as caught:
                parse_port(raw)
            self.assertEqual((caught.exception.status, caught.exception.code),
                             (400, "INVALID_PORT"))


class TargetTests(SynchronousTestCase):
    def test_agent_port_refused(self):
        """
        The sandbox's agent port is a 403 PORT_RESERVED; another port gives
        the sandbox's address.
        """
        box = sandbox()
        with self.assertRaises(ApiError) as caught:
            check_target(box, 7070)
        self.assertEqual((caught.exception.status, caught.exception.code), (403, "PORT_RESERVED"))
        self.assertEqual(check_target(box, 8080), "172.18.0.5")

    def test_ended_sandbox(self):
        """
        A sandbox that is no longer alive, or has no address, is a 409.
        """
        for box in (sandbox(State.FAILED), sandbox(host=None)):
            with self.assertRaises(ApiError) as caught:
                check_target(box, 8080)
            self.assertEqual(caught.exception.code, "SANDBOX_NOT_RUNNING")


class PathTests(SynchronousTestCase):
    def test_split(self):
        """
        The raw path splits into id, port segment and the rest (``/`` when
        none), percent-escapes and dot segments kept as sent.
        """
        self.assertEqual(split_proxy_path(b"/sandboxes/sbx-1/ports/8080/a/b?x=1"),
                         (b"sbx-1", b"8080", b"/a/b?x=1"))
        self.assertEqual(split_proxy_path(b"/sandboxes/sbx-1/ports/8080"),
                         (b"sbx-1", b"8080", b"/"))
        self.assertEqual(split_proxy_path(b"/sandboxes/sbx-1/ports/80/../7070/%2e%2e"),
                         (b"sbx-1", b"80", b"/../7070/%2e%2e"))
        self.assertIsNone(split_proxy_path(b"/sandboxes/sbx-1/stats"))

    def test_location(self):
        """
        Absolute paths and URLs naming the sandbox's own address get the
        prefix; relative paths, other sites and scheme-relative URLs do
        not.
        """
        prefix = b"/sandboxes/sbx-1/ports/8080"
        own = {b"172.18.0.5:8080"}
        cases = {
            b"/login": prefix + b"/login",
            b"/": prefix + b"/",
            b"http://172.18.0.5:8080/a?b=1": prefix + b"/a?b=1",
            b"http://172.18.0.5:8080": prefix + b"/",
            b"next": b"next",
            b"https://example.org/x": b"https://example.org/x",
            b"//example.org/x": b"//example.org/x",
        }
        for given, expected in cases.items():
            self.assertEqual(rewrite_location(given, prefix, own), expected, given)

    def test_set_cookie(self):
        """
        A cookie's Path attribute (any case) goes under the prefix; one
        with no Path is kept.
        """
        prefix = b"/sandboxes/sbx-1/ports/8080"
        self.assertEqual(rewrite_set_cookie(b"a=b; Path=/; HttpOnly", prefix),
                         b"a=b; Path=" + prefix + b"/; HttpOnly")
        self.assertEqual(rewrite_set_cookie(b"a=b; path=/app", prefix),
                         b"a=b; path=" + prefix + b"/app")
        self.assertEqual(rewrite_set_cookie(b"a=b; Secure", prefix), b"a=b; Secure")


class _Connecting:
    """
    A HostPortFactory whose connections to the sandbox are Deferreds the
    test fires.
    """

    def __init__(self, max_connections=2):
        self.factory = HostPortFactory(MemoryReactorClock(), "t", "10.0.0.2", 8080,
                                       max_connections)
        self.pending = []
        self.cancelled = []
        self.factory.connect = self._connect

    def _connect(self):
        d = Deferred(canceller=self.cancelled.append)
        self.pending.append(d)
        return d

    def accept(self):
        protocol = self.factory.buildProtocol(("127.0.0.1", 5000))
        if protocol is None:
            return None, None
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport


class RelayWiringTests(SynchronousTestCase):
    def test_paused_until_connected(self):
        """
        An accepted connection reads nothing until the sandbox side
        connects; then each transport is the other's streaming producer and
        the accepted side reads again.
        """
        connecting = _Connecting()
        inbound, caller = connecting.accept()
        self.assertEqual(caller.producerState, "paused")
        outbound = Pipe()
        sandbox_side = StringTransport()
        outbound.makeConnection(sandbox_side)
        connecting.pending[0].callback(outbound)
        self.assertEqual(caller.producerState, "producing")
        self.assertIs(caller.producer, sandbox_side)
        self.assertIs(sandbox_side.producer, caller)
        self.assertTrue(caller.streaming and sandbox_side.streaming)
        inbound.dataReceived(b"to the sandbox")
        outbound.dataReceived(b"to the caller")
        self.assertEqual(sandbox_side.value(), b"to the sandbox")
        self.assertEqual(caller.value(), b"to the caller")

    def test_slow_side_pauses_other(self):
        """
        When the caller's transport asks its producer to pause (its buffer
        is full), reading from the sandbox stops; and the other way round.
        """
        connecting = _Connecting()
        inbound, caller = connecting.accept()
        outbound = Pipe()
        sandbox_side = StringTransport()
        outbound.makeConnection(sandbox_side)
        connecting.pending[0].callback(outbound)
        caller.producer.pauseProducing()
        self.assertEqual(sandbox_side.producerState, "paused")
        caller.producer.resumeProducing()
        sandbox_side.producer.pauseProducing()
        self.assertEqual(caller.producerState, "paused")

    def test_connect_failure_closes(self):
        """
        When the sandbox's port refuses, the accepted connection is closed
        and no longer counted.
        """
        connecting = _Connecting()
        inbound, caller = connecting.accept()
        connecting.pending[0].errback(ConnectionRefusedError())
        self.assertTrue(caller.disconnecting)
        inbound.connectionLost(None)
        self.assertEqual(connecting.factory.live, set())

    def test_close_one_side_closes_other(self):
        """
        When either end goes, the other is closed.
        """
        connecting = _Connecting()
        inbound, caller = connecting.accept()
        outbound = Pipe()
        sandbox_side = StringTransport()
        outbound.makeConnection(sandbox_side)
        connecting.pending[0].callback(outbound)
        outbound.connectionLost(None)
        self.assertTrue(caller.disconnecting)

    def test_caller_gone_before_connect(self):
        """
        A caller that leaves while the sandbox side is still connecting
        cancels that connection attempt.
        """
        connecting = _Connecting()
        inbound, caller = connecting.accept()
        inbound.connectionLost(None)
        self.assertEqual(connecting.cancelled, [connecting.pending[0]])

    def test_connection_limit(self):
        """
        Beyond max_connections open relays a new connection is refused and
        counted; once one closes, another is accepted.
        """
        connecting = _Connecting(max_connections=2)
        first, _ = connecting.accept()
        connecting.accept()
        third, _ = connecting.accept()
        self.assertIsNone(third)
        self.assertEqual((connecting.factory.refused, len(connecting.factory.live)), (1, 2))
        first.connectionLost(None)
        fourth, _ = connecting.accept()
        self.assertIsNotNone(fourth)
