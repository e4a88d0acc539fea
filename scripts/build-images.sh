#!/usr/bin/env bash
# Build the sandbox images locally (no image registry is reachable):
#   sandbox-rootfs:bookworm  Debian minbase + python3 + ca-certificates, made with
#                            mmdebstrap and `docker import`ed; built once (again
#                            only when its recipe below changes).
#   sandbox-base:latest      rootfs + the guest agent (images/base/Dockerfile);
#                            rebuilt every time, a no-op through Docker's layer
#                            cache while agent/ is unchanged.
# Needs root, docker.io, mmdebstrap and a running dockerd (make setup dockerd).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rootfs_image=sandbox-rootfs:bookworm
base_image=sandbox-base:latest
suite=bookworm
mmdebstrap_args=(
    --variant=minbase --include=python3,ca-certificates
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
)
# Stored as a label on the rootfs image: a changed recipe triggers a rebuild.
recipe=$(echo "$suite ${mmdebstrap_args[*]}" | sha256sum | cut -c1-16)

tmp=$(mktemp -d /tmp/sandboxd-images.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# The Debian mirror this machine's apt uses (never hard-coded): the first URI of
# a deb822 stanza (/etc/apt/sources.list.d/*.sources) whose Suites list the
# plain suite, else the first matching `deb` line of /etc/apt/sources.list.
debian_mirror() {
    local uri=""
    if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
        uri=$(awk -v suite="$suite" '
            BEGIN { RS = "" }   # one record per stanza
            {
                types = uris = suites = enabled = ""
                n = split($0, lines, "\n")
                for (i = 1; i <= n; i++) {
                    if (lines[i] ~ /^Types:/)  types = lines[i]
                    if (lines[i] ~ /^URIs:/)   uris = lines[i]
                    if (lines[i] ~ /^Suites:/) suites = lines[i] " "
                    if (lines[i] ~ /^Enabled:/) enabled = lines[i]
                }
                if (enabled !~ /no/ && types ~ /[ \t]deb([ \t]|$)/ && suites ~ ("[ \t]" suite "[ \t]") && uris != "") {
                    split(uris, u, /[ \t]+/); print u[2]; exit
                }
            }' /etc/apt/sources.list.d/*.sources)
    fi
    if [[ -z $uri && -f /etc/apt/sources.list ]]; then
        # deb [options] URI SUITE COMPONENTS...
        uri=$(sed -nE "s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+$suite[[:space:]].*/\2/p" \
            /etc/apt/sources.list | head -n1)
    fi
    [[ -n $uri ]] || { echo "build-images: no Debian mirror for $suite in the apt sources" >&2; return 1; }
    echo "$uri"
}

# --- sandbox-rootfs:bookworm ---
have=$(docker image inspect -f '{{index .Config.Labels "sandboxd.rootfs-recipe"}}' "$rootfs_image" 2>/dev/null || true)
if [[ $have != "$recipe" ]]; then
    mirror=$(debian_mirror)
    echo "build-images: building $rootfs_image with mmdebstrap from $mirror"
    start=$SECONDS
    mmdebstrap --quiet "${mmdebstrap_args[@]}" "$suite" "$tmp/rootfs.tar" "$mirror"
    # An imported image has no config at all: give it the usual PATH and a UTF-8 locale.
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'LABEL sandboxd.image=rootfs' \
        --change "LABEL sandboxd.rootfs-recipe=$recipe" \
        "$tmp/rootfs.tar" "$rootfs_image" >/dev/null
    rm -f "$tmp/rootfs.tar"
    echo "build-images: $rootfs_image built in $((SECONDS - start)) s"
fi

# --- sandbox-base:latest ---
# The build context holds only the Dockerfile and agent/ (no bytecode caches),
# so unrelated changes in the repo never invalidate the layer cache.
[[ -f agent/__main__.py ]] || echo "build-images: warning: agent/__main__.py is missing; the image will not start" >&2
mkdir "$tmp/context"
cp images/base/Dockerfile "$tmp/context/Dockerfile"
tar -C . --exclude=__pycache__ --exclude='*.py[co]' -cf - agent | tar -C "$tmp/context" -xf -
# (The grep drops the newer docker CLI's notice that it fell back to the legacy
# builder: this daemon has no BuildKit, and the legacy builder is what we want.)
docker build --quiet --force-rm -t "$base_image" "$tmp/context" >/dev/null \
    2> >(grep -v -e 'legacy builder is deprecated' -e 'buildx component' -e 'docs.docker.com/go/buildx' -e '^[[:space:]]*$' >&2)
# Drop the untagged base images that earlier agent versions left behind
# (prune keeps any that a container still uses).
docker image prune -f --filter label=sandboxd.image=base >/dev/null
echo "build-images: $rootfs_image and $base_image are ready"
