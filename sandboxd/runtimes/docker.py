"""
Sandboxes as hardened Docker containers (runc, or gVisor's runsc).

The runtime speaks the Engine API itself, asynchronously on the reactor
(L{sandboxd.runtimes._engine}): no SDK, no threads competing with the
reactor for the GIL.  A start is exactly three engine requests (create,
start, inspect), and at most a few starts run at once; starts and removals
begin after the reactor's next pass over I/O, so the API response that
caused them leaves first.
"""

import json
import os

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredSemaphore,
    fail,
    succeed,
)
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from sandboxd.protocols.endpoints import tcp_endpoint
from sandboxd.runtimes._container import MANAGED_LABEL, OCI_RUNTIMES, container_config
from sandboxd.runtimes._engine import (
    DEFAULT_TIMEOUT,
    EngineClient,
    EngineError,
    path_part,
    socket_path,
)
from sandboxd.runtimes._events import ContainerWatch
from sandboxd.runtimes._firewall import FirewallError, HostFirewall, bridge_interface
from sandboxd.runtimes.interface import (
    IRuntime,
    RuntimeFailure,
    RuntimeUnavailable,
    Started,
)

ICC_OPTION = "com.docker.network.bridge.enable_icc"
# Container starts in flight at once; more wait their turn.
MAX_STARTING = 4
# Tries of a pause the freezer gave up on (its tasks forked too fast).
FREEZE_ATTEMPTS = 4
# Seconds a destroyed sandbox's (killed) container may wait for starts to
# finish before it is removed.
MAX_REMOVAL_DELAY = 30.0


