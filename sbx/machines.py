"""
``sbx pause|resume`` and ``sbx volume create|ls|rm`` (docs/cli.md,
docs/lifecycle.md).
"""

import json

from sandbox.errors import NotFoundError
from sbx import _format
from sbx._failure import Failure


def _print_json(obj):
    print(json.dumps(obj, indent=2, sort_keys=True))


async def _change(client, change, sandbox_id):
    try:
        info = await change(sandbox_id)
    except NotFoundError as e:
        if e.code == "SANDBOX_NOT_FOUND":
            raise Failure(f"sandbox {sandbox_id} not found") from None
        raise
    print(info["id"])
    return 0


async def cmd_pause(client, args):
    for sandbox_id in args.ids:
        await _change(client, client.pause, sandbox_id)
    return 0


async def cmd_resume(client, args):
    for sandbox_id in args.ids:
        await _change(client, client.resume, sandbox_id)
    return 0


async def cmd_volume_create(client, args):
    volume = await client.volumes.create(args.name, args.size)
    print(volume["name"])
    return 0


async def cmd_volume_ls(client, args):
    volumes = await client.volumes.list()
    if args.json:
        _print_json(volumes)
        return 0
    rows = [(v["name"], _format.size(v["size"]), v["created"], ",".join(v["used_by"]) or "-")
            for v in volumes]
    print(_format.table(("NAME", "SIZE", "CREATED", "USED BY"), rows))
    return 0


async def cmd_volume_rm(client, args):
    for name in args.names:
        await client.volumes.delete(name)
        print(name)
    return 0
