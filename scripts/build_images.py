#!/usr/bin/env python3
"""
Build sandboxd's images locally, from Debian packages (no image registry is
reachable):

    python3 scripts/build_images.py [--refresh] [NAME ...]
    make images [IMAGES="base python"] [REFRESH=1]

Without names it builds them all (ORDER below); --refresh rebuilds the root
filesystems even when their package lists have not changed (to take in
Debian's updates).  Each image has a directory
images/NAME/ holding

    packages    the Debian packages of its root filesystem, one a line
    env         (optional) its environment, one NAME=VALUE a line, set on
                the root filesystem when it is imported
    Dockerfile  (daemon only) what goes on top of that root filesystem:
                sandboxd itself; the sandbox images (base, python, node,
                full) are all built from images/sandbox.Dockerfile, which
                adds the guest agent, with the build arguments ROOTFS and
                IMAGE

and goes through these stages, each printed with its elapsed time:

    rootfs   mmdebstrap --variant=minbase --include=PACKAGES into a tar, from
             the Debian mirror of this machine's apt sources.  Skipped when
             the image sandbox-rootfs:bookworm[-NAME] carries the same recipe
             hash (suite, options, package list and env) as its label.
    import   docker import of that tar as sandbox-rootfs:bookworm[-NAME],
             with the image's env
    wheels   (daemon only) pip wheel of the daemon's dependencies with this
             machine's pip configuration, kept in build/images/ while
             setup.cfg does not change
    image    docker build of the image's Dockerfile on a context holding
             only what it copies (agent/, or the daemon's wheels)

Long stages print their own progress (packages fetched, unpacked and set
up; bytes imported; Dockerfile steps).  Every stage's output goes to a log;
a failed stage is named, the end of its log shown, and the logs kept.

Standard library only; needs root, docker, mmdebstrap and a running dockerd
(make setup dockerd).
"""

