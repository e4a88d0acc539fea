#!/usr/bin/env bash
# Make sure a Docker daemon answers: start `dockerd` in the background when
# `docker info` fails (there is no systemd here), then wait up to 60 s for it.
set -euo pipefail

if docker info >/dev/null 2>&1; then
    exit 0
fi

log=/var/log/sandboxd-dockerd.log
touch "$log" 2>/dev/null || log=/tmp/sandboxd-dockerd.log

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
