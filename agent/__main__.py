"""
`python3 -m agent` (or `sandbox-agent`): the guest agent of a sandbox.
"""

import asyncio
import os
import sys

from . import init, server


def main():
    try:
        config = init.take_config()
    except init.ConfigError as e:
        print(f"sandbox-agent: {e}", file=sys.stderr)
        sys.exit(2)
    init.set_non_dumpable()
    if os.getpid() == 1:
        status = init.run_as_init(lambda: _serve(config))
    else:
        status = _serve(config)
    sys.exit(status)


def _serve(config):
    asyncio.run(
        server.serve(
            config.secret,
            config.host,
            config.port,
            config.cwd,
            config.use_pidfd,
            on_listening=_announce,
        )
    )
    return 0


def _announce(host, port):
    print(
        f"sandbox-agent: pid {os.getpid()} listening on {host}:{port}",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    main()
