"""
Templates built from Dockerfiles and driven through the clients, against a
real daemon and the real engine: ``sbx build`` of a Dockerfile that installs
a Debian package into one of our images (from the machine's configured
Debian mirror, as the image's own apt sources say); an image whose agent was
removed gets it back; an image without python3 fails naming why and leaves
nothing; the SDK's ``sbx.template.save`` and ``client.templates``; ``sbx
tpl save|ls|rm``.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from sandbox import Client, create_sandbox
from sandbox.errors import NotFoundError
from tests.daemon import shared_daemon
from tests.dockerutil import require_docker

SBX = [sys.executable, "-c", "from sbx.main import main; main()"]

INSTALLS_TREE = (
    "FROM sandbox-base:latest\n"
    "RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends tree >/dev/null"
    " && rm -rf /var/lib/apt/lists/*\n"
    "RUN echo built > /root/built.txt\n"
)
NO_AGENT = (
    "FROM sandbox-base:latest\n"
    "RUN rm -rf /usr/lib/python3/dist-packages/agent\n"
    'LABEL sandboxd.agent.protocol=""\n'
)
NO_PYTHON = "FROM sandbox-base:latest\nRUN rm -f /usr/bin/python3*\n"


def build_images():
    docker = require_docker()
    # The low-level list (no inspect per image: one may go meanwhile).
    return sorted(tag for repo in ("sandboxd-template", "sandboxd-template-base", "sandboxd-build")
                  for image in docker.api.images(name=repo) for tag in image["RepoTags"] or ())


class BuildTests(SynchronousTestCase):
    """
    On runc, a daemon of its own.
    """

    def setUp(self):
        require_docker()
        self.daemon = shared_daemon("templates-build", min_base=1, request_timeout=300)

    def sbx(self, *args, timeout=900):
        return subprocess.run(SBX + list(args), capture_output=True, text=True,
                              env=self.daemon.env, timeout=timeout)

    def context(self, dockerfile, name="Dockerfile.sandbox"):
        directory = tempfile.mkdtemp(prefix="sbx-build-")
        with open(os.path.join(directory, name), "w") as f:
            f.write(dockerfile)
        return directory, os.path.join(directory, name)

    def forget(self, template_id):
        """
        Delete the template and wait until its images are gone.
        """
        self.daemon.request("DELETE", f"/templates/{template_id}")
        deadline = time.monotonic() + 60
        while any(template_id in tag for tag in build_images()) and time.monotonic() < deadline:
            time.sleep(0.2)

    def run_in(self, template_id, command):
        async def scenario():
            async with await create_sandbox(template=template_id,
                                            endpoint=self.daemon.endpoint) as sbx:
                return sbx.info, await sbx.process.exec_(command)

        return asyncio.run(scenario())

    def test_build_installs_a_debian_package(self):
        """
        ``sbx build -f FILE --label NAME DIR`` prints progress on stderr and
        the template id on stdout; a sandbox from it runs the installed
        tool and has what the Dockerfile put in /root.
        """
        directory, dockerfile = self.context(INSTALLS_TREE)
        done = self.sbx("build", "-f", dockerfile, "--label", "tree", directory)
        self.assertEqual(done.returncode, 0, done.stderr)
        template_id = done.stdout.strip()
        self.addCleanup(self.forget, template_id)
        self.assertRegex(template_id, r"^tpl-[0-9a-f]{8}$")
        self.assertIn("Step 2/3 : RUN apt-get update", done.stderr)
        info, result = self.run_in(template_id, "tree --version && cat /root/built.txt")
        self.assertEqual(result.exit_code, 0, result.stderr)
        self.assertIn("tree v", result.stdout)
        self.assertTrue(result.stdout.endswith("built\n"))
        self.assertEqual(info["template"], template_id)
        listed = self.sbx("tpl", "ls")
        self.assertIn(template_id, listed.stdout)
        self.assertIn("tree", listed.stdout)

    def test_image_without_the_agent_gets_it(self):
        """
        An image whose agent was removed (its label emptied) gets the
        agent added; a sandbox from it answers.
        """
        directory, dockerfile = self.context(NO_AGENT)
        done = self.sbx("build", "-f", dockerfile, "--label", "no-agent", directory)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.addCleanup(self.forget, done.stdout.strip())
        self.assertIn("adding the agent", done.stderr)
        _, result = self.run_in(done.stdout.strip(), "echo agent-added")
        self.assertEqual(result.stdout, "agent-added\n")

    def test_image_without_python_fails_clearly(self):
        """
        An image without python3 fails with exit status 1 and a message
        naming python3; no template is registered and no image is left.
        """
        before = build_images()
        directory, dockerfile = self.context(NO_PYTHON)
        done = self.sbx("build", "-f", dockerfile, "--label", "no-python", directory)
        self.assertEqual(done.returncode, 1)
        self.assertIn("sbx: error: the build failed: the image has no python3", done.stderr)
        status, templates = self.daemon.request("GET", "/templates")
        self.assertNotIn("no-python", [t["label"] for t in templates])
        self.assertEqual(build_images(), before)

    def test_sdk_and_cli_save_list_delete(self):
        """
        ``sbx.template.save(label)`` returns the template; the client's
        templates.get/list see it; ``sbx tpl save`` saves another and ``sbx
        tpl rm`` removes it; templates.delete makes get raise NotFoundError.
        """
        endpoint = self.daemon.endpoint

        async def scenario():
            async with Client(endpoint) as client:
                async with await create_sandbox(client=client, ttl=60) as sbx:
                    await sbx.fs.write("/root/note.txt", "saved by the SDK\n")
                    template = await sbx.template.save("sdk-saved")
                    sandbox_id = sbx.id
                    got = await client.templates.get(template["id"])
                    listed = [t["id"] for t in await client.templates.list()]
                    cli = self.sbx("tpl", "save", sandbox_id, "--label", "cli-saved")
                    removed = self.sbx("tpl", "rm", cli.stdout.strip())
                    await client.templates.delete(template["id"])
                    try:
                        await client.templates.get(template["id"])
                        missing = None
                    except NotFoundError as e:
                        missing = e.code
                return template, got, listed, cli, removed, missing

        template, got, listed, cli, removed, missing = asyncio.run(scenario())
        self.assertEqual((got, template["label"]), (template, "sdk-saved"))
        self.assertIn(template["id"], listed)
        self.assertEqual(cli.returncode, 0, cli.stderr)
        self.assertRegex(cli.stdout.strip(), r"^tpl-[0-9a-f]{8}$")
        self.assertEqual(removed.returncode, 0, removed.stderr)
        self.assertEqual(missing, "TEMPLATE_NOT_FOUND")
        status, templates = self.daemon.request("GET", "/templates")
        self.assertEqual([t for t in templates if t["label"].endswith("-saved")], [])
