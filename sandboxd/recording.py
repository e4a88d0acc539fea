"""
What the state store and the event log keep of sandboxes' lives: an
observer of the lifecycle (L{sandboxd.lifecycle}).

Only claimed sandboxes are recorded (warm ones in the pool belong to
nobody): put when handed out, updated at every later move, deleted once
destroyed.  The events (docs/api.md):

- ``sandbox.created`` (profile, image, method) when handed out;
- ``sandbox.disconnected`` (reason, when there is one) when its last
  session closed, the daemon stopped or restarted;
- ``sandbox.reconnected`` when a session opens on a disconnected one;
- ``sandbox.paused`` (reason, when there is one: its ttl ran out) and
  ``sandbox.resumed`` around a pause;
- ``sandbox.failed`` (reason) when a handed-out sandbox fails;
- ``sandbox.destroyed`` (reason) when its removal begins.
"""

from zope.interface import implementer

from sandboxd.lifecycle import ISandboxObserver
from sandboxd.sandbox import State, iso_time

_IN_USE = (State.RUNNING, State.DISCONNECTED)
_LIVE = (*_IN_USE, State.PAUSED)


@implementer(ISandboxObserver)
class LifecycleRecorder:
    """
    Keeps the sandboxes' records in ``store`` and writes their events, with
    times from ``clock``.
    """

    def __init__(self, store, clock):
        self._store = store
        self._clock = clock

    def sandboxChanged(self, transition):
        sandbox = transition.sandbox
        if not sandbox.claimed or transition.old is None:
            return
        with self._store.batch():
            self._record(transition)

    def _record(self, transition):
        sandbox, old, new = transition.sandbox, transition.old, transition.new
        if transition.handedOut:
            self._store.put(sandbox.record())
            self.event(
                "sandbox.created", sandbox, profile=sandbox.profile,
                image=sandbox.image, method=sandbox.method,
            )
            return
        if new is State.DESTROYED:
            self._store.delete(sandbox.id)
            return
        self._store.update(sandbox.id, state=new.value, idle_since=sandbox.idle_since)
        reason = {} if transition.reason is None else {"reason": transition.reason}
        if new is State.PAUSED:
            self.event("sandbox.paused", sandbox, **reason)
        elif old is State.PAUSED and new in _IN_USE:
            self.event("sandbox.resumed", sandbox, **reason)
        elif new is State.DISCONNECTED:
            self.event("sandbox.disconnected", sandbox, **reason)
        elif new is State.RUNNING:
            self.event("sandbox.reconnected", sandbox)
        elif new is State.FAILED and old in _LIVE:
            self.event("sandbox.failed", sandbox, **reason)
        elif new is State.DESTROYING:
            self.event("sandbox.destroyed", sandbox, **reason)

    def idle(self, sandbox):
        """
        Record when the sandbox's idle time began (None: it is in use).
        """
        self._store.update(sandbox.id, idle_since=sandbox.idle_since)

    def updated(self, sandbox, **changes):
        """
        The sandbox's ``ttl``, ``labels`` or ``expires_at`` changed: record
        the new values and say so (``sandbox.updated``).
        """
        self._store.update(sandbox.id, **changes)
        if "expires_at" in changes:
            changes["expires_at"] = iso_time(changes["expires_at"])
        self.event("sandbox.updated", sandbox, **changes)

    def event(self, type, sandbox, **data):
        """
        Add an event about ``sandbox`` to the log.
        """
        self._store.addEvent(
            type, sandbox.id, self._clock.seconds(), data, sandbox.identity
        )

    def forget(self, record, reason=None):
        """
        A recorded sandbox was not adopted: drop its record and, when it was
        live (``reason`` given), say why it is lost.
        """
        self._store.delete(record.id)
        if reason is not None:
            self._store.addEvent(
                "sandbox.failed", record.id, self._clock.seconds(),
                {"reason": f"not adopted: {reason}"}, record.identity,
            )
