"""
A sandbox as the daemon knows it, and the legal moves of its life.

States:

- ``creating``: its container is starting and its agent not yet connected.
- ``ready``: warm in the pool, agent connected, owned by nobody.
- ``running``: handed to a caller; sessions may be open.
- ``disconnected``: its last session closed (or the daemon restarted under
  it); it waits ``ttl`` seconds for a session before it is destroyed.
- ``paused``: frozen (``POST /sandboxes/{id}/pause``, or its ttl ran out
  with ``ttl_action = "pause"``): its processes and memory are kept but get
  no CPU; calls on it answer ``SANDBOX_PAUSED`` until it is resumed (back to
  ``running`` with a session open, else ``disconnected``).
- ``destroying``: removal asked; its container is going away.
- ``destroyed``: gone.
- ``failed``: it could not be created, or its container died or its agent
  was lost; its container is removed, its record stays until DELETE or its
  ttl runs out.

Every state but ``destroyed`` has a way out: DELETE moves any of them to
``destroying``.
"""

import enum
from datetime import datetime, timezone

import attr

from sandboxd.protocols.endpoints import AgentEndpoint, parse_endpoint
from sandboxd.store import SandboxRecord


def iso_time(seconds):
    """
    A POSIX time as ISO 8601 UTC ending in Z.
    """
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


class State(enum.Enum):
    CREATING = "creating"
    READY = "ready"
    RUNNING = "running"
    DISCONNECTED = "disconnected"
    PAUSED = "paused"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    FAILED = "failed"


_LEGAL = {
    State.CREATING: {State.READY, State.RUNNING, State.DESTROYING, State.FAILED},
    State.READY: {State.RUNNING, State.DESTROYING, State.FAILED},
    State.RUNNING: {State.DISCONNECTED, State.PAUSED, State.DESTROYING, State.FAILED},
    State.DISCONNECTED: {State.RUNNING, State.PAUSED, State.DESTROYING, State.FAILED},
    State.PAUSED: {State.RUNNING, State.DISCONNECTED, State.DESTROYING, State.FAILED},
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
    #: What its idle clock running out does: "destroy" or "pause".
    ttl_action: str = "destroy"
    #: A POSIX time at which it is destroyed whatever it does (None: never).
    expires_at: float = None
    #: Volumes mounted in it: [{"name", "path", "read_only"}] (sandboxd/volumes/).
    volumes: list = attr.ib(factory=list)
    template: str = None
    identity: str = ""
    created: float = 0.0
    method: str = "cold"
    state: State = State.CREATING
    container_id: str = None
    #: Where its agent listens (sandboxd/protocols/endpoints.py).
    endpoint: str = None
    #: When it last had no session (None while one is open).
    idle_since: float = None
    connection: object = attr.ib(default=None, repr=False)
    #: A caller asked for it (a cold create under way, or handed out);
    #: False while it waits in the warm pool.
    claimed: bool = False
    #: OOM kills the engine reported in its container.
    oom_kills: int = attr.ib(default=0, repr=False)
    #: Its egress policy (sandboxd/egress/policy.py); None until handed out.
    network: object = attr.ib(default=None, repr=False)
    #: The names of its secrets (their values live in the daemon's
    #: SecretVault only, sandboxd/egress/secrets.py).
    secret_names: tuple = attr.ib(default=(), repr=False)
    #: How many times ``pool.liveness_timeout`` its agent may take to answer
    #: (the runtime's Started.liveness_scale; 1 for a sandbox adopted after
    #: a restart).
    liveness_scale: float = attr.ib(default=1.0, repr=False)

    def moveTo(self, state):
        """
        Change state, refusing moves the table above does not allow.  Only
        L{sandboxd.lifecycle.Lifecycle.move} calls this: it tells the
        observers.
        """
        if state not in _LEGAL[self.state]:
            raise IllegalTransition(
                f"sandbox {self.id} cannot go from {self.state.value} to {state.value}"
            )
        self.state = state

    @property
    def address(self):
        """
        The IP at which the sandbox's own ports are reachable from the host
        (a container's bridge IP), or None (no network, as a VM without one).
        """
        return self._agentEndpoint().address

    @property
    def reserved_ports(self):
        """
        The ports inside the sandbox nothing but the daemon may reach: its
        agent's TCP port (none when the agent is on a VM stream).
        """
        return self._agentEndpoint().reserved_ports

    def _agentEndpoint(self):
        if self.endpoint is None:
            return AgentEndpoint("unix")
        return parse_endpoint(self.endpoint)

    @property
    def alive(self):
        return self.state in (
            State.CREATING, State.READY, State.RUNNING, State.DISCONNECTED, State.PAUSED
        )

    def record(self):
        """
        The sandbox as the state store keeps it.
        """
        return SandboxRecord(
            id=self.id,
            profile=self.profile,
            template=self.template,
            image=self.image,
            runtime=self.runtime,
            memory=self.memory,
            cpu=self.cpu,
            storage=self.storage,
            ttl=self.ttl,
            labels=dict(self.labels),
            ttl_action=self.ttl_action,
            expires_at=self.expires_at,
            volumes=[dict(v) for v in self.volumes],
            identity=self.identity,
            method=self.method,
            state=self.state.value,
            container_id=self.container_id,
            endpoint=self.endpoint,
            secret=self.secret,
            created=self.created,
            idle_since=self.idle_since,
        )

    @classmethod
    def fromRecord(cls, record):
        """
        A sandbox (with no connection yet) from its stored record.
        """
        fields = attr.asdict(record, recurse=False)
        fields["state"] = State(record.state)
        return cls(claimed=True, **fields)

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
            "created": iso_time(self.created),
            "ttl": self.ttl,
            "labels": dict(self.labels),
            "ttl_action": self.ttl_action,
            "expires_at": None if self.expires_at is None else iso_time(self.expires_at),
            "volumes": [{k: v[k] for k in ("name", "path", "read_only")} for v in self.volumes],
            "memory": self.memory,
            "cpu": self.cpu,
            "storage": self.storage,
            "method": self.method,
            "identity": self.identity,
            "network": self.network.toJSON() if self.network is not None else "open",
            "secrets": list(self.secret_names),
        }
