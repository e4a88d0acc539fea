"""
The Docker CLI steps of an image build: import a root filesystem tar,
build a Dockerfile, inspect and remove images.
"""

import json
import os
import subprocess

from imagebuild.steps import Failed, run_step

CHUNK = 1 << 20


class ImportProgress:
    """
    The bytes of the tar sent to docker import so far, as a status.
    """

    def __init__(self, total):
        self.total = total
        self.sent = 0

    def line(self, text):
        return None

    def status(self):
        return f"{self.sent / 1e6:.0f} of {self.total / 1e6:.0f} MB sent ({100 * self.sent // max(self.total, 1)} %)"


class BuildProgress:
    """
    Shows the Dockerfile's steps (Step 3/9 : RUN ...) as they start.
    """

    def __init__(self):
        self.step = None

    def line(self, text):
        if text.startswith("Step "):
            self.step = text.split(" : ", 1)[0]
            return text if len(text) <= 110 else text[:107] + "..."
        return None

    def status(self):
        return f"{self.step} running" if self.step else None


class Docker:
    def __init__(self, reporter):
        self.reporter = reporter

    def _inspect(self, image, template):
        done = subprocess.run(
            ["docker", "image", "inspect", "-f", template, image],
            capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    def label(self, image, key):
        """
        The value of label C{key} on C{image}, or None.
        """
        labels = self._inspect(image, "{{json .Config.Labels}}")
        return (json.loads(labels) or {}).get(key) if labels else None

    def image_id(self, image):
        return self._inspect(image, "{{.Id}}")

    def size(self, image):
        return int(self._inspect(image, "{{.Size}}") or 0)

    def remove_unused(self, image_id):
        """
        Remove the image C{image_id} that lost its tag, unless it is still
        tagged elsewhere or a container uses it (docker rmi refuses both).
        """
        subprocess.run(["docker", "rmi", image_id], capture_output=True)

    def import_tar(self, name, tar, tag, changes):
        """
        docker import C{tar} as C{tag} with the Dockerfile C{changes},
        showing how much of the tar has been sent.
        """
        progress = ImportProgress(os.path.getsize(tar))

        def feed(stdin):
            with open(tar, "rb") as f:
                while True:
                    chunk = f.read(CHUNK)
                    if not chunk:
                        break
                    stdin.write(chunk)
                    progress.sent += len(chunk)

        argv = ["docker", "import"]
        for change in changes:
            argv += ["--change", change]
        run_step(self.reporter, name, "import", argv + ["-", tag], watcher=progress, feed=feed)

    def build(self, name, context, tag, build_args):
        """
        docker build C{context} as C{tag} (legacy builder, no pulls),
        showing each Dockerfile step as it starts.
        """
        argv = ["docker", "build", "--force-rm", "--pull=false", "-t", tag]
        for key, value in sorted(build_args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        run_step(self.reporter, name, "image", argv + [context], watcher=BuildProgress())
        if self.image_id(tag) is None:
            raise Failed(name, "image", f"docker build left no image {tag}",
                         self.reporter.log_path(name, "image"))