import configparser
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imagebuild.steps import Failed, Reporter, run_step  # noqa: E402
from imagebuild import mirror  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER = ["base", "python", "node", "full", "daemon"]
SUITE = "bookworm"
MMDEBSTRAP_OPTIONS = [
    "--variant=minbase",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
]
ROOTFS_ENV = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
]
CACHE = os.path.join(ROOT, "build", "images")
SANDBOX_DOCKERFILE = os.path.join(ROOT, "images", "sandbox.Dockerfile")
ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=([^\s\"'\\$`]*)$")


def image_tag(name):
    """
    The tag of image C{name}: sandboxd:latest for the daemon, else
    sandbox-NAME:latest.
    """
    return "sandboxd:latest" if name == "daemon" else f"sandbox-{name}:latest"


def rootfs_tag(name):
    """
    The tag of image C{name}'s root filesystem (base keeps its old name).
    """
    return f"sandbox-rootfs:{SUITE}" if name == "base" else f"sandbox-rootfs:{SUITE}-{name}"


def read_packages(path):
    """
    The package names in C{path}: one a line, in file order, # comments and
    blank lines ignored.
    """
    packages = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                packages.extend(line.split())
    return packages


def read_env(path):
    """
    The environment in C{path} (none when there is no such file): one
    NAME=VALUE a line, in file order, # comments and blank lines ignored.
    Values are plain words (no blanks, quotes, backslashes or $): they go
    into a Dockerfile ENV line as they are.  Raise L{ValueError} naming the
    file and line of anything else.
    """
    if not os.path.exists(path):
        return []
    env = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if line and not ENV_LINE.match(line):
                raise ValueError(f"{os.path.relpath(path, ROOT)} line {number}: {line!r} is not "
                                 "NAME=VALUE (a plain value: no blanks, quotes, \\, $ or `)")
            if line:
                env.append(line)
    return env


def dockerfile(name):
    """
    The Dockerfile image C{name} is built from and the build arguments it
    takes beyond the labels': images/NAME/Dockerfile when there is one (the
    daemon's), else the sandbox images' shared one, told its root filesystem
    and name.
    """
    own = os.path.join(ROOT, "images", name, "Dockerfile")
    if os.path.exists(own):
        return own, {}
    return SANDBOX_DOCKERFILE, {"ROOTFS": rootfs_tag(name), "IMAGE": name}


def mmdebstrap_args(packages):
    return [
        MMDEBSTRAP_OPTIONS[0],
        "--include=" + ",".join(packages),
        *MMDEBSTRAP_OPTIONS[1:],
    ]


def recipe_hash(packages, env=()):
    """
    16 hex digits naming the root filesystem's recipe: the suite, the
    mmdebstrap options, the package list and the environment C{env} set at
    import (computed as the former shell script did when C{env} is empty,
    so an existing base root filesystem stays valid).
    """
    text = " ".join([SUITE, *mmdebstrap_args(packages), *(f"ENV {e}" for e in env)]) + "\n"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tree_hash(directory):
    """
    sha256 over the relative paths and contents of the .py files under
    C{directory} (no bytecode caches).
    """
    digest = hashlib.sha256()
    for base, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(base, name)
                digest.update(os.path.relpath(path, directory).encode() + b"\0")
                with open(path, "rb") as f:
                    digest.update(f.read() + b"\0")
    return digest.hexdigest()


def project_version():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    return parser["metadata"]["version"]


def protocol_version():
    with open(os.path.join(ROOT, "agent", "wire.py")) as f:
        return re.search(r"^VERSION = (\d+)", f.read(), re.M).group(1)


def install_requires():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    return parser["options"]["install_requires"].split()


class Builder:
    """
    Builds the named images one after the other; L{Failed} stops it.
    """

    def __init__(self, reporter, workdir, docker, refresh=False):
        self.reporter = reporter
        self.refresh = refresh
        self.workdir = workdir
        self.docker = docker
        self._mirror = None
        self.results = []

    def mirror(self):
        if self._mirror is None:
            self._mirror = mirror.debian_mirror(SUITE)
        return self._mirror

    def build(self, name):
        started = time.monotonic()
        directory = os.path.join(ROOT, "images", name)
        packages = read_packages(os.path.join(directory, "packages"))
        try:
            env = read_env(os.path.join(directory, "env"))
        except ValueError as e:
            raise Failed(name, "env", str(e))
        recipe = recipe_hash(packages, env)
        cached = (not self.refresh
                  and self.docker.label(rootfs_tag(name), "sandboxd.rootfs-recipe") == recipe)
        if cached:
            self.reporter.say(name, f"rootfs {rootfs_tag(name)} is up to date (recipe {recipe})")
        else:
            self.build_rootfs(name, packages, env, recipe)
        context = os.path.join(self.workdir, f"{name}-context")
        os.mkdir(context)
        path, build_args = dockerfile(name)
        shutil.copy(path, os.path.join(context, "Dockerfile"))
        if name == "daemon":
            self.daemon_context(name, context)
        else:
            copy_tree(os.path.join(ROOT, "agent"), os.path.join(context, "agent"))
        build_args.update({
            "SANDBOXD_VERSION": project_version(),
            "AGENT_PROTOCOL": protocol_version(),
            "AGENT_SHA256": tree_hash(os.path.join(ROOT, "agent")),
            "ROOTFS_RECIPE": recipe,
        })
        tag = image_tag(name)
        previous = self.docker.image_id(tag)
        self.docker.build(name, context, tag, build_args)
        shutil.rmtree(context)
        current = self.docker.image_id(tag)
        if previous and previous != current:
            self.docker.remove_unused(previous)
        size = self.docker.size(tag)
        elapsed = time.monotonic() - started
        self.reporter.say(name, f"{tag} ready in {elapsed:.0f} s ({size / 1e6:.0f} MB)")
        self.results.append((name, tag, elapsed, size, cached))

    def build_rootfs(self, name, packages, env, recipe):
        tar = os.path.join(self.workdir, f"{name}-rootfs.tar")
        try:
            source = self.mirror()
        except mirror.NoMirror as e:
            raise Failed(name, "rootfs", str(e))
        self.reporter.say(
            name, f"rootfs: mmdebstrap {SUITE} with {len(packages)} packages "
                  f"({', '.join(packages)}) from {source}")
        run_step(
            self.reporter, name, "rootfs",
            ["mmdebstrap", "--verbose", *mmdebstrap_args(packages), SUITE, tar, source],
            watcher=AptWatcher(),
        )
        changes = [*ROOTFS_ENV, *(f"ENV {e}" for e in env), "LABEL sandboxd.image=rootfs",
                   f"LABEL sandboxd.rootfs-recipe={recipe}"]
        previous = self.docker.image_id(rootfs_tag(name))
        self.docker.import_tar(name, tar, rootfs_tag(name), changes)
        os.unlink(tar)
        if previous and previous != self.docker.image_id(rootfs_tag(name)):
            self.docker.remove_unused(previous)

    def daemon_context(self, name, context):
        """
        Put the daemon's dependency wheels (kept in CACHE while its
        requirements do not change) into C{context}/wheels, and its own
        wheel into C{context}/project.
        """
        requirements = install_requires()
        key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
        cached = os.path.join(CACHE, f"wheels-{key}")
        python = os.path.join(ROOT, ".venv", "bin", "python")
        if not os.path.exists(python):
            python = sys.executable
        if os.path.isdir(cached):
            self.reporter.say(name, f"wheels: reusing {os.path.relpath(cached, ROOT)}")
        else:
            partial = cached + ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            os.makedirs(partial)
            with open(os.path.join(partial, "requirements.txt"), "w") as f:
                f.write("\n".join(requirements) + "\n")
            run_step(
                self.reporter, name, "wheels",
                [python, "-m", "pip", "wheel", "--progress-bar", "off", "--wheel-dir", partial,
                 "-r", os.path.join(partial, "requirements.txt")],
                watcher=PipWatcher(),
            )
            os.rename(partial, cached)
        shutil.copytree(cached, os.path.join(context, "wheels"))
        os.mkdir(os.path.join(context, "project"))
        # Fixed timestamps in the wheel: the same sources make the same bytes,
        # and Docker's layer cache then skips the install below.
        reproducible = dict(os.environ, SOURCE_DATE_EPOCH="315532800")
        run_step(
            self.reporter, name, "project wheel",
            [python, "-m", "pip", "wheel", "--no-deps",
             "--progress-bar", "off", "--wheel-dir", os.path.join(context, "project"), ROOT],
            env=reproducible,
        )


def copy_tree(source, target):
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))


