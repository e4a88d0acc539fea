"""
Integration tests of end-to-end encrypted sessions (docs/security.md): the
Python SDK, a real ``twistd -n sandboxd`` started with ``--relay-tap`` (a
copy of every frame it relays), real containers and the real agent.

- what the daemon relays of an encrypted session holds no file contents,
  commands, env values or outputs (and does for a clear one: the tap works);
- a flipped byte either way, a replayed and two reordered frames, and a
  wrong pinned key end the session with a named error;
- the agent suite's main cases pass encrypted: exec, streams, spawn, pty,
  100 MiB transfers, tar upload and download, resume after a dropped
  connection.

Tampering is done at the SDK's edge of the relay (a wrapper round the
session's WebSocket): what it changes then crosses the real daemon and
reaches the real agent, or comes from them.
"""

import asyncio
import hashlib
import io
import os
import shutil
import tarfile
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from agent import wire
from sandbox import connect_sandbox, create_sandbox
from sandbox.errors import EncryptionError, IdentityMismatchError, TamperedError
from sandboxd.api.relaytap import read_records
from tests.daemon import Daemon
from tests.dockerutil import require_docker

MiB = 1 << 20
_daemon = {}


def tapped_daemon():
    """
    The module's daemon (one pooled sandbox), its relay tap file.
    """
    if "daemon" not in _daemon:
        require_docker()
        tap_dir = tempfile.mkdtemp(prefix="sandboxd-tap-")
        tap = os.path.join(tap_dir, "relay.tap")
        daemon = Daemon(min_base=1, options=["--relay-tap", tap])
        daemon.start()
        import atexit

        atexit.register(shutil.rmtree, tap_dir, True)
        atexit.register(daemon.stop)
        _daemon.update(daemon=daemon, tap=tap)
    return _daemon["daemon"], _daemon["tap"]


class Meddler:
    """
    Stands in for a session's WebSocket: ``outgoing(data)`` and
    ``incoming(data)`` hooks return the messages to pass on instead (none,
    one changed, several).
    """

    def __init__(self, ws):
        self.ws = ws
        self.outgoing = None
        self.incoming = None
        self._pending = []

    async def send(self, data):
        for message in self.outgoing(bytes(data)) if self.outgoing else [data]:
            await self.ws.send(message)

    async def recv(self):
        while not self._pending:
            message = await self.ws.recv()
            self._pending = self.incoming(message) if self.incoming else [message]
        return self._pending.pop(0)

    def __getattr__(self, name):
        return getattr(self.ws, name)


def is_sealed(message, frame_type=None):
    frame = wire.decode_one(message)
    return bool(frame.flags & wire.SEALED) and frame_type in (None, frame.type)


def flip(message, offset=-1):
    changed = bytearray(message)
    changed[offset] ^= 0x01
    return bytes(changed)


class EncryptedTestCase(SynchronousTestCase):
    def setUp(self):
        self.daemon, self.tap = tapped_daemon()

    def run_with(self, body, encrypted=True, pin=None, **create):
        async def run():
            sbx = await create_sandbox(
                endpoint=self.daemon.endpoint, encrypted=encrypted, pin=pin, **create
            )
            try:
                return await asyncio.wait_for(body(sbx), 180)
            finally:
                try:
                    await sbx.destroy()
                except Exception:
                    await sbx.close()

        return asyncio.run(run())

    def relayed(self, sandbox_id):
        """
        Every byte the daemon relayed for ``sandbox_id``, both ways.
        """
        return b"".join(frame for _, sid, frame in read_records(self.tap) if sid == sandbox_id)


class CaptureTests(EncryptedTestCase):
    """
    What the daemon's relay carries of a session.
    """

    async def workload(self, sbx):
        """
        A command, an env value, a file written and read, outputs: each
        marker appears only inside the sandbox or the SDK.
        """
        result = await sbx.process.exec_(
            "echo command-marker-7 >/dev/null; printf '%s-%s\\n' output marker-8; echo $E2E_VAR",
            env={"E2E_VAR": "env-value-marker-9"},
        )
        self.assertEqual(result.stdout, "output-marker-8\nenv-value-marker-9\n")
        content = b"file-content-marker-10 " * 50000
        await sbx.fs.write("/root/secret.txt", content)
        self.assertEqual(await sbx.fs.read("/root/secret.txt"), content)
        await sbx.env.set({"SET_VAR": "set-value-marker-11"})
        stream = await sbx.process.stream_exec("cat; echo $SET_VAR", stdin="stdin-marker-12")
        self.assertEqual(
            "".join([e.data async for e in stream]), "stdin-marker-12set-value-marker-11\n"
        )
        return sbx.id

    MARKERS = (
        b"command-marker-7",
        b"output-marker-8",
        b"env-value-marker-9",
        b"E2E_VAR",
        b"file-content-marker-10",
        b"/root/secret.txt",
        b"set-value-marker-11",
        b"stdin-marker-12",
    )

    def test_encrypted_relay_holds_no_content(self):
        """
        The tap of an encrypted session holds the method names but none of
        the command, env values, file name and contents, stdin or outputs.
        """
        sandbox_id = self.run_with(self.workload)
        relayed = self.relayed(sandbox_id)
        self.assertGreater(len(relayed), 2 * 50000 * 23)
        for method in (b"process.exec", b"fs.write", b"fs.read", b"env.set", b"e2e.hello"):
            self.assertIn(method, relayed)
        for marker in self.MARKERS:
            self.assertNotIn(marker, relayed)

    def test_clear_relay_holds_everything(self):
        """
        The same workload in clear: the tap shows every marker (so the tap
        sees what the encrypted test says it does not).
        """
        sandbox_id = self.run_with(self.workload, encrypted=False)
        relayed = self.relayed(sandbox_id)
        for marker in self.MARKERS:
            self.assertIn(marker, relayed)


