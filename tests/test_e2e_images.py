"""
Integration tests of the sandbox images (make images): a real ``twistd -n
sandboxd`` with the profiles of config/sandboxd.example.toml (default,
python, node, full), a sandbox from each running something real, and the
images' labels and read-only agent.

One daemon is shared by the tests of this module (started on first use,
stopped when the test process exits).
"""

import asyncio
import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from sandbox import create_sandbox
from tests.daemon import shared_daemon
from tests.dockerutil import require_docker, require_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import build_images  # noqa: E402

PROFILES = {
    "default": "sandbox-base:latest",
    "python": "sandbox-python:latest",
    "node": "sandbox-node:latest",
    "full": "sandbox-full:latest",
}
AGENT_DIR = "/usr/lib/python3/dist-packages/agent"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

PROFILE_CONFIG = """
[pool.base.python]
image = "sandbox-python:latest"
memory = "1g"
[pool.base.node]
image = "sandbox-node:latest"
memory = "512m"
[pool.base.full]
image = "sandbox-full:latest"
memory = "1g"
"""


def images_daemon():
    """
    The module's daemon: the four profiles, one warm sandbox each.
    """
    return shared_daemon("images", min_base=1, extra_config=PROFILE_CONFIG)


class ProfileTestCase(SynchronousTestCase):
    """
    ``scenario(profile, body)`` runs C{body(sandbox)} in a fresh sandbox of
    C{profile} (destroyed afterwards).
    """

    def setUp(self):
        require_docker()
        require_image(*PROFILES.values())
        self.daemon = images_daemon()

    def scenario(self, profile, body):
        async def run():
            sbx = await create_sandbox(profile=profile, endpoint=self.daemon.endpoint)
            try:
                self.assertEqual(sbx.info["image"], PROFILES[profile])
                return await asyncio.wait_for(body(sbx), 240)
            finally:
                try:
                    await sbx.destroy()
                except Exception:
                    await sbx.close()

        return asyncio.run(run())

    async def ok(self, sbx, cmd, timeout=180):
        """
        Run C{cmd}, fail unless it exits 0; return its stdout.
        """
        result = await sbx.process.exec_(cmd, timeout=timeout)
        self.assertEqual(result.exit_code, 0, f"{cmd}:\n{result.stdout}\n{result.stderr}")
        return result.stdout


class PythonProfileTests(ProfileTestCase):
    """
    sandbox-python: numpy, pandas and matplotlib with no install step.
    """

    def test_numpy_and_matplotlib_png(self):
        """
        A numpy computation prints the right number; a matplotlib figure
        saved to /root downloads as a PNG, with the Agg backend the image's
        environment chose; pandas and pip are there too.
        """
        script = (
            "import numpy as np, pandas as pd, matplotlib.pyplot as plt\n"
            "a = np.arange(1, 101, dtype=float)\n"
            "print(int(a.sum()), int((a @ a)))\n"
            "print(pd.DataFrame({'x': a}).x.mean())\n"
            "import os; print(os.environ.get('MPLBACKEND'), plt.get_backend())\n"
            "plt.plot(a, np.sqrt(a))\n"
            "plt.savefig('/root/plot.png')\n"
        )

        async def body(sbx):
            await sbx.fs.write("/root/plot.py", script)
            out = await self.ok(sbx, "python3 /root/plot.py")
            png = await sbx.fs.read("/root/plot.png")
            pip = await self.ok(sbx, "python3 -m pip --version && python3 -m venv /root/venv && "
                                     "/root/venv/bin/python -c 'import sys; print(sys.prefix)'")
            return out, png, pip

        out, png, pip = self.scenario("python", body)
        self.assertEqual(out.split(), ["5050", "338350", "50.5", "Agg", "agg"])
        self.assertEqual(png[:8], PNG_MAGIC)
        self.assertGreater(len(png), 1000)
        self.assertIn("pip ", pip)
        self.assertIn("/root/venv", pip)


class NodeProfileTests(ProfileTestCase):
    """
    sandbox-node: node and npm.
    """

    def test_node_and_npm_init(self):
        """
        node -e evaluates JavaScript; npm init -y writes a package.json
        named after the directory; the image's environment turns npm's
        update check and funding notices off.
        """

        async def body(sbx):
            out = await self.ok(sbx, "node -e 'console.log([1, 2, 3].map(x => x * 7).join(\",\"))'")
            await self.ok(sbx, "mkdir /root/demo && cd /root/demo && npm init -y")
            package = await sbx.fs.read("/root/demo/package.json")
            config = await self.ok(sbx, "npm config get update-notifier fund")
            return out, json.loads(package), config

        out, package, config = self.scenario("node", body)
        self.assertEqual(config.split(), ["update-notifier=false", "fund=false"])
        self.assertEqual(out, "7,14,21\n")
        self.assertEqual(package["name"], "demo")
        self.assertEqual(package["version"], "1.0.0")


