"""
Encrypted sessions from the other clients, against the daemon and agent of
tests/test_e2e_encrypted.py (its relay tap included): ``sbx --encrypted``,
``--pin`` and ``sbx fingerprint``, and the TypeScript SDK.
"""

import os

from tests.test_e2e_encrypted import EncryptedTestCase


class CommandLineTests(EncryptedTestCase):
    """
    ``sbx --encrypted``, ``--pin`` and ``sbx fingerprint``.
    """

    def sbx(self, *args):
        import subprocess
        import sys

        done = subprocess.run(
            [sys.executable, "-m", "sbx.main", *args],
            capture_output=True, env=self.daemon.env, timeout=120,
        )
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    def test_encrypted_exec_and_pin(self):
        """
        ``sbx fingerprint`` prints the agent's key; ``--encrypted exec`` and
        ``--pin`` with it run the command (none of it in the relay tap);
        another pin exits 1 saying which key it found instead.
        """
        status, sandbox = self.daemon.request("POST", "/sandboxes", {"ttl": 600})
        self.assertEqual(status, 201, sandbox)
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{sandbox['id']}")
        sid = sandbox["id"]
        code, fingerprint, err = self.sbx("--encrypted", "fingerprint", sid)
        self.assertEqual(code, 0, err)
        fingerprint = fingerprint.strip()
        self.assertRegex(fingerprint, r"^sha256:[0-9a-f]{64}$")
        code, out, err = self.sbx("--encrypted", "exec", sid, "echo", "cli-marker-$((6*7))")
        self.assertEqual((code, out), (0, "cli-marker-$((6*7))\n"), err)
        code, out, err = self.sbx("--pin", fingerprint, "exec", sid, "sh", "-c", "echo $((6*7))")
        self.assertEqual((code, out), (0, "42\n"), err)
        self.assertNotIn(b"cli-marker", self.relayed(sid))
        wrong = "sha256:" + "0" * 64
        code, out, err = self.sbx("--pin", wrong, "exec", sid, "echo", "no")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("not the pinned " + wrong, err)


TYPESCRIPT = r"""
import { createSandbox, connectSandbox, IdentityMismatchError } from "./src/index.js";
const sbx = await createSandbox({ encrypted: true, ttl: 60 });
const out = {};
try {
  out.encrypted = sbx.encrypted;
  out.fingerprint = sbx.fingerprint;
  out.exec = (await sbx.process.exec(["sh", "-c", "echo ts-out-$((6*7))"], { env: { TS_VAR: "ts-env-marker-13" } })).stdout;
  const content = Buffer.alloc(3 * 1024 * 1024, "ts-file-marker-14 ");
  await sbx.fs.write("/root/ts.bin", content);
  out.roundTrip = Buffer.compare(await sbx.fs.read("/root/ts.bin"), content) === 0;
  out.agentFingerprint = await sbx.agentFingerprint();
  try {
    await connectSandbox(sbx.id, { pin: "sha256:" + "1".repeat(64) });
    out.wrongPin = "accepted";
  } catch (e) {
    out.wrongPin = e instanceof IdentityMismatchError ? e.code : String(e);
  }
  const pinned = await connectSandbox(sbx.id, { pin: sbx.fingerprint });
  out.pinned = (await pinned.process.exec("echo pinned")).stdout;
  await pinned.close();
  out.id = sbx.id;
} finally {
  await sbx.destroy();
}
console.log(JSON.stringify(out));
"""


class TypeScriptTests(EncryptedTestCase):
    """
    The TypeScript SDK's encrypted sessions against the same daemon and agent.
    """

    def test_typescript_encrypted(self):
        """
        createSandbox({encrypted: true}) in Node agrees keys with the Python
        agent: exec and a 3 MiB file round trip work, the fingerprint is the
        agent's, a wrong pin is IdentityMismatchError, the right one
        connects, and the relay tap holds none of it in clear.
        """
        import json
        import shutil
        import subprocess

        node = shutil.which("node")
        sdk = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sdk", "typescript")
        if node is None or not os.path.isdir(os.path.join(sdk, "node_modules", "ws")):
            if os.environ.get("CI"):
                self.fail("node and sdk/typescript's node_modules are needed (make setup)")
            self.skipTest("no node / sdk/typescript node_modules")
        script = os.path.join(sdk, f".e2e-test-{os.getpid()}.mjs")
        with open(script, "w") as f:
            f.write(TYPESCRIPT)
        self.addCleanup(os.unlink, script)
        done = subprocess.run(
            [node, script], cwd=sdk, env=self.daemon.env, capture_output=True, text=True, timeout=120
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        out = json.loads(done.stdout.strip().splitlines()[-1])
        self.assertEqual(out["exec"], "ts-out-42\n")
        self.assertTrue(out["encrypted"])
        self.assertTrue(out["roundTrip"])
        self.assertEqual(out["fingerprint"], out["agentFingerprint"])
        self.assertEqual(out["wrongPin"], "E2E_IDENTITY_MISMATCH")
        self.assertEqual(out["pinned"], "pinned\n")
        relayed = self.relayed(out["id"])
        for marker in (b"ts-out-", b"ts-env-marker-13", b"ts-file-marker-14", b"/root/ts.bin"):
            self.assertNotIn(marker, relayed)
        self.assertIn(b"process.exec", relayed)
