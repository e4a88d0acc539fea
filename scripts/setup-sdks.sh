#!/usr/bin/env bash
# What the SDK suites need (tests/test_conformance.py, tests/test_sdk_suites.py),
# called by scripts/setup.sh; idempotent and fast when nothing changed:
#   - Go from Debian (golang-go, 1.19) for sdk/go: it builds from its vendor/
#     directory (GOFLAGS=-mod=vendor), so no module proxy is needed
#   - node and npm (Debian's nodejs and npm when no node is installed yet)
#   - sdk/typescript/node_modules: ws, and typescript + @types/node for the
#     type check, from the npm registry the machine is configured with
#   - ui/node_modules: esbuild and xterm.js at the lock file's versions, to
#     check that the committed dashboard bundle rebuilds byte for byte
#     (tests/test_ui_bundle.py; docs/ui.md)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v go >/dev/null || missing+=(golang-go)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
source scripts/apt-install.sh
apt_install "${missing[@]}"

# npm install only when package.json changed since the last one.
ts=sdk/typescript
stamp=$ts/node_modules/.sandboxd-setup-stamp
want=$(sha256sum "$ts/package.json" | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "setup: npm install in $ts"
    (cd "$ts" && npm install --silent --no-audit --no-fund --no-package-lock)
    echo "$want" >"$stamp"
fi

# The dashboard's build tools, at the lock file's versions (npm ci) when the lock changed.
stamp=ui/node_modules/.sandboxd-setup-stamp
want=$(sha256sum ui/package-lock.json | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "setup: npm ci in ui"
    (cd ui && npm ci --silent --no-audit --no-fund)
    echo "$want" >"$stamp"
fi
