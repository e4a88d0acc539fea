"""
`python3 -m agent` (or `sandbox-agent`): the guest agent of a sandbox.
"""

import sys

# asyncio imports ssl and hashlib imports _hashlib, and with them libssl
# and libcrypto (several MB resident), for TLS the agent never serves and
# one HMAC-SHA256 per connection that the builtin sha256 does as well.
# Keep them out while the agent loads; net.fetch imports ssl for real when
# it first needs it.
_BLOCKED = [name for name in ("ssl", "_hashlib") if name not in sys.modules]
for _name in _BLOCKED:
    sys.modules[_name] = None

import asyncio  # noqa: E402
import os  # noqa: E402

from . import init, server  # noqa: E402

for _name in _BLOCKED:
    if sys.modules.get(_name, 0) is None:
        del sys.modules[_name]


def main():
    init.scrub_environ_block()
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
            zygote=config.zygote,
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
