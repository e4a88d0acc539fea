"""
The MCPServer with every sandbox tool registered on a State.
"""

from mcp.server.mcpserver import MCPServer

from sandbox import __version__
from sandbox_mcp import tools_exec, tools_files, tools_ports, tools_sandboxes

#: Every tool, in the order of docs/mcp.md.
TOOL_NAMES = (
    "sandbox_create",
    "sandbox_destroy",
    "sandbox_list",
    "sandbox_exec",
    "sandbox_eval",
    "sandbox_run_code",
    "sandbox_read_file",
    "sandbox_write_file",
    "sandbox_edit_file",
    "sandbox_list_files",
    "sandbox_upload",
    "sandbox_download",
    "sandbox_port_url",
    "sandbox_expose_port",
    "sandbox_close_port",
    "sandbox_list_ports",
    "sandbox_list_templates",
    "sandbox_create_template",
    "sandbox_list_profiles",
)

INSTRUCTIONS = """\
Sandboxes are isolated Linux machines. Start with sandbox_create (it returns an id), then run
commands (sandbox_exec), keep Python state between calls (sandbox_run_code), read and edit files
(sandbox_read_file, sandbox_edit_file), and destroy the sandbox when done (sandbox_destroy)."""


def build_server(state, log_level="WARNING"):
    """
    An MCPServer named "sandbox" whose tools act through ``state``.
    """
    server = MCPServer("sandbox", instructions=INSTRUCTIONS, version=__version__, log_level=log_level)
    for module in (tools_sandboxes, tools_exec, tools_files, tools_ports):
        module.register(server, state)
    return server
