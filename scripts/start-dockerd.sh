#!/usr/bin/env bash
# Make sure a Docker daemon answers, with gVisor's runsc registered as the
# runtime `runsc` (profiles with runtime = "docker+gvisor" use it):
#   1. merge the runsc runtime into /etc/docker/daemon.json (other keys kept;
#      the file is rewritten only when something changes);
#   2. start `dockerd` in the background when `docker info` fails (there is
#      no systemd here), then wait up to 60 s for it;
#   3. a dockerd that was already running without runsc reloads its
#      configuration on SIGHUP: it is never restarted.
set -euo pipefail

config=${SANDBOXD_DOCKER_CONFIG:-/etc/docker/daemon.json}
runsc=$(command -v runsc || true)

# This Debian runsc (2022) refuses the kernel's network stack unless it uses
# the container's network namespace directly: --network=host (DESIGN.md).
if [[ -n $runsc ]]; then
    mkdir -p "$(dirname "$config")"
    python3 - "$config" "$runsc" <<'PY'
import json, os, sys

path, runsc = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        text = f.read()
except FileNotFoundError:
    text = ""
config = json.loads(text) if text.strip() else {}
if not isinstance(config, dict):
    sys.exit(f"start-dockerd: {path} is not a JSON object; fix it by hand")
want = {"path": runsc, "runtimeArgs": ["--network=host"]}
runtimes = config.setdefault("runtimes", {})
if runtimes.get("runsc") != want:
    runtimes["runsc"] = want
    new = path + ".sandboxd-new"
    with open(new, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(new, path)
    print(f"start-dockerd: registered runsc in {path}")
PY
fi

has_runsc() {
    docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'
}

log=/var/log/sandboxd-dockerd.log
touch "$log" 2>/dev/null || log=/tmp/sandboxd-dockerd.log

if docker info >/dev/null 2>&1; then
    if [[ -n $runsc ]] && ! has_runsc; then
        # dockerd re-reads daemon.json on SIGHUP, runtimes included.
        echo "start-dockerd: dockerd lacks runsc; reloading its configuration (SIGHUP)"
        kill -HUP "$(pidof dockerd)"
        for _ in $(seq 20); do
            has_runsc && exit 0
            sleep 0.5
        done
        echo "start-dockerd: dockerd still lacks runsc after SIGHUP; see $log" >&2
        exit 1
    fi
    exit 0
fi

# A dockerd that is still starting would make a second one fail on its pid
# file: only start one when none is running.
if ! pidof dockerd >/dev/null; then
    echo "start-dockerd: starting dockerd (log: $log)"
    # setsid + nohup: survive the end of this shell and Ctrl-C in make.
    # All three standard streams are redirected so that a caller piping our
    # output (`make test | tee`) is not held open by the daemon.
    setsid nohup dockerd >>"$log" 2>&1 </dev/null &
fi

for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
        echo "start-dockerd: dockerd is up"
        exit 0
    fi
    sleep 1
done

echo "start-dockerd: dockerd did not answer within 60 s; last lines of $log:" >&2
tail -n 40 "$log" >&2 || true
exit 1
