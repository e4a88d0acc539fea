"""
Writing the "newc" cpio archives the Linux kernel unpacks as an initramfs.

The kernel takes several archives one after the other (the base initramfs
of every VM, then a small per-VM one holding its secret), compressed or not.
"""

import stat

_TRAILER = "TRAILER!!!"


def _pad(n):
    return b"\0" * (-n % 4)


def _entry(ino, name, mode, data=b"", nlink=1):
    encoded = name.encode() + b"\0"
    header = "070701" + "".join(
        f"{value:08x}"
        for value in (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    )
    out = header.encode() + encoded
    out += _pad(len(out))
    out += data + _pad(len(data))
    return out


def archive(entries):
    """
    A newc archive of ``entries``: (name, mode, data) where mode carries the
    file type (``stat.S_IFREG | 0o600``, ``stat.S_IFDIR | 0o755``,
    ``stat.S_IFLNK | 0o777`` with the target as data).  Names are relative
    (no leading slash); owner root.
    """
    out = bytearray()
    for ino, (name, mode, data) in enumerate(entries, start=1):
        nlink = 2 if stat.S_ISDIR(mode) else 1
        out += _entry(ino, name, mode, data, nlink)
    out += _entry(0, _TRAILER, 0)
    return bytes(out)


def secret_archive(secret):
    """
    The per-VM archive: the agent's secret as ``/sandboxd-secret`` (0600),
    which the VM's init reads into the agent's environment and deletes.
    """
    return archive([("sandboxd-secret", stat.S_IFREG | 0o600, secret.encode())])


def append(base, extra):
    """
    ``base`` (an initramfs, compressed or not) followed by the archive
    ``extra``: the kernel finds the next archive's magic only on a 4-byte
    boundary, so ``base`` is padded with NULs (which it skips) to one.
    """
    return base + _pad(len(base)) + extra
