"""
Templates against a real daemon, real containers and real images: a
sandbox's /root (a venv holding an offline-installed wheel, files with
modes, an empty directory, a symlink) saved and seen by three sandboxes
made from it, on runc and gVisor; the size cap refusing mid-stream and
leaving nothing behind; max_templates; deleting a template in use; a
restart keeping templates.
"""

import asyncio
import base64
import hashlib
import io
import time
import zipfile

from twisted.trial.unittest import SynchronousTestCase

from sandbox import connect_sandbox
from tests.daemon import Daemon, shared_daemon
from tests.dockerutil import require_docker

PYTHON_PROFILE = '[pool.base.python]\nimage = "sandbox-python:latest"\nmemory = "512m"\nruntime = "{runtime}"\n'

#: What each sandbox made from the template reports about its /root (Python,
#: not stat(1): gVisor's old Sentry has no statx), run by the venv's Python.
SURVEY = """
import os, stat, tplpkg
os.chdir("/root")
for name in ("data", "data/run.sh", "data/secret", "data/empty", "data/link"):
    st = os.lstat(name)
    kind = ("directory" if stat.S_ISDIR(st.st_mode) else "symbolic link"
            if stat.S_ISLNK(st.st_mode) else "regular file")
    print(name, oct(stat.S_IMODE(st.st_mode)), kind)
print(os.readlink("data/link"), open("data/secret").read().strip())
print(os.access("data/run.sh", os.X_OK), tplpkg.GREETING)
print("tmp-kept" if os.path.exists("/tmp/scratch") else "tmp-not-saved")
"""
SURVEY_COMMAND = ["/root/venv/bin/python", "-c", SURVEY]

SETUP = (
    "set -e; python3 -m venv /root/venv"
    " && /root/venv/bin/pip install -q --no-index --no-cache-dir /root/wheels/tplpkg-1.0-py3-none-any.whl"
    " && mkdir -p /root/data/empty && printf '#!/bin/sh\\necho run\\n' > /root/data/run.sh"
    " && chmod 750 /root/data/run.sh && echo s3cret > /root/data/secret"
    " && chmod 600 /root/data/secret && ln -s run.sh /root/data/link && touch /tmp/scratch"
)