class TamperTests(EncryptedTestCase):
    """
    Frames changed, replayed or reordered on the relay end the session with
    a named error.
    """

    async def broken(self, sbx, meddler, call):
        """
        Run ``call`` with ``meddler`` in place; the session's failure.
        """
        session = sbx._session
        with self.assertRaises(EncryptionError) as caught:
            await call()
        await asyncio.wait_for(asyncio.shield(session._reader), 30)
        self.assertTrue(sbx.closed)
        with self.assertRaises(EncryptionError) as later:
            await sbx.process.exec_("true")
        self.assertEqual(later.exception.code, caught.exception.code)
        return caught.exception

    def meddle(self, sbx):
        meddler = Meddler(sbx._session._ws)
        sbx._session._ws = meddler
        return meddler

    def test_flipped_byte_to_agent(self):
        """
        One flipped byte in a sealed REQUEST: the agent refuses it with
        E2E_TAMPERED and the session ends.
        """

        async def body(sbx):
            meddler = self.meddle(sbx)
            meddler.outgoing = lambda m: [flip(m) if is_sealed(m, wire.FrameType.REQUEST) else m]
            error = await self.broken(sbx, meddler, lambda: sbx.process.exec_("echo hi"))
            self.assertIsInstance(error, TamperedError)
            self.assertEqual(error.code, "E2E_TAMPERED")

        self.run_with(body)

    def test_flipped_byte_from_agent(self):
        """
        One flipped byte in the sealed frames the agent sends (the reader's
        pending receive may take the first unchanged): the SDK refuses them
        with E2E_TAMPERED and the session ends.
        """

        async def body(sbx):
            await sbx.fs.write("/root/f", b"x" * 1000)
            meddler = self.meddle(sbx)
            meddler.incoming = lambda m: [flip(m) if is_sealed(m) else m]
            error = await self.broken(sbx, meddler, lambda: sbx.fs.read("/root/f"))
            self.assertIsInstance(error, TamperedError)
            self.assertEqual(error.code, "E2E_TAMPERED")

        self.run_with(body)

    def test_replayed_request(self):
        """
        A sealed REQUEST sent again on a fresh stream: E2E_REPLAYED.
        """

        async def body(sbx):
            meddler = self.meddle(sbx)
            seen = []

            def replay(message):
                if is_sealed(message, wire.FrameType.REQUEST):
                    if seen:
                        return [message, wire.restream(seen[0], 999)]
                    seen.append(message)
                return [message]

            meddler.outgoing = replay
            self.assertEqual((await sbx.process.exec_("echo one")).stdout, "one\n")
            error = await self.broken(sbx, meddler, lambda: sbx.process.exec_("sleep 30"))
            self.assertEqual(error.code, "E2E_REPLAYED")

        self.run_with(body)

    def test_reordered_frames(self):
        """
        Two sealed DATA frames of one upload swapped: E2E_TAMPERED (each
        frame's index in its stream is authenticated).
        """

        async def body(sbx):
            meddler = self.meddle(sbx)
            held = []

            def swap(message):
                if is_sealed(message, wire.FrameType.DATA) and not held:
                    held.append(message)
                    return []
                if held and is_sealed(message, wire.FrameType.DATA):
                    return [message, held.pop()]
                return [message]

            meddler.outgoing = swap
            error = await self.broken(
                sbx, meddler, lambda: sbx.fs.write("/root/r", b"y" * (3 * wire.CHUNK_SIZE))
            )
            self.assertEqual(error.code, "E2E_TAMPERED")

        self.run_with(body)

    def test_pinning(self):
        """
        The fingerprint the sandbox itself shows (a file the agent writes)
        equals the one the agent answers and the one an encrypted session
        agreed; pinning it connects; pinning another key is refused with
        IdentityMismatchError and no session.
        """

        async def body(sbx):
            answered = await sbx.agent_fingerprint()
            inside = (await sbx.process.exec_("cat /tmp/.sandbox-agent-identity")).stdout.strip()
            self.assertEqual(answered, inside)
            async with await connect_sandbox(
                sbx.id, endpoint=self.daemon.endpoint, pin=inside
            ) as pinned:
                self.assertTrue(pinned.encrypted)
                self.assertEqual(pinned.fingerprint, inside)
                self.assertEqual((await pinned.process.exec_("echo ok")).stdout, "ok\n")
            wrong = "sha256:" + hashlib.sha256(b"another key").hexdigest()
            with self.assertRaises(IdentityMismatchError):
                await connect_sandbox(sbx.id, endpoint=self.daemon.endpoint, pin=wrong)

        self.run_with(body, encrypted=False)


