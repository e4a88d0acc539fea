"""
Integration tests of ``GET /events`` against a real daemon process, real
containers and its real SQLite file: a blocking SSE client over the Unix
socket, and the SDK's ``client.events()``
across a daemon killed with SIGKILL and started again.
"""

import asyncio
import json
import os
import socket

from twisted.trial.unittest import TestCase

from sandbox._sse import SSEReader
from tests.daemon import Daemon, UnixHTTPConnection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SSEClient:
    """
    A blocking SSE client on a raw socket (HTTP/1.1, chunked body).
    """

    def __init__(self, daemon, path="/events", last_id=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(daemon.socket)
        self.sock.settimeout(60)
        head = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n"
        if last_id is not None:
            head += f"Last-Event-ID: {last_id}\r\n"
        self.sock.sendall((head + "\r\n").encode())
        self.reader = SSEReader()
        self.raw = b""
        self.head = None
        self.closed = False
        self.pending = []

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return
        self.raw += data
        if self.head is None:
            if b"\r\n\r\n" not in self.raw:
                return
            self.head, _, self.raw = self.raw.partition(b"\r\n\r\n")
        while True:
            size_line, sep, rest = self.raw.partition(b"\r\n")
            if not sep:
                return
            size = int(size_line, 16)
            if size == 0:
                self.closed = True
                return
            if len(rest) < size + 2:
                return
            self.pending.extend(self.reader.feed(rest[:size]))
            self.raw = rest[size + 2:]

    def until(self, predicate, what, block=True):
        """
        Messages received until one satisfies ``predicate`` (included);
        with ``block`` false, until the response's head came.
        """
        got = []
        while block or self.head is None:
            while self.pending:
                message = self.pending.pop(0)
                got.append(message)
                if predicate(message):
                    return got
            if self.closed:
                raise AssertionError(f"stream ended before {what}; got {got}")
            self._fill()
        return got

    def readAll(self):
        """Every message until the daemon closes the stream."""
        got = []
        while not (self.closed and not self.pending):
            got.extend(self.pending)
            self.pending = []
            if not self.closed:
                self._fill()
        return got

    def close(self):
        self.sock.close()


def recorded(messages):
    return [(int(m.id), m.event, json.loads(m.data)["sandbox_id"])
            for m in messages if m.id is not None]


class EventStreamTests(TestCase):
    """
    Subscribe, miss some events, reconnect with Last-Event-ID: exactly the
    missed ones, in order; across a restart too; a slow reader is capped.
    """

    def setUp(self):
        self.daemon = Daemon(min_base=1)
        self.daemon.start()
        self.addCleanup(self.daemon.stop)

    def create(self):
        status, body = self.daemon.request("POST", "/sandboxes", {"ttl": 600})
        self.assertEqual(status, 201, body)
        return body["id"]

    def destroy(self, sandbox_id):
        status, _ = self.daemon.request("DELETE", f"/sandboxes/{sandbox_id}")
        self.assertEqual(status, 204)

    def history(self, after):
        status, events = self.daemon.request("GET", f"/events/history?after={after}&limit=1000")
        self.assertEqual(status, 200)
        return [(e["id"], e["type"], e["sandbox_id"]) for e in events]

    def subscribers(self):
        """The daemon's sandboxd_event_subscribers gauge, read from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        connection = UnixHTTPConnection(self.daemon.socket)
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
        connection.close()
        for family in text_string_to_metric_families(text):
            if family.name == "sandboxd_event_subscribers":
                return family.samples[0].value
        raise AssertionError("no sandboxd_event_subscribers in /metrics")

    def newestId(self):
        after = 0
        while True:
            page = self.history(after)
            if len(page) < 1000:
                return page[-1][0] if page else after
            after = page[-1][0]

    def test_reconnect_gets_missed_events(self):
        """
        A subscriber sees a create live; while it is away two more things
        happen; reconnecting with the last id it saw gives exactly the
        events recorded since, in order, then live ones.
        """
        client = SSEClient(self.daemon)
        first = self.create()
        seen = client.until(lambda m: m.event == "sandbox.created", "the first create")
        self.assertIn(b"text/event-stream", client.head)
        [(last_id, _, sandbox)] = recorded(seen)
        self.assertEqual(sandbox, first)
        client.close()

        second = self.create()
        self.destroy(first)
        missed = self.history(last_id)
        self.assertEqual([(t, s) for _, t, s in missed],
                         [("sandbox.created", second), ("sandbox.destroyed", first)])

        again = SSEClient(self.daemon, last_id=last_id)
        replayed = again.until(lambda m: m.event == "sandbox.destroyed", "the replay")
        self.assertEqual(recorded(replayed), missed)
        self.destroy(second)
        live = again.until(lambda m: m.event == "sandbox.destroyed", "the live destroy")
        self.assertEqual([(t, s) for _, t, s in recorded(live)],
                         [("sandbox.destroyed", second)])
        again.close()

    def test_sdk_across_restart(self):
        """
        The SDK's ``client.events()`` keeps iterating across a daemon
        killed with SIGKILL and started again: it reconnects with
        Last-Event-ID and yields every recorded event once, in order.
        """
        from sandbox import Client

        daemon = self.daemon

        async def scenario():
            got = []
            changed = asyncio.Condition()
            async with Client(daemon.endpoint) as client:

                async def collect():
                    async for event in client.events(after=0, types=["sandbox."]):
                        got.append(event)
                        async with changed:
                            changed.notify_all()

                async def seen(type, sandbox_id):
                    async with changed:
                        await asyncio.wait_for(changed.wait_for(lambda: any(
                            (e.type, e.sandbox_id) == (type, sandbox_id) for e in got)), 120)

                collecting = asyncio.ensure_future(collect())
                sandbox_id = (await client.create(ttl=600))["id"]
                await seen("sandbox.created", sandbox_id)
                await asyncio.to_thread(daemon.kill)
                await asyncio.to_thread(daemon.spawn)
                await asyncio.to_thread(daemon.waitReady, 90)
                await client.destroy(sandbox_id)
                await seen("sandbox.destroyed", sandbox_id)
                collecting.cancel()
            return got

        got = asyncio.run(scenario())
        expected = [e for e in self.history(0) if e[1].startswith("sandbox.")]
        self.assertEqual([(e.id, e.type, e.sandbox_id) for e in got], expected)
        self.assertEqual(expected[-1][1], "sandbox.destroyed")

    def test_slow_reader_dropped(self):
        """
        A subscriber that stops reading while thousands of events are
        recorded is cut off with a final ``dropped`` event naming the last
        id it was sent, instead of the daemon buffering without bound; the
        daemon keeps serving, and reconnecting from that id gets the rest.
        """
        slow = SSEClient(self.daemon)
        slow.until(lambda m: False, "the headers", block=False)
        self.assertEqual(self.subscribers(), 1)
        # Unix socket buffers hold a few hundred events, the daemon's
        # transport 64 KiB more, then MAX_BUFFERED (1000) queue.
        for n in range(6000):
            status, _ = self.daemon.request("PUT", "/pools/default", {"count": 1 + n % 2})
            self.assertEqual(status, 200)
            if n % 100 == 99 and self.subscribers() == 0:
                break
        self.assertEqual(self.subscribers(), 0, "the slow subscriber was not dropped")
        messages = slow.readAll()
        slow.close()
        self.assertEqual(messages[-1].event, "dropped")
        last_id = json.loads(messages[-1].data)["last_id"]
        got = recorded(messages)
        self.assertLess(len(got), 4000)
        self.assertEqual(got[-1][0], last_id)
        status, _ = self.daemon.request("GET", "/health")
        self.assertEqual(status, 200)

        newest = self.newestId()
        again = SSEClient(self.daemon, last_id=last_id)
        rest = recorded(again.until(lambda m: m.id == str(newest), "the rest"))
        again.close()
        self.assertEqual([i for i, _, _ in rest], list(range(last_id + 1, newest + 1)))

    def test_sbx_events(self):
        """
        ``sbx events --json`` prints the kept history, one JSON object a
        line; ``sbx events --follow`` prints a create made after it started.
        """
        import subprocess
        import sys

        first = self.create()
        self.destroy(first)
        env = dict(self.daemon.env, PYTHONPATH=ROOT)
        out = subprocess.run([sys.executable, "-m", "sbx.main", "events", "--json"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        self.assertEqual([(e["type"], e["sandbox_id"]) for e in lines],
                         [("sandbox.created", first), ("sandbox.destroyed", first)])

        follow = subprocess.Popen(
            [sys.executable, "-m", "sbx.main", "events", "--follow", "--type", "sandbox.",
             "--after", str(lines[-1]["id"])],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            # --after: the create is seen whether it comes before or after
            # the follower subscribed.
            second = self.create()
            line = follow.stdout.readline()
            self.assertIn("sandbox.created", line)
            self.assertIn(second, line)
        finally:
            follow.kill()
            follow.wait()
