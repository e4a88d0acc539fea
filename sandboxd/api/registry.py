"""
Which WebSocket sessions are open on each sandbox, and which detached ones
wait for a resume: kept by the API, not in the sandbox model.

The registry tells the manager when a sandbox's first session opens
(``inUse``) and its last one closes (``idle``), and it observes the
lifecycle (L{sandboxd.lifecycle}): when a sandbox fails or its removal
begins, its sessions are closed with the reason and its detached sessions
are dropped; when the daemon stops under open sessions, they are closed.
"""

from zope.interface import implementer

from sandboxd.lifecycle import ISandboxObserver
from sandboxd.sandbox import State


@implementer(ISandboxObserver)
class SessionRegistry:
    """
    The sessions of the sandboxes ``manager`` owns.
    """

    def __init__(self, manager):
        self._manager = manager
        self._open = {}
        self._detached = {}

    # Open sessions

    def opened(self, sandbox, session):
        """
        ``session`` opened on ``sandbox``.
        """
        sessions = self._open.setdefault(sandbox.id, set())
        first = not sessions
        sessions.add(session)
        if first:
            self._manager.inUse(sandbox)

    def closed(self, sandbox, session):
        """
        ``session`` closed (a session not open is ignored).
        """
        sessions = self._open.get(sandbox.id)
        if not sessions or session not in sessions:
            return
        sessions.discard(session)
        if not sessions:
            del self._open[sandbox.id]
            self._manager.idle(sandbox)

    def sessionsOf(self, sandbox):
        """
        The sessions open on ``sandbox`` now (a copy).
        """
        return set(self._open.get(sandbox.id, ()))

    # Detached sessions

    def keep(self, sandbox, detached):
        """
        Keep a detached session of ``sandbox`` under its token.
        """
        self._detached.setdefault(sandbox.id, {})[detached.token] = detached

    def take(self, sandbox, token):
        """
        The detached session ``token`` of ``sandbox``, no longer kept; None
        when there is none.
        """
        kept = self._detached.get(sandbox.id, {})
        detached = kept.pop(token, None)
        if not kept:
            self._detached.pop(sandbox.id, None)
        return detached

    def detachedOf(self, sandbox):
        """
        The detached sessions of ``sandbox`` by token (a copy).
        """
        return dict(self._detached.get(sandbox.id, {}))

    def expire(self, sandbox, detached):
        """
        Drop ``detached`` if it is still the one kept under its token.
        """
        if self._detached.get(sandbox.id, {}).get(detached.token) is detached:
            self.take(sandbox, detached.token)
            detached.discard()

    # The lifecycle

    def sandboxChanged(self, transition):
        sandbox, new = transition.sandbox, transition.new
        if new is State.FAILED:
            self._end(sandbox, f"the sandbox failed: {transition.reason}", normal=False)
        elif new is State.DESTROYING:
            self._end(sandbox, "the sandbox was destroyed", normal=True)
        elif new is State.DISCONNECTED and transition.old not in (None, State.PAUSED):
            # Moved there with sessions open: the daemon is stopping.
            for session in self.sessionsOf(sandbox):
                session.sandboxUnavailable(transition.reason or "the sandbox disconnected")

    def _end(self, sandbox, reason, normal):
        for detached in self._detached.pop(sandbox.id, {}).values():
            detached.discard()
        for session in self.sessionsOf(sandbox):
            session.sandboxUnavailable(reason, normal=normal)
