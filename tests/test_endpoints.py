"""
Tests for L{sandboxd.protocols.endpoints}: every kind of agent endpoint
string parses to the right endpoint and prints back the same; every bad
string is an EndpointSyntaxError naming the problem.
"""

from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from sandboxd.protocols.endpoints import (
    AgentEndpoint,
    EndpointSyntaxError,
    parse_endpoint,
    tcp_endpoint,
)
from sandboxd.vsock import PreambleEndpoint, VsockClientEndpoint

GOOD = {
    "tcp:172.18.0.5:7070": AgentEndpoint("tcp", host="172.18.0.5", port=7070),
    "tcp:[fd00::5]:7070": AgentEndpoint("tcp", host="fd00::5", port=7070),
    "tcp:agent.local:1": AgentEndpoint("tcp", host="agent.local", port=1),
    "unix:/run/sandboxd/a.sock": AgentEndpoint("unix", path="/run/sandboxd/a.sock"),
    "vsock:3:1024": AgentEndpoint("vsock", cid=3, port=1024),
    "vsock:4294967294:0": AgentEndpoint("vsock", cid=4294967294, port=0),
    "fcvsock:/srv/vm:1/v.sock:1024": AgentEndpoint("fcvsock", path="/srv/vm:1/v.sock", port=1024),
    "vserial:/var/lib/sandboxd/qemu/sbx-1/agent.sock": AgentEndpoint(
        "vserial", path="/var/lib/sandboxd/qemu/sbx-1/agent.sock"),
}

BAD = {
    "": "non-empty string",
    "7070": "unknown kind",
    "http:1.2.3.4:80": "unknown kind",
    "tcp:": "expected HOST:PORT",
    "tcp:1.2.3.4": "expected HOST:PORT",
    "tcp:1.2.3.4:": "is not a number",
    "tcp:1.2.3.4:http": "is not a number",
    "tcp:1.2.3.4:0": "outside 1-65535",
    "tcp:1.2.3.4:65536": "outside 1-65535",
    "tcp::7070": "is not a host name",
    "tcp:fd00::5:7070": "IPv6 address goes in brackets",
    "tcp:[1.2.3.4]:7070": "is not an IPv6 address",
    "tcp:[fd00::5]7070": "expected [IPV6]:PORT",
    "tcp:bad_host!:7070": "is not a host name",
    "unix:": "is not absolute",
    "unix:relative.sock": "is not absolute",
    "unix:/" + "a" * 200: "cannot name a Unix socket",
    "vsock:3": "expected CID:PORT",
    "vsock:2:1024": "CID 2 is outside",
    "vsock:x:1024": "CID 'x' is not a number",
    "vsock:3:-1": "is not a number",
    "vsock:3:4294967295": "outside",
    "fcvsock:/v.sock": "expected UDS_PATH:PORT",
    "fcvsock:v.sock:1024": "is not absolute",
    "fcvsock:/v.sock:port": "is not a number",
    "vserial:dev/vport0p1": "is not absolute",
    "vserial:/a\0b": "cannot name a Unix socket",
}


class ParseTests(SynchronousTestCase):
    def test_good(self):
        """
        Each good string parses to the expected endpoint, and printing that
        endpoint gives the string back (the store keeps the printed form).
        """
        for text, expected in GOOD.items():
            with self.subTest(text=text):
                self.assertEqual(expected, parse_endpoint(text))
                self.assertEqual(text, str(parse_endpoint(text)))

    def test_bad(self):
        """
        Each bad string is an EndpointSyntaxError quoting the string and
        saying what is wrong with it.
        """
        for text, reason in BAD.items():
            with self.subTest(text=text):
                with self.assertRaises(EndpointSyntaxError) as caught:
                    parse_endpoint(text)
                self.assertIn(reason, str(caught.exception))
                self.assertIn(repr(text), str(caught.exception))

    def test_notAString(self):
        """
        None or a number is refused by name, not with a TypeError.
        """
        for value in (None, 7070):
            self.assertRaises(EndpointSyntaxError, parse_endpoint, value)

    def test_tcpEndpointHelper(self):
        """
        tcp_endpoint writes what the parser reads, IPv6 in brackets.
        """
        self.assertEqual("tcp:10.0.0.2:7070", tcp_endpoint("10.0.0.2", 7070))
        self.assertEqual("tcp:[::1]:7070", tcp_endpoint("::1", 7070))

    def test_addressAndReservedPorts(self):
        """
        Only a TCP agent gives the sandbox an address and reserves its port;
        the VM streams give neither (their ports are not TCP ports).
        """
        tcp = parse_endpoint("tcp:172.18.0.5:7070")
        self.assertEqual(("172.18.0.5", {7070}), (tcp.address, tcp.reserved_ports))
        for text in ("unix:/a", "vsock:3:1024", "fcvsock:/v:1024", "vserial:/s"):
            endpoint = parse_endpoint(text)
            self.assertEqual((None, frozenset()), (endpoint.address, endpoint.reserved_ports))


class ClientTests(SynchronousTestCase):
    def test_clientKinds(self):
        """
        Each kind makes the Twisted client endpoint that reaches it, every
        one an IStreamClientEndpoint; the VM streams with a preamble wrap a
        Unix-socket endpoint.
        """
        reactor = MemoryReactorClock()
        expected = {
            "tcp:172.18.0.5:7070": TCP4ClientEndpoint,
            "tcp:[::1]:7070": TCP6ClientEndpoint,
            "tcp:agent.local:7070": HostnameEndpoint,
            "unix:/a.sock": UNIXClientEndpoint,
            "vsock:3:1024": VsockClientEndpoint,
            "fcvsock:/v.sock:1024": PreambleEndpoint,
            "vserial:/s.sock": PreambleEndpoint,
        }
        for text, cls in expected.items():
            with self.subTest(text=text):
                client = parse_endpoint(text).client(reactor)
                self.assertIsInstance(client, cls)
                verifyObject(IStreamClientEndpoint, client)

    def test_unixConnects(self):
        """
        The client of a unix: endpoint connects to that path.
        """
        reactor = MemoryReactorClock()
        parse_endpoint("unix:/run/a.sock").client(reactor).connect(None)
        self.assertEqual("/run/a.sock", reactor.unixClients[0][0])
