"""
The commands of ``sbx``, run on asyncio through the SDK.

Each command takes the shared Client and the parsed arguments and returns
the exit status; L{COMMANDS} maps the parser's command names (``fs_read``
for ``sbx fs read``) to them.  Errors become one ``sbx: error: ...`` line
and status 1.  The sandbox commands are here; files, templates, machines
(pause, volumes) and the daemon-wide commands have modules of their own.
"""

import asyncio
import errno
import os
import sys

from sandbox import Client, DaemonUnavailableError, FileError, SandboxError
from sbx import _format, admin, files, machines, templates
from sbx._common import about, error, print_json, session
from sbx._failure import Failure
from sbx.files import stdin_chunks


def describe(e):
    """
    The one-line message of an SDK error.
    """
    if isinstance(e, DaemonUnavailableError):
        return (
            f"{e.message} (is it running? start it with `make run`, or point "
            "--endpoint / SANDBOX_ENDPOINT at it)"
        )
    if isinstance(e, FileError) and e.path and hasattr(errno, e.code):
        return f"{e.path}: {os.strerror(getattr(errno, e.code))}"
    return e.message


def run(args):
    """
    Run the command of ``args``; return the exit status.
    """
    try:
        return asyncio.run(_main(args))
    except SandboxError as e:
        error(describe(e))
    except Failure as e:
        error(e)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 1


async def _main(args):
    command = args.command
    subcommand = getattr(args, f"{command}_command", None)
    if subcommand:
        command = f"{command}_{subcommand}"
    handler = COMMANDS[command]
    async with Client(args.endpoint, ca_file=getattr(args, "ca_file", None)) as client:
        return await handler(client, args)


async def cmd_fingerprint(client, args):
    async with session(client, args) as sbx:
        print(sbx.fingerprint or await sbx.agent_fingerprint())
    return 0


async def cmd_create(client, args):
    info = await client.create(
        profile=args.profile,
        template=args.template,
        memory=args.memory,
        cpu=args.cpu,
        storage=args.storage,
        ttl=args.ttl,
        labels=dict(args.labels) or None,
        ttl_action=args.ttl_action,
        expires_at=args.expires_at,
        volumes=args.volumes or None,
        network=_network(args),
        secrets=_secrets(args.secrets),
    )
    print(info["id"])
    return 0


def _network(args):
    """``--network`` / ``--allow`` as a create body's ``network`` (None: the profile's)."""
    if args.allow and args.network:
        raise Failure("--allow and --network exclude each other")
    if args.allow:
        return {"allow": list(args.allow)}
    return args.network


def _secrets(named):
    """``--secret NAME[:HOSTS]`` as a create body's ``secrets``, values from the environment."""
    secrets = {}
    for name, hosts in named:
        value = os.environ.get(name)
        if not value:
            raise Failure(f"--secret {name}: ${name} is not set (the value comes from the"
                          " environment, never from the command line)")
        secrets[name] = {"value": value, "hosts": hosts} if hosts else value
    return secrets or None


async def cmd_update(client, args):
    labels = {**dict(args.labels), **{key: None for key in args.unlabel}}
    if args.ttl is None and not labels and args.expires_at is None:
        raise Failure("update needs --ttl, --expires-at, --label or --unlabel")
    with about(args.id):
        info = await client.update(args.id, ttl=args.ttl, labels=labels or None,
                                   expires_at=args.expires_at)
    if args.json:
        print_json(info)
    else:
        print(info["id"])
    return 0


async def cmd_ls(client, args):
    items = await client.list(labels=args.labels)
    if args.json:
        print_json(items)
        return 0
    rows = [
        (
            s.get("id", "?"),
            s.get("profile") or "-",
            s.get("state", "?"),
            _format.age(s.get("created")),
            _format.labels(s.get("labels")),
        )
        for s in items
    ]
    print(_format.table(("ID", "PROFILE", "STATE", "AGE", "LABELS"), rows))
    return 0


async def cmd_rm(client, args):
    ids = list(args.ids)
    if args.all:
        ids += [s["id"] for s in await client.list() if s["id"] not in ids]
    elif not ids:
        raise Failure("rm needs sandbox ids, or --all")
    limit = asyncio.Semaphore(16)

    async def remove(sandbox_id):
        async with limit:
            with about(sandbox_id):
                await client.destroy(sandbox_id)

    outcomes = await asyncio.gather(*map(remove, ids), return_exceptions=True)
    status = 0
    for sandbox_id, outcome in zip(ids, outcomes):
        if outcome is None:
            print(sandbox_id)
        elif isinstance(outcome, (SandboxError, Failure)):
            error(describe(outcome) if isinstance(outcome, SandboxError) else outcome)
            status = 1
        else:
            raise outcome
    return status


