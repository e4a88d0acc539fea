"""
Running things: sandbox_exec (a shell command), sandbox_eval (code written
to a file and run by its language's interpreter) and sandbox_run_code (the
persistent Python interpreter of ``sbx.code``, with rich outputs).
"""

import base64
import posixpath
import secrets
from typing import Annotated, Optional

from mcp_types import ContentBlock, EmbeddedResource, ImageContent, TextContent, TextResourceContents
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from sandbox_mcp.limits import note_cut, truncate
from sandbox_mcp.state import tool_errors

#: sandbox_eval's languages: file suffix and the command that runs the file.
LANGUAGES = {
    "python": (".py", ["python3"]),
    "javascript": (".js", ["node"]),
    "typescript": (".ts", ["node", "--experimental-strip-types"]),
    "bash": (".sh", ["bash"]),
    "sh": (".sh", ["sh"]),
    "ruby": (".rb", ["ruby"]),
    "perl": (".pl", ["perl"]),
}
ALIASES = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "node": "javascript",
    "ts": "typescript",
    "shell": "sh",
}

#: The environment sandbox_exec and sandbox_eval add (``env`` overrides it).
#: Python writes no bytecode caches: a .pyc records its source's mtime in
#: whole seconds and its size, so an agent's same-size edit (``+`` to ``-``)
#: within the second of the previous run would run the stale cache.
EXEC_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}

SandboxId = Annotated[str, Field(description="The sandbox (from sandbox_create)")]
Timeout = Annotated[float, Field(description="Seconds before the command is killed", gt=0)]


def exec_text(result, limit):
    """
    An ExecResult as the text a model reads: the exit code, then stdout and
    stderr under headers, each cut to ``limit`` characters.
    """
    lines = [f"exit_code: {result.exit_code}"]
    if result.timed_out:
        lines.append("timed out: the command was killed")
    if result.truncated:
        lines.append("output beyond the agent's limit was dropped")
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        if text:
            lines.append(f"--- {name} ---\n{truncate(text, limit)}")
    return "\n".join(lines)


def register(server, state):
    limit = state.settings.max_output

    @server.tool()
    @tool_errors
    async def sandbox_exec(
        sandbox_id: SandboxId,
        command: Annotated[str, Field(description="A shell command (run by /bin/sh -c)")],
        timeout: Timeout = 60,
        working_dir: Annotated[
            Optional[str], Field(description="Directory to run in (default /root)")
        ] = None,
        env: Annotated[Optional[dict[str, str]], Field(description="Extra environment variables")] = None,
    ) -> str:
        """Run a shell command in the sandbox; returns the exit code, stdout and stderr.
        A non-zero exit is a normal result, not a tool error."""
        sbx = await state.sandbox(sandbox_id)
        result = await sbx.process.exec_(
            command, cwd=working_dir, env=dict(EXEC_ENV, **(env or {})), timeout=timeout
        )
        return exec_text(result, limit)

    @server.tool()
    @tool_errors
    async def sandbox_eval(
        sandbox_id: SandboxId,
        code: Annotated[str, Field(description="The program's source")],
        language: Annotated[
            str, Field(description="python, javascript, typescript, bash, sh, ruby or perl")
        ] = "python",
        timeout: Timeout = 60,
    ) -> str:
        """Write code to a file in the sandbox and run it with its language's interpreter
        (a fresh process each time;
        for state kept between calls use sandbox_run_code)."""
        name = ALIASES.get(language.lower(), language.lower())
        if name not in LANGUAGES:
            raise ToolError(f"UNKNOWN_LANGUAGE: {language!r}; use one of {', '.join(LANGUAGES)}")
        suffix, command = LANGUAGES[name]
        sbx = await state.sandbox(sandbox_id)
        path = posixpath.join("/tmp", f"sandbox-eval-{secrets.token_hex(4)}{suffix}")
        await sbx.fs.write(path, code)
        try:
            result = await sbx.process.exec_([*command, path], env=EXEC_ENV, timeout=timeout)
        finally:
            await sbx.fs.remove(path)
        return exec_text(result, limit)

    @server.tool()
    @tool_errors
    async def sandbox_run_code(
        sandbox_id: SandboxId,
        code: Annotated[str, Field(description="Python code; the value of a last expression is shown")],
        context: Annotated[
            str, Field(description="Interpreter to run in: each name is its own persistent interpreter")
        ] = "default",
        timeout: Annotated[
            float,
            Field(
                description="Seconds before the code is interrupted (the interpreter keeps its state)", gt=0
            ),
        ] = 60,
    ) -> list[ContentBlock]:
        """Run Python in a persistent interpreter in the sandbox, like a notebook cell: variables and imports
        survive between calls. Returns stdout, stderr, the last expression's value, the traceback of an error,
        matplotlib figures as PNG images and a pandas DataFrame as text and HTML."""
        sbx = await state.sandbox(sandbox_id)
        result = await sbx.code.run(code, context=context, timeout=timeout, max_output=limit)
        return code_content(sandbox_id, result, limit)


def code_content(sandbox_id, result, limit):
    """
    A CodeResult as MCP content: one text block (output, error, value),
    then an image block per figure and an HTML resource for a table.
    """
    parts = []
    hint = "print less, or write it to a file"
    if result.stdout or result.stdout_cut:
        parts.append("[stdout]\n" + note_cut(result.stdout, result.stdout_cut, hint))
    if result.stderr or result.stderr_cut:
        parts.append("[stderr]\n" + note_cut(result.stderr, result.stderr_cut, hint))
    if result.timed_out:
        parts.append("[interrupted: the timeout passed; the interpreter keeps its state]")
    if result.error is not None:
        error = result.error
        parts.append(f"[error] {error['name']}: {error['value']}\n{truncate(error['traceback'], limit)}")
    if result.text is not None:
        parts.append("[result]\n" + truncate(result.text, limit))
    if not parts:
        parts.append("[no output]")
    content = [TextContent(type="text", text="\n".join(parts))]
    for mime, data in result.images:
        content.append(ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime))
    if result.html is not None:
        resource = TextResourceContents(
            uri=f"sandbox://{sandbox_id}/code/{result.context}/result.html",
            mime_type="text/html",
            text=truncate(result.html, limit),
        )
        content.append(EmbeddedResource(type="resource", resource=resource))
    return content
