"""
Each SDK installs alone and passes its own suite against a real daemon:
the Python SDK as the ``sandboxd-sdk`` distribution in a fresh venv, the
TypeScript SDK from ``npm pack`` in a fresh directory, the Go module from a
clean copy with an empty GOPATH and no module proxy.
"""

import json
import os
import re
import shutil
import sys
import tarfile

from twisted.trial.unittest import SynchronousTestCase

from tests.daemon import shared_daemon
from tests.dockerutil import require_docker
from tests.test_conformance import CONFORMANCE, ROOT, need, python_runner, run

SCENARIO_STEPS = len(python_runner.load("scenario.json")["steps"])


class SuiteTestCase(SynchronousTestCase):
    def setUp(self):
        require_docker()
        self.daemon = shared_daemon()

    def check(self, argv, **kw):
        code, out = run(argv, **kw)
        self.assertEqual(code, 0, f"{' '.join(argv)}:\n{out[-4000:]}")
        return out

    def assertScenario(self, out):
        self.assertIn(f"ok {SCENARIO_STEPS - 1} get", out)


class PythonPackageTests(SuiteTestCase):
    def test_installs_alone(self):
        """
        ``pip install 'sdk/python[encryption]'`` into a fresh venv brings the
        SDK, the wire codec, the sealing modules, websockets and
        cryptography (with its own dependencies), and nothing of the daemon
        (no Twisted, no agent server); the installed SDK (not this tree's)
        plays the vectors (the encrypted ones too) and the scenario.
        """
        venv = os.path.abspath(self.mktemp())
        # Trial's workers get this tree's sys.path as PYTHONPATH: a fresh
        # venv must not see it.
        alone = {"PYTHONPATH": None}
        self.check([sys.executable, "-m", "venv", venv], env=alone)
        py = os.path.join(venv, "bin", "python")
        self.check([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    os.path.join(ROOT, "sdk", "python") + "[encryption]"], cwd=venv, env=alone)
        listed = json.loads(self.check([py, "-m", "pip", "list", "--format=json",
                                        "--disable-pip-version-check"],
                                       cwd=venv, env=alone).splitlines()[0])
        names = {p["name"].lower() for p in listed} - {"pip", "setuptools", "wheel"}
        self.assertTrue({"sandboxd-sdk", "websockets", "cryptography"} <= names, names)
        self.assertTrue(names <= {"sandboxd-sdk", "websockets", "cryptography", "cffi", "pycparser"},
                        names)
        probe = ("import agent, os, sandbox, importlib.util as u; "
                 "print(sandbox.__file__); print(sorted(os.listdir(os.path.dirname(agent.__file__)))); "
                 "print(u.find_spec('twisted'), u.find_spec('sandboxd'))")
        out = self.check([py, "-c", probe], cwd=venv, env=alone).splitlines()
        self.assertTrue(out[0].startswith(venv), out[0])
        self.assertEqual([n for n in eval(out[1]) if n.endswith(".py")],
                         ["__init__.py", "e2e.py", "e2e_codes.py", "e2e_frames.py", "wire.py"])
        self.assertEqual(out[2], "None None")
        env = {"SANDBOX_SDK_INSTALLED": "1", **alone}
        runner = os.path.join(CONFORMANCE, "python_runner.py")
        self.check([py, runner, "vectors"], cwd=venv, env=env)
        self.assertScenario(self.check([py, runner, "scenario", "--endpoint", self.daemon.endpoint],
                                       cwd=venv, env=env))


