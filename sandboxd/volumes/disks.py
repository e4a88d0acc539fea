"""
A volume on the host: a sparse file holding an ext4 file system, mounted
through a loop device on a directory that sandboxes' containers bind-mount.

Why a file system per volume: a bind mount of a plain host directory has no
size cap (the engine's ``size`` option holds only on xfs with project
quotas, and this host's Docker root is ext4); a file system of exactly
``size`` bytes refuses one byte more with ENOSPC, under runc and gVisor
alike.  The file is sparse: it takes host space as data is written.
Created with no reserved blocks (``-m 0``) so the caller gets its size.
"""

import hashlib
import os
import shutil

from sandboxd.runtimes._disks import run

#: Options of the loop mount: no device files, no set-uid programs.
MOUNT_OPTIONS = "loop,nodev,nosuid"
#: The commands, found on PATH (e2fsprogs and util-linux).
MKFS, MOUNT, UMOUNT = "mkfs.ext4", "mount", "umount"


class DiskError(Exception):
    """
    The host could not make, mount or remove a volume's disk.
    """


def directory(root, identity, name):
    """
    The directory of the volume ``name`` of ``identity`` under ``root``: a
    hash, so that no name or identity reaches a path.
    """
    key = hashlib.sha256(f"{identity}\0{name}".encode()).hexdigest()[:32]
    return os.path.join(root, key)


def mount_point(path):
    """
    Where the volume in ``path`` (a L{directory}) is mounted.
    """
    return os.path.join(path, "mnt")


async def _command(reactor, argv):
    executable = shutil.which(argv[0])
    if executable is None:
        raise DiskError(f"{argv[0]} is not installed (make setup)")
    out, err, code = await run(reactor, executable, argv[1:], os.environ.copy())
    if code != 0:
        raise DiskError(f"{' '.join(argv[:2])} failed ({code}):"
                        f" {err.decode(errors='replace').strip()[:300]}")


async def make(reactor, path, size, label=""):
    """
    A new empty volume of ``size`` bytes in the directory ``path`` (which
    must not exist), mounted; on failure nothing is left.
    """
    os.makedirs(path, mode=0o700)
    image = os.path.join(path, "disk.img")
    try:
        with open(os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.truncate(size)
        await _command(reactor, [MKFS, "-q", "-F", "-m", "0", "-L", label[:16], image])
        os.mkdir(mount_point(path), 0o700)
        await ensure_mounted(reactor, path)
        # Its root starts empty: lost+found is for fsck, not for sandboxes.
        os.rmdir(os.path.join(mount_point(path), "lost+found"))
    except BaseException:
        await remove(reactor, path)
        raise


async def ensure_mounted(reactor, path):
    """
    Mount the volume in ``path`` unless it is (after a host reboot it is
    not).
    """
    point = mount_point(path)
    if not os.path.ismount(point):
        await _command(reactor, [MOUNT, "-o", MOUNT_OPTIONS,
                                 os.path.join(path, "disk.img"), point])


async def remove(reactor, path):
    """
    Unmount the volume in ``path`` (lazily: a container being removed may
    still hold it) and delete it.
    """
    point = mount_point(path)
    if os.path.ismount(point):
        await _command(reactor, [UMOUNT, "-l", point])
    shutil.rmtree(path, ignore_errors=True)
