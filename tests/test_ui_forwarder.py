"""
``sbx ui``'s forwarder (sbx/_ui.py) against a stand-in for the daemon's Unix
socket (asyncio, a temporary path): what reaches the socket, and what does
not (a pipelined second request, a chunked body, the key itself).
"""

import asyncio
import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from sbx._ui import Forwarder

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


async def exchange(read_only, raw):
    """
    Send ``raw`` to a forwarder in front of a stand-in socket: (what the
    forwarder answered, [every byte string the socket received per
    connection]).
    """
    directory = tempfile.mkdtemp(prefix="sandboxd-ui-fwd-")
    path = os.path.join(directory, "d.sock")
    received = []

    async def upstream(reader, writer):
        # The head and its declared body, then answer and half-close; all
        # else the forwarder sends before it closes is recorded too.
        data = await reader.readuntil(b"\r\n\r\n")
        length = [int(line.split(b":")[1]) for line in data.lower().split(b"\r\n")
                  if line.startswith(b"content-length:")]
        if length:
            data += await reader.readexactly(length[0])
        writer.write(ANSWER)
        writer.write_eof()
        data += await reader.read()
        received.append(data)
        writer.close()

    server = await asyncio.start_unix_server(upstream, path)
    forwarder = Forwarder(path, read_only=read_only, key="k" * 32)
    await forwarder.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", forwarder.port)
        writer.write(raw.replace(b"PORT", str(forwarder.port).encode()))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    finally:
        await forwarder.close()
        server.close()
        await server.wait_closed()
        os.unlink(path)
        os.rmdir(directory)
    return answer, received


KEYED = (b"GET /sandboxes HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n"
         b"Authorization: Bearer " + b"k" * 32 + b"\r\nConnection: keep-alive\r\n\r\n")


class ForwarderTests(SynchronousTestCase):
    def test_one_request_per_connection(self):
        """
        A keyed request is forwarded with ``Connection: close`` and without
        the key; an unkeyed second request pipelined behind it never reaches
        the socket.
        """
        second = b"DELETE /sandboxes/sbx-1 HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n\r\n"
        answer, received = asyncio.run(exchange(False, KEYED + second))
        self.assertTrue(answer.endswith(b"ok"), answer)
        self.assertEqual(len(received), 1)
        self.assertTrue(received[0].startswith(b"GET /sandboxes HTTP/1.1\r\n"))
        self.assertIn(b"connection: close", received[0])
        self.assertNotIn(b"DELETE", received[0])
        self.assertNotIn(b"k" * 32, received[0])

    def test_chunked_refused(self):
        """A chunked body (its end unknown to a one-request forwarder) is 411."""
        raw = KEYED.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n", 1).replace(
            b"GET", b"POST", 1) + b"2\r\n{}\r\n0\r\n\r\n"
        answer, received = asyncio.run(exchange(False, raw))
        self.assertTrue(answer.startswith(b"HTTP/1.1 411 "), answer)
        self.assertIn(b"LENGTH_REQUIRED", answer)
        self.assertEqual(received, [])

    def test_read_only_marks_requests(self):
        """
        ``--read-only`` forwards a GET with the read-only header (the page
        then shows no actions) and refuses a POST before the socket.
        """
        answer, received = asyncio.run(exchange(True, KEYED))
        self.assertIn(b"x-sandboxd-ui-read-only: 1", received[0])
        answer, received = asyncio.run(exchange(True, KEYED.replace(b"GET", b"POST", 1)))
        self.assertTrue(answer.startswith(b"HTTP/1.1 403 "), answer)
        self.assertIn(b"READ_ONLY", answer)
        self.assertEqual(received, [])

    def test_spoofed_read_only_header_dropped(self):
        """A caller's own read-only header is dropped, not passed on."""
        raw = KEYED.replace(b"\r\n\r\n", b"\r\nX-Sandboxd-UI-Read-Only: 1\r\n\r\n", 1)
        answer, received = asyncio.run(exchange(False, raw))
        self.assertNotIn(b"read-only", received[0].lower())

    def test_body_cut_at_content_length(self):
        """Bytes after the declared body are not forwarded."""
        raw = (b"PATCH /sandboxes/sbx-1 HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n"
               b"Authorization: Bearer " + b"k" * 32 + b"\r\nContent-Length: 2\r\n\r\n{}EXTRA")
        answer, received = asyncio.run(exchange(False, raw))
        self.assertTrue(b"".join(received).endswith(b"\r\n\r\n{}"), received)
