"""
``make vm``: what QEMU sandboxes boot.

- the kernel: Debian's cloud kernel, fetched with ``apt-get download
  linux-image-cloud-amd64`` (the package it depends on) from the machine's
  configured mirror, and its ``vmlinuz``;
- the initramfs: busybox (static), the virtio modules of that kernel
  (virtio_ring, virtio, virtio_mmio, virtio_console, virtio_blk; ext4 is
  built in) and images/vm/init;
- a root disk for each image given (sandboxd/runtimes/vmdisk.py).

Usage: python scripts/build_vm.py [--dir VM_DIR] [IMAGE...]
(default VM_DIR /var/lib/sandboxd/vm: vmlinuz, initrd.img, disks/).
Everything is skipped when already there for the same kernel package.
"""

import argparse
import glob
import gzip
import os
import shutil
import stat
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sandboxd.runtimes import vmdisk  # noqa: E402
from sandboxd.runtimes._cpio import archive  # noqa: E402

META_PACKAGE = "linux-image-cloud-amd64"
MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
           "virtio_pci", "virtio_mmio", "virtio_console", "virtio_blk")
BUSYBOX = "/bin/busybox"
INIT = os.path.join(REPO, "images", "vm", "init")


def say(message):
    print(f"vm: {message}", file=sys.stderr, flush=True)


def kernel_package():
    """
    The versioned kernel package the cloud meta-package depends on.
    """
    out = subprocess.run(["apt-cache", "depends", META_PACKAGE], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-"):
            return line.split()[1]
    raise SystemExit(f"vm: apt-cache knows no kernel for {META_PACKAGE}")


def fetch_kernel(vm_dir):
    package = kernel_package()
    stamp = os.path.join(vm_dir, "kernel.package")
    kernel = os.path.join(vm_dir, "vmlinuz")
    initrd = os.path.join(vm_dir, "initrd.img")
    if os.path.exists(stamp) and open(stamp).read().strip() == package \
            and os.path.exists(kernel) and os.path.exists(initrd) \
            and os.path.getmtime(initrd) >= os.path.getmtime(INIT):
        say(f"kernel {package} and initramfs are up to date")
        return
    with tempfile.TemporaryDirectory(prefix="sandboxd-kernel-") as work:
        say(f"apt-get download {package}")
        os.chmod(work, 0o755)  # _apt writes the download
        subprocess.run(["apt-get", "download", "-q", package], cwd=work, check=True)
        (deb,) = glob.glob(os.path.join(work, "*.deb"))
        say("extracting the kernel and its virtio modules")
        root = os.path.join(work, "root")
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
        (vmlinuz,) = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))
        modules = {}
        for name in MODULES:
            found = glob.glob(os.path.join(root, "lib", "modules", "*", "kernel", "**",
                                           f"{name}.ko*"), recursive=True)
            if len(found) != 1:
                raise SystemExit(f"vm: {package} has no single {name}.ko: {found}")
            modules[name] = found[0]
        build_initrd(initrd, modules)
        shutil.copyfile(vmlinuz, kernel + ".new")
        os.replace(kernel + ".new", kernel)
    with open(stamp, "w") as f:
        f.write(package + "\n")
    say(f"kernel {kernel}, initramfs {initrd}")


def _read_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        import lzma

        data = lzma.decompress(data)
    return data


def build_initrd(path, modules):
    if not os.path.exists(BUSYBOX):
        raise SystemExit("vm: /bin/busybox is missing (busybox-static; run make setup)")
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    with open(INIT, "rb") as f:
        init = f.read()
    directory = stat.S_IFDIR | 0o755
    entries = [(name, directory, b"") for name in
               ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules")]
    entries.append(("bin/busybox", stat.S_IFREG | 0o755, busybox))
    entries.append(("bin/sh", stat.S_IFLNK | 0o777, b"busybox"))
    entries.append(("init", stat.S_IFREG | 0o755, init))
    for name, module in modules.items():
        entries.append((f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, _read_module(module)))
    with open(path + ".new", "wb") as f:
        f.write(gzip.compress(archive(entries), 6))
    os.replace(path + ".new", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/var/lib/sandboxd/vm")
    parser.add_argument("images", nargs="*", default=["sandbox-base:latest"])
    args = parser.parse_args()
    os.makedirs(args.dir, mode=0o755, exist_ok=True)
    fetch_kernel(args.dir)
    for image in args.images:
        try:
            vmdisk.build(os.path.join(args.dir, "disks"), image, progress=say)
        except vmdisk.DiskError as e:
            raise SystemExit(f"vm: {e}")


if __name__ == "__main__":
    main()
