"""
What the MCP server holds between tool calls: one SDK ``Client`` for the
daemon, one open session per sandbox it has touched (the code interpreter's
contexts live in them), and its settings.  Tool failures become MCP tool
errors here (``tool_errors``).
"""

import asyncio
import functools
import os

import attr
from mcp.server.mcpserver.exceptions import ToolError

from sandbox import Client, SandboxError, connect_sandbox, create_sandbox
from sandbox_mcp.limits import DEFAULT_MAX_OUTPUT


@attr.s(frozen=True, auto_attribs=True)
class Settings:
    """
    ``endpoint``/``auth``: the daemon (None: ``$SANDBOX_ENDPOINT``,
    ``$SANDBOX_AUTH``, the default socket); ``download_dir``: where
    sandbox_download may write, ``upload_dir``: what sandbox_upload may
    read (None: the working directory, for both);
    ``max_output``: characters of text per output; ``max_upload``: bytes
    an upload may carry.
    """

    endpoint: str = None
    auth: str = None
    download_dir: str = None
    upload_dir: str = None
    max_output: int = DEFAULT_MAX_OUTPUT
    max_upload: int = 100 << 20


class State:
    """
    The client and the open sandboxes.  Made before the server's event loop
    runs; the SDK objects are made on first use, inside it.
    """

    def __init__(self, settings=None):
        self.settings = settings or Settings()
        self._client = None
        self._sandboxes = {}
        self._opening = asyncio.Lock()

    @property
    def client(self):
        if self._client is None:
            self._client = Client(self.settings.endpoint, self.settings.auth)
        return self._client

    @property
    def download_dir(self):
        return os.path.realpath(self.settings.download_dir or os.getcwd())

    @property
    def upload_dir(self):
        return os.path.realpath(self.settings.upload_dir or os.getcwd())

    async def create(self, **fields):
        """
        Create a sandbox and keep its session open.
        """
        sbx = await create_sandbox(client=self.client, **fields)
        self._sandboxes[sbx.id] = sbx
        return sbx

    async def sandbox(self, sandbox_id):
        """
        The open Sandbox of ``sandbox_id`` (a session is opened on first use,
        and again when the one kept was lost).
        """
        if not isinstance(sandbox_id, str) or not sandbox_id:
            raise ToolError("sandbox_id is required (sandbox_create gives one)")
        async with self._opening:  # concurrent calls share one new session
            sbx = self._sandboxes.get(sandbox_id)
            if sbx is None or sbx.closed:
                sbx = await connect_sandbox(sandbox_id, client=self.client)
                self._sandboxes[sandbox_id] = sbx
        return sbx

    async def destroy(self, sandbox_id):
        """
        Destroy the sandbox: over its kept session when there is one open
        (no HTTP request), else with ``DELETE``.
        """
        sbx = self._sandboxes.pop(sandbox_id, None)
        if sbx is None or sbx.closed:
            await self.client.destroy(sandbox_id)
        else:
            await sbx.destroy()

    async def close(self):
        """
        Close every session (sandboxes made with ttl 0 then end) and the client.
        """
        for sbx in list(self._sandboxes.values()):
            try:
                await sbx.close()
            except Exception:
                pass
        self._sandboxes.clear()
        if self._client is not None:
            await self._client.close()


def tool_errors(fn):
    """
    Decorate a tool: SDK errors (with their code) and bad arguments become
    ToolErrors, which the client receives as a tool result with isError,
    the message for the model to read.
    """

    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        try:
            return await fn(*args, **kwargs)
        except ToolError:
            raise
        except SandboxError as e:
            raise ToolError(f"{e.code}: {e.message}") from e
        except (ValueError, TypeError, OSError) as e:
            raise ToolError(f"{type(e).__name__}: {e}") from e

    return wrapper