class FullProfileTests(ProfileTestCase):
    """
    sandbox-full: a general development box.
    """

    def test_compile_c_and_git_init(self):
        """
        gcc compiles a C program in /root that then runs; git init makes a
        repository; curl, jq, python3 and node answer.
        """
        program = (
            "#include <stdio.h>\n"
            "int main(void) { long s = 0; for (int i = 1; i <= 100; i++) s += i * i;"
            " printf(\"%ld\\n\", s); return 3; }\n"
        )

        async def body(sbx):
            await sbx.fs.write("/root/sum.c", program)
            await self.ok(sbx, "cd /root && make sum")
            run = await sbx.process.exec_("/root/sum")
            git = await self.ok(sbx, "git init /root/repo && git -C /root/repo status --short"
                                     " && ls -d /root/repo/.git")
            tools = await self.ok(sbx, "echo '{\"a\": [1, 2]}' | jq -c .a && curl --version"
                                       " && python3 -c 'print(6 * 7)' && node -e 'console.log(1 + 1)'")
            return run, git, tools

        run, git, tools = self.scenario("full", body)
        self.assertEqual((run.stdout, run.exit_code), ("338350\n", 3))
        self.assertIn("/root/repo/.git", git)
        self.assertIn("[1,2]", tools)
        self.assertIn("curl ", tools)
        self.assertIn("42\n2\n", tools)


class AgentUnwritableTests(ProfileTestCase):
    """
    In every image the agent's code belongs to root, is writable by no one
    else, and lies on the read-only root filesystem.
    """

    def test_agent_code_is_read_only(self):
        """
        From inside a sandbox of each profile, writing to, adding to or
        removing the agent's files fails; every file there is root's and
        not group- or other-writable.
        """
        for profile in PROFILES:
            async def body(sbx):
                attempts = {}
                for cmd in (f"echo x >> {AGENT_DIR}/server.py",
                            f"touch {AGENT_DIR}/evil.py",
                            f"rm -f {AGENT_DIR}/wire.py",
                            f"python3 -c \"open('{AGENT_DIR}/__init__.py', 'a')\""):
                    attempts[cmd] = await sbx.process.exec_(cmd)
                loose = await sbx.process.exec_(
                    f"find {AGENT_DIR} \\( ! -user root -o -perm /022 \\) -print")
                count = await self.ok(sbx, f"find {AGENT_DIR} -name '*.py' | wc -l")
                return attempts, loose, count

            attempts, loose, count = self.scenario(profile, body)
            for cmd, result in attempts.items():
                self.assertNotEqual(result.exit_code, 0, f"{profile}: {cmd} succeeded")
                self.assertIn("Read-only file system", result.stderr, f"{profile}: {cmd}")
            self.assertEqual((loose.exit_code, loose.stdout), (0, ""), profile)
            self.assertGreater(int(count), 10, profile)


class ImageLabelTests(SynchronousTestCase):
    """
    Every image carries its version, the agent's version and the recipe of
    its root filesystem as labels.
    """

    def test_labels(self):
        """
        Each image's labels name it and the project's version, and match
        the agent in this tree and the package list and environment in
        images/NAME/; the environment is the image's.
        """
        require_docker()
        tags = {name: build_images.image_tag(name) for name in build_images.ORDER}
        require_image(*tags.values())
        agent = build_images.tree_hash(os.path.join(ROOT, "agent"))
        for name, tag in tags.items():
            require_image(tag)
            done = subprocess.run(
                ["docker", "image", "inspect", "-f", "{{json .Config}}", tag],
                capture_output=True, text=True, check=True)
            config = json.loads(done.stdout)
            labels = config["Labels"]
            packages = build_images.read_packages(os.path.join(ROOT, "images", name, "packages"))
            env = build_images.read_env(os.path.join(ROOT, "images", name, "env"))
            self.assertEqual(labels.get("sandboxd.image"), name, tag)
            title = "sandboxd" if name == "daemon" else f"sandbox-{name}"
            self.assertEqual(labels.get("org.opencontainers.image.title"), title, tag)
            self.assertEqual(labels.get("org.opencontainers.image.version"),
                             build_images.project_version(), tag)
            self.assertEqual(labels.get("sandboxd.agent.version"),
                             build_images.project_version(), tag)
            self.assertEqual(labels.get("sandboxd.agent.protocol"),
                             build_images.protocol_version(), tag)
            self.assertEqual(labels.get("sandboxd.agent.sha256"), agent,
                             f"{tag} holds another agent: run make images")
            self.assertEqual(labels.get("sandboxd.rootfs-recipe"),
                             build_images.recipe_hash(packages, env), tag)
            for variable in env:
                self.assertIn(variable, config["Env"], tag)
