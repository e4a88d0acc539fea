"""
Templates (docs/templates.md): ``client.templates.list/get/delete/save/build``
and ``sbx.template.save(label)``.

``build`` sends a directory (or an existing tar file) as the build context,
streamed from a temporary tar file, and reads the daemon's JSON-lines
progress as it comes.
"""

import asyncio
import json
import os
import tarfile
import tempfile
from urllib.parse import quote, urlencode

from sandbox._http import _parse_head
from sandbox.errors import DaemonUnavailableError, ProtocolError, error_from_http

#: Bytes of the context written at a time.
CHUNK = 256 * 1024
#: Longest progress line kept.
MAX_LINE = 1 << 20


def _segment(value):
    return quote(str(value), safe="")


class Templates:
    """
    The template routes of one Client.
    """

    def __init__(self, client):
        self._client = client

    async def list(self):
        """
        ``GET /templates``: the templates, oldest first.
        """
        return await self._client.request("GET", "/templates")

    async def get(self, template_id):
        """
        ``GET /templates/{id}``; NotFoundError (``TEMPLATE_NOT_FOUND``) if none.
        """
        return await self._client.request("GET", f"/templates/{_segment(template_id)}")

    async def delete(self, template_id):
        """
        ``DELETE /templates/{id}``: sandboxes made from it keep running.
        """
        await self._client.request("DELETE", f"/templates/{_segment(template_id)}")

    async def save(self, sandbox_id, label, timeout=None):
        """
        ``POST /templates``: save the sandbox's /root as a template labelled
        ``label``; return the template.  ``timeout``: seconds (None: no
        bound, a large /root takes a while).
        """
        return await self._client.request(
            "POST", "/templates", {"sandbox_id": sandbox_id, "label": label}, timeout=timeout)

    async def build(self, context, label, dockerfile="Dockerfile", on_progress=None):
        """
        ``POST /templates/build``: build a template from ``context`` (a
        directory, or a tar file) with ``dockerfile`` (its path inside the
        context); ``on_progress(text)`` hears each progress line.  Return
        the template; a failed build raises the daemon's error
        (``BUILD_FAILED`` names why).
        """
        with tempfile.TemporaryFile() as archive:
            if os.path.isdir(context):
                with tarfile.open(fileobj=archive, mode="w") as tar:
                    tar.add(context, arcname=".")
            else:
                with open(context, "rb") as source:
                    while chunk := source.read(CHUNK):
                        archive.write(chunk)
            length = archive.tell()
            archive.seek(0)
            query = urlencode({"label": label, "dockerfile": dockerfile})
            return await self._send(f"/templates/build?{query}", archive, length,
                                    on_progress or (lambda text: None))

    async def _send(self, path, archive, length, on_progress):
        http = self._client.http
        connection = await http.connect()
        try:
            head = (f"POST {http.endpoint.prefix}{path} HTTP/1.1\r\n{http._headers}"
                    f"Content-Type: application/x-tar\r\nContent-Length: {length}\r\n"
                    "Connection: close\r\n\r\n")
            writer, reader = connection.writer, connection.reader
            writer.write(head.encode("latin-1"))
            loop = asyncio.get_running_loop()
            while chunk := await loop.run_in_executor(None, archive.read, CHUNK):
                writer.write(chunk)
                await writer.drain()
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                raise DaemonUnavailableError(http.endpoint, f"connection lost: {e}") from None
            status, reason, _, headers = _parse_head(raw)
            if status != 200:
                body = await reader.read()
                if "chunked" in headers.get("transfer-encoding", ""):
                    body = _unchunk(body)
                if status >= 400:
                    raise error_from_http(status, reason, headers, body)
                return json.loads(body)["template"]
            return await _follow(reader, headers, on_progress)
        finally:
            connection.close()


async def _follow(reader, headers, on_progress):
    """
    Read the JSON lines of a build as they come; return the template.
    """
    chunked = "chunked" in headers.get("transfer-encoding", "")
    buffer = b""
    while True:
        if chunked:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
            data = (await reader.readexactly(size + 2))[:-2] if size else b""
        else:
            data = await reader.read(CHUNK)
        if not data:
            break
        buffer += data
        if len(buffer) > MAX_LINE and b"\n" not in buffer:
            raise ProtocolError("BAD_RESPONSE", "a build progress line is too long")
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            message = json.loads(line)
            if "progress" in message:
                on_progress(message["progress"])
            elif "template" in message:
                return message["template"]
            elif "error" in message:
                error = message["error"]
                raise error_from_http(422, "Build failed", {},
                                      json.dumps({"error": error}).encode())
    raise ProtocolError("BAD_RESPONSE", "the build's answer ended without a result")


def _unchunk(body):
    out, rest = [], body
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if not size:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)


class SandboxTemplate:
    """
    ``sbx.template``: save this sandbox as a template.
    """

    def __init__(self, templates, sandbox_id):
        self._templates = templates
        self._sandbox_id = sandbox_id

    async def save(self, label, timeout=None):
        """
        Save this sandbox's /root as a template labelled ``label`` (the
        sandbox keeps running); return the template.
        """
        return await self._templates.save(self._sandbox_id, label, timeout=timeout)
