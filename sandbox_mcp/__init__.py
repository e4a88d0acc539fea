"""
The MCP server of sandboxd (``sandbox-mcp``): the sandbox tools an AI agent
needs (create, exec, files, ports, templates, a code interpreter), served
over stdio or streamable HTTP with the official ``mcp`` package, talking to
the daemon through the Python SDK.  See docs/mcp.md.

    pip install 'sandboxd[mcp]'
    sandbox-mcp                      # stdio, for a desktop or CLI agent
    sandbox-mcp --transport http --port 7523
"""

try:
    import mcp  # noqa: F401
except ImportError as e:  # the daemon's own install leaves the extra out
    raise ImportError("sandbox-mcp needs the mcp package: pip install 'sandboxd[mcp]'") from e

from sandbox_mcp.server import TOOL_NAMES, build_server
from sandbox_mcp.state import Settings, State

__all__ = ["build_server", "State", "Settings", "TOOL_NAMES"]
