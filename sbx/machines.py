"""
``sbx pause|resume`` and ``sbx volume create|ls|rm`` (docs/cli.md,
docs/lifecycle.md).
"""

from sbx import _format
from sbx._common import about, print_json


async def _change(client, change, sandbox_id):
    with about(sandbox_id):
        info = await change(sandbox_id)
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
        print_json(volumes)
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