async def cmd_exec(client, args):
    cmd = args.cmd[0] if len(args.cmd) == 1 else args.cmd
    async with session(client, args) as sbx:
        handle = await sbx.process.stream_exec(
            cmd,
            cwd=args.cwd,
            env=dict(args.env) or None,
            timeout=args.timeout,
            stdin=stdin_chunks() if getattr(args, "stdin", False) else None,
        )
        stdout = sys.stdout.buffer
        stderr = sys.stderr.buffer
        async for event in handle:
            target = stderr if event.channel == "stderr" else stdout
            target.write(event.raw)
            target.flush()
        result = await handle.wait()
    if result.get("timed_out"):
        sys.stderr.write("sbx: the command timed out and was killed\n")
    code = int(result.get("exit_code", 1))
    return code if 0 <= code <= 255 else 1


async def cmd_attach(client, args):
    from sbx._attach import attach

    cmd = None
    if args.cmd:
        cmd = args.cmd[0] if len(args.cmd) == 1 else args.cmd
    async with session(client, args) as sbx:
        code = await attach(sbx, cmd)
    return code if 0 <= code <= 255 else 1


async def cmd_stats(client, args):
    with about(args.id):
        stats = await client.stats(args.id)
    if args.json:
        print_json(stats)
        return 0
    for key in sorted(stats):
        value = stats[key]
        if key.endswith("_bytes"):
            value = _format.size(value)
        print(f"{key}: {value}")
    return 0


async def cmd_port_url(client, args):
    with about(args.id):
        if args.expires is not None:
            print((await client.signed_port_url(args.id, args.port, args.expires))["url"])
            return 0
        await client.get(args.id)
    print(client.port_url(args.id, args.port))
    return 0


async def cmd_port_expose(client, args):
    with about(args.id):
        tunnel = await client.expose(args.id, args.port, args.timeout)
    if args.json:
        print_json(tunnel)
    else:
        print(tunnel["url"])
    return 0


async def cmd_port_ls(client, args):
    with about(args.id):
        tunnels = await client.ports(args.id)
    if args.json:
        print_json(tunnels)
        return 0
    rows = [(t["port"], t["host_port"], t["url"], t["connections"]) for t in tunnels]
    print(_format.table(("PORT", "HOST PORT", "URL", "CONNECTIONS"), rows))
    return 0


async def cmd_port_close(client, args):
    with about(args.id):
        await client.close_port(args.id, args.port)
    return 0


COMMANDS = {
    "create": cmd_create,
    "update": cmd_update,
    "ls": cmd_ls,
    "rm": cmd_rm,
    "exec": cmd_exec,
    "attach": cmd_attach,
    "fingerprint": cmd_fingerprint,
    "stats": cmd_stats,
    "port_url": cmd_port_url,
    "port_expose": cmd_port_expose,
    "port_ls": cmd_port_ls,
    "port_close": cmd_port_close,
    "fs_read": files.cmd_fs_read,
    "fs_write": files.cmd_fs_write,
    "fs_upload": files.cmd_fs_upload,
    "fs_download": files.cmd_fs_download,
    "fs_ls": files.cmd_fs_ls,
    "pause": machines.cmd_pause,
    "resume": machines.cmd_resume,
    "volume_create": machines.cmd_volume_create,
    "volume_ls": machines.cmd_volume_ls,
    "volume_rm": machines.cmd_volume_rm,
    "tpl_save": templates.cmd_tpl_save,
    "tpl_ls": templates.cmd_tpl_ls,
    "tpl_rm": templates.cmd_tpl_rm,
    "build": templates.cmd_build,
    "health": admin.cmd_health,
    "version": admin.cmd_version,
    "profiles": admin.cmd_profiles,
    "events": admin.cmd_events,
    "pool_status": admin.cmd_pool_status,
    "pool_resize": admin.cmd_pool_resize,
    "pool_flush": admin.cmd_pool_flush,
    "ui": admin.cmd_ui,
}
