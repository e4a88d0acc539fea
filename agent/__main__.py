"""
`python3 -m agent` (or `sandbox-agent`): the guest agent of a sandbox.

As PID 1 it forks before loading the server: the init that stays behind
(reaping orphans, restarting the server if user code kills it) then holds
little more than a bare interpreter, instead of a copy of every module the
server loads.
"""

import os
import signal
import sys

from . import init
from .oom import prefer_as_oom_victim


def main():
    init.scrub_environ_block()
    try:
        config = init.take_config(listen=_listen_argument(sys.argv[1:]))
    except init.ConfigError as e:
        print(f"sandbox-agent: {e}", file=sys.stderr)
        sys.exit(2)
    if config.harden:
        try:
            init.drop_privileges()
        except OSError as e:
            print(f"sandbox-agent: cannot drop privileges: {e}", file=sys.stderr)
            sys.exit(2)
    init.set_non_dumpable()
    if os.getpid() == 1:
        try:
            back_to_root = init.leave_root()
        except OSError as e:
            print(f"sandbox-agent: cannot leave root: {e}", file=sys.stderr)
            sys.exit(2)
        status = init.run_as_init(
            lambda: _serve(config, shielded=True, back_to_root=back_to_root)
        )
    else:
        status = _serve(config)
    sys.exit(status)


def _load_server():
    """
    asyncio and the server.  asyncio imports ssl and hashlib imports
    _hashlib, and with them libssl and libcrypto (several MB resident), for
    TLS the agent never serves and one HMAC-SHA256 per connection that the
    builtin sha256 does as well: keep them out while these load; net.fetch
    imports ssl for real when it first needs it.
    """
    blocked = [name for name in ("ssl", "_hashlib") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None
    try:
        import asyncio

        from . import server
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return asyncio, server


def _serve(config, shielded=False, back_to_root=None):
    if back_to_root is not None:
        back_to_root()
    if shielded:
        init.shield_from_stop_signals()
        prefer_as_oom_victim()
    asyncio, server = _load_server()
    asyncio.run(
        server.serve(
            config.secret,
            config.host,
            config.port,
            config.cwd,
            config.use_pidfd,
            on_listening=_announce,
            zygote=config.zygote,
            listen=config.listen,
            # Shielded, only SIGKILL ends it (and PID 1 starts it again).
            stop_signals=() if shielded else (signal.SIGTERM, signal.SIGINT),
        )
    )
    return 0


def _listen_argument(argv):
    """
    The value of ``--listen X`` or ``--listen=X`` in argv, else None.
    """
    for index, word in enumerate(argv):
        if word == "--listen" and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith("--listen="):
            return word[len("--listen="):]
    return None


def _announce(address):
    print(
        f"sandbox-agent: pid {os.getpid()} listening on {address}",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    main()
