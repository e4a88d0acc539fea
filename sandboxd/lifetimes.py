"""
How long a sandbox with no session lives: one timer per idle sandbox.

A sandbox with no open session is destroyed ``ttl`` seconds after it became
idle (created and never connected, its last session closed, or the daemon
restarted under it).  With ``ttl = 0`` the manager destroys it as soon as its
last session closes; until a first session opens (or one comes back after a
restart) it gets ``limits.idle_timeout`` instead, so nothing is kept forever.
"""


class IdleReaper:
    """
    Calls ``expire(sandbox)`` when an idle sandbox's time is up.
    """

    def __init__(self, clock, expire, idle_timeout):
        self._clock = clock
        self._expire = expire
        self._idle_timeout = idle_timeout
        self._timers = {}

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

    def arm(self, sandbox):
        """
        Start (or restart) the sandbox's clock from ``sandbox.idle_since``.
        """
        self.disarm(sandbox)
        deadline = sandbox.idle_since + self.allowance(sandbox)
        delay = max(0.0, deadline - self._clock.seconds())
        self._timers[sandbox.id] = self._clock.callLater(delay, self._fire, sandbox)

    def disarm(self, sandbox):
        timer = self._timers.pop(sandbox.id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def deadline(self, sandbox):
        """
        When the sandbox will be reaped, or None when no clock runs.
        """
        timer = self._timers.get(sandbox.id)
        return timer.getTime() if timer is not None else None

    def stop(self):
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def _fire(self, sandbox):
        self._timers.pop(sandbox.id, None)
        self._expire(sandbox)
