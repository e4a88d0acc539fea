"""
The containers (or micro-VMs) under sandboxes: starting one with its agent
connected, holding that agent through restarts inside the sandbox, and
removing the container in the background.
"""

import os

from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from agent import wire
from sandboxd.protocols.link import AgentLink
from sandboxd.runtimes.interface import SandboxSpec
from sandboxd.sandbox import Sandbox, State
from sandboxd.templates.bake import seed


class SandboxDestroyed(Exception):
    """
    The sandbox was destroyed while it was being created.
    """


class Containers:
    """
    Boots and removes the containers of sandboxes for a manager.

    A boot that fails, or whose sandbox is destroyed meanwhile, removes
    whatever it made.  ``settle`` waits for the boots and removals under way,
    so that no container outlives the daemon that made it.
    """

    log = Logger()

    def __init__(self, reactor, runtime, lifecycle, failures, connect, owner,
                 released=None):
        self._reactor = reactor
        self._runtime = runtime
        self._lifecycle = lifecycle
        self._failures = failures
        self._connect = connect
        self._owner = owner
        #: Called with each sandbox whose container is gone (its egress
        #: rules go only then: a dying container stays restricted).
        self._released = released or (lambda sandbox: None)
        self._byContainer = {}
        self._removals = set()
        self._booting = 0

    def new(self, profile, memory, cpu, storage, node_id=""):
        """
        A sandbox of ``profile``'s image and runtime in this shape, not
        booted yet, with a fresh id and agent secret.
        """
        suffix = os.urandom(4).hex()
        return Sandbox(
            id=f"sbx-{node_id}-{suffix}" if node_id else f"sbx-{suffix}",
            profile=profile.name,
            image=profile.image,
            runtime=profile.runtime,
            memory=memory,
            cpu=cpu,
            storage=storage,
            secret=wire.new_secret(),
            created=self._reactor.seconds(),
        )

    def get(self, container_id):
        """
        The sandbox living in this container, or None.
        """
        return self._byContainer.get(container_id)

    async def guarded(self, work):
        """
        Run ``work()`` (a coroutine function) counted as a boot under way:
        ``settle`` waits for it.
        """
        self._booting += 1
        try:
            return await work()
        finally:
            self._booting -= 1

    async def boot(self, sandbox):
        """
        Start the sandbox's container and connect its agent; on any failure
        remove whatever was made and re-raise.
        """
        await self.guarded(lambda: self._start(sandbox))

    async def _start(self, sandbox):
        spec = SandboxSpec(
            sandbox_id=sandbox.id,
            image=sandbox.image,
            runtime=sandbox.runtime,
            memory=sandbox.memory,
            cpu=sandbox.cpu,
            storage=sandbox.storage,
            secret=sandbox.secret,
            profile=sandbox.profile,
            owner=self._owner,
            mounts=tuple((v["source"], v["path"], v["read_only"]) for v in sandbox.volumes),
        )
        try:
            started = await self._runtime.start(spec)
            sandbox.container_id = started.container_id
            sandbox.endpoint = started.endpoint
            sandbox.liveness_scale = started.liveness_scale
            self._byContainer[started.container_id] = sandbox
            if sandbox.state is not State.CREATING:
                raise SandboxDestroyed(f"sandbox {sandbox.id} was destroyed")
            sandbox.connection = await self._connect(
                self._reactor, started.endpoint, sandbox.secret,
                deadline=started.connect_deadline, label=sandbox.id,
            )
            if sandbox.template is not None:
                # Its /root from the template's seed (sandboxd/templates/bake.py).
                await seed(sandbox.connection)
            if sandbox.state is not State.CREATING:
                raise SandboxDestroyed(f"sandbox {sandbox.id} was destroyed")
        except Exception:
            if sandbox.connection is not None:
                sandbox.connection.disconnect()
            if sandbox.state is State.CREATING:
                self._lifecycle.move(sandbox, State.FAILED, "its boot failed")
            self.remove(sandbox)
            raise
        self._keepAgent(sandbox)

    def adopt(self, sandbox):
        """
        Take back a sandbox whose container and agent outlived a restart
        (one adopted paused has no connection yet: ``attach`` gives it one).
        """
        self._byContainer[sandbox.container_id] = sandbox
        if sandbox.connection is not None:
            self._keepAgent(sandbox)

    def attach(self, sandbox, connection):
        """
        Hold ``connection`` as the agent of ``sandbox`` (adopted paused,
        now resumed).
        """
        sandbox.connection = connection
        self._keepAgent(sandbox)

    def _keepAgent(self, sandbox):
        """
        Hold the sandbox's agent through a link that survives the agent
        being killed and restarted inside the sandbox; the sandbox fails
        when the link is lost for good.
        """

        def reconnect(deadline):
            return ensureDeferred(self._connect(
                self._reactor, sandbox.endpoint, sandbox.secret,
                deadline=deadline, label=sandbox.id,
            ))

        sandbox.connection = AgentLink(
            sandbox.connection, reconnect, self._reactor, sandbox.id
        )
        self._failures.watchAgent(sandbox)

    def remove(self, sandbox, thaw=False):
        """
        Remove the sandbox's container in the background; a destroying
        sandbox becomes destroyed once it is gone.  With ``thaw`` (it was
        paused) it is resumed first: the engine takes seconds to kill a
        paused gVisor sandbox.
        """
        container_id = sandbox.container_id
        if container_id is None:
            if sandbox.state is State.DESTROYING:
                self._lifecycle.move(sandbox, State.DESTROYED)
            return
        if thaw:
            removal = self._runtime.resume(container_id)
            removal.addErrback(lambda f: None)
            removal.addCallback(lambda _: self._runtime.destroy(container_id))
        else:
            removal = self._runtime.destroy(container_id)
        self._removals.add(removal)

        def removed(result):
            self._removals.discard(removal)
            if self._byContainer.get(container_id) is sandbox:
                del self._byContainer[container_id]
            if not isinstance(result, Failure):
                self._released(sandbox)
            if sandbox.state is State.DESTROYING:
                self._lifecycle.move(sandbox, State.DESTROYED)
            return result

        removal.addBoth(removed)
        removal.addErrback(
            lambda f: self.log.failure(
                "removing sandbox {sandbox} failed", f, sandbox=sandbox.id
            )
        )

    async def settle(self, timeout):
        """
        Wait (at most ``timeout`` seconds) for the boots and removals under
        way: a boot cut short ends in a removal, so wait for both.
        """
        give_up = self._reactor.seconds() + timeout
        while (self._booting or self._removals) and self._reactor.seconds() < give_up:
            if self._removals:
                await DeferredList(list(self._removals), consumeErrors=True)
            else:
                await deferLater(self._reactor, 0.05, lambda: None)
