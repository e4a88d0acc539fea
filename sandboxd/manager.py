"""
The sandboxes a daemon owns: creating them (warm or cold), finding them,
destroying them.
"""

import os

from twisted.internet.defer import DeferredList
from twisted.internet.task import deferLater
from twisted.logger import Logger

from agent import wire
from sandboxd.capacity import AtCapacity, Capacity  # noqa: F401 (AtCapacity: re-exported)
from sandboxd.pools import PoolSet
from sandboxd.protocols.connect import connect_agent
from sandboxd.runtimes.interface import SandboxSpec
from sandboxd.sandbox import Sandbox, State


#: Seconds ``stop`` waits for boots and removals under way.
STOP_TIMEOUT = 60.0


class UnknownProfile(Exception):
    """
    No profile has this name.
    """


class SandboxManager:
    """
    Owns every sandbox of the daemon and the warm pools that feed them.

    ``create`` hands out a warm sandbox when the request matches its
    profile's shape, else boots one cold; ``destroy`` answers at once and
    removes the container in the background (``stop`` waits for those).
    """

    log = Logger()

    def __init__(self, reactor, runtime, config, owner="", agent_port=7070):
        self._reactor = reactor
        self._runtime = runtime
        self._config = config
        self._owner = owner
        self._agent_port = agent_port
        self.profiles = dict(config.profiles)
        self._sandboxes = {}
        self._removals = set()
        self._booting = 0
        self.capacity = Capacity(config.limits)
        self.pools = PoolSet(
            self.profiles, config.pool, self._bootWarm, self._discard, reactor
        )
        self.started = reactor.seconds()

    # Life of the daemon

    async def start(self):
        """
        Prepare the runtime, remove containers a previous run of this daemon
        left behind, and fill the warm pools.
        """
        await self._runtime.prepare({p.runtime for p in self.profiles.values()})
        await self._removeOrphans()
        self.pools.start()

    async def _removeOrphans(self):
        owned = await self._runtime.list_owned()
        mine = [
            container_id
            for container_id, labels in owned
            if labels.get("sandboxd.owner") == self._owner
        ]
        if mine:
            self.log.info("removing {n} orphaned sandboxes", n=len(mine))
            await DeferredList(
                [self._runtime.destroy(container_id) for container_id in mine],
                consumeErrors=True,
            )

    async def stop(self):
        """
        Destroy every sandbox, warm and running, and wait for the engine.
        """
        for sandbox in self.pools.stop():
            self._discard(sandbox)
        for sandbox in list(self._sandboxes.values()):
            self.destroy(sandbox.id)
        # Boots under way end in a discard (their pool is stopped), which
        # queues a removal: wait for both, or their containers outlive us.
        give_up = self._reactor.seconds() + STOP_TIMEOUT
        while (self._booting or self._removals) and self._reactor.seconds() < give_up:
            if self._removals:
                await DeferredList(list(self._removals), consumeErrors=True)
            else:
                await deferLater(self._reactor, 0.05, lambda: None)

    # Queries

    def get(self, sandbox_id):
        return self._sandboxes.get(sandbox_id)

    def list(self, labels=None):
        """
        Live sandboxes, oldest first, having every (key, value) in labels.
        """
        wanted = labels or {}
        return sorted(
            (
                s
                for s in self._sandboxes.values()
                if all(s.labels.get(k) == v for k, v in wanted.items())
            ),
            key=lambda s: s.created,
        )

    @property
    def count(self):
        return len(self._sandboxes)

    # Creating

    async def create(
        self, profile=None, memory=None, cpu=None, storage=None, ttl=0, labels=None
    ):
        """
        A running sandbox for the caller: warm when the pool has one of
        exactly this shape, cold otherwise.
        """
        name = profile or "default"
        chosen = self.profiles.get(name)
        if chosen is None:
            raise UnknownProfile(name)
        shape = (
            memory if memory is not None else chosen.memory,
            cpu if cpu is not None else chosen.cpu,
            storage if storage is not None else chosen.storage,
        )
        self.capacity.check(self._sandboxes.values(), shape[0], shape[1])
        sandbox = None
        if shape == (chosen.memory, chosen.cpu, chosen.storage):
            sandbox = self.pools.claim(name)
        if sandbox is None:
            sandbox = self._newSandbox(chosen, *shape)
            self._sandboxes[sandbox.id] = sandbox
            try:
                await self._boot(sandbox)
            except Exception:
                self._sandboxes.pop(sandbox.id, None)
                raise
            sandbox.method = "cold"
        else:
            sandbox.method = "warm"
            self._sandboxes[sandbox.id] = sandbox
        sandbox.ttl = ttl
        sandbox.labels = dict(labels or {})
        sandbox.created = self._reactor.seconds()
        sandbox.moveTo(State.RUNNING)
        return sandbox

    def _newSandbox(self, profile, memory, cpu, storage):
        node = self._config.server.node_id
        suffix = os.urandom(4).hex()
        return Sandbox(
            id=f"sbx-{node}-{suffix}" if node else f"sbx-{suffix}",
            profile=profile.name,
            image=profile.image,
            runtime=profile.runtime,
            memory=memory,
            cpu=cpu,
            storage=storage,
            secret=wire.new_secret(),
            created=self._reactor.seconds(),
        )

    async def _bootWarm(self, profile):
        sandbox = self._newSandbox(
            profile, profile.memory, profile.cpu, profile.storage
        )
        await self._boot(sandbox)
        # A first command costs the agent more (cold code paths, first
        # fork): pay it here rather than in the caller's first exec.  It
        # counts as booting, so that stop() waits for it and its removal.
        self._booting += 1
        try:
            await sandbox.connection.call("process.exec", {"cmd": ["true"]})
        except Exception:
            self._discard(sandbox)
            raise
        finally:
            self._booting -= 1
        sandbox.moveTo(State.READY)
        return sandbox

    async def _boot(self, sandbox):
        """
        Start the container and connect its agent; on any failure remove
        whatever was made and re-raise.
        """
        self._booting += 1
        try:
            await self._bootContainer(sandbox)
        finally:
            self._booting -= 1

    async def _bootContainer(self, sandbox):
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
        )
        try:
            started = await self._runtime.start(spec)
            sandbox.container_id = started.container_id
            sandbox.connection = await connect_agent(
                self._reactor, started.host, started.port, sandbox.secret,
                label=sandbox.id,
            )
        except Exception:
            sandbox.moveTo(State.FAILED)
            self._removeContainer(sandbox)
            raise
        sandbox.connection.whenLost().addCallback(
            lambda lost: self._agentLost(sandbox, lost)
        )

    # Destroying

    def _agentLost(self, sandbox, lost):
        if sandbox.state is State.READY:
            self.pools[sandbox.profile].remove(sandbox)
            sandbox.moveTo(State.FAILED)
            self._removeContainer(sandbox)
        elif sandbox.state is State.RUNNING:
            self.log.warn(
                "sandbox {sandbox} lost its agent: {error}", sandbox=sandbox.id,
                error=lost,
            )

    def destroy(self, sandbox_id):
        """
        Forget the sandbox now and remove its container in the background.
        Return False when no sandbox has this id.
        """
        sandbox = self._sandboxes.pop(sandbox_id, None)
        if sandbox is None:
            return False
        self._discard(sandbox)
        return True

    def _discard(self, sandbox):
        if sandbox.state in (State.DESTROYING, State.DESTROYED):
            return
        sandbox.moveTo(State.DESTROYING)
        for session in list(sandbox.sessions):
            session.sandboxDestroyed()
        if sandbox.connection is not None:
            sandbox.connection.disconnect()
        self._removeContainer(sandbox)

    def _removeContainer(self, sandbox):
        if sandbox.container_id is None:
            if sandbox.state is State.DESTROYING:
                sandbox.moveTo(State.DESTROYED)
            return
        removal = self._runtime.destroy(sandbox.container_id)
        self._removals.add(removal)

        def removed(result):
            self._removals.discard(removal)
            if sandbox.state is State.DESTROYING:
                sandbox.moveTo(State.DESTROYED)
            return result

        removal.addBoth(removed)
        removal.addErrback(
            lambda f: self.log.failure(
                "removing sandbox {sandbox} failed", f, sandbox=sandbox.id
            )
        )

    def health(self):
        return {
            "sandboxes": len(self._sandboxes),
            "pool": self.pools.status(),
        }
