"""
Tests for the agent's side of end-to-end encryption (agent/e2e_agent.py,
agent/server.py): the real agent as a subprocess on loopback, driven by a
client that seals its frames with agent.e2e_frames.
"""

import hashlib
import os
import shutil

from twisted.trial.unittest import TestCase

from agent import e2e, wire
from agent.e2e import Code
from agent.e2e_frames import Sealing
from agent.wire import FrameType

from .agent_helpers import Client, shared_agent

MiB = 1024 * 1024


class SealedClient(Client):
    """
    The helpers' blocking client with an encrypted session: every frame it
    sends goes through a Sealing, and every frame it reads comes out of one.
    ``raw`` keeps the bytes as they crossed the socket.
    """

    sealing = None

    def __init__(self, port):
        self.raw = bytearray()
        super().__init__(port)

    def start(self, sandbox="sbx-e2etest", pin=None):
        handshake = e2e.ClientHandshake(sandbox, pin)
        reply = self.call("e2e.hello", handshake.hello())
        self.sealing = Sealing(handshake.finish(reply.result), client=True)
        return reply.result

    def send(self, *frames):
        if self.sealing is not None:
            frames = [self.sealing.seal(f) for f in frames]
        out = b"".join(frames)
        self.raw += out
        self.sock.sendall(out)

    def send_raw(self, data):
        self.sock.sendall(data)

    def _read_frames(self):
        data = self.sock.recv(1 << 20)
        if not data:
            self.closed = True
            raise ConnectionError("connection closed")
        self.raw += data
        for frame in self.framer.feed(data):
            if self.sealing is not None:
                frame = self.sealing.open(frame)
                if frame is None:
                    continue
            self.queued[frame.stream].append(frame)


class AgentE2ETests(TestCase):
    """
    The agent serving an encrypted session next to clear ones.
    """

    def setUp(self):
        self.agent = shared_agent()
        self.client = self.connect()
        self.start = self.client.start()
        self.tmp = os.path.join(self.agent.cwd, self.id().rsplit(".", 1)[1])
        os.mkdir(self.tmp)
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def connect(self):
        client = SealedClient(self.agent.port)
        client.authenticate(self.agent.secret)
        self.addCleanup(client.close)
        return client

    def test_identity(self):
        """
        The hello answers the agent's static key; e2e.identity answers the
        same fingerprint, which a pinned handshake accepts, and the agent
        writes it to a file for processes in the sandbox.
        """
        clear = self.connect()
        identity = clear.call("e2e.identity").result
        self.assertEqual(identity["fingerprint"], self.start["fingerprint"])
        self.assertEqual(
            identity["fingerprint"],
            e2e.fingerprint(bytes.fromhex(self.start["identity"])),
        )
        pinned = self.connect()
        pinned.start(pin=identity["fingerprint"])
        self.assertEqual(pinned.sealing.channel.fingerprint, identity["fingerprint"])
        wrong = self.connect()
        error = self.assertRaises(e2e.E2EError, wrong.start, pin=e2e.Identity().fingerprint)
        self.assertEqual(error.code, Code.IDENTITY_MISMATCH)

    def test_exec_sealed(self):
        """
        process.exec through an encrypted session: the command, its env and
        its output never cross the socket in clear.
        """
        reply = self.client.call(
            "process.exec",
            {"cmd": ["sh", "-c", 'echo "out-$SECRET_X"'], "env": {"SECRET_X": "envvalue42"}},
        )
        self.assertEqual(reply.stdout, b"out-envvalue42\n")
        self.assertEqual(reply.result["exit_code"], 0)
        for needle in (b"SECRET_X", b"envvalue42", b"echo", b"out-"):
            self.assertNotIn(needle, bytes(self.client.raw))
        self.assertIn(b"process.exec", bytes(self.client.raw))

    def test_files_sealed(self):
        """
        A 9 MiB fs.write and fs.read (more than two windows each way) pass
        sealed and come back identical.
        """
        content = os.urandom(9 * MiB)
        path = os.path.join(self.tmp, "big.bin")
        written = self.client.upload(path, [content])
        self.assertEqual(written.result["size"], len(content))
        with open(path, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(content).digest())
        read = self.client.call("fs.read", {"path": path})
        self.assertEqual(read.body, content)
        self.assertNotIn(content[:64], bytes(self.client.raw))

    def test_clear_and_sealed_share_a_connection(self):
        """
        A clear request on the same connection still works and gets a clear
        answer (other clients of the daemon share the connection).
        """
        sealing, self.client.sealing = self.client.sealing, None
        reply = self.client.call("process.exec", {"cmd": ["echo", "plain"]})
        self.assertEqual(reply.stdout, b"plain\n")
        self.client.sealing = sealing
        self.assertEqual(self.client.call("ping").result, {})

    def test_tampered_request(self):
        """
        A sealed REQUEST with one flipped byte fails with E2E_TAMPERED, and
        the session is over: a later well-formed request gets
        E2E_UNKNOWN_SESSION.
        """
        sealed = bytearray(self.client.sealing.seal(wire.request(9, "ping")))
        sealed[-1] ^= 1
        self.client.send_raw(bytes(sealed))
        error = self.client.recv_stream(9).json()
        self.assertEqual(error["code"], Code.TAMPERED)
        self.client.sealing.channel._sent += 1
        self.client.send_raw(self.client.sealing.seal(wire.request(11, "ping")))
        self.assertEqual(self.client.recv_stream(11).json()["code"], Code.UNKNOWN_SESSION)

    def test_replayed_request(self):
        """
        Replaying a sealed REQUEST on a new stream is E2E_REPLAYED.
        """
        sealed = self.client.sealing.seal(wire.request(21, "ping"))
        self.client.send_raw(sealed)
        self.assertEqual(self.client.collect(21).result, {})
        self.client.send_raw(wire.restream(sealed, 23))
        self.assertEqual(self.client.recv_stream(23).json()["code"], Code.REPLAYED)

    def test_unsealed_body(self):
        """
        Clear DATA on an encrypted stream ends the session with
        E2E_UNSEALED on that stream (the process is stopped).
        """
        sid = self.client.request("process.exec", {"cmd": ["cat"], "stdin_stream": True})
        self.client.send_raw(wire.data(sid, b"clear"))
        final = self.client.recv_stream(sid)
        while final.type is not FrameType.ERROR:
            final = self.client.recv_stream(sid)
        self.assertEqual(final.json()["code"], Code.UNSEALED)

    def test_close(self):
        """
        e2e.close forgets the session: its next sealed request is
        E2E_UNKNOWN_SESSION.
        """
        session = self.client.sealing.channel.session_id.hex()
        sealing, self.client.sealing = self.client.sealing, None
        self.assertEqual(self.client.call("e2e.close", {"session": session}).result, {"closed": True})
        self.client.send_raw(sealing.seal(wire.request(31, "ping")))
        self.assertEqual(self.client.recv_stream(31).json()["code"], Code.UNKNOWN_SESSION)
