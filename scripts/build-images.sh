#!/usr/bin/env bash
# Build the images locally (no image registry is reachable): all of them, or
# the ones named (base python node full daemon).  See scripts/build_images.py.
#   bash scripts/build-images.sh [--refresh] [NAME ...]
# Needs root, docker.io, mmdebstrap and a running dockerd (make setup dockerd).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 -u scripts/build_images.py "$@"
