#!/usr/bin/env bash
# The peers' own virtualenv for `make bench`: llm-sandbox and epicbox (the
# Python libraries a user would pick instead of sandboxd) plus matplotlib for
# the plots, kept apart from the project's .venv so none of them becomes a
# project dependency. Packages come from pip's configured index. Idempotent:
# a stamp records what was installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

venv=.peers-venv
# epicbox 1.1 (2019) passes urllib3 1.x's Retry(method_whitelist=...), gone in urllib3 2.
requirements=(llm-sandbox epicbox "urllib3<2" matplotlib)
if [[ ! -x $venv/bin/python ]]; then
    echo "setup-peers: creating bench/$venv"
    python3 -m venv "$venv"
fi
stamp=$venv/.peers-stamp
want="${requirements[*]}"
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "setup-peers: installing ${requirements[*]} into bench/$venv"
    # (The grep drops pip's warnings about this machine's missing file:// index dirs.)
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q "${requirements[@]}" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    echo "$want" >"$stamp"
fi
