"""
What the commands of ``sbx`` share: the error line, naming the sandbox in
"not found", JSON output and opening a sandbox's session.
"""

import contextlib
import json
import sys

from sandbox import NotFoundError, connect_sandbox
from sbx._failure import Failure


def error(message):
    sys.stderr.write(f"sbx: error: {' '.join(str(message).split())}\n")
    sys.stderr.flush()


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


def connect(client, args):
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


@contextlib.asynccontextmanager
async def session(client, args):
    """
    The open session of sandbox ``args.id`` (see L{connect}), closed on
    exit; a missing sandbox is named as such.
    """
    with about(args.id):
        sbx = await connect(client, args)
    async with sbx:
        yield sbx
