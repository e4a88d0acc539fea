"""
Root disks of QEMU sandboxes: a profile's Docker image as an ext4 file.

``python -m sandboxd.runtimes.vmdisk DISK_DIR IMAGE...`` (what ``make vm``
and the QEMU runtime's prepare run, in a process of their own) exports each
image's filesystem (``docker create`` + ``docker export``), puts this
daemon's own agent in it (the VM's agent must speak the daemon's protocol
and serve virtio-serial), records the image's environment in
``/.sandboxd-env`` for the VM's init, and writes it with ``mkfs.ext4 -d``
to ``DISK_DIR/<image id>-<agent hash>.ext4``.  A disk that exists is
reused: the name changes when the image or the agent does.  Every VM
mounts its disk read-only (writes go to tmpfs /root and /tmp, as in a
container), so one disk serves every VM of the image.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import agent as _agent_package

AGENT_DIR = "usr/lib/python3/dist-packages/agent"
ENV_FILE = ".sandboxd-env"
#: Room left free on a disk beyond its files, as a fraction and a minimum.
SLACK = 0.15
MIN_SLACK = 32 << 20


class DiskError(Exception):
    """
    A root disk could not be made; the message says why.
    """


def agent_hash():
    """
    The SHA-256 (hex, 12 characters) of this daemon's agent sources.
    """
    digest = hashlib.sha256()
    root = os.path.dirname(_agent_package.__file__)
    for name in sorted(os.listdir(root)):
        if name.endswith(".py"):
            with open(os.path.join(root, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read() + b"\0")
    return digest.hexdigest()[:12]


def disk_name(image_id):
    """
    The file name of the disk of the image with id ``image_id``.
    """
    return f"{image_id.split(':')[-1][:16]}-{agent_hash()}.ext4"


def _run(argv, **kwargs):
    try:
        return subprocess.run(argv, check=True, capture_output=True, **kwargs)
    except FileNotFoundError as e:
        raise DiskError(f"{argv[0]} is not installed (run make setup)") from e
    except subprocess.CalledProcessError as e:
        raise DiskError(
            f"{' '.join(argv[:3])} failed: {e.stderr.decode(errors='replace').strip()}"
        ) from e


def inspect(image):
    """
    The image's id and environment (``Config.Env``).
    """
    out = _run(["docker", "image", "inspect", image]).stdout
    (info,) = json.loads(out)
    return info["Id"], (info.get("Config") or {}).get("Env") or []


def build(disk_dir, image, progress=print):
    """
    The path of ``image``'s root disk in ``disk_dir``, made if missing.
    """
    image_id, env = inspect(image)
    os.makedirs(disk_dir, mode=0o755, exist_ok=True)
    path = os.path.join(disk_dir, disk_name(image_id))
    if os.path.exists(path):
        progress(f"{image}: disk {path} is up to date")
        return path
    with tempfile.TemporaryDirectory(prefix="sandboxd-disk-", dir=disk_dir) as work:
        tree = os.path.join(work, "root")
        os.mkdir(tree)
        progress(f"{image}: exporting the image")
        container = _run(["docker", "create", image]).stdout.decode().strip()
        try:
            exported = subprocess.Popen(
                ["docker", "export", container], stdout=subprocess.PIPE
            )
            _run(["tar", "-x", "-C", tree, "--numeric-owner"], stdin=exported.stdout)
            if exported.wait() != 0:
                raise DiskError(f"docker export of {image} failed")
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        progress(f"{image}: putting this daemon's agent in")
        _put_agent(tree)
        with open(os.path.join(tree, ENV_FILE), "w") as f:
            f.writelines(f"{line}\n" for line in env if "\n" not in line)
        size = _size(tree)
        progress(f"{image}: mkfs.ext4 -d ({size >> 20} MiB)")
        image_file = os.path.join(work, "disk.ext4")
        with open(image_file, "wb") as f:
            f.truncate(size)
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-L", "sandboxd-root",
              "-E", "root_owner=0:0", "-d", tree, image_file])
        os.chmod(image_file, 0o644)
        os.rename(image_file, path)
    progress(f"{image}: disk {path}")
    return path


def _put_agent(tree):
    target = os.path.join(tree, AGENT_DIR)
    shutil.rmtree(target, ignore_errors=True)
    source = os.path.dirname(_agent_package.__file__)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # Compiled by the image's own interpreter: the root is read-only in the VM.
    _run(["chroot", tree, "/usr/bin/python3", "-m", "compileall", "-q", "/" + AGENT_DIR])


def _size(tree):
    total = 0
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += (st.st_size + 4095) // 4096 * 4096 + 256
    size = total + max(MIN_SLACK, int(total * SLACK))
    return (size + (1 << 20) - 1) >> 20 << 20


def main(argv):
    if len(argv) < 2:
        print("usage: python -m sandboxd.runtimes.vmdisk DISK_DIR IMAGE...", file=sys.stderr)
        return 2
    disk_dir, images = argv[0], argv[1:]
    try:
        for image in images:
            print(build(disk_dir, image, progress=lambda m: print(f"vm: {m}", file=sys.stderr, flush=True)))
    except DiskError as e:
        print(f"vm: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
