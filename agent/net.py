"""
net.fetch: an HTTP(S) request made from inside the sandbox.

urllib runs in a thread of its own; the response body goes to the client
as DATA through the same credit-keeping bridge as fs.download, so a large
body never sits in the agent.  The HTTP machinery (urllib, ssl) is in
``_fetch`` and imported on the first fetch, to keep the idle agent small.
"""

import asyncio

from . import params as p

DEFAULT_MAX_BODY = 16 << 20
FETCH_SPEC = {
    "url": (p.string, p.REQUIRED),
    "method": (p.string, "GET"),
    "headers": (p.string_map, None),
    "body": (p.string, None),
    "body_base64": (p.string, None),
    "timeout": (p.seconds, 30.0),
    "max_redirects": (p.count, 5),
    "max_body": (p.count, DEFAULT_MAX_BODY),
    "verify": (p.boolean, True),
}


async def fetch(agent, stream, args):
    from . import _fetch
    from .transfer import _BodyWriter

    request = _fetch.make_request(args)
    loop = asyncio.get_running_loop()
    writer = _BodyWriter(loop, stream)
    # A sandbox with secrets sends its requests through the daemon's egress
    # proxy (sandboxd/egress/proxy.py), which puts the secrets in.
    proxy = agent.env.get("SANDBOX_EGRESS_PROXY")
    work = loop.run_in_executor(
        None, _fetch.fetch, request, args, writer, stream, loop, proxy)
    try:
        return await asyncio.shield(work)
    finally:
        if not work.done():
            writer.cancel()
