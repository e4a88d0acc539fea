"""
Pausing and resuming sandboxes: their processes frozen with their memory
(the engine's pause), the lifecycle told (state ``paused``), and the agent
found again on resume when a restarted daemon adopted the sandbox paused.

A paused sandbox keeps its container, files, processes, open connections
and tunnels; nothing in it runs, so its agent answers nothing: the
heartbeat leaves it alone, calls on it are refused (``SANDBOX_PAUSED``) and
its idle clock stops.  Resumed, it is ``running`` again if a session is
open (``idle_since`` None), else ``disconnected`` with its idle clock
starting over from the resume.

The engine reports our own pauses as container events too; ``freezing``
marks a sandbox whose pause or resume is under way so that those are not
taken for someone else's (L{sandboxd.failing}).
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from sandboxd.sandbox import State

#: Seconds a resumed sandbox's agent has to answer when the daemon has no
#: connection to it (it was adopted paused after a restart).
RECONNECT_TIMEOUT = 5.0

#: The states a sandbox can be paused from.
PAUSABLE = (State.RUNNING, State.DISCONNECTED)


class NotPausable(Exception):
    """
    The sandbox is in a state that cannot be paused or resumed (creating,
    failed, ending).
    """


class Pauser:
    """
    Pauses and resumes the sandboxes of a manager through ``runtime``,
    moving them through ``lifecycle``; ``containers`` (L{sandboxd.booting})
    holds a resumed sandbox's agent again; ``connect`` reaches an agent;
    ``fail(sandbox, reason)`` is the manager's.
    """

    log = Logger()

    def __init__(self, clock, runtime, lifecycle, containers, connect, fail):
        self._fail = fail
        self._clock = clock
        self._runtime = runtime
        self._lifecycle = lifecycle
        self._containers = containers
        self._connect = connect
        self._freezing = set()

    def freezing(self, sandbox):
        """
        Whether a pause or resume of ``sandbox`` is under way here.
        """
        return sandbox.id in self._freezing

    async def pause(self, sandbox, reason=None):
        """
        Freeze ``sandbox`` and move it to ``paused`` (nothing when it is
        paused already).  Raise L{NotPausable}, or the runtime's failure
        (L{sandboxd.runtimes.interface.PauseNotSupported} among them).
        """
        if sandbox.state is State.PAUSED:
            return
        if sandbox.state not in PAUSABLE:
            raise NotPausable(f"sandbox {sandbox.id} is {sandbox.state.value}")
        self._freezing.add(sandbox.id)
        try:
            await self._runtime.pause(sandbox.container_id)
        finally:
            self._freezing.discard(sandbox.id)
        if sandbox.state in PAUSABLE:
            self._lifecycle.move(sandbox, State.PAUSED, reason)

    def pauseOr(self, sandbox, reason, destroy):
        """
        Pause ``sandbox`` for ``reason`` (its ttl ran out); where it cannot
        be, ``destroy(sandbox_id, reason=...)`` it instead.
        """
        def cannot(failure):
            self.log.warn("sandbox {sandbox} cannot be paused ({why}): destroying it",
                          sandbox=sandbox.id, why=failure.getErrorMessage())
            destroy(sandbox.id, reason=f"{reason}; it could not be paused")

        Deferred.fromCoroutine(self.pause(sandbox, reason)).addErrback(cannot)

    async def resume(self, sandbox, reason=None):
        """
        Thaw ``sandbox``, connect its agent if the daemon has no connection
        to it, and move it back to ``running`` or ``disconnected`` (nothing
        when it is not paused but running).  Raise L{NotPausable}, or the
        runtime's or the connection's failure (an agent that does not
        answer fails the sandbox).
        """
        if sandbox.state in PAUSABLE:
            return
        if sandbox.state is not State.PAUSED:
            raise NotPausable(f"sandbox {sandbox.id} is {sandbox.state.value}")
        self._freezing.add(sandbox.id)
        try:
            await self._runtime.resume(sandbox.container_id)
        finally:
            self._freezing.discard(sandbox.id)
        if sandbox.connection is None:
            try:
                connection = await self._connect(
                    self._clock, sandbox.endpoint, sandbox.secret,
                    deadline=RECONNECT_TIMEOUT, label=sandbox.id,
                )
            except Exception as e:
                self._fail(sandbox, f"its agent did not answer on resume: {e}")
                raise
            if sandbox.state is not State.PAUSED:
                connection.disconnect()
                return
            self._containers.attach(sandbox, connection)
        self.thawed(sandbox, reason)

    def thawed(self, sandbox, reason=None):
        """
        ``sandbox`` runs again: back to ``running`` with a session open,
        else ``disconnected`` idle from now.
        """
        if sandbox.state is not State.PAUSED:
            return
        if sandbox.idle_since is None:
            self._lifecycle.move(sandbox, State.RUNNING, reason)
        else:
            sandbox.idle_since = self._clock.seconds()
            self._lifecycle.move(sandbox, State.DISCONNECTED, reason)

    def pausedOutside(self, sandbox):
        """
        The engine froze ``sandbox`` without the daemon asking: it is paused.
        """
        if sandbox.state in PAUSABLE and not self.freezing(sandbox):
            self.log.warn("sandbox {sandbox} was paused outside the daemon", sandbox=sandbox.id)
            self._lifecycle.move(sandbox, State.PAUSED, "its container was paused outside the daemon")

    def resumedOutside(self, sandbox):
        """
        The engine thawed ``sandbox`` without the daemon asking.
        """
        if sandbox.state is State.PAUSED and not self.freezing(sandbox):
            if sandbox.connection is None:
                # Adopted paused: its agent is reached on the next resume.
                return
            self.thawed(sandbox, "its container was resumed outside the daemon")