def wheel():
    """
    A pure-Python wheel of package ``tplpkg`` (bytes), built here: pip
    installs it from a file with no index.
    """
    files = {
        "tplpkg/__init__.py": b"GREETING = 'hello from the template'\n",
        "tplpkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tplpkg\nVersion: 1.0\n",
        "tplpkg-1.0.dist-info/WHEEL": (b"Wheel-Version: 1.0\nGenerator: test\n"
                                       b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tplpkg-1.0.dist-info/RECORD,,")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("tplpkg-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return out.getvalue()


def template_images(daemon):
    """
    The template images and baking containers of ``daemon`` the engine holds.
    """
    docker = require_docker()
    # The low-level list (no inspect per image: one may go meanwhile), of this
    # daemon's images only: other suites' daemons bake at the same time.
    owned = {"label": [f"sandboxd.owner={daemon.data_dir}"]}
    images = [tag for image in docker.api.images(name="sandboxd-template", filters=owned)
              for tag in image["RepoTags"] or ()]
    helpers = docker.api.containers(
        all=True, filters={"label": [f"sandboxd.owner={daemon.data_dir}", "sandboxd.template"]})
    return images, helpers


class TemplateTestsMixin:
    def wait(self, coroutine):
        return asyncio.run(coroutine)

    async def exec(self, sandbox_id, command):
        async with await connect_sandbox(sandbox_id, endpoint=self.daemon.endpoint) as sbx:
            result = await asyncio.wait_for(sbx.process.exec_(command), 120)
        return result

    def create(self, **body):
        status, created = self.daemon.request("POST", "/sandboxes", dict({"ttl": 300}, **body))
        self.assertEqual(status, 201, created)
        self.addCleanup(self.daemon.request, "DELETE", f"/sandboxes/{created['id']}")
        return created

    def save(self, sandbox_id, label, expect=201):
        status, body = self.daemon.request(
            "POST", "/templates", {"sandbox_id": sandbox_id, "label": label})
        self.assertEqual(status, expect, body)
        if status == 201:
            self.addCleanup(self.daemon.request, "DELETE", f"/templates/{body['id']}")
        return body


class RoundTripTests(TemplateTestsMixin, SynchronousTestCase):
    """
    On runc.
    """

    runtime = "docker"

    def setUp(self):
        require_docker()
        self.daemon = shared_daemon(
            f"templates-{self.runtime}", min_base=1, runtime=self.runtime,
            extra_config=PYTHON_PROFILE.format(runtime=self.runtime), request_timeout=180)

    def test_saved_root_is_seen_by_three_sandboxes(self):
        """
        A venv with an offline-installed wheel, a 0750 script, a 0600 file,
        an empty directory and a symlink in /root, saved: three sandboxes
        made from the template report the same modes, kinds, link target
        and contents, and import the package from the venv; /tmp is not
        saved.  The source sandbox keeps running.
        """
        source = self.create(profile="python")

        async def prepare():
            async with await connect_sandbox(source["id"], endpoint=self.daemon.endpoint) as sbx:
                await sbx.process.exec_("mkdir -p /root/wheels")
                await sbx.fs.write("/root/wheels/tplpkg-1.0-py3-none-any.whl", wheel())
                result = await asyncio.wait_for(sbx.process.exec_(["sh", "-c", SETUP]), 300)
                self.assertEqual(result.exit_code, 0, result.stderr)
                return await sbx.process.exec_(SURVEY_COMMAND)

        before = self.wait(prepare())
        self.assertEqual(before.exit_code, 0, before.stderr)
        template = self.save(source["id"], f"venv-{self.runtime}")
        self.assertEqual((template["runtime"], template["profile"]), (self.runtime, "python"))
        self.assertGreater(template["size"], 0)
        made = [self.create(template=template["id"]) for _ in range(3)]
        reports = [self.wait(self.exec(s["id"], SURVEY_COMMAND)) for s in made]
        expected = before.stdout.replace("tmp-kept", "tmp-not-saved")
        self.assertIn("data/run.sh 0o750 regular file", expected)
        self.assertIn("data/secret 0o600 regular file", expected)
        self.assertIn("data/empty 0o755 directory", expected)
        self.assertIn("data/link 0o777 symbolic link\nrun.sh s3cret\n", expected)
        self.assertIn("True hello from the template\ntmp-not-saved", expected)
        for sandbox, report in zip(made, reports):
            self.assertEqual((report.exit_code, report.stdout), (0, expected), report.stderr)
            self.assertEqual(sandbox["template"], template["id"])
        status, body = self.daemon.request("GET", f"/sandboxes/{source['id']}")
        self.assertEqual(body["state"], "disconnected")


class GVisorRoundTripTests(RoundTripTests):
    """
    On gVisor (runtime docker+gvisor).
    """

    runtime = "docker+gvisor"


class LimitTests(TemplateTestsMixin, SynchronousTestCase):
    """
    A daemon of its own with max_templates = 2, max_template_size = 1m and
    pool.min_per_image = 1.
    """

    def setUp(self):
        require_docker()
        self.daemon = shared_daemon(
            "templates-limits", min_base=1, request_timeout=120,
            pool_config="min_per_image = 1\n",
            limits_config="create_rate_limit = 1000000\nmax_templates = 2\n"
                          'max_template_size = "1m"\n')

    def test_size_cap_leaves_nothing_behind(self):
        """
        3 MiB of random data in /root against a 1 MiB cap: 413
        TEMPLATE_TOO_LARGE naming the limit, no template listed, no new
        image, no baking container left; the sandbox still answers.
        """
        source = self.create()
        images_before, _ = template_images(self.daemon)
        write = self.wait(self.exec(source["id"], ["sh", "-c", "head -c 3145728 /dev/urandom > /root/big"]))
        self.assertEqual(write.exit_code, 0)
        body = self.save(source["id"], "big", expect=413)
        self.assertEqual(body["error"]["code"], "TEMPLATE_TOO_LARGE")
        self.assertIn("1048576 bytes", body["error"]["message"])
        self.assertEqual(self.daemon.request("GET", "/templates"), (200, []))
        images, helpers = template_images(self.daemon)
        self.assertEqual((sorted(images), helpers), (sorted(images_before), []))
        self.assertEqual(self.wait(self.exec(source["id"], "echo alive")).stdout, "alive\n")

    def test_limit_label_and_delete_in_use(self):
        """
        Two templates fit; a third is 429 TEMPLATE_LIMIT, a taken label
        409 LABEL_TAKEN.  A template deleted while a sandbox uses it is
        gone (404) but the sandbox keeps working; its image goes once
        that sandbox is destroyed.
        """
        source = self.create()
        self.wait(self.exec(source["id"], "echo one > /root/marker"))
        first = self.save(source["id"], "first")
        self.save(source["id"], "first", expect=409)
        self.save(source["id"], "second")
        body = self.save(source["id"], "third", expect=429)
        self.assertEqual(body["error"]["code"], "TEMPLATE_LIMIT")
        user = self.create(template=first["id"])
        self.assertEqual(self.daemon.request("DELETE", f"/templates/{first['id']}")[0], 204)
        self.assertEqual(self.daemon.request("GET", f"/templates/{first['id']}")[0], 404)
        status, body = self.daemon.request("POST", "/sandboxes", {"template": first["id"]})
        self.assertEqual((status, body["error"]["code"]), (404, "TEMPLATE_NOT_FOUND"))
        self.assertEqual(self.wait(self.exec(user["id"], "cat /root/marker")).stdout, "one\n")
        self.assertIn(first["image"], template_images(self.daemon)[0])
        self.daemon.request("DELETE", f"/sandboxes/{user['id']}")
        deadline = time.monotonic() + 60
        while first["image"] in template_images(self.daemon)[0] and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertNotIn(first["image"], template_images(self.daemon)[0])


    def test_template_used_recently_is_warm(self):
        """
        With pool.min_per_image = 1 the first create from a template starts
        its pool (cold); once that pool is ready the next create is warm
        (a pool hit) and has the saved /root; deleting the template drops
        its pool.
        """
        source = self.create()
        self.wait(self.exec(source["id"], "echo warm > /root/marker"))
        template = self.save(source["id"], "warm")
        first = self.create(template=template["id"])
        self.assertEqual(first["method"], "cold")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pool = self.daemon.request("GET", "/pools")[1].get(template["id"])
            if pool and pool["ready"] >= 1:
                break
            time.sleep(0.2)
        self.assertGreaterEqual(pool["ready"], 1)
        second = self.create(template=template["id"])
        self.assertEqual((second["method"], second["template"], second["profile"]),
                         ("warm", template["id"], "default"))
        self.assertEqual(self.wait(self.exec(second["id"], "cat /root/marker")).stdout, "warm\n")
        self.daemon.request("DELETE", f"/templates/{template['id']}")
        self.assertNotIn(template["id"], self.daemon.request("GET", "/pools")[1])


class RestartTests(TemplateTestsMixin, SynchronousTestCase):
    """
    A daemon of its own, restarted.
    """

    def test_restart_keeps_templates(self):
        """
        After SIGTERM and a new start on the same data dir, the template
        is listed the same and a sandbox made from it has the saved file;
        events template.created and template.deleted are recorded.
        """
        require_docker()
        self.daemon = Daemon(min_base=1, request_timeout=120)
        self.daemon.start()
        self.addCleanup(self.daemon.stop)
        source = self.create()
        self.wait(self.exec(source["id"], "echo kept > /root/kept"))
        template = self.save(source["id"], "kept")
        self.daemon.stop()
        self.daemon.spawn()
        self.daemon.waitReady(self.daemon.ready_timeout)
        self.assertEqual(self.daemon.request("GET", f"/templates/{template['id']}"),
                         (200, template))
        made = self.create(template=template["id"])
        self.assertEqual(self.wait(self.exec(made["id"], "cat /root/kept")).stdout, "kept\n")
        self.daemon.request("DELETE", f"/sandboxes/{made['id']}")
        self.assertEqual(self.daemon.request("DELETE", f"/templates/{template['id']}")[0], 204)
        status, events = self.daemon.request("GET", "/events/history?limit=1000")
        types = [e["type"] for e in events if e["type"].startswith("template.")]
        self.assertEqual(types, ["template.created", "template.deleted"])
