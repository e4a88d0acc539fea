"""
Tests for L{agent.e2e} and L{agent.e2e_frames} (end-to-end encryption): the handshake, pinning,
sealing, rekeying, and the named errors for tampered, replayed, reordered,
dropped, spliced and unsealed frames (docs/security.md).
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from agent import e2e, wire
from agent.e2e import Code, E2EError
from agent.e2e_frames import Sealing, sealed_method

_FT = wire.FrameType


def pair(rekey_shift=e2e.REKEY_SHIFT, sandbox="sbx-0123abcd", pin=None, identity=None):
    """
    A client channel and an agent channel that agreed keys.
    """
    identity = identity or e2e.Identity()
    client = e2e.ClientHandshake(sandbox, pin=pin, rekey_shift=rekey_shift)
    result, agent = e2e.agent_handshake(identity, client.hello(), rekey_shift)
    return client.finish(result), agent


def sealings():
    client, agent = pair()
    return Sealing(client, client=True), Sealing(agent, client=False)


def decode(data):
    return wire.decode_one(data)


class HandshakeTests(SynchronousTestCase):
    """
    Key agreement, confirmation and pinning.
    """

    def test_both_ends_agree(self):
        """
        A frame sealed by the client opens at the agent and one sealed by
        the agent opens at the client; the keys differ per direction.
        """
        client, agent = pair()
        sealed = client.seal(_FT.DATA, 0, 1, 1, b"hello")
        self.assertEqual(agent.open(_FT.DATA, 0, 1, 1, sealed), (b"hello", 0))
        back = agent.seal(_FT.DATA, 1, 1, 0, b"hello")
        self.assertNotEqual(back[8:], sealed[8:])
        self.assertEqual(client.open(_FT.DATA, 1, 1, 0, back)[0], b"hello")

    def test_pin_matches(self):
        """
        A pin equal to the agent's fingerprint (in any accepted spelling) is
        accepted and the channel reports that fingerprint.
        """
        identity = e2e.Identity()
        for pin in (identity.fingerprint, identity.fingerprint[7:].upper()):
            client, _ = pair(pin=pin, identity=identity)
            self.assertEqual(client.fingerprint, identity.fingerprint)

    def test_wrong_pin(self):
        """
        Another key's fingerprint as the pin fails with E2E_IDENTITY_MISMATCH.
        """
        e = self.assertRaises(
            E2EError, pair, pin=e2e.Identity().fingerprint, identity=e2e.Identity()
        )
        self.assertEqual(e.code, Code.IDENTITY_MISMATCH)

    def test_substituted_identity(self):
        """
        A man in the middle that swaps the agent's static key in the answer
        (keeping the pin's key) cannot confirm: E2E_HANDSHAKE_FAILED.
        """
        identity, other = e2e.Identity(), e2e.Identity()
        client = e2e.ClientHandshake("sbx-1", pin=identity.fingerprint)
        result, _ = e2e.agent_handshake(other, client.hello())
        result["identity"] = identity.public.hex()
        e = self.assertRaises(E2EError, client.finish, result)
        self.assertEqual(e.code, Code.HANDSHAKE_FAILED)

    def test_transcript_binds_sandbox(self):
        """
        An agent that heard another sandbox id derives other keys: the
        client refuses its confirmation.
        """
        client = e2e.ClientHandshake("sbx-aaaaaaaa")
        hello = dict(client.hello(), sandbox="sbx-bbbbbbbb")
        result, _ = e2e.agent_handshake(e2e.Identity(), hello)
        e = self.assertRaises(E2EError, client.finish, result)
        self.assertEqual(e.code, Code.HANDSHAKE_FAILED)

    def test_bad_hello(self):
        """
        Malformed hellos are E2E_HANDSHAKE_FAILED, never another exception.
        """
        identity = e2e.Identity()
        for hello in (
            None,
            {"version": 2},
            {"version": 1, "sandbox": 5, "client_key": "00" * 32},
            {"version": 1, "sandbox": "s", "client_key": "zz"},
            {"version": 1, "sandbox": "s", "client_key": "00" * 31},
            {"version": 1, "sandbox": "s", "client_key": "00" * 32},  # low order
        ):
            e = self.assertRaises(E2EError, e2e.agent_handshake, identity, hello)
            self.assertEqual(e.code, Code.HANDSHAKE_FAILED, hello)

    def test_normalise_pin(self):
        """
        Pins are fingerprints: anything else is refused by name.
        """
        self.assertEqual(e2e.normalise_pin("SHA256:" + "AB" * 32), "sha256:" + "ab" * 32)
        e = self.assertRaises(E2EError, e2e.normalise_pin, "sha256:abc")
        self.assertEqual(e.code, Code.IDENTITY_MISMATCH)


class ChannelTests(SynchronousTestCase):
    """
    Sealing and opening single payloads.
    """

    @settings(max_examples=200, deadline=None)
    @given(
        data=st.binary(min_size=0, max_size=300),
        position=st.integers(min_value=0),
        bit=st.integers(min_value=0, max_value=7),
    )
    def test_any_flipped_bit(self, data, position, bit):
        """
        Flipping any one bit of a sealed payload (counter, ciphertext or
        tag) fails the frame with E2E_TAMPERED or E2E_REPLAYED, and the
        channel stays failed.
        """
        client, agent = pair()
        agent.open(_FT.DATA, 0, 1, 0, client.seal(_FT.DATA, 0, 1, 0, b"first"))
        sealed = bytearray(client.seal(_FT.DATA, 0, 1, 1, data))
        sealed[position % len(sealed)] ^= 1 << bit
        e = self.assertRaises(E2EError, agent.open, _FT.DATA, 0, 1, 1, bytes(sealed))
        self.assertIn(e.code, (Code.TAMPERED, Code.REPLAYED))
        later = client.seal(_FT.DATA, 0, 1, 2, b"later")
        self.assertRaises(E2EError, agent.open, _FT.DATA, 0, 1, 2, later)

    @settings(max_examples=100, deadline=None)
    @given(
        kind=st.sampled_from(sorted(wire.SEALABLE_TYPES)),
        channel=st.sampled_from(wire.CHANNELS),
        lstream=st.integers(0, 2**64 - 1),
        index=st.integers(0, 2**64 - 1),
        which=st.sampled_from(["type", "flags", "lstream", "index"]),
    )
    def test_header_is_bound(self, kind, channel, lstream, index, which):
        """
        The header in the associated data: opening a frame as another type,
        channel, logical stream or index fails with E2E_TAMPERED.
        """
        client, agent = pair()
        sealed = client.seal(kind, channel, lstream, index, b"payload")
        fields = {"type": kind, "flags": channel, "lstream": lstream, "index": index}
        fields[which] = {
            "type": _FT.EVENT if kind != _FT.EVENT else _FT.RESULT,
            "flags": (channel + 1) % 3,
            "lstream": lstream ^ 1,
            "index": index ^ 1,
        }[which]
        e = self.assertRaises(
            E2EError,
            agent.open,
            fields["type"],
            fields["flags"],
            fields["lstream"],
            fields["index"],
            sealed,
        )
        self.assertEqual(e.code, Code.TAMPERED)

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.binary(max_size=40), min_size=2, max_size=8), st.data())
    def test_replay_and_reorder(self, payloads, data):
        """
        Replaying any earlier frame, or delivering two frames in the wrong
        order, is E2E_REPLAYED.
        """
        client, agent = pair()
        sealed = [client.seal(_FT.DATA, 0, 1, i, p) for i, p in enumerate(payloads)]
        if data.draw(st.booleans(), "replay"):
            upto = data.draw(st.integers(1, len(sealed) - 1))
            for i in range(upto):
                agent.open(_FT.DATA, 0, 1, i, sealed[i])
            again = data.draw(st.integers(0, upto - 1))
            e = self.assertRaises(E2EError, agent.open, _FT.DATA, 0, 1, again, sealed[again])
        else:
            first = data.draw(st.integers(0, len(sealed) - 2))
            second = data.draw(st.integers(first + 1, len(sealed) - 1))
            agent.open(_FT.DATA, 0, 1, second, sealed[second])
            e = self.assertRaises(E2EError, agent.open, _FT.DATA, 0, 1, first, sealed[first])
        self.assertEqual(e.code, Code.REPLAYED)

    def test_rekey(self):
        """
        Counters crossing epoch boundaries change the key (the same plaintext
        at the same index seals differently beyond the counter) and both
        ends follow, including a gap that skips into the next epoch.
        """
        client, agent = pair(rekey_shift=2)
        seen = set()
        for i in range(20):
            sealed = client.seal(_FT.DATA, 0, 1, i, b"x")
            seen.add(sealed[8:])
            if i in (9, 10):
                continue  # dropped by the daemon: a gap
            self.assertEqual(agent.open(_FT.DATA, 0, 1, i, sealed)[0], b"x")
        self.assertEqual(client._send.epoch, 19 >> 2)
        self.assertEqual(agent._recv.epoch, 19 >> 2)
        self.assertEqual(len(seen), 20)

    def test_gap_bound(self):
        """
        A counter jumping more than one epoch ahead is refused (so a forged
        counter cannot make the receiver ratchet for long).
        """
        client, agent = pair(rekey_shift=2)
        sealed = client.seal(_FT.DATA, 0, 1, 0, b"x", counter=50)
        e = self.assertRaises(E2EError, agent.open, _FT.DATA, 0, 1, 0, sealed)
        self.assertEqual(e.code, Code.REPLAYED)

    def test_truncated(self):
        """
        A sealed payload shorter than counter and tag is E2E_MALFORMED.
        """
        _, agent = pair()
        e = self.assertRaises(E2EError, agent.open, _FT.DATA, 0, 1, 0, b"\0" * 23)
        self.assertEqual(e.code, Code.MALFORMED)


def exchange(client, agent, frames_to_agent):
    """
    Seal ``frames_to_agent`` at the client and open them at the agent.
    """
    return [agent.open(decode(client.seal(f))) for f in frames_to_agent]


class SealingTests(SynchronousTestCase):
    """
    Whole frames: what travels sealed, what in clear, and what the daemon
    can read.
    """

    def test_round_trip(self):
        """
        A request, its body and the agent's answer pass sealed; the daemon
        sees the method name, WINDOW and CANCEL in clear, nothing else.
        """
        client, agent = sealings()
        out = [
            wire.request(1, "process.exec", {"cmd": "echo top-secret"}),
            wire.data(1, b"stdin secret"),
            wire.end(1),
            wire.window(1, 5),
        ]
        sealed = [client.seal(f) for f in out]
        self.assertEqual(sealed_method(decode(sealed[0])), "process.exec")
        self.assertTrue(all(b"secret" not in s for s in sealed))
        self.assertEqual(sealed[3], out[3])
        opened = [agent.open(decode(wire.restream(s, 77))) for s in sealed]
        self.assertEqual(opened[0].json()["params"]["cmd"], "echo top-secret")
        self.assertEqual(opened[1].payload, b"stdin secret")
        self.assertEqual([f.stream for f in opened], [77] * 4)
        back = [
            agent.seal(wire.data(77, b"out secret", wire.CHANNEL_STDOUT)),
            agent.seal(wire.result(77, {"exit_code": 0, "secret": 1})),
        ]
        self.assertTrue(all(b"secret" not in s for s in back))
        answers = [client.open(decode(wire.restream(s, 1))) for s in back]
        self.assertEqual(answers[0].flags, wire.CHANNEL_STDOUT)
        self.assertEqual(answers[1].json()["exit_code"], 0)
        self.assertEqual(client.streams, {})
        self.assertEqual(agent.streams, {})

    def test_splice_between_streams(self):
        """
        A sealed DATA frame moved to another stream of the same session
        fails with E2E_TAMPERED.
        """
        client, agent = sealings()
        exchange(client, agent, [wire.request(1, "fs.write", {"path": "/a"})])
        exchange(client, agent, [wire.request(3, "fs.write", {"path": "/b"})])
        moved = wire.restream(client.seal(wire.data(1, b"for a")), 3)
        e = self.assertRaises(E2EError, agent.open, decode(moved))
        self.assertEqual(e.code, Code.TAMPERED)

    def test_dropped_frame_in_stream(self):
        """
        A DATA frame dropped inside a stream makes the next one fail
        (E2E_TAMPERED): the index is in the associated data.
        """
        client, agent = sealings()
        exchange(client, agent, [wire.request(1, "fs.write", {"path": "/a"})])
        client.seal(wire.data(1, b"chunk 1"))
        e = self.assertRaises(E2EError, agent.open, decode(client.seal(wire.data(1, b"chunk 2"))))
        self.assertEqual(e.code, Code.TAMPERED)

    def test_changed_method(self):
        """
        The daemon renaming a sealed request's method fails authentication.
        """
        client, agent = sealings()
        sealed = bytearray(client.seal(wire.request(1, "fs.read", {"path": "/x"})))
        sealed[wire.HEADER_SIZE + 18 : wire.HEADER_SIZE + 25] = b"fs.stat"
        e = self.assertRaises(E2EError, agent.open, decode(bytes(sealed)))
        self.assertEqual(e.code, Code.TAMPERED)

    def test_unsealed_frames_refused(self):
        """
        On an encrypted stream, a clear DATA or END to the agent and a clear
        DATA, RESULT or foreign ERROR to the client are E2E_UNSEALED; the
        daemon's own clear ERRORs and WINDOWs pass, its EVENTs are ignored.
        """
        client, agent = sealings()
        exchange(client, agent, [wire.request(1, "fs.write", {"path": "/a"})])
        for frame in (wire.data(1, b"x"), wire.end(1)):
            e = self.assertRaises(E2EError, agent.open, decode(frame))
            self.assertEqual(e.code, Code.UNSEALED)
        self.assertEqual(agent.open(decode(wire.cancel(1))).type, _FT.CANCEL)
        for frame in (
            wire.data(1, b"x", 1),
            wire.result(1, {}),
            wire.error(1, "ENOENT", "forged"),
        ):
            e = self.assertRaises(E2EError, client.open, decode(frame))
            self.assertEqual(e.code, Code.UNSEALED)
        self.assertIsNone(client.open(decode(wire.event(1, {"dropped_bytes": 5}))))
        self.assertEqual(client.open(decode(wire.window(1, 9))).window(), 9)
        lost = client.open(decode(wire.error(1, "SANDBOX_UNAVAILABLE", "gone")))
        self.assertEqual(lost.json()["code"], "SANDBOX_UNAVAILABLE")

    def test_sealed_frames_pass_the_framer(self):
        """
        Sealed frames of every sealable type decode with the SEALED flag; a
        sealed JSON payload may exceed MAX_JSON by the sealing overhead.
        """
        client, agent = sealings()
        big = {"cmd": "x" * (wire.MAX_JSON - 100)}
        frame = decode(client.seal(wire.request(1, "process.exec", big)))
        self.assertEqual(frame.flags, wire.SEALED)
        self.assertGreater(len(frame.payload), wire.MAX_JSON - 100)
        self.assertEqual(agent.open(frame).json()["params"], big)
        self.assertRaises(
            wire.ProtocolError, decode, wire.encode(_FT.WINDOW, 1, b"\0\0\0\1", wire.SEALED)
        )


class DaemonSideTests(SynchronousTestCase):
    """
    What the daemon does with sealed frames: reads the method, counts DATA
    credit in plaintext, copies relayed frames to a tap.
    """

    def test_sealed_method(self):
        """
        The daemon reads a sealed REQUEST's method from its clear prefix
        (and nothing from a clear frame or a truncated prefix).
        """
        from sandboxd.api.session import _method_of

        client, _ = sealings()
        sealed = decode(client.seal(wire.request(1, "fs.download", {"path": "/secret"})))
        self.assertEqual(_method_of(sealed), "fs.download")
        self.assertEqual(_method_of(decode(wire.request(3, "ping"))), "ping")
        short = wire.Frame(_FT.REQUEST, 5, sealed.payload[:20], wire.SEALED)
        self.assertIsNone(wire.sealed_method(short))

    def test_sealed_data_spends_plaintext_credit(self):
        """
        A window's worth of sealed DATA (each frame 24 bytes longer than its
        plaintext) fits the daemon's credit for an agent stream; a byte
        more is WINDOW_EXCEEDED.
        """
        from twisted.internet.task import Clock

        from sandboxd.protocols.inbound import InboundLimits

        client, agent = sealings()
        exchange(client, agent, [wire.request(1, "fs.read", {"path": "/big"})])
        limits = InboundLimits(Clock())
        limits.opened(1)
        for _ in range(wire.INITIAL_WINDOW // wire.CHUNK_SIZE):
            limits.check(decode(agent.seal(wire.data(1, b"\0" * wire.CHUNK_SIZE, 1))))
        e = self.assertRaises(
            wire.ProtocolError, limits.check, decode(agent.seal(wire.data(1, b"\0", 1)))
        )
        self.assertEqual(e.code, wire.Code.WINDOW_EXCEEDED)

    def test_relay_tap(self):
        """
        The relay tap keeps every frame with its direction and sandbox, in
        order, as bytes.
        """
        import os
        import tempfile

        from sandboxd.api.relaytap import RelayTap, read_records

        path = os.path.join(tempfile.mkdtemp(), "tap")
        tap = RelayTap(path)
        tap.relayed(">", "sbx-1", wire.request(1, "ping"))
        tap.relayed("<", "sbx-1", memoryview(wire.result(1, {})))
        tap.close()
        self.assertEqual(
            read_records(path),
            [(">", "sbx-1", wire.request(1, "ping")), ("<", "sbx-1", wire.result(1, {}))],
        )
