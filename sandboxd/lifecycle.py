"""
The one place where sandboxes change state, and the observers that react.

A sandbox's state (the table in L{sandboxd.sandbox}) changes only through
L{Lifecycle.move}; after each move every observer hears of it, in the order
they were added, on the reactor thread.  What a change means for the state
store, the event log, the idle reaper, the API's sessions, the tunnels and
the metrics lives in those observers, not in the code that decides the move.

A sandbox the daemon process sees for the first time without creating it
(adopted after a restart) is announced with L{Lifecycle.announce}: a
transition whose C{old} is None.
"""

import attr
from twisted.logger import Logger
from zope.interface import Interface

from sandboxd.sandbox import State


@attr.s(frozen=True, auto_attribs=True)
class Transition:
    """
    A sandbox moved from ``old`` to ``new`` (``old`` None: it is new to
    this daemon process), for ``reason`` when one was given.
    """

    sandbox: object
    old: State
    new: State
    reason: str = None

    @property
    def handedOut(self):
        """
        The sandbox was just handed to its caller (warm or cold).
        """
        return self.new is State.RUNNING and self.old in (State.CREATING, State.READY)

    @property
    def ending(self):
        """
        The sandbox stops serving: it failed, or its removal began.
        """
        return self.new in (State.FAILED, State.DESTROYING)


class ISandboxObserver(Interface):
    """
    Something that reacts to sandboxes changing state.
    """

    def sandboxChanged(transition):
        """
        Called with a L{Transition} after the sandbox took its new state.
        Must not raise (a failure is logged and the next observer runs)
        and must not move the sandbox again.
        """


class Lifecycle:
    """
    Moves sandboxes between states and tells the observers.
    """

    log = Logger()

    def __init__(self):
        self.observers = []

    def observe(self, observer):
        """
        Add an L{ISandboxObserver}; observers hear of changes in the order
        they were added.
        """
        self.observers.append(observer)

    def move(self, sandbox, state, reason=None):
        """
        Move ``sandbox`` to ``state`` (raising IllegalTransition where the
        table forbids it), then tell every observer.
        """
        old = sandbox.state
        sandbox.moveTo(state)
        self._tell(Transition(sandbox, old, state, reason))

    def announce(self, sandbox, reason=None):
        """
        Tell every observer of a sandbox this process did not create.
        """
        self._tell(Transition(sandbox, None, sandbox.state, reason))

    def _tell(self, transition):
        for observer in list(self.observers):
            try:
                observer.sandboxChanged(transition)
            except Exception:
                self.log.failure(
                    "{observer!r} failed on {sandbox} {old} -> {new}",
                    observer=observer,
                    sandbox=transition.sandbox.id,
                    old=transition.old and transition.old.value,
                    new=transition.new.value,
                )
