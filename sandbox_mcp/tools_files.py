"""
File tools: sandbox_read_file, sandbox_write_file, sandbox_edit_file,
sandbox_list_files, and the transfers between this host and the sandbox,
sandbox_upload and sandbox_download.
"""

import io
import os
import posixpath
import tarfile
from typing import Annotated, Literal, Optional

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from sandbox_mcp.limits import is_binary, truncate
from sandbox_mcp.state import tool_errors

SandboxId = Annotated[str, Field(description="The sandbox (from sandbox_create)")]
Path = Annotated[str, Field(description="A path in the sandbox (relative paths are under /root)")]


def register(server, state):
    limit = state.settings.max_output

    @server.tool()
    @tool_errors
    async def sandbox_read_file(
        sandbox_id: SandboxId,
        path: Path,
        start_line: Annotated[
            Optional[int], Field(description="First line to return (1-based)", ge=1)
        ] = None,
        end_line: Annotated[Optional[int], Field(description="Last line to return (inclusive)", ge=1)] = None,
    ) -> str:
        """Read a text file, whole or a range of lines. Binary files are refused: use sandbox_download."""
        sbx = await state.sandbox(sandbox_id)
        info = await sbx.fs.stat(path)
        if info.is_dir:
            raise ToolError(f"IS_A_DIRECTORY: {path} is a directory; use sandbox_list_files")
        ranged = start_line is not None or end_line is not None
        # Without a range only what can be shown is read (4 bytes a character at most).
        cap = None if ranged else 4 * limit + 4
        data = await sbx.fs.read(path, length=cap)
        if is_binary(data, complete=cap is None or len(data) < cap):
            raise ToolError(
                f"BINARY_FILE: {path} is not UTF-8 text ({info.size} bytes); "
                "use sandbox_download to copy it to the host"
            )
        text = data.decode("utf-8", "ignore")
        if ranged:
            lines = text.splitlines(keepends=True)
            first = (start_line or 1) - 1
            last = end_line or len(lines)
            if first >= len(lines) and lines:
                raise ToolError(f"LINE_OUT_OF_RANGE: {path} has {len(lines)} lines")
            text = "".join(lines[first:last])
        hint = "read a range with start_line/end_line"
        if not ranged and info.size > len(data):
            text = text[:limit]
            shown = f"only the first {len(text)} characters shown"
            return f"{text}\n[... file is {info.size} bytes, {shown}; {hint}]"
        return truncate(text, limit, hint)

    @server.tool()
    @tool_errors
    async def sandbox_write_file(
        sandbox_id: SandboxId,
        path: Path,
        content: Annotated[str, Field(description="The text to write")],
        mode: Annotated[
            Literal["create", "overwrite", "append"],
            Field(description="create: fail if the file exists; overwrite: replace; append: add at the end"),
        ] = "overwrite",
    ) -> str:
        """Create, overwrite or append to a text file (parent directories are made)."""
        sbx = await state.sandbox(sandbox_id)
        if mode == "create" and await sbx.fs.exists(path):
            raise ToolError(f"FILE_EXISTS: {path} exists (mode create); use overwrite or sandbox_edit_file")
        parent = posixpath.dirname(path)
        if parent:
            await sbx.fs.mkdir(parent, parents=True)
        size = await sbx.fs.write(path, content, append=mode == "append")
        return f"wrote {len(content.encode())} bytes to {path} ({mode}; file is now {size} bytes)"

    @server.tool()
    @tool_errors
    async def sandbox_edit_file(
        sandbox_id: SandboxId,
        path: Path,
        operation: Annotated[
            Literal["str_replace", "insert"],
            Field(
                description="str_replace: replace old_str (which must occur exactly once) by new_str; "
                "insert: put new_str after line insert_line"
            ),
        ] = "str_replace",
        old_str: Annotated[
            Optional[str], Field(description="str_replace: the exact text to replace, unique in the file")
        ] = None,
        new_str: Annotated[str, Field(description="The replacement, or the text to insert")] = "",
        insert_line: Annotated[
            Optional[int],
            Field(description="insert: the line after which new_str goes (0: at the top)", ge=0),
        ] = None,
    ) -> str:
        """Edit a text file precisely: replace one unique occurrence of a string,
        or insert text after a line."""
        sbx = await state.sandbox(sandbox_id)
        data = await sbx.fs.read(path)
        if is_binary(data):
            raise ToolError(f"BINARY_FILE: {path} is not UTF-8 text")
        text = data.decode("utf-8")
        if operation == "str_replace":
            if not old_str:
                raise ToolError("MISSING_ARGUMENT: str_replace needs old_str")
            count = text.count(old_str)
            if count == 0:
                raise ToolError(
                    f"NO_MATCH: old_str does not occur in {path}; read the file and copy the text exactly"
                )
            if count > 1:
                raise ToolError(
                    f"NOT_UNIQUE: old_str occurs {count} times in {path}; include more surrounding lines"
                )
            line = text[: text.index(old_str)].count("\n") + 1
            text = text.replace(old_str, new_str, 1)
            done = f"replaced 1 occurrence at line {line}"
        else:
            if insert_line is None:
                raise ToolError("MISSING_ARGUMENT: insert needs insert_line")
            lines = text.splitlines(keepends=True)
            if insert_line > len(lines):
                raise ToolError(f"LINE_OUT_OF_RANGE: {path} has {len(lines)} lines")
            if lines and not lines[-1].endswith("\n") and insert_line == len(lines):
                lines[-1] += "\n"
            insert = new_str if new_str.endswith("\n") else new_str + "\n"
            lines.insert(insert_line, insert)
            text = "".join(lines)
            done = f"inserted {insert.count(chr(10))} line(s) after line {insert_line}"
        await sbx.fs.write(path, text)
        return f"{path}: {done}"

    @server.tool()
    @tool_errors
    async def sandbox_list_files(
        sandbox_id: SandboxId,
        path: Path = ".",
        depth: Annotated[
            int, Field(description="Levels to descend (1: the directory's own entries)", ge=1, le=10)
        ] = 1,
    ) -> str:
        """List a directory, recursively down to depth: one entry a line (type, size, path);
        directories end with /."""
        sbx = await state.sandbox(sandbox_id)
        entries = await sbx.fs.list(path, depth=depth)
        lines = [f"{e.type:7} {e.size:>10} {e.path}{'/' if e.is_dir else ''}" for e in entries]
        return truncate("\n".join(lines) or "(empty)", limit, "list a subdirectory or a smaller depth")

    @server.tool()
    @tool_errors
    async def sandbox_upload(
        sandbox_id: SandboxId,
        destination: Annotated[
            str,
            Field(
                description="Path in the sandbox: the file to write, "
                "or a directory (ending in /) to put it in"
            ),
        ],
        source_path: Annotated[
            Optional[str],
            Field(description="A file or directory on the MCP server's host, under its upload directory"),
        ] = None,
        url: Annotated[
            Optional[str], Field(description="An http(s) URL, fetched from inside the sandbox")
        ] = None,
    ) -> str:
        """Put a host file or directory (under the MCP server's upload directory), or a URL's content
        (fetched from inside the sandbox), into the sandbox. Size-capped."""
        if (source_path is None) == (url is None):
            raise ToolError("MISSING_ARGUMENT: give exactly one of source_path and url")
        sbx = await state.sandbox(sandbox_id)
        cap = state.settings.max_upload
        if url is not None:
            response = await sbx.net.fetch(url, max_body=cap)
            if not response.ok:
                raise ToolError(f"FETCH_FAILED: {url} answered {response.status} {response.reason}")
            if response.truncated:
                raise ToolError(f"TOO_LARGE: {url} is larger than the upload cap of {cap} bytes")
            name = posixpath.basename(url.split("?")[0].rstrip("/")) or "download"
            target = _target(destination, name)
            await _write(sbx, target, response.body)
            return f"uploaded {len(response.body)} bytes from {url} to {target}"
        source = _inside(state.upload_dir, source_path, "upload", absolute_ok=True)
        if os.path.isdir(source):
            archive = _tar(source, cap)
            counts = await sbx.fs.upload(destination, archive)
            files, size = counts["files"], counts["bytes"]
            return f"uploaded directory {source} into {destination}: {files} files, {size} bytes"
        size = os.path.getsize(source)
        if size > cap:
            raise ToolError(f"TOO_LARGE: {source} is {size} bytes; the upload cap is {cap}")
        target = _target(destination, os.path.basename(source))
        with open(source, "rb") as f:
            await _write(sbx, target, f)
        return f"uploaded {size} bytes from {source} to {target}"

    @server.tool()
    @tool_errors
    async def sandbox_download(
        sandbox_id: SandboxId,
        path: Path,
        destination: Annotated[
            Optional[str],
            Field(
                description="Relative path under the MCP server's download directory "
                "(default: the file's name; a directory is saved as NAME.tar)"
            ),
        ] = None,
    ) -> str:
        """Copy a file (or a directory, as a tar archive) from the sandbox
        to the MCP server's download directory.
        Paths leading out of that directory are refused."""
        sbx = await state.sandbox(sandbox_id)
        info = await sbx.fs.stat(path)
        name = posixpath.basename(path.rstrip("/")) or "root"
        default = f"{name}.tar" if info.is_dir else name
        target = _inside(state.download_dir, destination or default)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        chunks = sbx.fs.download(path) if info.is_dir else sbx.fs.read_stream(path)
        size = 0
        with open(target, "wb") as f:
            async for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
        kind = "tar archive of the directory" if info.is_dir else "file"
        return f"saved {size} bytes ({kind}) to {target}"


