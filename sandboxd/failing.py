"""
How a sandbox fails: the engine says its container died or was paused, or
its agent connection was lost.  Open calls end at once (instead of hanging),
sessions hear why, the record says ``failed`` and the container goes.
"""

from twisted.logger import Logger

from sandboxd.sandbox import State


class SandboxFailures:
    """
    The failure handling of L{sandboxd.manager.SandboxManager}, kept apart
    as a mixin: it uses the manager's sandboxes, pools, store, reaper and
    container removal.
    """

    log = Logger()

    def _containerEvent(self, container_id, action):
        """
        The engine says a container died or was paused: its sandbox fails
        now, so that open calls end at once instead of hanging.  An OOM
        kill inside is recorded (``sandbox.oom``); the sandbox fails only if
        its container dies of it.
        """
        sandbox = self._containers.get(container_id)
        if sandbox is None:
            return
        if action == "oom":
            sandbox.oom_kills += 1
            if sandbox.state in (State.RUNNING, State.DISCONNECTED, State.FAILED):
                self._event("sandbox.oom", sandbox, kills=sandbox.oom_kills)
        elif action == "pause":
            self._fail(sandbox, "its container was paused")
        elif sandbox.oom_kills:
            self._fail(sandbox, "its container exited after running out of memory")
        else:
            self._fail(sandbox, "its container exited")

    def _agentLost(self, sandbox, lost):
        self._fail(sandbox, f"its agent connection was lost: {lost.message}")

    def _fail(self, sandbox, reason):
        if self._stopping:
            return
        if sandbox.state is State.READY:
            self.pools[sandbox.profile].remove(sandbox)
            sandbox.moveTo(State.FAILED)
            self._removeContainer(sandbox)
            return
        if sandbox.state not in (State.RUNNING, State.DISCONNECTED):
            return
        self.log.warn("sandbox {sandbox} failed: {reason}", sandbox=sandbox.id, reason=reason)
        sandbox.moveTo(State.FAILED)
        message = f"the sandbox failed: {reason}"
        self._dropDetached(sandbox)
        for session in list(sandbox.sessions):
            session.sandboxUnavailable(message)
        if sandbox.connection is not None:
            sandbox.connection.abort(message)
        self._store.update(sandbox.id, state=sandbox.state.value)
        self._event("sandbox.failed", sandbox, reason=reason)
        self._removeContainer(sandbox)
        # The record stays visible (state failed) until DELETE or its ttl.
        if sandbox.idle_since is None:
            sandbox.idle_since = self._reactor.seconds()
        self.reaper.arm(sandbox)

    @staticmethod
    def _dropDetached(sandbox):
        detached, sandbox.detached = sandbox.detached, {}
        for session in detached.values():
            session.discard()
