"""
Unit tests of ``GET /events`` (sandboxd/api/events.py, sandboxd/eventfeed.py):
the real Klein app in a real twisted.web Site over a StringTransport, a real
SQLite store in a temporary directory, time on a Clock.  Pausing the
HTTPChannel (the transport's producer) is what a real transport does when a
client stops reading.
"""

import json
import shutil
import tempfile

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from sandbox._sse import SSEReader
from sandboxd import store as store_module
from sandboxd.api import events as events_module
from sandboxd.api.app import SandboxAPI
from sandboxd.config import Config
from sandboxd.eventfeed import EventFeed, EventFilter, IEventFeed, IEventSubscriber
from sandboxd.lifecycle import Lifecycle
from sandboxd.store import Store


def whole_body(raw):
    """
    The body of a whole response with a Content-Length (named errors).
    """
    head, _, rest = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return rest[:int(value)]
    raise AssertionError(f"no Content-Length in {head!r}")


def dechunk(raw):
    """
    The body bytes of a chunked HTTP/1.1 response read so far, and whether
    its last chunk came.
    """
    _, _, rest = raw.partition(b"\r\n\r\n")
    body = []
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            return b"".join(body), True
        body.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(body), False


class NoManager:
    """
    The API's manager where no route used touches it (the session
    factory observes its lifecycle).
    """

    def __init__(self):
        self.lifecycle = Lifecycle()


class Stream:
    """
    One client of GET /events: the server side's channel and transport.
    """

    def __init__(self, site, path, headers=b""):
        self.channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)
        self.channel.dataReceived(
            b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n"
        )

    @property
    def head(self):
        return self.transport.value().partition(b"\r\n\r\n")[0]

    def messages(self):
        body, _ = dechunk(self.transport.value())
        return SSEReader().feed(body)

    def events(self):
        """The recorded events received, as JSON."""
        return [json.loads(m.data) for m in self.messages() if m.id is not None]

    @property
    def finished(self):
        return dechunk(self.transport.value())[1]


