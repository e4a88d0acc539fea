"""
The commands of ``sbx``, run on asyncio through the SDK.

Each ``cmd_*`` takes the shared Client and the parsed arguments and returns
the exit status.  Errors become one ``sbx: error: ...`` line and status 1.
"""

import asyncio
import contextlib
import dataclasses
import errno
import json
import os
import sys

import sandbox
from sandbox import (
    Client,
    DaemonUnavailableError,
    FileError,
    NotFoundError,
    SandboxError,
    connect_sandbox,
)
from sbx import _format
from sbx._ui import Forwarder

CHUNK_SIZE = 256 * 1024

from sbx._failure import Failure
# The template commands (their own module), found by name like the rest.
from sbx.templates import cmd_build, cmd_tpl_ls, cmd_tpl_rm, cmd_tpl_save  # noqa: F401
from sbx.machines import (  # noqa: F401
    cmd_pause, cmd_resume, cmd_volume_create, cmd_volume_ls, cmd_volume_rm,
)


def error(message):
    sys.stderr.write(f"sbx: error: {' '.join(str(message).split())}\n")
    sys.stderr.flush()


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
    handler = globals()[f"cmd_{command}"]
    async with Client(args.endpoint, ca_file=getattr(args, "ca_file", None)) as client:
        return await handler(client, args)


def _connect(client, args):
    """
    The session of sandbox ``args.id``, end-to-end encrypted with
    ``--encrypted`` (pinned to the agent key ``--pin``).
    """
    return connect_sandbox(
        args.id,
        client=client,
        encrypted=getattr(args, "encrypted", False),
        pin=getattr(args, "pin", None),
    )


async def cmd_fingerprint(client, args):
    with about(args.id):
        sbx = await _connect(client, args)
    async with sbx:
        print(sbx.fingerprint or await sbx.agent_fingerprint())
    return 0


@contextlib.contextmanager
def about(sandbox_id):
    """
    Turn "no such sandbox" into "sandbox <id> not found".
    """
    try:
        yield
    except NotFoundError as e:
        if e.code == "SANDBOX_NOT_FOUND":
            raise Failure(f"sandbox {sandbox_id} not found") from None
        raise