def _target(destination, name):
    return posixpath.join(destination, name) if destination.endswith("/") else destination


async def _write(sbx, path, data):
    parent = posixpath.dirname(path)
    if parent:
        await sbx.fs.mkdir(parent, parents=True)
    await sbx.fs.write(path, data)


def _inside(root, path, what="download", absolute_ok=False):
    """
    ``path`` resolved under ``root`` (symlinks followed); ToolError when it
    is absolute (unless ``absolute_ok``) or leads out of ``root``.
    """
    if os.path.isabs(path) and not absolute_ok:
        raise ToolError(f"PATH_ESCAPE: {path!r} is absolute; give a path relative to {root}")
    target = os.path.realpath(os.path.join(root, path))
    if os.path.commonpath([root, target]) != root or (target == root and not absolute_ok):
        raise ToolError(f"PATH_ESCAPE: {path!r} is outside the {what} directory {root}")
    return target


def _tar(directory, cap):
    """
    A tar (bytes) of ``directory``'s content, refused past ``cap`` bytes.
    """
    total = 0
    for base, _, files in os.walk(directory):
        for name in files:
            full = os.path.join(base, name)
            if os.path.isfile(full) and not os.path.islink(full):
                total += os.path.getsize(full)
    if total > cap:
        raise ToolError(f"TOO_LARGE: {directory} holds {total} bytes; the upload cap is {cap}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for entry in sorted(os.listdir(directory)):
            tar.add(os.path.join(directory, entry), arcname=entry)
    return buffer.getvalue()
