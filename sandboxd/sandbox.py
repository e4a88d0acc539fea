"""
A sandbox as the daemon knows it, and the legal moves of its life.

States:

- ``creating``: its container is starting and its agent not yet connected.
- ``ready``: warm in the pool, agent connected, owned by nobody.
- ``running``: handed to a caller.
- ``destroying``: removal asked; its container is going away.
- ``destroyed``: gone.
- ``failed``: it could not be created, or its agent was lost; it is removed.
"""

import enum
from datetime import datetime, timezone

import attr


class State(enum.Enum):
    CREATING = "creating"
    READY = "ready"
    RUNNING = "running"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    FAILED = "failed"


_LEGAL = {
    State.CREATING: {State.READY, State.RUNNING, State.DESTROYING, State.FAILED},
    State.READY: {State.RUNNING, State.DESTROYING, State.FAILED},
    State.RUNNING: {State.DESTROYING, State.FAILED},
    State.FAILED: {State.DESTROYING},
    State.DESTROYING: {State.DESTROYED},
    State.DESTROYED: set(),
}


class IllegalTransition(Exception):
    """
    A sandbox was asked to move where its state machine does not go.
    """


@attr.s(auto_attribs=True, eq=False)
class Sandbox:
    """
    One sandbox: what it was made from, where it is, who talks to it.
    """

    id: str
    profile: str
    image: str
    runtime: str
    memory: int
    cpu: float
    storage: int
    secret: str = attr.ib(repr=False)
    ttl: int = 0
    labels: dict = attr.ib(factory=dict)
    template: str = None
    created: float = 0.0
    method: str = "cold"
    state: State = State.CREATING
    container_id: str = None
    connection: object = attr.ib(default=None, repr=False)
    sessions: set = attr.ib(factory=set, repr=False)

    def moveTo(self, state):
        """
        Change state, refusing moves the table above does not allow.
        """
        if state not in _LEGAL[self.state]:
            raise IllegalTransition(
                f"sandbox {self.id} cannot go from {self.state.value} to {state.value}"
            )
        self.state = state

    @property
    def alive(self):
        return self.state in (State.CREATING, State.READY, State.RUNNING)

    def toJSON(self):
        """
        The public shape of the sandbox (docs/api.md).
        """
        return {
            "id": self.id,
            "profile": self.profile,
            "template": self.template,
            "image": self.image,
            "runtime": self.runtime,
            "state": self.state.value,
            "created": datetime.fromtimestamp(self.created, timezone.utc)
            .isoformat()
            .replace("+00:00", "Z"),
            "ttl": self.ttl,
            "labels": dict(self.labels),
            "memory": self.memory,
            "cpu": self.cpu,
            "storage": self.storage,
            "method": self.method,
        }
