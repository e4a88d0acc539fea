"""
``sbx tpl save|ls|rm`` and ``sbx build`` (docs/cli.md, docs/templates.md).
"""

import os
import sys

from sandbox.errors import NotFoundError
from sbx import _format
from sbx._common import print_json
from sbx._failure import Failure


async def cmd_tpl_save(client, args):
    try:
        template = await client.templates.save(args.sandbox_id, args.label)
    except NotFoundError as e:
        if e.code == "SANDBOX_NOT_FOUND":
            raise Failure(f"sandbox {args.sandbox_id} not found") from None
        raise
    print(template["id"])
    return 0


async def cmd_tpl_ls(client, args):
    templates = await client.templates.list()
    if args.json:
        print_json(templates)
        return 0
    rows = [(t["id"], t["label"], t["profile"], t["runtime"], _format.size(t["size"]),
             t["created"], t["last_used"]) for t in templates]
    print(_format.table(("ID", "LABEL", "PROFILE", "RUNTIME", "SIZE", "CREATED", "LAST USED"),
                        rows))
    return 0


async def cmd_tpl_rm(client, args):
    status = 0
    for template_id in args.template_ids:
        try:
            await client.templates.delete(template_id)
        except NotFoundError:
            sys.stderr.write(f"sbx: error: template {template_id} not found\n")
            status = 1
    return status


async def cmd_build(client, args):
    context = args.context
    if not os.path.isdir(context):
        raise Failure(f"{context}: not a directory")
    path = args.file or os.path.join(context, "Dockerfile")
    dockerfile = os.path.relpath(os.path.abspath(path), os.path.abspath(context))
    if dockerfile.startswith(".."):
        raise Failure(f"{path}: the Dockerfile must be inside the context {context}")
    if not os.path.isfile(os.path.join(context, dockerfile)):
        raise Failure(f"{path}: no such file")

    def progress(text):
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    template = await client.templates.build(
        context, args.label, dockerfile=dockerfile, on_progress=None if args.quiet else progress)
    print(template["id"])
    return 0
