"""
The daemon-wide commands of ``sbx``: health, version, profiles, events,
pools and the dashboard.
"""

import asyncio
import json
import sys

import sandbox
from sbx import _format
from sbx._common import error, print_json
from sbx._failure import Failure
from sbx._ui import Forwarder


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
