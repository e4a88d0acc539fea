"""
How long a sandbox with no session lives: one timer per idle sandbox.

A sandbox with no open session is destroyed ``ttl`` seconds after it became
idle (created and never connected, its last session closed, or the daemon
restarted under it).  With ``ttl = 0`` the manager destroys it as soon as
its last session closes; until a first session opens (or one comes back
after a restart) it gets ``limits.idle_timeout`` instead, so nothing is kept
forever.

The reaper observes the lifecycle (L{sandboxd.lifecycle}): a sandbox's clock
starts when it is handed out, disconnected or failed, and stops when a
session brings it back or its removal begins; the manager stops it too when
the first session opens on a sandbox handed out moments before.  A paused
sandbox's clock stops too: it starts again from its resume.

Apart from the idle clock, a sandbox created (or updated) with
``expires_at`` is destroyed at that time whatever it is doing: L{Expiry}.
"""

from zope.interface import implementer

from sandboxd.lifecycle import ISandboxObserver
from sandboxd.sandbox import State


class SandboxTimers:
    """
    One timer per sandbox on ``clock``: ``fire(sandbox)`` when it runs out.
    """

    def __init__(self, clock, fire):
        self._clock = clock
        self._fire = fire
        self._timers = {}

    def __contains__(self, sandbox):
        return sandbox.id in self._timers

    def __len__(self):
        return len(self._timers)

    def start(self, sandbox, at):
        """
        (Re)start the sandbox's timer to run out at ``at`` (a clock time; at
        once when that has passed).
        """
        self.cancel(sandbox)
        delay = max(0.0, at - self._clock.seconds())
        self._timers[sandbox.id] = self._clock.callLater(delay, self._ranOut, sandbox)

    def cancel(self, sandbox):
        timer = self._timers.pop(sandbox.id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def when(self, sandbox):
        """
        When the sandbox's timer runs out, or None when none runs.
        """
        timer = self._timers.get(sandbox.id)
        return timer.getTime() if timer is not None else None

    def stop(self):
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def _ranOut(self, sandbox):
        self._timers.pop(sandbox.id, None)
        self._fire(sandbox)


@implementer(ISandboxObserver)
class IdleReaper:
    """
    Calls ``expire(sandbox)`` when an idle sandbox's time is up.
    """

    def __init__(self, clock, expire, idle_timeout):
        self._idle_timeout = idle_timeout
        self._timers = SandboxTimers(clock, expire)

    def reload(self, idle_timeout):
        """
        A new ``limits.idle_timeout`` for clocks started from now on.
        """
        self._idle_timeout = idle_timeout

    def allowance(self, sandbox):
        """
        Seconds an idle sandbox may live without a session.
        """
        return sandbox.ttl if sandbox.ttl > 0 else self._idle_timeout

    def sandboxChanged(self, transition):
        sandbox, new = transition.sandbox, transition.new
        if not sandbox.claimed:
            return
        if transition.handedOut or new in (State.DISCONNECTED, State.FAILED):
            self.arm(sandbox)
        elif new in (State.RUNNING, State.PAUSED, State.DESTROYING):
            self.disarm(sandbox)

    def arm(self, sandbox):
        """
        Start (or restart) the sandbox's clock from ``sandbox.idle_since``.
        """
        self._timers.start(sandbox, sandbox.idle_since + self.allowance(sandbox))

    def disarm(self, sandbox):
        self._timers.cancel(sandbox)

    def deadline(self, sandbox):
        """
        When the sandbox will be reaped, or None when no clock runs.
        """
        return self._timers.when(sandbox)

    def stop(self):
        self._timers.stop()


@implementer(ISandboxObserver)
class Expiry:
    """
    Calls ``expire(sandbox)`` at a handed-out sandbox's ``expires_at`` (a
    POSIX time, as ``clock.seconds()``), in whatever state it is then.
    """

    def __init__(self, clock, expire):
        self._timers = SandboxTimers(clock, expire)

    def sandboxChanged(self, transition):
        sandbox = transition.sandbox
        if not sandbox.claimed:
            return
        if transition.new in (State.DESTROYING, State.DESTROYED):
            self.disarm(sandbox)
        elif sandbox not in self._timers and sandbox.expires_at is not None:
            self.arm(sandbox)

    def arm(self, sandbox):
        """
        Start (or restart) the timer to ``sandbox.expires_at``.
        """
        self._timers.start(sandbox, sandbox.expires_at)

    def disarm(self, sandbox):
        self._timers.cancel(sandbox)

    def stop(self):
        self._timers.stop()
