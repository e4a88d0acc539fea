#!/usr/bin/env bash
# Install everything sandboxd needs on a Debian bookworm machine (run as root).
# Idempotent and fast when everything is already there:
#   - Debian packages: docker.io (dockerd, containerd, runc), runsc (gVisor),
#     mmdebstrap, iptables, iproute2 (the egress tests' network namespaces),
#     tmux, chromium (the headless browser of the tunnel
#     tests), wrk (bench/tunnels.py); for QEMU sandboxes qemu-system-x86 (with
#     qboot), qemu-utils, busybox-static and e2fsprogs (mkfs.ext4 -d); etcd-server
#     (the cluster's membership store, docs/deploy.md)
#   - .venv with the project installed in editable mode, plus the test extra
#   - Twisted's plugin cache (twisted/plugins/dropin.cache)
#   - the SDKs' toolchains and npm packages (scripts/setup-sdks.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# --- Debian packages: `apt-get update` only when something is missing. ---
packages=(docker.io runsc mmdebstrap iptables iproute2 tmux chromium wrk qemu-system-x86 qemu-utils busybox-static
          e2fsprogs etcd-server)
missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done
source scripts/apt-install.sh
apt_install "${missing[@]}"

# --- Python virtualenv. ---
venv=.venv
if [[ ! -x $venv/bin/python ]]; then
    echo "setup: creating $venv"
    python3 -m venv "$venv"
fi

# Reinstall only when the packaging metadata changed since the last install.
# editable_mode=compat puts the repo root on sys.path through a .pth file, so
# Twisted finds twisted/plugins/sandboxd_plugin.py (a strict editable install
# would hide the non-package `twisted/plugins` directory from the plugin scan).
stamp=$venv/.sandboxd-setup-stamp
want=$(cat setup.cfg pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "setup: installing the project into $venv"
    # (The grep drops pip's warnings about this machine's missing file:// index dirs.)
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q -e '.[test]' --config-settings editable_mode=compat \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    echo "$want" >"$stamp"
fi

# --- Go, node and the TypeScript SDK's npm packages (the SDK suites). ---
bash scripts/setup-sdks.sh

# --- Regenerate Twisted's plugin cache (dropin.cache) for our plugin. ---
"$venv/bin/python" -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
