"""
Port tools: sandbox_port_url, sandbox_expose_port, sandbox_close_port,
sandbox_list_ports (docs/tunnels.md).
"""

import json
from typing import Annotated, Optional

from pydantic import Field

from sandbox_mcp.state import tool_errors

Port = Annotated[int, Field(description="A TCP port inside the sandbox", ge=1, le=65535)]


def register(server, state):
    @server.tool()
    @tool_errors
    async def sandbox_port_url(
        sandbox_id: Annotated[str, Field(description="The sandbox")],
        port: Port,
        expires: Annotated[
            Optional[int],
            Field(
                description="With a daemon that requires tunnel tokens: seconds the signed URL stays valid"
            ),
        ] = None,
    ) -> str:
        """The path-proxy URL of a port (through the daemon, nothing is opened):
        good for API calls and health checks."""
        if expires is None:
            return state.client.port_url(sandbox_id, port)
        return (await state.client.signed_port_url(sandbox_id, port, expires))["url"]

    @server.tool()
    @tool_errors
    async def sandbox_expose_port(
        sandbox_id: Annotated[str, Field(description="The sandbox")],
        port: Port,
        timeout: Annotated[
            Optional[float], Field(description="Seconds to wait for the port to accept connections")
        ] = None,
    ) -> str:
        """Give a port a dedicated host port (a clean origin URL, for browsers and web apps),
        once something listens on it.
        Returns {port, host_port, url} as JSON."""
        return json.dumps(await state.client.expose(sandbox_id, port, timeout), indent=1)

    @server.tool()
    @tool_errors
    async def sandbox_close_port(
        sandbox_id: Annotated[str, Field(description="The sandbox")],
        port: Port,
    ) -> str:
        """Close the dedicated host port of a port (and its connections)."""
        await state.client.close_port(sandbox_id, port)
        return f"closed port {port} of {sandbox_id}"

    @server.tool()
    @tool_errors
    async def sandbox_list_ports(
        sandbox_id: Annotated[str, Field(description="The sandbox")],
    ) -> str:
        """List a sandbox's exposed ports ({port, host_port, url, connections}) as JSON."""
        return json.dumps(await state.client.ports(sandbox_id), indent=1)
