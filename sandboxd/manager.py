"""
The sandboxes a daemon owns: creating them (warm or cold), finding them,
failing dead ones, destroying them, and adopting them again after a restart.

Every change of a sandbox's state goes through ``manager.lifecycle``
(L{sandboxd.lifecycle}); its observers keep the record and the event log
(L{sandboxd.recording}), time out idle sandboxes (L{sandboxd.lifetimes}),
and close the API's sessions.
"""

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from sandboxd.adoption import reconnect
from sandboxd.booting import Containers, SandboxDestroyed  # noqa: F401 (re-exported)
from sandboxd.failing import FailureWatch
from sandboxd.heartbeat import Heartbeat
from sandboxd.lifecycle import Lifecycle
from sandboxd.lifetimes import Expiry, IdleReaper
from sandboxd.pausing import PAUSABLE, Pauser
from sandboxd.capacity import AtCapacity, Capacity  # noqa: F401 (AtCapacity: re-exported)
from sandboxd.egress.guard import NetworkUnsupported
from sandboxd.egress.policy import OPEN_POLICY
from sandboxd.pools import PoolSet
from sandboxd.protocols.connect import connect_agent
from sandboxd.recording import LifecycleRecorder
from sandboxd.sandbox import State
from sandboxd.templates.warm import TemplateProfile


#: Seconds ``stop`` waits for boots and removals under way.
STOP_TIMEOUT = 60.0


class UnknownProfile(Exception):
    """
    No profile has this name.
    """


class VolumesNotSupported(Exception):
    """
    Volumes were asked of a sandbox whose runtime cannot mount them.
    """


#: The runtimes that mount volumes (a bind mount into the container).
MOUNTING = ("docker", "docker+gvisor")


