"""
Lifecycle tools: sandbox_create, sandbox_destroy, sandbox_list,
sandbox_list_profiles, and the template tools (sandbox_list_templates,
sandbox_create_template), which find out at each call whether the daemon
serves templates.
"""

import json
from typing import Annotated, Optional

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from sandbox import SandboxError
from sandbox_mcp.state import tool_errors

#: The error codes of a daemon that has no templates: no /templates route
#: (404 NOT_FOUND), or the route without a template store (501).
_NO_TEMPLATES = ("NOT_FOUND", "HTTP_404", "NOT_AVAILABLE", "HTTP_501")


def _json(obj):
    return json.dumps(obj, indent=1, sort_keys=True)


def register(server, state):
    @server.tool()
    @tool_errors
    async def sandbox_create(
        profile: Annotated[
            Optional[str],
            Field(description="Pool profile (sandbox_list_profiles); the daemon's default if omitted"),
        ] = None,
        template: Annotated[
            Optional[str], Field(description="Template id to start from (sandbox_list_templates)")
        ] = None,
        memory: Annotated[Optional[str], Field(description='Memory limit, e.g. "512m", "1g"')] = None,
        cpu: Annotated[Optional[float], Field(description="Number of CPUs, e.g. 1.5")] = None,
        ttl: Annotated[
            Optional[int],
            Field(
                description="Seconds the sandbox is kept after this server's session ends "
                "(0: destroyed with it)"
            ),
        ] = None,
        labels: Annotated[
            Optional[dict[str, str]], Field(description="Labels to tag the sandbox with")
        ] = None,
    ) -> str:
        """Create a sandbox (an isolated Linux machine) and return its id and details as JSON.
        Use the id with every other sandbox_* tool."""
        sbx = await state.create(
            profile=profile, template=template, memory=memory, cpu=cpu, ttl=ttl, labels=labels
        )
        return _json(sbx.info)

    @server.tool()
    @tool_errors
    async def sandbox_destroy(
        sandbox_id: Annotated[str, Field(description="The sandbox to destroy")],
    ) -> str:
        """Destroy a sandbox and everything in it."""
        await state.destroy(sandbox_id)
        return f"destroyed {sandbox_id}"

    @server.tool()
    @tool_errors
    async def sandbox_list(
        labels: Annotated[
            Optional[dict[str, str]], Field(description="Only sandboxes having all these labels")
        ] = None,
    ) -> str:
        """List the active sandboxes (id, profile, state, created, ttl, labels) as JSON."""
        return _json(await state.client.list(labels))

    @server.tool()
    @tool_errors
    async def sandbox_list_profiles() -> str:
        """List the daemon's profiles (name, image, memory, cpu, runtime) as JSON:
        what sandbox_create's profile takes."""
        return _json(await state.client.profiles())

    @server.tool()
    @tool_errors
    async def sandbox_list_templates() -> str:
        """List the saved templates (snapshots of sandboxes) as JSON."""
        return _json(await _templates(state, "GET", "/templates"))

    @server.tool()
    @tool_errors
    async def sandbox_create_template(
        sandbox_id: Annotated[str, Field(description="The sandbox to snapshot")],
        label: Annotated[Optional[str], Field(description="A name to find the template by")] = None,
    ) -> str:
        """Snapshot a sandbox's filesystem into a template; sandbox_create(template=id) starts from it.
        Returns the template as JSON."""
        body = {"sandbox_id": sandbox_id}
        if label is not None:
            body["label"] = label
        return _json(await _templates(state, "POST", "/templates", body))


async def _templates(state, method, path, body=None):
    try:
        return await state.client.request(method, path, body, timeout=None)
    except SandboxError as e:
        if e.code in _NO_TEMPLATES:
            raise ToolError(
                "TEMPLATES_NOT_AVAILABLE: this sandboxd serves no templates "
                f"({method} {path} answered {e.code}: {e.message})"
            ) from e
        raise