@implementer(IRuntime)
class DockerRuntime:
    """
    Runs each sandbox as a locked-down container on a bridge network with
    inter-container communication disabled.  The agent listens on
    C{agent_port} at the container's bridge address; nothing is published on
    the host.

    The engine is reached at C{socket_path} (by default C{DOCKER_HOST}'s
    Unix socket, or C{/var/run/docker.sock}), or through C{http}, an object
    with treq's C{request} method, which tests inject.  Every engine call
    gives up after C{timeout} seconds; at most C{max_starting} starts run at
    once, the others wait their turn.

    C{firewall} (a L{HostFirewall}) keeps the bridge's containers from
    opening connections to the host; by default iptables, except when
    C{http} is injected (tests of the engine protocol), where it is off
    unless given.
    """

    log = Logger()
    name = "docker"

    def __init__(
        self,
        reactor,
        bridge_name="sandboxd-net",
        agent_port=7070,
        socket_path=None,
        http=None,
        timeout=DEFAULT_TIMEOUT,
        max_starting=MAX_STARTING,
        firewall=None,
    ):
        self._reactor = reactor
        self.bridge_name = bridge_name
        self.agent_port = agent_port
        self._socket_path = socket_path
        self._http = http
        self._timeout = timeout
        self._starting = DeferredSemaphore(max_starting)
        self._engine = None
        self._shutdown_trigger = None
        if firewall is None and http is None:
            firewall = HostFirewall(reactor)
        self.firewall = firewall

    # -- the engine ----------------------------------------------------------

    def _client(self):
        """
        The engine client, made at first use (and again after L{stop}).
        """
        if self._engine is None:
            if self._http is not None:
                self._engine = EngineClient(self._reactor, self._http, timeout=self._timeout)
            else:
                path = self._socket_path or socket_path(os.environ)
                self._engine = EngineClient.over_unix_socket(
                    self._reactor, path, timeout=self._timeout
                )
            self._shutdown_trigger = self._reactor.addSystemEventTrigger(
                "before", "shutdown", self.stop
            )
        return self._engine

    def _call(self, method, path, params=None, body=None):
        """
        Fire with the engine's JSON answer; fail with L{EngineError},
        L{RuntimeUnavailable} or L{RuntimeFailure}.
        """
        try:
            engine = self._client()
        except RuntimeFailure as e:
            return fail(e)
        return engine.call(method, path, params, body)

    def _after_io(self):
        """
        Fire after the reactor's next pass over I/O.

        start() and destroy() are mostly called from an API handler (a claim
        refilling the warm pool, a DELETE): building and writing the engine
        request there would delay the handler's response, which the reactor
        writes only on its next pass.  The first call runs before that pass,
        the second after it.
        """
        d = Deferred()
        self._reactor.callLater(0, self._reactor.callLater, 0, d.callback, None)
        return d

    def stop(self):
        """
        Close the engine connections once running calls finish; fire when
        done.  A later call connects afresh.
        """
        engine, self._engine = self._engine, None
        if engine is None:
            return succeed(None)
        try:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
        except (ValueError, KeyError):
            pass  # We are that trigger, firing.
        return engine.close()

    # -- IRuntime ------------------------------------------------------------

    def prepare(self, runtimes):
        """
        Check the engine answers, that every runtime name is one we serve
        (with runsc registered for docker+gvisor), and create the bridge
        network if it is missing.
        """
        return Deferred.fromCoroutine(self._prepare(set(runtimes)))

    async def _prepare(self, runtimes):
        unknown = sorted(runtimes - set(OCI_RUNTIMES))
        if unknown:
            raise RuntimeUnavailable(
                f"unknown runtime {unknown[0]!r}: the Docker runtime serves "
                + ", ".join(sorted(OCI_RUNTIMES))
            )
        try:
            info = await self._call("GET", "/info")
        except RuntimeUnavailable:
            raise
        except Exception as e:
            raise RuntimeUnavailable(f"cannot reach the Docker engine: {e}") from e
        registered = info.get("Runtimes") or {}
        for runtime in sorted(runtimes):
            oci = OCI_RUNTIMES[runtime]
            if oci is not None and oci not in registered:
                raise RuntimeUnavailable(
                    f"runtime {runtime} needs the {oci!r} runtime registered with "
                    f"dockerd (docker info lists: {', '.join(sorted(registered))})"
                )
        network = await self._ensure_network()
        if self.firewall is not None:
            try:
                await self.firewall.isolate(bridge_interface(network))
            except FirewallError as e:
                raise RuntimeUnavailable(
                    f"cannot keep sandboxes from connecting to the host: {e}"
                    " (sandboxd needs root and iptables)"
                ) from e

    async def _ensure_network(self):
        """
        Fire with the engine's inspect object of the bridge network, made
        if missing.
        """
        name = self.bridge_name
        for attempt in (1, 2):
            try:
                found = await self._call("GET", f"/networks/{path_part(name)}")
            except EngineError as e:
                if e.status != 404:
                    raise RuntimeUnavailable(
                        f"cannot inspect network {name}: {e.message}"
                    ) from e
                found = None
            # The engine also resolves ids and id prefixes: insist on the name.
            if found is not None and found.get("Name") == name:
                options = found.get("Options") or {}
                if options.get(ICC_OPTION) != "false":
                    raise RuntimeUnavailable(
                        f"network {name} exists without {ICC_OPTION}=false: "
                        f"sandboxes on it could reach each other; remove it "
                        f"(docker network rm {name}) and restart"
                    )
                return found
            body = {
                "Name": name,
                "Driver": "bridge",
                "Options": {ICC_OPTION: "false"},
                "Labels": {MANAGED_LABEL: "1"},
                "CheckDuplicate": True,
            }
            try:
                created = await self._call("POST", "/networks/create", body=body)
            except EngineError as e:
                if e.status != 409 or attempt == 2:
                    raise RuntimeUnavailable(f"cannot create network {name}: {e.message}") from e
                continue  # Someone created it meanwhile: look again.
            self.log.info("created network {network}", network=name)
            return dict(body, Id=created["Id"])

    def start(self, spec):
        """
        Create, start and inspect the sandbox's container; fire with
        L{Started} at its bridge address.  On any failure, remove what was
        created and fail with L{RuntimeFailure}.
        """
        if spec.runtime not in OCI_RUNTIMES:
            return fail(RuntimeUnavailable(f"unknown runtime {spec.runtime!r}"))
        return Deferred.fromCoroutine(self._start_in_turn(spec))

    async def _start_in_turn(self, spec):
        await self._after_io()
        async with self._starting:
            return await self._start(spec)

    async def _start(self, spec):
        name = f"sandboxd-{spec.sandbox_id}"
        try:
            created = await self._call(
                "POST",
                "/containers/create",
                params={"name": name},
                body=container_config(spec, self.bridge_name, self.agent_port),
            )
        except EngineError as e:
            if e.status == 404 and "No such image" in e.message:
                raise RuntimeUnavailable(
                    f"image {spec.image} not found: build it with make images"
                ) from e
            # Nothing of ours exists (a name conflict is someone else's).
            raise RuntimeFailure(f"cannot create sandbox {spec.sandbox_id}: {e.message}") from e
        except RuntimeFailure as e:
            # No answer: the engine may have made it all the same.
            await self._remove_quietly(name)
            kind = RuntimeUnavailable if isinstance(e, RuntimeUnavailable) else RuntimeFailure
            raise kind(f"cannot create sandbox {spec.sandbox_id}: {e}") from e
        container_id = created["Id"]
        try:
            await self._call("POST", f"/containers/{path_part(container_id)}/start")
            state = await self._call("GET", f"/containers/{path_part(container_id)}/json")
            ip = state["NetworkSettings"]["Networks"].get(self.bridge_name, {}).get("IPAddress")
            if not state["State"]["Running"] or not ip:
                raise RuntimeFailure(
                    f"sandbox {spec.sandbox_id} stopped at once "
                    f"(exit code {state['State']['ExitCode']}) {state['State']['Error']}".rstrip()
                )
        except Exception as e:
            await self._remove_quietly(container_id)
            if isinstance(e, EngineError):
                raise RuntimeFailure(
                    f"cannot start sandbox {spec.sandbox_id}: {e.message}"
                ) from e
            if isinstance(e, (RuntimeFailure, CancelledError)):
                raise
            raise RuntimeFailure(f"cannot start sandbox {spec.sandbox_id}: {e}") from e
        return Started(
            spec.sandbox_id, container_id, tcp_endpoint(ip, self.agent_port), address=ip
        )

    async def _remove_quietly(self, container):
        try:
            await self._remove(container)
        except Exception:
            self.log.failure("cannot remove failed container {container}", container=container)

    async def _remove(self, container):
        try:
            await self._call(
                "DELETE", f"/containers/{path_part(container)}", params={"force": "1", "v": "1"}
            )
        except EngineError as e:
            if e.status == 404:
                return
            if e.status == 409 and "already in progress" in e.message:
                return
            raise RuntimeFailure(f"cannot remove container {container}: {e.message}") from e

    def destroy(self, container_id):
        """
        Kill the container now, then remove it and its anonymous volumes
        once no start is under way (at most C{MAX_REMOVAL_DELAY} seconds
        later): under a burst of claims the engine's time goes to the warm
        pool's refills first.  A container that is already gone (or going)
        counts as removed.
        """
        return Deferred.fromCoroutine(self._destroy(container_id))

    async def _destroy(self, container_id):
        await self._after_io()
        if self._starts_busy():
            try:
                await self._call("POST", f"/containers/{path_part(container_id)}/kill")
            except EngineError as e:
                if e.status not in (404, 409):
                    raise RuntimeFailure(
                        f"cannot kill container {container_id}: {e.message}"
                    ) from e
            give_up = self._reactor.seconds() + MAX_REMOVAL_DELAY
            while self._starts_busy() and self._reactor.seconds() < give_up:
                await deferLater(self._reactor, 0.1, lambda: None)
        await self._remove(container_id)

    def _starts_busy(self):
        return bool(self._starting.waiting) or self._starting.tokens < self._starting.limit

    def engine(self):
        """
        The engine client (not part of IRuntime: templates bake images
        through it, sandboxd/templates/).
        """
        return self._client()

    def images_present(self, names):
        """
        Fire with the subset of the image references ``names`` the engine
        has (not part of IRuntime: the built-in default profiles use it).
        """
        return Deferred.fromCoroutine(self._images_present(set(names)))

    async def _images_present(self, names):
        images = await self._call("GET", "/images/json")
        tags = {tag for image in images or [] for tag in image.get("RepoTags") or []}
        return names & tags

    def list_owned(self):
        """
        Fire with [(container_id, labels)] for every container, in any state,
        labelled C{sandboxd.managed=1}.
        """
        return Deferred.fromCoroutine(self._list_owned())

    async def _list_owned(self):
        containers = await self._call(
            "GET",
            "/containers/json",
            params={"all": "1", "filters": json.dumps({"label": [f"{MANAGED_LABEL}=1"]})},
        )
        return [(c["Id"], c.get("Labels") or {}) for c in containers or []]

    def watch(self, callback):
        """
        Call C{callback(container_id, action)} when one of our containers
        dies or is paused; return the watch (C{stop()} ends it).
        """
        return ContainerWatch(
            self._reactor, self._client(), callback, f"{MANAGED_LABEL}=1"
        )

    def pause(self, container_id):
        """
        Freeze the container (the engine's pause: the cgroup freezer under
        runc, the Sentry stopped under gVisor).
        """
        return Deferred.fromCoroutine(self._freeze(container_id, "pause", "is already paused"))

    def resume(self, container_id):
        """
        Thaw the container; one that is not paused counts as resumed.
        """
        return Deferred.fromCoroutine(self._freeze(container_id, "unpause", "is not paused"))

    async def _freeze(self, container_id, action, done_already):
        for attempt in range(FREEZE_ATTEMPTS):
            try:
                await self._call("POST", f"/containers/{path_part(container_id)}/{action}")
                return
            except EngineError as e:
                if e.status == 409 and done_already in e.message:
                    return
                # The cgroup v1 freezer gives up on tasks forking fast.
                if "unable to freeze" not in e.message or attempt == FREEZE_ATTEMPTS - 1:
                    raise RuntimeFailure(
                        f"cannot {action} container {container_id}: {e.message}") from e
            await deferLater(self._reactor, 0.1 * (attempt + 1), lambda: None)

    def stats(self, container_id, one_shot=False):
        """
        Fire with the engine's raw stats dict for the container (one sample,
        not a stream).  By default the engine waits one cycle so
        C{precpu_stats} is filled; C{one_shot=True} answers at once without
        it.
        """
        params = {"stream": "0"}
        if one_shot:
            params["one-shot"] = "1"
        return self._call("GET", f"/containers/{path_part(container_id)}/stats", params=params)

