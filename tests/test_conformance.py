"""
The conformance suite of the three SDKs (tests/conformance/README.md): the
wire vectors and the scenario, played by each SDK's runner against one real
daemon (real containers, the real agent).
"""

import os
import re
import shutil
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.conformance import make_vectors, python_runner
from tests.daemon import shared_daemon
from tests.dockerutil import missing, require_docker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFORMANCE = os.path.join(ROOT, "tests", "conformance")


def run(argv, cwd=ROOT, env=None, timeout=600):
    """
    Run a runner: (exit code, combined output).  ``env`` adds to this
    process's environment; a name given as None is left out.
    """
    merged = {name: value for name, value in {**os.environ, **(env or {})}.items()
              if value is not None}
    done = subprocess.run(argv, cwd=cwd, env=merged, capture_output=True,
                          text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def need(program):
    path = shutil.which(program)
    if path is None:
        missing(program)
    return path


class VectorFileTests(SynchronousTestCase):
    def test_committed(self):
        """
        The committed vectors.json is exactly what make_vectors.py makes from
        agent/wire.py and sandbox/errors.py: a codec or error-mapping change
        cannot leave the other SDKs' vectors stale.
        """
        with open(make_vectors.PATH) as f:
            self.assertEqual(f.read(), make_vectors.render())

    def test_python_vectors(self):
        """
        agent.wire encodes, decodes and refuses every vector, and
        sandbox.errors maps every wire and HTTP error code to its family.
        """
        self.assertGreater(python_runner.play_vectors(python_runner.load("vectors.json")), 100)

    def test_runner_fails_on_a_wrong_vector(self):
        """
        The runner is not vacuous: a vector with one byte changed fails.
        """
        vectors = python_runner.load("vectors.json")
        case = vectors["encode"][0]
        case["hex"] = case["hex"][:-2] + ("00" if case["hex"][-2:] != "00" else "01")
        self.assertRaises(python_runner.Failure, python_runner.play_vectors, vectors)


class ScenarioTests(SynchronousTestCase):
    """
    Each SDK's runner plays scenario.json against the shared daemon.
    """

    def setUp(self):
        require_docker()
        self.daemon = shared_daemon()

    def assertPlayed(self, code, output):
        steps = len(python_runner.load("scenario.json")["steps"])
        self.assertEqual(code, 0, output[-3000:])
        played = re.findall(r"^ok \d+ (?!vectors$)[a-z_]+$", output, re.M)
        self.assertEqual(len(played), steps, output[-3000:])

    def test_python(self):
        """
        The Python SDK plays every step of the scenario (5 MB round trip,
        stdin, streams, spawn and signals, pty resize, env, typed errors,
        destroy).
        """
        code, out = run([sys.executable, os.path.join(CONFORMANCE, "python_runner.py"), "scenario",
                         "--endpoint", self.daemon.endpoint])
        self.assertPlayed(code, out)

    def test_typescript(self):
        """
        The TypeScript SDK (sdk/typescript, node) plays the vectors and every
        step of the scenario.
        """
        node = need("node")
        modules = os.path.join(ROOT, "sdk", "typescript", "node_modules", "ws")
        if not os.path.isdir(modules):
            missing("sdk/typescript/node_modules (run `npm install` there; scripts/setup.sh does)")
        runner = os.path.join(CONFORMANCE, "typescript_runner.mjs")
        code, out = run([node, runner, "vectors"])
        self.assertEqual(code, 0, out)
        self.assertPlayed(*run([node, runner, "scenario", "--endpoint", self.daemon.endpoint]))

    def test_go(self):
        """
        The Go SDK (sdk/go, built from its vendor directory with an empty
        GOPATH and no module proxy) plays the vectors and every step of the
        scenario.
        """
        go = need("go")
        gopath = self.mktemp()
        env = {"GOFLAGS": "-mod=vendor", "GOPROXY": "off", "GOPATH": os.path.abspath(gopath),
               "SANDBOX_CONFORMANCE_ENDPOINT": self.daemon.endpoint}
        code, out = run([go, "test", "-count=1", "-v", "-run", "TestVectors|TestScenario", "."],
                        cwd=os.path.join(ROOT, "sdk", "go"), env=env)
        self.assertIn(" vectors\n", out)
        self.assertPlayed(code, out)
