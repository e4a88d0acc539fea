"""
Tests for scripts/build_images.py and its helpers (scripts/imagebuild/):
the recipe hash that decides when a root filesystem is rebuilt, the package
lists, the mirror read from apt's sources, the progress of long steps and
what a failed step leaves behind.  No Docker needed.
"""

import io
import os
import re
import shutil
import sys

from twisted.trial.unittest import TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import build_images  # noqa: E402
from imagebuild import mirror  # noqa: E402
from imagebuild.docker import BuildProgress, ImportProgress  # noqa: E402
from imagebuild.steps import Failed, Reporter, run_step  # noqa: E402


class RecipeTests(TestCase):
    """
    The package lists and the recipe hash labelled on each root filesystem.
    """

    def test_base_recipe_unchanged(self):
        """
        The base package list hashes to the recipe sandbox-rootfs:bookworm
        is labelled with (since procps joined it), so the hash is stable and
        a change to it, which rebuilds every machine's base root
        filesystem, is a change of this test too.
        """
        packages = build_images.read_packages(os.path.join(ROOT, "images", "base", "packages"))
        self.assertEqual(packages, ["python3", "ca-certificates", "procps", "python3-cryptography"])
        self.assertEqual(build_images.recipe_hash(packages), "5f964dafb07971c0")

    def test_recipe_follows_the_list(self):
        """
        Adding, removing or reordering a package changes the recipe.
        """
        base = build_images.recipe_hash(["python3", "jq"])
        self.assertRegex(base, r"^[0-9a-f]{16}$")
        for other in (["python3"], ["python3", "jq", "git"], ["jq", "python3"]):
            self.assertNotEqual(build_images.recipe_hash(other), base, other)

    def test_env_in_recipe(self):
        """
        An empty environment leaves the recipe as it was; a variable added,
        changed or moved changes it.
        """
        packages = ["python3", "nodejs"]
        plain = build_images.recipe_hash(packages)
        self.assertEqual(build_images.recipe_hash(packages, []), plain)
        one = build_images.recipe_hash(packages, ["A=1"])
        self.assertNotEqual(one, plain)
        for other in (["A=2"], ["A=1", "B=2"], ["B=2", "A=1"]):
            self.assertNotEqual(build_images.recipe_hash(packages, other), one, other)
        self.assertNotEqual(build_images.recipe_hash(packages, ["A=1", "B=2"]),
                            build_images.recipe_hash(packages, ["B=2", "A=1"]))

    def test_read_env(self):
        """
        One NAME=VALUE a line, in order, comments and blank lines ignored;
        no file is no environment.
        """
        path = self.mktemp()
        self.assertEqual(build_images.read_env(path), [])
        with open(path, "w") as f:
            f.write("# a comment\nMPLBACKEND=Agg\n\n  NPM_CONFIG_FUND=false  # off\nEMPTY=\n")
        self.assertEqual(build_images.read_env(path),
                         ["MPLBACKEND=Agg", "NPM_CONFIG_FUND=false", "EMPTY="])

    def test_bad_env(self):
        """
        A line that is not NAME=VALUE with a plain value is refused, naming
        the line.
        """
        for line in ("NOVALUE", "1A=b", "A=two words", 'A="quoted"', "A=$HOME", "A=b\\c",
                     "=x"):
            path = self.mktemp()
            with open(path, "w") as f:
                f.write(f"OK=1\n{line}\n")
            with self.assertRaises(ValueError, msg=line) as caught:
                build_images.read_env(path)
            self.assertIn("line 2", str(caught.exception))

    def test_bad_env_stops_the_build(self):
        """
        The builder reports an image whose env file is malformed as a
        failure of its env step, before any Docker command.
        """
        images = self.mktemp()
        os.makedirs(os.path.join(images, "images", "broken"))
        with open(os.path.join(images, "images", "broken", "packages"), "w") as f:
            f.write("python3\n")
        with open(os.path.join(images, "images", "broken", "env"), "w") as f:
            f.write("A=b c\n")
        self.patch(build_images, "ROOT", images)
        builder = build_images.Builder(Reporter(images, io.StringIO()), images, docker=None)
        with self.assertRaises(Failed) as caught:
            builder.build("broken")
        self.assertEqual((caught.exception.image, caught.exception.step), ("broken", "env"))
        self.assertIn("images/broken/env line 1", caught.exception.reason)

    def test_read_packages(self):
        """
        One or more names a line, in order; comments and blank lines are
        ignored.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# a comment\npython3\n\n  git curl  # two\n#jq\n")
        self.assertEqual(build_images.read_packages(path), ["python3", "git", "curl"])

    def test_every_image_directory(self):
        """
        Every image in ORDER has a package list with python3 and a valid
        environment; the daemon has its own Dockerfile, on its own root
        filesystem, starting twistd; the sandbox images share
        images/sandbox.Dockerfile, told their root filesystem and name by
        build arguments, which starts the agent in isolated mode.
        """
        for name in build_images.ORDER:
            directory = os.path.join(ROOT, "images", name)
            packages = build_images.read_packages(os.path.join(directory, "packages"))
            self.assertIn("python3", packages, name)
            build_images.read_env(os.path.join(directory, "env"))
            path, args = build_images.dockerfile(name)
            with open(path) as f:
                dockerfile = f.read()
            entrypoint = re.search(r"^ENTRYPOINT (.*)$", dockerfile, re.M).group(1)
            if name == "daemon":
                self.assertEqual(path, os.path.join(directory, "Dockerfile"))
                self.assertEqual(args, {})
                self.assertIn(f"FROM {build_images.rootfs_tag(name)}\n", dockerfile)
                self.assertIn("sandboxd.image=daemon", dockerfile)
                self.assertIn('"twistd"', entrypoint)
            else:
                self.assertEqual(path, os.path.join(ROOT, "images", "sandbox.Dockerfile"), name)
                self.assertFalse(os.path.exists(os.path.join(directory, "Dockerfile")), name)
                self.assertEqual(args, {"ROOTFS": build_images.rootfs_tag(name), "IMAGE": name})
                self.assertEqual(entrypoint, '["python3", "-I", "-m", "agent"]', name)

    def test_sandbox_dockerfile(self):
        """
        The shared Dockerfile takes its base image from ROOTFS (declared
        before FROM, which the legacy builder allows) and names the image in
        its labels from IMAGE, declared after the agent's layers so that
        those are cached; its defaults build base.
        """
        with open(build_images.SANDBOX_DOCKERFILE) as f:
            lines = [line for line in f.read().splitlines() if line and line[0] != "#"]
        self.assertEqual(lines[:2], ["ARG ROOTFS=sandbox-rootfs:bookworm", "FROM $ROOTFS"])
        self.assertEqual(build_images.rootfs_tag("base"), "sandbox-rootfs:bookworm")
        image = lines.index("ARG IMAGE=base")
        self.assertGreater(image, lines.index('ENTRYPOINT ["python3", "-I", "-m", "agent"]'))
        labels = "\n".join(lines[image:])
        self.assertIn("sandboxd.image=$IMAGE ", labels)
        self.assertIn("org.opencontainers.image.title=sandbox-$IMAGE ", labels)
        self.assertNotIn("ENV ", "\n".join(lines))

    def test_image_environments(self):
        """
        The python and node images' environments are their env files; base
        and full have none.
        """
        def env(name):
            return build_images.read_env(os.path.join(ROOT, "images", name, "env"))

        self.assertEqual(env("python"), ["MPLBACKEND=Agg"])
        self.assertEqual(env("node"), ["NPM_CONFIG_UPDATE_NOTIFIER=false", "NPM_CONFIG_FUND=false"])
        self.assertEqual((env("base"), env("full")), ([], []))

    def test_tags(self):
        """
        The daemon is sandboxd:latest, the others sandbox-NAME:latest; base
        keeps its root filesystem's old name.
        """
        self.assertEqual(build_images.image_tag("daemon"), "sandboxd:latest")
        self.assertEqual(build_images.image_tag("python"), "sandbox-python:latest")
        self.assertEqual(build_images.rootfs_tag("base"), "sandbox-rootfs:bookworm")
        self.assertEqual(build_images.rootfs_tag("full"), "sandbox-rootfs:bookworm-full")

    def test_unknown_image(self):
        """
        An unknown image name is refused with the list of known ones.
        """
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.assertEqual(build_images.main(["base nosuch"]), 2)
        self.assertIn("no image nosuch", err.getvalue())
        self.assertIn("python", err.getvalue())


class MirrorTests(TestCase):
    """
    The Debian mirror comes from the machine's apt sources.
    """

    def test_deb822(self):
        """
        The first URI of an enabled deb stanza whose Suites list the suite;
        deb-src, disabled stanzas and other suites are passed over.
        """
        text = (
            "Types: deb-src\nURIs: http://src.invalid/debian\nSuites: bookworm\n\n"
            "Types: deb\nURIs: http://off.invalid/debian\nSuites: bookworm\nEnabled: no\n\n"
            "Types: deb\nURIs: http://sec.invalid/debian-security\nSuites: bookworm-security\n\n"
            "Types: deb deb-src\nURIs: http://one.invalid/debian http://two.invalid/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main\n"
        )
        self.assertEqual(mirror.from_deb822(text, "bookworm"), "http://one.invalid/debian")
        self.assertIsNone(mirror.from_deb822(text, "trixie"))

    def test_one_line(self):
        """
        A C{deb} line, with or without [options], for the suite.
        """
        text = ("# deb http://old.invalid/debian bookworm main\n"
                "deb-src http://src.invalid/debian bookworm main\n"
                "deb [arch=amd64 signed-by=/k.gpg] http://m.invalid/debian bookworm main\n")
        self.assertEqual(mirror.from_one_line(text, "bookworm"), "http://m.invalid/debian")
        self.assertIsNone(mirror.from_one_line(text, "bookworm-updates"))

    def test_files(self):
        """
        deb822 files come first, sources.list next; with neither the error
        says what is missing.
        """
        root = self.mktemp()
        os.makedirs(os.path.join(root, "etc/apt/sources.list.d"))
        with self.assertRaises(mirror.NoMirror) as caught:
            mirror.debian_mirror("bookworm", root)
        self.assertIn("bookworm", str(caught.exception))
        with open(os.path.join(root, "etc/apt/sources.list"), "w") as f:
            f.write("deb http://list.invalid/debian bookworm main\n")
        self.assertEqual(mirror.debian_mirror("bookworm", root), "http://list.invalid/debian")
        with open(os.path.join(root, "etc/apt/sources.list.d/debian.sources"), "w") as f:
            f.write("Types: deb\nURIs: http://822.invalid/debian\nSuites: bookworm\n")
        self.assertEqual(mirror.debian_mirror("bookworm", root), "http://822.invalid/debian")


class ProgressTests(TestCase):
    """
    What long steps show while they run.
    """

    def test_apt(self):
        """
        mmdebstrap's own lines are shown at once; apt's package lines become
        counts out of the total apt announced (reset for each apt run).
        """
        watcher = build_images.AptWatcher()
        self.assertEqual(watcher.line("I: extracting archives..."), "extracting archives...")
        self.assertIsNone(watcher.status())
        self.assertIsNone(watcher.line("0 upgraded, 3 newly installed, 0 to remove"))
        for text in ("Get:1 http://m/ a", "Get:2 http://m/ b", "Unpacking a (1) ...",
                     "Setting up a (1) ..."):
            self.assertIsNone(watcher.line(text))
        self.assertEqual(watcher.status(), "2/3 fetched, 1/3 unpacked, 1/3 set up packages")
        watcher.line("0 upgraded, 9 newly installed, 0 to remove")
        self.assertIsNone(watcher.status())

    def test_import_and_build(self):
        """
        An import shows the share of the tar sent; a build each Dockerfile
        step as it starts.
        """
        progress = ImportProgress(200_000_000)
        progress.sent = 50_000_000
        self.assertEqual(progress.status(), "50 of 200 MB sent (25 %)")
        build = BuildProgress()
        self.assertIsNone(build.line(" ---> Running in 1234"))
        self.assertEqual(build.line("Step 2/9 : RUN true"), "Step 2/9 : RUN true")
        self.assertEqual(build.status(), "Step 2/9 running")

    def test_pip(self):
        """
        pip's saved wheels are counted.
        """
        watcher = build_images.PipWatcher()
        self.assertIsNone(watcher.status())
        watcher.line("Saved ./w/attrs-23.2.0-py3-none-any.whl")
        watcher.line("File was already downloaded /w/treq-23.11.0-py3-none-any.whl")
        watcher.line("Collecting attrs")
        self.assertEqual(watcher.status(), "2 wheels")


class StepTests(TestCase):
    """
    L{run_step}: its log, its progress lines, its failure.
    """

    def setUp(self):
        self.logdir = self.mktemp()
        os.makedirs(self.logdir)
        self.out = io.StringIO()
        self.reporter = Reporter(self.logdir, self.out)

    def test_success(self):
        """
        The command's output lands in the step's log; the lines the watcher
        picks are printed with the image, step and elapsed time; a standard
        input feed reaches the command.
        """
        class Watcher:
            def line(self, text):
                return text if text.startswith("I: ") else None

            def status(self):
                return None

        run_step(self.reporter, "python", "rootfs",
                 ["sh", "-c", "cat; echo 'I: stage one'; echo noise"],
                 watcher=Watcher(), feed=lambda stdin: stdin.write(b"fed\n"))
        with open(self.reporter.log_path("python", "rootfs")) as f:
            log = f.read()
        self.assertIn("fed\nI: stage one\nnoise\n", log)
        printed = self.out.getvalue()
        self.assertRegex(printed, r"build-images: python: \[ +\d+s\] rootfs: I: stage one\n")
        self.assertNotIn("noise", printed)
        self.assertRegex(printed, r"rootfs: finished\n")

    def test_failure(self):
        """
        A failing command raises L{Failed} naming the image, the step and
        the exit code; the report shows the end of the kept log.
        """
        with self.assertRaises(Failed) as caught:
            run_step(self.reporter, "full", "image",
                     ["sh", "-c", "echo step output; echo broken >&2; exit 3"])
        error = caught.exception
        self.assertEqual((error.image, error.step), ("full", "image"))
        self.assertIn("exited with 3", error.reason)
        self.assertTrue(os.path.exists(error.log))
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        self.reporter.failed(error)
        report = err.getvalue()
        self.assertIn("FAILED at full: image", report)
        self.assertIn("    broken\n", report)
        self.assertIn(f"logs kept in {self.logdir}", report)

    def test_missing_command(self):
        """
        A command that cannot start is a failure of its step too.
        """
        with self.assertRaises(Failed) as caught:
            run_step(self.reporter, "node", "rootfs", ["/nonexistent/mmdebstrap"])
        self.assertEqual(caught.exception.step, "rootfs")
        self.assertIn("cannot run /nonexistent/mmdebstrap", caught.exception.reason)


class MainTests(TestCase):
    """
    L{build_images.main} around a failing build.
    """

    def test_failed_build_keeps_logs(self):
        """
        When an image's step fails, main returns 1, names the image and the
        step, and keeps the log directory with the logs (only them: build
        contexts and tars are removed).
        """
        seen = {}

        def build(builder, name):
            logdir = builder.reporter.logdir
            seen["logdir"] = logdir
            os.mkdir(os.path.join(logdir, f"{name}-context"))
            with open(os.path.join(logdir, f"{name}-rootfs.tar"), "w") as f:
                f.write("tar")
            run_step(builder.reporter, name, "rootfs", ["sh", "-c", "echo apt broke; exit 100"])

        self.patch(build_images.Builder, "build", build)
        err, out = io.StringIO(), io.StringIO()
        self.patch(sys, "stderr", err)
        self.patch(sys, "stdout", out)
        self.assertEqual(build_images.main(["node"]), 1)
        logdir = seen["logdir"]
        self.addCleanup(shutil.rmtree, logdir)
        self.assertIn("FAILED at node: rootfs", err.getvalue())
        self.assertIn("exited with 100", err.getvalue())
        self.assertIn("    apt broke\n", err.getvalue())
        self.assertEqual(os.listdir(logdir), ["node-rootfs.log"])
