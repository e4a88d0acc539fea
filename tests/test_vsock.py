"""
Tests for L{sandboxd.vsock}: the hybrid-vsock CONNECT handshake and the
virtio-serial resync, each against a fake peer on a real temporary Unix
socket, and the AF_VSOCK endpoint on this host.
"""

import os
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from sandboxd.vsock import (
    HandshakeFailed,
    HybridVsockDialogue,
    SerialSyncDialogue,
    SerialSyncFailed,
    VsockClientEndpoint,
    VsockConnectFailed,
    VsockUnavailable,
    hybrid_vsock_endpoint,
    virtio_serial_endpoint,
)
from sandboxd.vsock import serial

from tests.dockerutil import missing


class _Peer(Protocol):
    """
    A fake peer: records what it receives; ``on_line(peer, line)`` answers
    each newline-ended line.
    """

    def connectionMade(self):
        self.factory.peers.append(self)
        self.received = b""

    def dataReceived(self, data):
        self.received += data
        while b"\n" in self.received and self.factory.on_line is not None:
            line, _, self.received = self.received.partition(b"\n")
            self.factory.on_line(self, line)


class _Client(Protocol):
    """
    The protocol handed the stream after the preamble.
    """

    def connectionMade(self):
        self.data = b""
        self.lost = Deferred()

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.lost.callback(None)


class _Fixture(TestCase):
    def listen(self, on_line):
        path = os.path.join(self.mktemp() + ".d", "peer.sock")
        os.makedirs(os.path.dirname(path))
        factory = Factory.forProtocol(_Peer)
        factory.peers = []
        factory.on_line = on_line
        port = reactor.listenUNIX(path, factory)
        self.addCleanup(port.stopListening)
        self.factory = factory
        return path

    def cleanupClient(self, client):
        if client.transport is not None:
            client.transport.loseConnection()
            return client.lost


class HybridVsockTests(_Fixture):
    async def test_ok(self):
        """
        The client writes ``CONNECT 1024`` and, on ``OK <n>``, gets the
        stream: bytes the peer sent after the OK line in the same write
        reach the client, and what the client writes reaches the peer.
        """
        def on_line(peer, line):
            peer.connect_line = line
            peer.transport.write(b"OK 1073741824\nHELLO")

        path = self.listen(on_line)
        client = await hybrid_vsock_endpoint(reactor, path, 1024).connect(
            Factory.forProtocol(_Client))
        self.addCleanup(self.cleanupClient, client)
        self.assertEqual(b"HELLO", client.data)
        (peer,) = self.factory.peers
        self.assertEqual(b"CONNECT 1024", peer.connect_line)
        self.factory.on_line = None
        client.transport.write(b"AUTH")
        while peer.received != b"AUTH":
            await _tick()
        self.assertEqual(b"AUTH", peer.received)

    async def test_refusedByClose(self):
        """
        Firecracker closes the connection when nothing listens on the guest
        port: HandshakeFailed saying so.
        """
        path = self.listen(lambda peer, line: peer.transport.loseConnection())
        with self.assertRaises(HandshakeFailed) as caught:
            await hybrid_vsock_endpoint(reactor, path, 52).connect(Factory.forProtocol(_Client))
        self.assertIn("closed the connection before OK", str(caught.exception))
        self.assertIn("vsock port 52", str(caught.exception))

    async def test_badReply(self):
        """
        A reply other than ``OK <digits>`` is VsockConnectFailed quoting it,
        and the connection is closed.
        """
        for reply in (b"NO 5\n", b"OK\n", b"OK x\n", b"ok 5\n", b"OK 5 6\n"):
            with self.subTest(reply=reply):
                path = self.listen(lambda peer, line: peer.transport.write(reply))
                with self.assertRaises(VsockConnectFailed) as caught:
                    await hybrid_vsock_endpoint(reactor, path, 1024).connect(
                        Factory.forProtocol(_Client))
                self.assertIn(repr(reply.rstrip(b"\n").decode()), str(caught.exception))

    async def test_noSocket(self):
        """
        A missing Unix socket fails the connect (the VM is not there).
        """
        with self.assertRaises(Exception):
            await hybrid_vsock_endpoint(reactor, "/nonexistent/v.sock", 1).connect(
                Factory.forProtocol(_Client))


