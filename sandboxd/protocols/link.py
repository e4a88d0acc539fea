"""
A sandbox's link to its agent that outlives the agent's server being
killed and started again (by user code: ``kill -9 -1``, ``pkill python3``;
the agent's PID 1 restarts it).

When the connection drops without the daemon asking (not cut off for
breaking the protocol: that fails the sandbox), the streams open on it fail
at once (``SANDBOX_UNAVAILABLE``: what ran in them was most likely
killed too) and the link connects again, retrying for up to
L{RECONNECT_DEADLINE} seconds.  Sessions keep the same link and go on with
the new connection; only when no new connection comes does the link count
as lost (``whenLost``), and the sandbox fails.
"""

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from agent import wire
from sandboxd.protocols.agent import AgentLost, IAgentConnection

#: Seconds a dropped agent has to come back before its sandbox fails.
RECONNECT_DEADLINE = 10.0
#: Seconds between tries.
RETRY_DELAY = 0.05


@implementer(IAgentConnection)
class AgentLink:
    """
    An L{IAgentConnection} over the current connection to one agent;
    ``reconnect(deadline)`` makes a new one (a Deferred firing with it),
    tried again until L{RECONNECT_DEADLINE} on ``clock``.
    """

    log = Logger()

    def __init__(self, connection, reconnect, clock, label=""):
        self._current = connection
        self._reconnect = reconnect
        self._clock = clock
        self.label = label
        self._closing = False
        self._lost = None
        self._lostWaiters = []
        self._upWaiters = []
        #: How many times the agent came back.
        self.reconnects = 0
        self._follow(connection)

    # Following the current connection

    def _follow(self, connection):
        connection.whenLost().addCallback(self._dropped, connection)

    def _dropped(self, lost, connection):
        if connection is not self._current or self._lost is not None:
            return
        if self._closing or lost.code != wire.Code.SANDBOX_UNAVAILABLE:
            # Closed by the daemon, or cut off for breaking the protocol
            # (sandboxd.protocols.inbound): the sandbox fails, no second try.
            self._end(lost)
            return
        self.log.info("agent {label} dropped ({why}); connecting again",
                      label=self.label, why=lost.message)
        Deferred.fromCoroutine(self._again(lost)).addErrback(
            lambda f: self.log.failure("reconnecting agent {label}", f, label=self.label)
        )

    async def _again(self, lost):
        give_up = self._clock.seconds() + RECONNECT_DEADLINE
        while True:
            try:
                connection = await self._reconnect(give_up - self._clock.seconds())
                break
            except Exception as e:
                # Reached while the old server's socket closed, or the new
                # one not listening yet: try again until the deadline.
                if self._closing or self._clock.seconds() + RETRY_DELAY >= give_up:
                    self._end(AgentLost(lost.code, f"{lost.message}; it did not come back: {e}"))
                    return
                await deferLater(self._clock, RETRY_DELAY, lambda: None)
        if self._closing:
            connection.disconnect()
            self._end(lost)
            return
        self._current = connection
        self.reconnects += 1
        self.log.info("agent {label} is back", label=self.label)
        self._follow(connection)
        self._tellUp(True)

    def _end(self, lost):
        if self._lost is not None:
            return
        self._lost = lost
        waiters, self._lostWaiters = self._lostWaiters, []
        for waiter in waiters:
            waiter.callback(lost)
        self._tellUp(False)

    def _tellUp(self, up):
        waiters, self._upWaiters = self._upWaiters, []
        for waiter in waiters:
            waiter.callback(up)

    @property
    def reconnecting(self):
        """
        The connection dropped and a new one is being made.
        """
        return self._lost is None and not self._closing and not self._current.connected

    def whenConnected(self):
        """
        Fire True once a connection is up (at once if one is), False if the
        link is lost instead.
        """
        if self._lost is not None:
            return succeed(False)
        if not self.reconnecting:
            return succeed(self._current.connected)
        waiter = Deferred()
        self._upWaiters.append(waiter)
        return waiter

    # IAgentConnection

    @property
    def connected(self):
        return self._lost is None and self._current.connected

    @property
    def agent_pid(self):
        return self._current.agent_pid

    @property
    def openStreams(self):
        return self._current.openStreams

    def whenLost(self):
        """
        Fire with the AgentLost that ended the link for good.  Cancelling
        the Deferred stops waiting.
        """
        if self._lost is not None:
            return succeed(self._lost)
        waiter = Deferred(lambda d: self._lostWaiters.remove(d))
        self._lostWaiters.append(waiter)
        return waiter

    def openStream(self, handler):
        return self._current.openStream(handler)

    def closeStream(self, stream):
        self._current.closeStream(stream)

    def reassign(self, stream, handler):
        self._current.reassign(stream, handler)

    def send(self, data):
        if self._current.connected:
            self._current.send(data)

    def call(self, method, params=None):
        if not self.connected:
            return fail(
                AgentLost(wire.Code.SANDBOX_UNAVAILABLE, "the sandbox's agent is reconnecting")
            )
        return self._current.call(method, params)

    def ping(self, timeout):
        if not self.connected:
            return succeed(False)
        return self._current.ping(timeout)

    def disconnect(self, reason="the sandbox was destroyed"):
        self._close(reason)
        self._current.disconnect(reason)

    def abort(self, reason):
        self._close(reason)
        self._current.abort(reason)

    def _close(self, reason):
        # A reconnect under way finds this flag and hangs up.
        self._closing = True
        if not self._current.connected:
            self._end(AgentLost(wire.Code.SANDBOX_UNAVAILABLE, reason))

