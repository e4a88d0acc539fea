"""
Fakes for unit tests of the manager: an IRuntime that starts at once at a
made-up address, records what it starts and destroys, and lets the test play
the engine's container events; and an agent connection.
"""

import itertools

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from sandboxd.protocols.agent import IAgentConnection
from sandboxd.runtimes.interface import IRuntime, Started


@implementer(IRuntime)
class FakeRuntime:
    """
    ``owned`` is what ``list_owned`` reports.  With ``hold_removals``, each
    destroy waits for the test to fire ``removals[container_id]``.
    """

    name = "docker"

    def __init__(self, owned=(), hold_removals=False):
        self.started = []
        self.destroyed = []
        self.removals = {}
        self.owned = list(owned)
        self.paused = set()
        self.watcher = None
        self._hold = hold_removals

    def prepare(self, runtimes):
        return succeed(None)

    def start(self, spec):
        container = f"c-{spec.sandbox_id}"
        self.started.append(container)
        return succeed(Started(spec.sandbox_id, container, "tcp:192.0.2.1:7070", "192.0.2.1"))

    def destroy(self, container_id):
        self.destroyed.append(container_id)
        if not self._hold:
            return succeed(None)
        self.removals[container_id] = Deferred()
        return self.removals[container_id]

    def stats(self, container_id):
        return succeed({})

    def pause(self, container_id):
        self.paused.add(container_id)
        return succeed(None)

    def resume(self, container_id):
        self.paused.discard(container_id)
        return succeed(None)

    def list_owned(self):
        return succeed(self.owned)

    def watch(self, callback):
        """
        Keep ``callback``: the test calls ``watcher(container_id, action)``.
        """
        self.watcher = callback
        return self

    def stop(self):
        self.watcher = None


@implementer(IAgentConnection)
class FakeConnection:
    """
    An agent connection.  Every call answers ``{"exit_code": 0}`` at once,
    or with ``hold_calls`` waits for the test to fire it (``calls`` holds
    ``(method, deferred)``).  ``lost`` fires when the test loses it.
    ``streams`` maps the ids of open streams to their handlers and ``sent``
    keeps what was written.  With ``answers`` false, pings go unanswered
    while the connection stays up (an agent that stopped serving).
    """

    connected = True
    answers = True

    def __init__(self, hold_calls=False):
        self.calls = []
        self.lost = Deferred()
        self.aborted = None
        self.streams = {}
        self.sent = []
        #: The timeout of each ping.
        self.pings = []
        self._hold = hold_calls
        self._stream_ids = itertools.count(1, 2)

    def openStream(self, handler):
        stream = next(self._stream_ids)
        self.streams[stream] = handler
        return stream

    def closeStream(self, stream):
        self.streams.pop(stream, None)

    def reassign(self, stream, handler):
        if stream in self.streams:
            self.streams[stream] = handler

    def send(self, data):
        self.sent.append(data)

    def call(self, method, params=None):
        if not self._hold:
            return succeed({"exit_code": 0})
        d = Deferred()
        self.calls.append((method, d))
        return d

    def ping(self, timeout):
        self.pings.append(timeout)
        return succeed(self.connected and self.answers)

    def whenLost(self):
        return self.lost

    def disconnect(self, reason="the sandbox was destroyed"):
        self.connected = False

    def abort(self, reason):
        self.connected = False
        self.aborted = reason