class HybridDialogueTests(SynchronousTestCase):
    def test_splitReply(self):
        """
        The OK line may arrive in pieces; the host port is kept.
        """
        dialogue = HybridVsockDialogue(7)
        self.assertEqual(b"CONNECT 7\n", dialogue.request())
        self.assertIsNone(dialogue.feed(b"O"))
        self.assertIsNone(dialogue.feed(b"K 12"))
        self.assertEqual(b"xy", dialogue.feed(b"3\nxy"))
        self.assertEqual(123, dialogue.host_port)

    def test_endlessReply(self):
        """
        A reply with no newline is refused once it passes 64 bytes.
        """
        dialogue = HybridVsockDialogue(7)
        self.assertIsNone(dialogue.feed(b"O" * 64))
        self.assertRaises(VsockConnectFailed, dialogue.feed, b"O")


class SerialTests(_Fixture):
    async def test_resync(self):
        """
        The client writes the SYNC line with a fresh nonce; stale bytes the
        port delivers before the agent's SYNCED answer (another nonce's
        answer among them) are dropped, and bytes after it reach the client.
        """
        def on_line(peer, line):
            if line.startswith(b"SANDBOXD-SYNC "):
                nonce = line.split(b" ", 1)[1]
                peer.nonce = nonce
                peer.transport.write(
                    b"\x00\x00\x10stale frame bytes SANDBOXD-SYNCED 00ff\n"
                    + b"SANDBOXD-SYNCED " + nonce + b"\nHELLO")

        path = self.listen(on_line)
        client = await virtio_serial_endpoint(reactor, path).connect(
            Factory.forProtocol(_Client))
        self.addCleanup(self.cleanupClient, client)
        self.assertEqual(b"HELLO", client.data)
        self.assertEqual(32, len(self.factory.peers[0].nonce))

    async def test_noAnswer(self):
        """
        An agent that never answers fails the connect after the timeout with
        HandshakeFailed (connect_agent then tries again).
        """
        path = self.listen(lambda peer, line: None)
        with self.assertRaises(HandshakeFailed) as caught:
            await virtio_serial_endpoint(reactor, path, timeout=0.2).connect(
                Factory.forProtocol(_Client))
        self.assertIn("no answer within 0.2s", str(caught.exception))


class SerialDialogueTests(SynchronousTestCase):
    def test_answerAcrossWrites(self):
        """
        The answer is found even when split across reads, and only with
        this connection's nonce.
        """
        dialogue = SerialSyncDialogue("ab" * 16)
        self.assertEqual(b"\nSANDBOXD-SYNC " + b"ab" * 16 + b"\n", dialogue.request())
        self.assertIsNone(dialogue.feed(b"SANDBOXD-SYNCED " + b"cd" * 16 + b"\nSANDBOXD-SYN"))
        self.assertIsNone(dialogue.feed(b"CED " + b"ab" * 8))
        self.assertEqual(b"rest", dialogue.feed(b"ab" * 8 + b"\nrest"))

    def test_staleBound(self):
        """
        Past MAX_STALE bytes without the answer, the dialogue gives up by
        name instead of reading forever.
        """
        self.patch(serial, "MAX_STALE", 1000)
        dialogue = SerialSyncDialogue()
        self.assertIsNone(dialogue.feed(b"x" * 900))
        self.assertRaises(SerialSyncFailed, dialogue.feed, b"x" * 200)

    def test_freshNonces(self):
        """
        Every dialogue has its own 128-bit nonce.
        """
        self.assertNotEqual(SerialSyncDialogue().nonce, SerialSyncDialogue().nonce)


class AFVsockTests(TestCase):
    async def test_createdNotConnectable(self):
        """
        On this host an AF_VSOCK socket can be created but no connection
        made (no vsock transport): the endpoint fails with VsockUnavailable
        naming the errno.  Where a host has vhost-vsock and nothing
        listens, the same error comes back (refused or reset).
        """
        if not hasattr(socket, "AF_VSOCK"):
            missing("no AF_VSOCK in this Python")
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
        with self.assertRaises(VsockUnavailable) as caught:
            await VsockClientEndpoint(reactor, 3, 1024, timeout=2).connect(
                Factory.forProtocol(_Client))
        self.assertIn("cannot connect to vsock 3:1024", str(caught.exception))


def _tick():
    d = Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d