class EventStreamTests(SynchronousTestCase):
    def setUp(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        self.store = Store(directory)
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.feed = EventFeed(self.store, self.clock)
        api = SandboxAPI(NoManager(), Config(), self.clock, events=self.feed)
        self.site = Site(api.resource(), reactor=self.clock)

    def add(self, type="sandbox.created", sandbox="sbx-1", **data):
        return self.store.addEvent(type, sandbox, self.clock.seconds(), data)

    def test_interfaces(self):
        """
        The feed and the stream provide the interfaces the API relies on.
        """
        verifyObject(IEventFeed, self.feed)
        stream = events_module.EventStream(None, self.feed, self.clock, None, EventFilter())
        verifyObject(IEventSubscriber, stream)

    def test_live(self):
        """
        Without an id, a subscriber gets only events recorded after it
        subscribed, each with its id, type and DESIGN.md's JSON shape.
        """
        self.add("sandbox.created", "sbx-old")
        stream = Stream(self.site, b"/events")
        self.assertIn(b"200 OK", stream.head)
        self.assertIn(b"text/event-stream", stream.head)
        new = self.add("sandbox.destroyed", "sbx-new", reason="DELETE")
        [message] = stream.messages()
        self.assertEqual((message.id, message.event), (str(new.id), "sandbox.destroyed"))
        body = json.loads(message.data)
        self.assertEqual(body["sandbox_id"], "sbx-new")
        self.assertEqual(body["data"], {"reason": "DELETE"})
        self.assertEqual(
            sorted(body), ["data", "id", "identity", "sandbox_id", "timestamp", "type"]
        )
        self.assertEqual(self.feed.subscribers, 1)

    def test_replay_then_live(self):
        """
        ``?after=`` replays the kept events after it, oldest first, then new
        ones follow with none twice; ``Last-Event-ID`` wins over ``?after=``.
        """
        ids = [self.add(sandbox=f"sbx-{n}").id for n in range(5)]
        stream = Stream(self.site, b"/events?after=0", b"Last-Event-ID: %d\r\n" % ids[1])
        later = self.add(sandbox="sbx-late").id
        self.assertEqual([e["id"] for e in stream.events()], ids[2:] + [later])

    def test_replay_pages_pause(self):
        """
        A long replay sends a page per reactor turn and stops while the
        client is not reading; resuming sends the rest, in order, once.
        """
        self.patch(events_module, "REPLAY_PAGE", 2)
        ids = [self.add().id for _ in range(7)]
        stream = Stream(self.site, b"/events?after=0")
        self.assertEqual([e["id"] for e in stream.events()], ids[:2])
        stream.transport.producer.pauseProducing()
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(len(stream.events()), 2)
        live = self.add().id  # arrives while paused, mid-replay: the store has it
        stream.transport.producer.resumeProducing()
        self.clock.advance(0)
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual([e["id"] for e in stream.events()], ids + [live])

    def test_filters(self):
        """
        ``?sandbox=`` keeps one sandbox's events; ``?type=`` takes exact
        names and prefixes (``pool.`` or ``pool.*``), comma-separated or
        repeated.
        """
        by_sandbox = Stream(self.site, b"/events?sandbox=sbx-a")
        by_type = Stream(self.site, b"/events?type=sandbox.destroyed,pool.*")
        by_prefix = Stream(self.site, b"/events?type=sandbox.&type=config.reloaded")
        self.add("sandbox.created", "sbx-a")
        self.add("sandbox.destroyed", "sbx-b")
        self.add("pool.resized", None)
        self.add("config.reloaded", None)
        self.add("sandboxes.odd", "sbx-a")
        self.assertEqual([e["type"] for e in by_sandbox.events()],
                         ["sandbox.created", "sandboxes.odd"])
        self.assertEqual([e["type"] for e in by_type.events()],
                         ["sandbox.destroyed", "pool.resized"])
        self.assertEqual([e["type"] for e in by_prefix.events()],
                         ["sandbox.created", "sandbox.destroyed", "config.reloaded"])

    def test_gap_trimmed(self):
        """
        Asking for events the store no longer keeps starts with a ``gap``
        event (no id) naming the first id that follows, then the kept ones.
        """
        self.patch(store_module, "MAX_EVENTS", 500)
        for _ in range(1000):
            self.add()
        oldest, newest = self.store.eventBounds()
        self.assertEqual(oldest, 501)
        stream = Stream(self.site, b"/events", b"Last-Event-ID: 10\r\n")
        gap, first = stream.messages()[:2]
        self.assertEqual((gap.id, gap.event), (None, "gap"))
        self.assertEqual(json.loads(gap.data)["next"], 501)
        self.assertEqual(first.id, "501")
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(len(stream.events()), 500)

    def test_gap_ahead(self):
        """
        An id above the newest kept (a client of another daemon's log) is a
        ``gap`` too, and the stream goes on from the newest.
        """
        self.add()
        stream = Stream(self.site, b"/events", b"Last-Event-ID: 99999\r\n")
        new = self.add().id
        messages = stream.messages()
        self.assertEqual([m.event for m in messages], ["gap", "sandbox.created"])
        self.assertEqual(messages[1].id, str(new))

    def test_no_gap_at_edge(self):
        """
        Continuing from exactly the event before the oldest kept, or from
        the newest, is no gap.
        """
        self.patch(store_module, "MAX_EVENTS", 500)
        for _ in range(1000):
            self.add()
        for after in (b"500", b"1000"):
            stream = Stream(self.site, b"/events?after=" + after)
            self.assertNotIn("gap", [m.event for m in stream.messages()])

    def test_bad_id(self):
        """
        A Last-Event-ID or ``after`` that is not an event id is a named 400.
        """
        for path, headers in ((b"/events", b"Last-Event-ID: x1\r\n"),
                              (b"/events?after=-3", b"")):
            stream = Stream(self.site, path, headers)
            self.assertIn(b"400", stream.head)
            body = whole_body(stream.transport.value())
            self.assertEqual(json.loads(body)["error"]["code"], "INVALID_FIELD")
        self.assertEqual(self.feed.subscribers, 0)

    def test_keepalive(self):
        """
        A comment line every KEEPALIVE seconds of the injected clock.
        """
        stream = Stream(self.site, b"/events")
        before = stream.transport.value().count(b": keep-alive")
        self.clock.advance(events_module.KEEPALIVE)
        self.clock.advance(events_module.KEEPALIVE)
        self.assertEqual(stream.transport.value().count(b": keep-alive"), before + 2)

    def test_disconnect(self):
        """
        A client that goes away is unsubscribed and its timer stopped.
        """
        stream = Stream(self.site, b"/events")
        self.assertEqual(self.feed.subscribers, 1)
        stream.channel.connectionLost(Exception("gone"))
        self.assertEqual(self.feed.subscribers, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.add()  # delivering to nobody is fine

    def test_paused_buffers(self):
        """
        While the transport is paused, live events wait (nothing written);
        on resume they are written in order.
        """
        stream = Stream(self.site, b"/events")
        stream.transport.producer.pauseProducing()
        ids = [self.add().id for _ in range(10)]
        self.assertEqual(stream.events(), [])
        stream.transport.producer.resumeProducing()
        self.assertEqual([e["id"] for e in stream.events()], ids)

    def test_slow_subscriber_dropped(self):
        """
        A subscriber that does not read while more than MAX_BUFFERED events
        come is sent a final ``dropped`` event naming the last id it got,
        its response ends, it is unsubscribed, and the connection is aborted
        DROP_GRACE seconds later if still open; other subscribers go on.
        """
        self.patch(events_module, "MAX_BUFFERED", 5)
        slow = Stream(self.site, b"/events")
        fast = Stream(self.site, b"/events")
        first = self.add().id
        slow.transport.producer.pauseProducing()
        ids = [self.add().id for _ in range(6)]
        messages = slow.messages()
        self.assertEqual([m.event for m in messages], ["sandbox.created", "dropped"])
        self.assertEqual(json.loads(messages[1].data)["last_id"], first)
        self.assertTrue(slow.finished)
        self.assertEqual(self.feed.subscribers, 1)
        self.assertEqual([e["id"] for e in fast.events()], [first] + ids)
        self.assertTrue(slow.transport.disconnecting)

    def test_subscriber_cap(self):
        """
        Beyond MAX_SUBSCRIBERS open streams a new one is refused with 503
        AT_CAPACITY (each may hold MAX_BUFFERED events); when one closes,
        a new one is taken again.
        """
        from sandboxd.api import app as app_module

        self.patch(app_module, "MAX_SUBSCRIBERS", 2)
        first = Stream(self.site, b"/events")
        Stream(self.site, b"/events")
        refused = Stream(self.site, b"/events")
        self.assertIn(b"503", refused.head)
        body = whole_body(refused.transport.value())
        self.assertEqual(json.loads(body)["error"]["code"], "AT_CAPACITY")
        first.channel.connectionLost(Exception("gone"))
        self.assertIn(b"200", Stream(self.site, b"/events").head)

    def test_head(self):
        """
        HEAD /events answers the headers and ends (no stream is opened).
        """
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"HEAD /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertIn(b"200 OK", transport.value())
        self.assertIn(b"text/event-stream", transport.value())
        self.assertEqual(self.feed.subscribers, 0)
