"""
The daemon's events as a feed: what the store has kept, then every new
event as it is recorded.

The store's ``addEvent`` is the one way an event is written; the feed
observes it and hands each new event to its subscribers (the SSE streams
of ``GET /events``), on the reactor thread.  A subscriber that wants older
events reads them from the store through ``replay``.
"""

from zope.interface import Attribute, Interface, implementer
from twisted.logger import Logger


class IEventSubscriber(Interface):
    """
    Something that wants every new event (``EventFeed.subscribe``).
    """

    def deliver(event):
        """
        A new event (a ``sandboxd.store.Event``) was recorded.  Called on
        the reactor thread; must not block and should not raise.
        """


class EventFilter:
    """
    Which events a subscriber wants: those of one sandbox (``sandbox``;
    None: any), of some types (``types``: exact names, or prefixes written
    ``sandbox.`` or ``sandbox.*``; empty: any).
    """

    def __init__(self, sandbox=None, types=()):
        self.sandbox = sandbox
        exact, prefixes = set(), []
        for name in types:
            if name.endswith("*"):
                prefixes.append(name[:-1])
            elif name.endswith("."):
                prefixes.append(name)
            else:
                exact.add(name)
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)
        self._any_type = not types

    def __call__(self, event):
        if self.sandbox is not None and event.sandbox_id != self.sandbox:
            return False
        return (
            self._any_type
            or event.type in self._exact
            or event.type.startswith(self._prefixes)
        )


class IEventFeed(Interface):
    """
    Kept events and new ones (what an SSE stream reads).
    """

    subscribers = Attribute("How many subscribers (clients) there are now.")

    def observe(observer):
        """
        Call ``observer(event)`` with every new event, for the daemon's own
        use (metrics); not counted as a subscriber, never dropped.
        """

    def subscribe(subscriber):
        """Deliver every new event to ``subscriber`` (an IEventSubscriber)."""

    def unsubscribe(subscriber):
        """Stop delivering to ``subscriber`` (no-op if it is not subscribed)."""

    def replay(after, limit):
        """Kept events with an id above ``after``, oldest first, at most ``limit``."""

    def bounds():
        """``(oldest, newest)`` ids of the kept events, ``(None, None)`` if none."""

    def record(type, sandbox_id=None, data=None, identity=""):
        """Record a new event (it reaches the subscribers); return it."""


@implementer(IEventFeed)
class EventFeed:
    """
    An IEventFeed over a ``sandboxd.store.Store``.
    """

    log = Logger()

    def __init__(self, store, clock):
        self._store = store
        self._clock = clock
        self._subscribers = []
        store.observeEvents(self._publish)

    @property
    def subscribers(self):
        return len(self._subscribers)

    def observe(self, observer):
        self._store.observeEvents(observer)

    def subscribe(self, subscriber):
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber):
        try:
            self._subscribers.remove(subscriber)
        except ValueError:
            pass

    def record(self, type, sandbox_id=None, data=None, identity=""):
        """
        Record an event that belongs to no sandbox's lifecycle (``pool.*``,
        ``config.*``); subscribers get it like any other.
        """
        return self._store.addEvent(type, sandbox_id, self._clock.seconds(), data, identity)

    def replay(self, after, limit):
        return self._store.events(after, limit)

    def bounds(self):
        return self._store.eventBounds()

    def _publish(self, event):
        # A copy: a subscriber may unsubscribe (be dropped) while delivered to.
        for subscriber in list(self._subscribers):
            try:
                subscriber.deliver(event)
            except Exception:
                self.log.failure("delivering event {id} failed", id=event.id)