class TypeScriptTests(SuiteTestCase):
    sdk = os.path.join(ROOT, "sdk", "typescript")

    def test_suite(self):
        """
        The declarations type-check (tsc --noEmit on a program using the
        API), and ``node --test`` passes against the daemon: concurrency,
        8 MiB of stdin, cancel, early exit from a read stream, tar round
        trip, fetch and tunnels, env, errors after destroy.
        """
        npm = need("npm")
        self.check([npm, "run", "--silent", "typecheck"], cwd=self.sdk)
        out = self.check([need("node"), "--test", "test/"], cwd=self.sdk,
                         env={"SANDBOX_ENDPOINT": self.daemon.endpoint})
        counts = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", out, re.M))
        self.assertEqual((counts["fail"], counts["pass"]), ("0", counts["tests"]), out[-3000:])
        self.assertGreaterEqual(int(counts["tests"]), 12)
        self.assertNotIn("# SKIP", out)

    def test_packs_and_installs(self):
        """
        ``npm pack`` makes a tarball with the ESM code and its declarations
        (no tests); installed into a fresh directory it brings only ``ws``,
        and the installed package plays the vectors and the scenario.
        """
        npm = need("npm")
        dest = os.path.abspath(self.mktemp())
        os.makedirs(dest)
        out = self.check([npm, "pack", "--silent", "--pack-destination", dest], cwd=self.sdk)
        tgz = os.path.join(dest, out.strip().splitlines()[-1])
        with tarfile.open(tgz) as t:
            names = set(t.getnames())
        self.assertLessEqual({"package/src/index.js", "package/src/index.d.ts", "package/src/wire.d.ts",
                              "package/package.json"}, names)
        self.assertFalse([n for n in names if "/test/" in n or "node_modules" in n], names)
        app = os.path.join(dest, "app")
        os.makedirs(app)
        with open(os.path.join(app, "package.json"), "w") as f:
            json.dump({"name": "app", "version": "1.0.0", "private": True, "type": "module"}, f)
        self.check([npm, "install", "--silent", "--no-audit", "--no-fund", "--no-package-lock", tgz], cwd=app)
        self.assertEqual(sorted(n for n in os.listdir(os.path.join(app, "node_modules")) if not n.startswith(".")),
                         ["@sandboxd", "ws"])
        env = {"SANDBOX_SDK_MODULE": "@sandboxd/sdk", "SANDBOX_SDK_FROM": app}
        runner = os.path.join(CONFORMANCE, "typescript_runner.mjs")
        self.check([need("node"), runner, "vectors"], cwd=app, env=env)
        self.assertScenario(self.check([need("node"), runner, "scenario", "--endpoint",
                                        self.daemon.endpoint], cwd=app, env=env))


class GoTests(SuiteTestCase):
    def test_clean_build_and_suite(self):
        """
        A copy of sdk/go (what a checkout holds) builds and vets with an
        empty GOPATH, GOFLAGS=-mod=vendor and no module proxy, and its
        ``go test`` passes against the daemon (50 concurrent execs, 8 MiB of
        stdin, a context deadline that kills the command, tar round trip,
        fetch and tunnels, pty and signals).
        """
        go = need("go")
        work = os.path.abspath(self.mktemp())
        shutil.copytree(os.path.join(ROOT, "sdk", "go"), os.path.join(work, "sdk", "go"))
        shutil.copytree(CONFORMANCE, os.path.join(work, "tests", "conformance"))
        cwd = os.path.join(work, "sdk", "go")
        env = {"GOFLAGS": "-mod=vendor", "GOPROXY": "off", "GOPATH": os.path.join(work, "gopath"),
               "GO111MODULE": "on", "SANDBOX_CONFORMANCE_ENDPOINT": self.daemon.endpoint}
        self.check([go, "build", "./..."], cwd=cwd, env=env)
        self.check([go, "vet", "./..."], cwd=cwd, env=env)
        out = self.check([go, "test", "-count=1", "-v", "-run", "TestParse|TestStream|TestLive", "."],
                         cwd=cwd, env=env)
        self.assertNotIn("SKIP", out)
        self.assertIn("PASS", out)
        with open(os.path.join(cwd, "go.mod")) as f:
            self.assertIn("github.com/gorilla/websocket v1.5.0", f.read())