class EncryptedSuiteTests(EncryptedTestCase):
    """
    The agent suite's main cases over an encrypted session.
    """

    def test_exec_stream_spawn(self):
        """
        exec with binary stdin, a streamed exec, and a spawned process fed
        and signalled, all sealed.
        """

        async def body(sbx):
            self.assertTrue(sbx.encrypted)
            blob = bytes(range(256)) * 40000
            result = await sbx.process.exec_("sha256sum", stdin=blob)
            self.assertEqual(result.stdout.split()[0], hashlib.sha256(blob).hexdigest())
            handle = await sbx.process.stream_exec("tr a-z A-Z", stdin="shout")
            self.assertEqual("".join([e.data async for e in handle]), "SHOUT")
            cat = await sbx.process.spawn(["cat"])
            await cat.write("ping\n")
            event = await cat.__anext__()
            self.assertEqual((event.channel, event.data), ("stdout", "ping\n"))
            await cat.close_stdin()
            self.assertEqual(await cat.exit_code(), 0)
            sleeper = await sbx.process.spawn("sleep 100")
            await sbx.process.signal(sleeper.pid, "TERM")
            self.assertEqual(await sleeper.exit_code(), 143)

        self.run_with(body)

    def test_pty(self):
        """
        A pty shell over an encrypted session sees its size; input runs.
        """

        async def body(sbx):
            term = await sbx.process.pty(cols=91, rows=17)
            await term.write("stty size; echo done-$((40+2))\n")
            seen = ""
            async for event in term:
                seen += event.data
                if "done-42" in seen:
                    break
            self.assertIn("17 91", seen)
            await term.write("exit 3\n")
            [e async for e in term]
            self.assertEqual(await term.exit_code(), 3)

        self.run_with(body)

    def test_100_mib_files_and_tar(self):
        """
        A 100 MiB file written and read back in chunks (25 windows each
        way), and a tar uploaded and downloaded, identical, sealed.
        """

        async def body(sbx):
            block = os.urandom(MiB)
            content = block * 100
            await sbx.fs.write("/root/big", content)
            digest = hashlib.sha256()
            size = 0
            async for chunk in sbx.fs.read_stream("/root/big"):
                digest.update(chunk)
                size += len(chunk)
            self.assertEqual((size, digest.digest()), (len(content), hashlib.sha256(content).digest()))
            remote = (await sbx.process.exec_("sha256sum /root/big")).stdout.split()[0]
            self.assertEqual(remote, hashlib.sha256(content).hexdigest())
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w") as tar:
                info = tarfile.TarInfo("d/a.txt")
                info.size = 5
                tar.addfile(info, io.BytesIO(b"hello"))
            await sbx.fs.upload("/root/up", archive.getvalue())
            self.assertEqual(await sbx.fs.read("/root/up/d/a.txt"), b"hello")
            tar_bytes = b"".join([c async for c in sbx.fs.download("/root/up/d")])
            with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
                self.assertEqual(tar.extractfile("d/a.txt").read(), b"hello")

        self.run_with(body)

    def test_resume(self):
        """
        An encrypted session whose connection drops resumes: output lost in
        flight and output made while it was away arrive, in order, and are
        authenticated.
        """

        async def body(sbx):
            session = sbx._session
            reopen = session._reopen
            progress = asyncio.Event()

            async def late_reopen(*args):
                await asyncio.wait_for(progress.wait(), 60)
                return await reopen(*args)

            session._reopen = late_reopen
            handle = await sbx.process.stream_exec(
                "for i in $(seq 1 40); do echo $i; sleep 0.02; done; touch /tmp/done; "
                "while [ ! -e /tmp/go ]; do sleep 0.02; done; echo end"
            )
            text = ""
            async with await connect_sandbox(sbx.id, endpoint=self.daemon.endpoint) as other:
                async for event in handle:
                    text += event.data
                    if text.count("\n") == 3 and not progress.is_set():
                        # Leave more output unread in the socket: the abort
                        # loses it in flight, and the resume must get it again.
                        session._ws.transport.pause_reading()
                        await asyncio.sleep(0.3)
                        session._ws.transport.abort()
                        for _ in range(600):
                            if await other.fs.exists("/tmp/done"):
                                break
                            await asyncio.sleep(0.05)
                        progress.set()
                        await other.fs.write("/tmp/go", "")
            self.assertEqual(text.split(), [str(i) for i in range(1, 41)] + ["end"])
            self.assertEqual((await handle.exit_code(), session.resumed), (0, 1))
            self.assertEqual((await sbx.process.exec_("echo after")).stdout, "after\n")

        self.run_with(body, ttl=60)
