"""
Noticing that a sandbox failed: the engine says its container died, or
its agent connection was lost.  A container the engine reports paused (or
resumed) without the daemon asking is a paused (resumed) sandbox
(L{sandboxd.pausing}), not a dead one; only a warm one, which nobody could
resume, fails.  The manager's ``fail`` then ends
open calls at once (instead of letting them hang), and the lifecycle's
observers tell the sessions, the record and the event log.
"""

from sandboxd.sandbox import State

#: States in which an OOM kill inside is worth an event.
_REPORTED = (State.RUNNING, State.DISCONNECTED, State.FAILED)


class FailureWatch:
    """
    Turns the engine's container events and lost agent connections into
    ``manager.fail(sandbox, reason)``; OOM kills go to ``recorder``'s event
    log.
    """

    def __init__(self, manager, recorder):
        self._manager = manager
        self._recorder = recorder

    def containerEvent(self, container_id, action):
        """
        The engine says a container died, was paused or resumed, or had a
        process killed for want of memory.  An OOM kill is recorded
        (``sandbox.oom``); the sandbox fails only if its container dies (or
        is paused while warm).
        """
        sandbox = self._manager.byContainer(container_id)
        if sandbox is None:
            return
        if action not in ("oom", "pause"):
            # Stopped: the engine frees its address now, before the removal.
            self._manager.stopped(sandbox)
        if action == "oom":
            sandbox.oom_kills += 1
            if sandbox.state in _REPORTED:
                self._recorder.event("sandbox.oom", sandbox, kills=sandbox.oom_kills)
        elif action == "pause":
            if sandbox.state is State.READY:
                self._manager.fail(sandbox, "its container was paused")
            else:
                self._manager.pauser.pausedOutside(sandbox)
        elif action == "unpause":
            self._manager.pauser.resumedOutside(sandbox)
        elif sandbox.oom_kills:
            self._manager.fail(sandbox, "its container exited after running out of memory")
        else:
            self._manager.fail(sandbox, "its container exited")

    def watchAgent(self, sandbox):
        """
        Fail ``sandbox`` when its agent connection is lost.
        """
        sandbox.connection.whenLost().addCallback(
            lambda lost: self._manager.fail(
                sandbox, f"its agent connection was lost: {lost.message}"
            )
        )