class AptWatcher:
    """
    Turns mmdebstrap's verbose output into a short status: its own stage
    lines (I: ...) at once, and the count of packages fetched, unpacked and
    set up out of the total apt announced.
    """

    def __init__(self):
        self.total = 0
        self.counts = {}

    def line(self, text):
        """
        Return a line to print now, or None; update the status.
        """
        if text.startswith("I: "):
            return text[3:]
        match = re.match(r"\d+ upgraded, (\d+) newly installed", text)
        if match:
            self.total = int(match.group(1))
            self.counts = {}
            return None
        for word, key in (("Get:", "fetched"), ("Unpacking ", "unpacked"),
                          ("Setting up ", "set up")):
            if text.startswith(word):
                self.counts[key] = self.counts.get(key, 0) + 1
        return None

    def status(self):
        if not self.counts:
            return None
        total = f"/{self.total}" if self.total else ""
        return ", ".join(f"{n}{total} {key}" for key, n in self.counts.items()) + " packages"


class PipWatcher:
    """
    Counts the wheels pip saved or found.
    """

    def __init__(self):
        self.saved = 0

    def line(self, text):
        if text.startswith("Saved ") or text.startswith("File was already downloaded"):
            self.saved += 1
        return None

    def status(self):
        return f"{self.saved} wheels" if self.saved else None


def main(argv):
    from imagebuild.docker import Docker

    refresh = "--refresh" in argv
    names = [n for arg in argv if arg != "--refresh" for n in arg.split()] or ORDER
    available = sorted(
        n for n in os.listdir(os.path.join(ROOT, "images"))
        if os.path.exists(os.path.join(ROOT, "images", n, "packages")))
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"build-images: no image {', '.join(unknown)} (there are: {', '.join(available)})",
              file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="sandboxd-images.")
    reporter = Reporter(workdir)
    builder = Builder(reporter, workdir, Docker(reporter), refresh)
    started = time.monotonic()
    reporter.say("all", f"building {', '.join(names)} (logs in {workdir})")
    try:
        for name in names:
            builder.build(name)
    except Failed as e:
        reporter.failed(e)
        for path in os.listdir(workdir):
            full = os.path.join(workdir, path)
            if not path.endswith(".log"):
                shutil.rmtree(full) if os.path.isdir(full) else os.unlink(full)
        return 1
    except KeyboardInterrupt:
        print(f"build-images: interrupted; logs kept in {workdir}", file=sys.stderr)
        return 130
    shutil.rmtree(workdir)
    for name, tag, elapsed, size, cached in builder.results:
        note = "rootfs cached" if cached else "rootfs built"
        reporter.say("done", f"{tag:24} {elapsed:6.0f} s  {size / 1e6:6.0f} MB  ({note})")
    reporter.say("all", f"{len(names)} images ready in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
