"""
The seam between the daemon and whatever runs sandboxes.
"""

import attr
from zope.interface import Attribute, Interface


@attr.s(frozen=True, auto_attribs=True)
class SandboxSpec:
    """
    Everything a runtime needs to start one sandbox.
    """

    sandbox_id: str
    image: str
    runtime: str  # "docker", "docker+gvisor", "qemu" or "firecracker"
    memory: int  # bytes
    cpu: float  # CPUs
    storage: int  # bytes of /root
    secret: str  # the agent's per-sandbox secret
    profile: str = "default"
    labels: dict = attr.ib(factory=dict)
    owner: str = ""  # which daemon made it (its data_dir): label sandboxd.owner
    #: Volumes to bind-mount: (host source, path inside, read-only) triples.
    mounts: tuple = ()


@attr.s(frozen=True, auto_attribs=True)
class Started:
    """
    A running sandbox: where its agent listens (an agent endpoint string,
    L{sandboxd.protocols.endpoints}) and the IP at which its own ports are
    reachable from the host (None when there is none, as for a VM without
    a network device).
    """

    sandbox_id: str
    container_id: str
    endpoint: str
    address: str = None
    #: Seconds the daemon gives the agent to answer after the start (a VM
    #: under software emulation boots in seconds, a container in
    #: milliseconds).
    connect_deadline: float = 30.0
    #: How many times ``pool.liveness_timeout`` its agent may take to answer
    #: a PING (a VM under software emulation runs tens of times slower
    #: than a container, and more so on a busy host).
    liveness_scale: float = 1.0


class IRuntime(Interface):
    """
    Starts and removes sandboxes.  Every method returns a Deferred and never
    blocks the reactor.
    """

    name = Attribute("The runtime's config name, e.g. 'docker'.")

    def prepare(runtimes):
        """
        Make the runtime ready (network, checks) for profiles using the given
        runtime names; fail with RuntimeUnavailable naming what is missing.
        """

    def start(spec):
        """
        Start a sandbox for SandboxSpec; fire with Started.  On failure,
        nothing is left behind and the Deferred fails with RuntimeFailure.
        """

    def destroy(container_id):
        """
        Remove a sandbox's container; succeeds if it is already gone.
        """

    def watch(callback):
        """
        Call ``callback(container_id, action)`` as soon as one of our
        sandboxes dies (``"die"``), is frozen (``"pause"``) or thawed
        (``"unpause"``), or has a process killed for want of memory
        (``"oom"``); return an object whose ``stop()`` ends the watch.
        """

    def pause(container_id):
        """
        Freeze every process of the sandbox, keeping its memory (a
        container's cgroup freezer); fail with L{PauseNotSupported} where
        the runtime cannot.
        """

    def resume(container_id):
        """
        Thaw a sandbox ``pause`` froze; succeeds if it is not frozen.
        """

    def stats(container_id):
        """
        Fire with the engine's raw resource sample of the container (the
        Docker Engine API's stats object, with ``precpu_stats`` filled so a
        CPU rate can be computed).
        """

    def list_owned():
        """
        Fire with a list of (container_id, labels dict) of every container
        this daemon family created (labelled sandboxd.managed=1).
        """


class RuntimeFailure(Exception):
    """
    The engine failed to do what was asked; the message says what.
    """


class RuntimeUnavailable(RuntimeFailure):
    """
    The engine, an image or a runtime a profile needs is missing.
    """


class PauseNotSupported(RuntimeFailure):
    """
    This runtime cannot pause its sandboxes.
    """