class SandboxManager:
    """
    Owns every sandbox of the daemon and the warm pools that feed them.

    ``create`` hands out a warm sandbox when the request matches its
    profile's shape, else boots one cold; ``destroy`` answers at once and
    removes the container in the background (``stop`` waits for those).
    Handed-out sandboxes are recorded in ``store`` before the caller hears
    of them, so a restarted daemon finds and adopts them (``start``).
    """

    log = Logger()

    def __init__(
        self, reactor, runtime, config, store, owner="", connect=connect_agent,
        egress=None,
    ):
        self._reactor = reactor
        self._runtime = runtime
        self._config = config
        self._store = store
        self._owner = owner
        self._connect = connect
        self.profiles = dict(config.profiles)
        self._sandboxes = {}
        self._watching = None
        self._stopping = False
        self._up = False
        self._waitingForStart = []
        self.lifecycle = Lifecycle()
        self.recorder = LifecycleRecorder(store, reactor)
        self.reaper = IdleReaper(reactor, self._expired, config.limits.idle_timeout)
        self.expiry = Expiry(reactor, self._reachedExpiry)
        self.lifecycle.observe(self.recorder)
        self.lifecycle.observe(self.reaper)
        self.lifecycle.observe(self.expiry)
        self._failures = FailureWatch(self, self.recorder)
        #: Applies egress policies (sandboxd/egress/guard.py); None: this
        #: daemon enforces none, and refuses any policy but open.
        self.egress = egress
        self._containers = Containers(
            reactor, runtime, self.lifecycle, self._failures, connect, owner,
            released=egress.release if egress is not None else None,
        )
        self.pauser = Pauser(reactor, runtime, self.lifecycle, self._containers, connect,
                             self.fail)
        self.heartbeat = Heartbeat(
            reactor, self._sandboxes.values, self.fail,
            config.pool.health_interval, config.pool.liveness_timeout,
        )
        self.capacity = Capacity(config.limits)
        self.pools = PoolSet(
            self.profiles, config.pool, self._bootWarm, self._discard, reactor,
            notify=lambda type, **data: store.addEvent(type, None, reactor.seconds(), data),
        )
        self.started = reactor.seconds()

    # Life of the daemon

    async def start(self):
        """
        Prepare the runtime, adopt the recorded sandboxes whose agents still
        answer, remove every other container a previous run of this daemon
        left behind, and fill the warm pools.
        """
        await self._runtime.prepare({p.runtime for p in self.profiles.values()})
        self._watching = self._runtime.watch(self._failures.containerEvent)
        owned = await self._runtime.list_owned()
        mine = {
            container_id
            for container_id, labels in owned
            if labels.get("sandboxd.owner") == self._owner
        }
        adopted = await self._adopt(mine)
        if self.egress is not None:
            await self.egress.adopt(list(self._sandboxes.values()))
        orphans = mine - adopted
        if orphans:
            self.log.info("removing {n} orphaned sandboxes", n=len(orphans))
            await DeferredList(
                [self._runtime.destroy(container_id) for container_id in orphans],
                consumeErrors=True,
            )
        self.pools.start()
        self.heartbeat.start()
        self._up = True
        waiting, self._waitingForStart = self._waitingForStart, []
        for waiter in waiting:
            waiter.callback(None)

    async def _adopt(self, containers):
        """
        Take back every recorded sandbox whose container and agent are
        still there; forget the other records.  Return the container ids
        adopted.
        """
        records = self._store.sandboxes()
        adopted, given_up = await reconnect(
            self._reactor, records, containers, self._connect
        )
        for record, reason in given_up:
            if reason is not None:
                self.log.warn("sandbox {sandbox} is lost: {reason}",
                              sandbox=record.id, reason=reason)
            self.recorder.forget(record, reason)
        for sandbox in adopted:
            self._register(sandbox)
            self.lifecycle.announce(sandbox, "daemon restarted")
            # Sessions did not survive the restart: the sandbox is idle from
            # now (or from when it last was, if it was idle already).
            if sandbox.state is State.RUNNING:
                sandbox.idle_since = self._reactor.seconds()
                self.lifecycle.move(sandbox, State.DISCONNECTED, "daemon restarted")
            elif sandbox.state is State.PAUSED and sandbox.idle_since is None:
                sandbox.idle_since = self._reactor.seconds()
                self.recorder.idle(sandbox)
        if records:
            self.log.info("adopted {n} of {total} recorded sandboxes",
                          n=len(adopted), total=len(records))
        return {sandbox.container_id for sandbox in adopted}

    async def stop(self):
        """
        Destroy the warm sandboxes and wait for the engine.  Handed-out
        sandboxes are left running, recorded as disconnected: the next start
        adopts them, and their ttl counts the time the daemon was down.
        """
        self._stopping = True
        if self._watching is not None:
            self._watching.stop()
        self.reaper.stop()
        self.expiry.stop()
        self.heartbeat.stop()
        for sandbox in self.pools.stop():
            self._discard(sandbox)
        now = self._reactor.seconds()
        for sandbox in list(self._sandboxes.values()):
            if sandbox.state is State.RUNNING:
                sandbox.idle_since = now
                self.lifecycle.move(sandbox, State.DISCONNECTED, "the daemon is stopping")
            if sandbox.connection is not None:
                sandbox.connection.disconnect("the daemon is stopping")
        # Boots under way end in a discard (their pool is stopped), which
        # queues a removal: wait for both, or their containers outlive us.
        await self._containers.settle(STOP_TIMEOUT)

    async def reload(self, config):
        """
        Apply a new configuration live (sandboxd/reload.py): profiles and
        their pools, limits, pool sizing.  The runtimes of new profiles are
        prepared first; if that fails nothing changes.  Handed-out
        sandboxes keep what they were created with.  Return what the pools
        did (``PoolSet.reload``).
        """
        await self._runtime.prepare({p.runtime for p in config.profiles.values()})
        self._config = config
        self.profiles = dict(config.profiles)
        self.capacity.reload(config.limits)
        self.reaper.reload(config.limits.idle_timeout)
        self.heartbeat.reload(config.pool.health_interval, config.pool.liveness_timeout)
        return self.pools.reload(self.profiles, config.pool)

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
        self, profile=None, memory=None, cpu=None, storage=None, ttl=0, labels=None,
        identity="", template=None, ttl_action=None, expires_at=None, volumes=(),
        network=None, secrets=None,
    ):
        """
        A running sandbox for the caller (``identity``: its tenant, "" for
        none): warm when the pool has one of exactly this shape, cold
        otherwise.  From ``template`` (a TemplateRecord, sandboxd/templates/):
        its image and runtime, the shape of its profile (or of the default
        one), its /root.  ``ttl_action`` (None: the profile's) says what
        its idle clock running out does; ``expires_at`` (a POSIX time) ends
        it whatever it does; ``volumes`` (``{"name", "path", "read_only",
        "source"}``, sandboxd/volumes/) are mounted in it: always cold.
        one), its /root.  ``network`` (a NetworkPolicy) replaces the
        profile's egress policy; it is enforced before the caller hears of
        the sandbox (sandboxd/egress/), and so are ``secrets`` ({name:
        SecretSpec}: placeholders in its environment, values in the daemon).
        """
        if not self._up:
            # Adoption and orphan removal first: a container made meanwhile
            # could be taken for an orphan.
            waiter = Deferred()
            self._waitingForStart.append(waiter)
            await waiter
        name = profile or "default"
        if template is not None and profile is None and template.profile in self.profiles:
            name = template.profile
        chosen = self.profiles.get(name)
        if chosen is None:
            raise UnknownProfile(name)
        if network is None:
            network = getattr(chosen, "network", OPEN_POLICY)
        if template is not None:
            chosen = TemplateProfile.of(template, chosen)
        if volumes and chosen.runtime not in MOUNTING:
            raise VolumesNotSupported(f"the {chosen.runtime} runtime cannot mount volumes")
        self._checkNetwork(network, chosen.runtime, secrets)
        shape = (
            memory if memory is not None else chosen.memory,
            cpu if cpu is not None else chosen.cpu,
            storage if storage is not None else chosen.storage,
        )
        # Failed sandboxes stay listed but hold no container: they do not count.
        alive = (s for s in self._sandboxes.values() if s.alive)
        self.capacity.check(alive, shape[0], shape[1])
        sandbox = None
        if shape == (chosen.memory, chosen.cpu, chosen.storage) and not volumes:
            sandbox = (self.pools.claim(name) if template is None
                       else self.pools.claimTemplate(chosen))
        if sandbox is None:
            sandbox = self._newSandbox(chosen, *shape)
            sandbox.volumes = [dict(v) for v in volumes]
            sandbox.identity = identity
            sandbox.claimed = True
            sandbox.idle_since = self._reactor.seconds()
            self._sandboxes[sandbox.id] = sandbox
            try:
                await self._containers.boot(sandbox)
            except Exception:
                # Its failure is the caller's error: nothing stays to reap.
                self._sandboxes.pop(sandbox.id, None)
                self.reaper.disarm(sandbox)
                raise
            sandbox.method = "cold"
        else:
            sandbox.method = "warm"
            sandbox.identity = identity
            sandbox.claimed = True
            self._sandboxes[sandbox.id] = sandbox
        sandbox.profile = name
        sandbox.ttl = ttl
        sandbox.labels = dict(labels or {})
        sandbox.ttl_action = ttl_action or getattr(chosen, "ttl_action", "destroy")
        sandbox.expires_at = expires_at
        await self._restrict(sandbox, network, secrets)
        sandbox.created = sandbox.idle_since = self._reactor.seconds()
        self.lifecycle.move(sandbox, State.RUNNING)
        return sandbox

    def _checkNetwork(self, network, runtime, secrets):
        """
        Refuse (NetworkUnsupported) a policy or secrets this daemon cannot
        enforce.
        """
        if secrets and self.egress is None:
            raise NetworkUnsupported("this daemon runs no egress proxy: secrets refused")
        if secrets:
            self.egress.checkSecrets(secrets, runtime)
        if network.is_open:
            return
        if self.egress is None:
            raise NetworkUnsupported(
                f"this daemon enforces no egress rules: network {network.mode!r} refused")
        self.egress.check(network, runtime)

    async def _restrict(self, sandbox, network, secrets):
        """
        Enforce the sandbox's egress policy and give it its secrets'
        placeholders; if that fails it is destroyed.
        """
        if self.egress is None:
            sandbox.network = network
            return
        try:
            await self.egress.apply(sandbox, network)
            env = await self.egress.grant(sandbox, secrets)
            if env:
                await sandbox.connection.call("env.set", {"vars": env})
        except Exception:
            self.destroy(sandbox.id, reason="its egress rules could not be applied")
            raise
        if not sandbox.alive:
            # Destroyed meanwhile: its removal may have come before the rules.
            self.egress.release(sandbox)
            raise SandboxDestroyed(f"sandbox {sandbox.id} was destroyed")

    def _newSandbox(self, profile, memory, cpu, storage):
        sandbox = self._containers.new(
            profile, memory, cpu, storage, self._config.server.node_id
        )
        # A template's pool (sandboxd/templates/warm.py) names its template.
        sandbox.template = getattr(profile, "template", None)
        return sandbox

    async def _bootWarm(self, profile):
        sandbox = self._newSandbox(
            profile, profile.memory, profile.cpu, profile.storage
        )
        # The warm-up is part of the boot: stop() waits for it too (else the
        # reactor's shutdown cuts it off after stop() returned, and the
        # removal of its container never runs).
        await self._containers.guarded(lambda: self._warmUp(sandbox))
        self.lifecycle.move(sandbox, State.READY)
        return sandbox

    async def _warmUp(self, sandbox):
        await self._containers.boot(sandbox)
        # A first command costs the agent more (cold code paths, first
        # fork): pay it here rather than in the caller's first exec.
        try:
            await sandbox.connection.call("process.exec", {"cmd": ["true"]})
        except Exception:
            self._discard(sandbox)
            raise

    def _register(self, sandbox):
        self._sandboxes[sandbox.id] = sandbox
        self._containers.adopt(sandbox)

    def stopped(self, sandbox):
        """
        The sandbox's container stopped (the engine said it died): its
        address goes back to the engine at once, for the next container, so
        its egress rules go now rather than at the removal.
        """
        if self.egress is not None:
            self.egress.release(sandbox)

    def byContainer(self, container_id):
        """
        The sandbox living in this container, or None.
        """
        return self._containers.get(container_id)

    # Sessions and idle time

    def inUse(self, sandbox):
        """
        A first session opened on the sandbox: its idle clock stops.
        """
        self.reaper.disarm(sandbox)
        sandbox.idle_since = None
        if sandbox.state is State.DISCONNECTED:
            self.lifecycle.move(sandbox, State.RUNNING)
        else:
            self.recorder.idle(sandbox)

    def idle(self, sandbox):
        """
        Its last session closed: a ttl-0 sandbox is destroyed, any other
        waits ``ttl`` seconds for a session.
        """
        if sandbox.state is State.PAUSED:
            # Paused sandboxes are kept: the clock starts on resume.
            sandbox.idle_since = self._reactor.seconds()
            self.recorder.idle(sandbox)
            return
        if sandbox.state is not State.RUNNING:
            return
        if sandbox.ttl == 0:
            self.destroy(sandbox.id, reason="its last session closed (ttl 0)")
            return
        sandbox.idle_since = self._reactor.seconds()
        self.lifecycle.move(sandbox, State.DISCONNECTED)

    def update(self, sandbox, ttl=None, labels=None, expires_at=None):
        """
        Change a live sandbox's ``ttl``, ``labels`` and ``expires_at``
        (None: unchanged).  An idle sandbox's clock restarts under the new
        ttl, counted from when it became idle.
        """
        changes = {name: value for name, value in (
            ("ttl", ttl), ("labels", labels), ("expires_at", expires_at)) if value is not None}
        if not changes:
            return
        if ttl is not None:
            sandbox.ttl = ttl
        if labels is not None:
            sandbox.labels = dict(labels)
        if expires_at is not None:
            sandbox.expires_at = expires_at
            self.expiry.arm(sandbox)
        self.recorder.updated(sandbox, **changes)
        if ttl is not None and self.reaper.deadline(sandbox) is not None:
            self.reaper.arm(sandbox)

    def _expired(self, sandbox):
        reason = f"no session for {self.reaper.allowance(sandbox):g} s (ttl)"
        if sandbox.ttl_action == "pause" and sandbox.state in PAUSABLE:
            self.pauser.pauseOr(sandbox, reason, self.destroy)
        else:
            self.destroy(sandbox.id, reason=reason)

    def _reachedExpiry(self, sandbox):
        self.destroy(sandbox.id, reason="its expires_at time came")

    # Destroying

    def destroy(self, sandbox_id, reason="DELETE"):
        """
        Forget the sandbox now and remove its container in the background.
        Return False when no sandbox has this id.
        """
        sandbox = self._sandboxes.pop(sandbox_id, None)
        if sandbox is None:
            return False
        self._discard(sandbox, reason)
        return True

    def _discard(self, sandbox, reason=None):
        if sandbox.state in (State.DESTROYING, State.DESTROYED):
            return
        paused = sandbox.state is State.PAUSED
        self.lifecycle.move(sandbox, State.DESTROYING, reason)
        if sandbox.connection is not None:
            sandbox.connection.disconnect()
        self._containers.remove(sandbox, thaw=paused)

    def fail(self, sandbox, reason):
        """
        The sandbox's container or agent is gone: open calls end now, its
        sessions hear ``reason``, its container goes.  A handed-out sandbox
        stays listed (state failed) until DELETE or its ttl.
        """
        if self._stopping:
            return
        if sandbox.state is State.READY:
            self.pools[sandbox.profile].remove(sandbox)
            self.lifecycle.move(sandbox, State.FAILED, reason)
            self._removeContainer(sandbox)
            return
        if sandbox.state not in (State.RUNNING, State.DISCONNECTED, State.PAUSED):
            return
        self.log.warn("sandbox {sandbox} failed: {reason}", sandbox=sandbox.id, reason=reason)
        if sandbox.idle_since is None:
            sandbox.idle_since = self._reactor.seconds()
        paused = sandbox.state is State.PAUSED
        self.lifecycle.move(sandbox, State.FAILED, reason)
        if sandbox.connection is not None:
            sandbox.connection.abort(f"the sandbox failed: {reason}")
        self._containers.remove(sandbox, thaw=paused)

    def _removeContainer(self, sandbox):
        self._containers.remove(sandbox)

    # Events and health

    def events(self, after=0, limit=100, sandbox_id=None, identity=None):
        return self._store.events(after, limit, sandbox_id, identity)

    def health(self):
        return {
            "sandboxes": len(self._sandboxes),
            "pool": self.pools.status(),
        }
