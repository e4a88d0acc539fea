# Sourced by the setup scripts: `apt_install PKG...` installs the Debian
# packages given (the caller passes only the missing ones; none is a no-op),
# with `apt-get update` first, keeping apt's hundreds of lines in a log whose
# end is shown on failure.
apt_install() {
    (($#)) || return 0
    echo "setup: installing Debian packages: $*"
    local aptlog
    aptlog=$(mktemp /tmp/sandboxd-apt.XXXXXX.log)
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; } \
            >"$aptlog" 2>&1 </dev/null; then
        tail -n 40 "$aptlog" >&2
        echo "setup: apt-get failed (full log: $aptlog)" >&2
        exit 1
    fi
    rm -f "$aptlog"
}