def print_json(obj):
    print(json.dumps(obj, indent=2, sort_keys=True))


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
    with about(args.id):
        sbx = await _connect(client, args)
    async with sbx:
        handle = await sbx.process.stream_exec(
            cmd,
            cwd=args.cwd,
            env=dict(args.env) or None,
            timeout=args.timeout,
            stdin=_stdin_chunks() if getattr(args, "stdin", False) else None,
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
    with about(args.id):
        sbx = await _connect(client, args)
    async with sbx:
        code = await attach(sbx, cmd)
    return code if 0 <= code <= 255 else 1


async def _to_stdout(chunks):
    """
    Copy an async iterator of bytes to stdout as it arrives.
    """
    stdout = sys.stdout.buffer
    async for chunk in chunks:
        stdout.write(chunk)
    stdout.flush()


async def cmd_fs_read(client, args):
    with about(args.id):
        sbx = await _connect(client, args)
    async with sbx:
        await _to_stdout(sbx.fs.read_stream(args.path))
    return 0


async def _stdin_chunks():
    stdin = sys.stdin.buffer
    while True:
        block = await asyncio.to_thread(stdin.read, CHUNK_SIZE)
        if not block:
            return
        yield block


async def cmd_fs_write(client, args):
    with about(args.id):
        sbx = await _connect(client, args)
    async with sbx:
        await sbx.fs.write(args.path, _stdin_chunks(), mode=args.mode, append=args.append)
    return 0


async def cmd_fs_upload(client, args):
    with about(args.id):
        sbx = await _connect(client, args)
    async with sbx:
        counts = await sbx.fs.upload(args.path, _stdin_chunks())
    sys.stderr.write(
        f"{counts.get('files', 0)} files, {counts.get('dirs', 0)} directories, "
        f"{counts.get('bytes', 0)} bytes\n"
    )
    return 0


async def cmd_fs_download(client, args):
    with about(args.id):
        sbx = await _connect(client, args)
    async with sbx:
        await _to_stdout(sbx.fs.download(args.path))
    return 0


async def cmd_fs_ls(client, args):
    with about(args.id):
        sbx = await _connect(client, args)
    async with sbx:
        entries = await sbx.fs.list(args.path, depth=args.depth)
    if args.json:
        print_json([dataclasses.asdict(e) for e in entries])
        return 0
    rows = [
        (
            _format.file_mode(e.type, e.mode),
            e.size,
            _format.mtime(e.mtime),
            _relative(e.path, args.path, e.name) + ("/" if e.is_dir else ""),
        )
        for e in entries
    ]
    print(_format.table(("MODE", "SIZE", "MODIFIED", "NAME"), rows))
    return 0


def _relative(path, top, name):
    """
    ``path`` relative to the listed directory ``top`` (its name at depth 1).
    """
    prefix = top.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else name


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


async def cmd_health(client, args):
    health = await client.health()
    if args.json:
        print_json(health)
        return 0
    print(f"status:    {health.get('status', '?')}")
    print(f"version:   {health.get('version', '?')}")
    print(f"uptime:    {_format.duration(health.get('uptime_seconds'))}")
    print(f"sandboxes: {health.get('sandboxes', '?')}")
    pool = health.get("pool") or {}
    if pool:
        keys = ("target", "ready", "starting", "hits", "misses")
        rows = [(name, *(p.get(k, "-") for k in keys)) for name, p in sorted(pool.items())]
        print(_format.table(("POOL", *(k.upper() for k in keys)), rows))
    return 0


async def cmd_version(client, args):
    print(f"client: {sandbox.__version__}")
    sys.stdout.flush()
    health = await client.health()
    print(f"server: {health.get('version', '?')}")
    return 0


async def cmd_profiles(client, args):
    profiles = await client.profiles()
    if args.json:
        print_json(profiles)
        return 0
    rows = [
        (
            p.get("name", "?"),
            p.get("image", "-"),
            _format.size(p.get("memory")),
            p.get("cpu", "-"),
            _format.size(p.get("storage")),
            p.get("runtime", "-"),
        )
        for p in profiles
    ]
    print(_format.table(("NAME", "IMAGE", "MEMORY", "CPU", "STORAGE", "RUNTIME"), rows))
    return 0


def _pool_rows(pools):
    keys = ("target", "ready", "starting", "hits", "misses")
    rows = []
    for name, p in sorted(pools.items()):
        rate = p.get("hit_rate")
        rows.append(
            (
                name,
                *(p.get(k, "-") for k in keys),
                "-" if rate is None else f"{rate:.0%}",
                "pinned" if p.get("pinned") else "auto",
            )
        )
    return _format.table(
        ("PROFILE", *(k.upper() for k in keys), "HIT RATE", "SIZING"), rows
    )


def _print_event(event, as_json):
    if as_json:
        print(json.dumps({"id": event["id"], "type": event["type"],
                          "sandbox_id": event.get("sandbox_id"),
                          "identity": event.get("identity", ""),
                          "timestamp": event.get("timestamp"),
                          "data": event.get("data", {})}, sort_keys=True), flush=True)
        return
    data = json.dumps(event.get("data") or {}, sort_keys=True)
    print(f"{event.get('timestamp') or '-':<24} {event['id'] if event['id'] is not None else '-':>6}"
          f"  {event['type']:<20} {event.get('sandbox_id') or '-':<14} {data}", flush=True)


def _wanted(event, args):
    types = args.types
    return (not args.sandbox or event.get("sandbox_id") == args.sandbox) and (
        not types or any(event["type"] == t or (t.endswith((".", "*"))
                                                and event["type"].startswith(t.rstrip("*")))
                         for t in types))


async def cmd_events(client, args):
    if not args.follow:
        events = await client.event_history(args.after or 0, args.limit, args.sandbox)
        for event in events:
            if _wanted(event, args):
                _print_event(event, args.json)
        return 0
    async for event in client.events(args.after, args.sandbox, args.types):
        _print_event({name: getattr(event, name) for name in event.__slots__}, args.json)
    return 0


async def cmd_pool_status(client, args):
    pools = await client.request("GET", "/pools")
    if args.json:
        print_json(pools)
    else:
        print(_pool_rows(pools))
    return 0


async def cmd_pool_resize(client, args):
    if args.count == "auto":
        count = None
    elif args.count.isdigit():
        count = int(args.count)
    else:
        error(f"pool resize: N must be a whole number or 'auto', not {args.count!r}")
        return 2
    status = await client.request("PUT", f"/pools/{args.profile}", {"count": count})
    print(_pool_rows({args.profile: status}))
    return 0


async def cmd_pool_flush(client, args):
    status = await client.request("POST", f"/pools/{args.profile}/flush")
    print(f"flushed {status.get('flushed', 0)} warm sandboxes of {args.profile}")
    return 0


async def cmd_ui(client, args):
    endpoint = client.endpoint
    if not endpoint.is_unix:
        raise Failure(f"the daemon is on TCP: open {endpoint.url.rstrip('/')}/ui/ in a browser "
                      "(with [ui] enabled in its configuration)")
    await client.health()  # the daemon answers on the socket
    forwarder = Forwarder(endpoint.path, read_only=args.read_only)
    url = await forwarder.start(args.port)
    mode = " (read-only)" if args.read_only else ""
    print(f"The dashboard of {endpoint.url}{mode} is at\n  {url}\n"
          "The URL holds this session's key: share it as you would the socket. Ctrl-C stops.",
          flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await forwarder.close()
