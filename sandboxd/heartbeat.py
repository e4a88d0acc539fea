"""
A heartbeat for handed-out sandboxes: an agent that stops answering while
its connection stays open (stopped, hung, starved) is noticed and its
sandbox failed, instead of calls hanging until the connection drops.

Every ``pool.health_interval`` each running or disconnected sandbox's agent
gets a PING.  One unanswered within ``pool.liveness_timeout`` is asked again
up to L{RETRIES} times, each time allowing four times longer, so a busy
sandbox is not taken for a dead one; only when every ping went unanswered
does the sandbox fail.  A sandbox whose runtime runs slow (a VM under
software emulation) is allowed its ``liveness_scale`` times longer.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sandboxd.sandbox import State

#: Pings after the first before an agent is given up on.
RETRIES = 4
#: How much longer each retry waits than the ping before.
BACKOFF = 4.0

_WATCHED = (State.RUNNING, State.DISCONNECTED)


class Heartbeat:
    """
    Pings the agents of ``sandboxes()`` every ``interval`` seconds and calls
    ``fail(sandbox, reason)`` for one that stopped answering.
    """

    log = Logger()

    def __init__(self, clock, sandboxes, fail, interval, timeout):
        self._sandboxes = sandboxes
        self._fail = fail
        self._interval = interval
        self._timeout = timeout
        self._checking = set()
        self._loop = LoopingCall(self._beat)
        self._loop.clock = clock

    def start(self):
        self._loop.start(self._interval, now=False).addErrback(
            lambda f: self.log.failure("the heartbeat stopped", f)
        )

    def stop(self):
        if self._loop.running:
            self._loop.stop()

    def reload(self, interval, timeout):
        """
        New ``pool.health_interval`` and ``pool.liveness_timeout``; a
        running heartbeat restarts on the new interval.
        """
        self._timeout = timeout
        if interval != self._interval:
            self._interval = interval
            if self._loop.running:
                self._loop.stop()
                self.start()

    def _beat(self):
        for sandbox in list(self._sandboxes()):
            connection = sandbox.connection
            if (
                sandbox.state in _WATCHED
                and connection is not None
                and connection.connected
                and sandbox.id not in self._checking
            ):
                self._checking.add(sandbox.id)
                Deferred.fromCoroutine(self._check(sandbox, connection)).addErrback(
                    lambda f, s=sandbox: self.log.failure(
                        "checking sandbox {sandbox} failed", f, sandbox=s.id
                    )
                )

    async def _check(self, sandbox, connection):
        try:
            timeout = self._timeout * sandbox.liveness_scale
            for _ in range(1 + RETRIES):
                if await connection.ping(timeout):
                    return
                if sandbox.state not in _WATCHED or sandbox.connection is not connection:
                    return
                last, timeout = timeout, timeout * BACKOFF
            self._fail(
                sandbox,
                f"its agent stopped answering ({1 + RETRIES} pings unanswered,"
                f" the last within {last:g} s)",
            )
        finally:
            self._checking.discard(sandbox.id)
