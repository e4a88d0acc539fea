"""
Sandboxes as hardened Docker containers (runc, or gVisor's runsc).

Every Docker SDK call runs in a thread pool owned by the runtime, never on
the reactor thread.  Each public method is one trip to that pool, and uses
the SDK's low-level API client so a start is exactly three engine requests
(create, start, inspect).
"""

import threading

import docker
from docker import errors as docker_errors
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from sandboxd.runtimes._engine import Engine, engine_message, status
from sandboxd.runtimes.interface import (
    IRuntime,
    RuntimeFailure,
    RuntimeUnavailable,
    Started,
)

# Container runtime (as registered with dockerd) for each runtime name.
OCI_RUNTIMES = {"docker": None, "docker+gvisor": "runsc"}

MANAGED_LABEL = "sandboxd.managed"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
PIDS_LIMIT = 256
TMP_TMPFS = "rw,noexec,nosuid,nodev,size=100m"


@implementer(IRuntime)
class DockerRuntime:
    """
    Runs each sandbox as a locked-down container on a bridge network with
    inter-container communication disabled.  The agent listens on
    C{agent_port} at the container's bridge address; nothing is published on
    the host.
    """

    log = Logger()
    name = "docker"

    def __init__(
        self,
        reactor,
        bridge_name="sandboxd-net",
        agent_port=7070,
        client_factory=docker.from_env,
        max_threads=8,
    ):
        self._reactor = reactor
        self.bridge_name = bridge_name
        self.agent_port = agent_port
        self._client_factory = client_factory
        self._max_threads = max_threads
        self._engine = None
        self._shutdown_trigger = None

    # -- the thread pool -----------------------------------------------------

    def _call(self, work, *args):
        """
        Run C{work(api, *args)} in the pool with the SDK's low-level client;
        an unexpected error becomes a L{RuntimeFailure} with the engine's
        message.
        """
        if self._engine is None:
            self._engine = Engine(self._client_factory, self._max_threads)
            self._shutdown_trigger = self._reactor.addSystemEventTrigger(
                "before", "shutdown", self.stop
            )
        return deferToThreadPool(self._reactor, self._engine.pool, self._engine.run, work, args)

    def stop(self):
        """
        Stop the thread pool once running calls finish and close the client;
        fire when done.  A later call starts afresh.
        """
        engine, self._engine = self._engine, None
        if engine is None:
            return succeed(None)
        try:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
        except (ValueError, KeyError):
            pass  # We are that trigger, firing.
        done = Deferred()

        def join():
            # ThreadPool.stop joins the workers: not on the reactor thread.
            engine.close()
            self._reactor.callFromThread(done.callback, None)

        threading.Thread(target=join, name="sandboxd-docker-stop", daemon=True).start()
        return done

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
            info = await self._call(lambda api: api.info())
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
        await self._call(self._ensure_network)

    def _ensure_network(self, api):
        name = self.bridge_name
        for attempt in (1, 2):
            # The engine's name filter matches substrings.
            found = [n for n in api.networks(names=[name]) if n["Name"] == name]
            if found:
                options = api.inspect_network(found[0]["Id"]).get("Options") or {}
                if options.get(ICC_OPTION) != "false":
                    raise RuntimeUnavailable(
                        f"network {name} exists without {ICC_OPTION}=false: "
                        f"sandboxes on it could reach each other; remove it "
                        f"(docker network rm {name}) and restart"
                    )
                return
            try:
                api.create_network(
                    name,
                    driver="bridge",
                    options={ICC_OPTION: "false"},
                    labels={MANAGED_LABEL: "1"},
                    check_duplicate=True,
                )
                self.log.info("created network {network}", network=name)
                return
            except docker_errors.APIError as e:
                if status(e) != 409 or attempt == 2:
                    raise RuntimeUnavailable(
                        f"cannot create network {name}: {engine_message(e)}"
                    ) from e
                # Someone created it meanwhile: look again.

    def start(self, spec):
        """
        Create, start and inspect the sandbox's container; fire with
        L{Started} at its bridge address.  On any failure, remove what was
        created and fail with L{RuntimeFailure}.
        """
        if spec.runtime not in OCI_RUNTIMES:
            return fail(RuntimeUnavailable(f"unknown runtime {spec.runtime!r}"))
        return self._call(self._start, spec)

    def _start(self, api, spec):
        labels = {
            MANAGED_LABEL: "1",
            "sandboxd.id": spec.sandbox_id,
            "sandboxd.profile": spec.profile,
            "sandboxd.owner": spec.owner,
        }
        labels.update({f"sandboxd.label.{k}": str(v) for k, v in spec.labels.items()})
        host_config = api.create_host_config(
            read_only=True,
            tmpfs={
                "/tmp": TMP_TMPFS,
                # exec: users run what they build or install under /root.
                "/root": f"rw,exec,nosuid,nodev,size={spec.storage},mode=0700",
            },
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=PIDS_LIMIT,
            mem_limit=spec.memory,
            memswap_limit=spec.memory,
            nano_cpus=round(spec.cpu * 1e9),
            network_mode=self.bridge_name,
            runtime=OCI_RUNTIMES[spec.runtime],
            init=False,
            auto_remove=False,
            # What a sandbox prints on its console must not fill the host.
            log_config={"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}},
        )
        try:
            created = api.create_container(
                spec.image,
                name=f"sandboxd-{spec.sandbox_id}",
                hostname=spec.sandbox_id,
                environment={
                    "SANDBOX_AGENT_SECRET": spec.secret,
                    "SANDBOX_AGENT_PORT": str(self.agent_port),
                },
                labels=labels,
                host_config=host_config,
                networking_config=api.create_networking_config(
                    {self.bridge_name: api.create_endpoint_config()}
                ),
                stop_signal="SIGKILL",
            )
        except docker_errors.ImageNotFound as e:
            raise RuntimeUnavailable(
                f"image {spec.image} not found: build it with make images"
            ) from e
        except Exception as e:
            # Nothing of ours exists (a name conflict is someone else's).
            raise RuntimeFailure(
                f"cannot create sandbox {spec.sandbox_id}: {engine_message(e)}"
            ) from e
        container_id = created["Id"]
        try:
            api.start(container_id)
            state = api.inspect_container(container_id)
            ip = state["NetworkSettings"]["Networks"].get(self.bridge_name, {}).get("IPAddress")
            if not state["State"]["Running"] or not ip:
                raise RuntimeFailure(
                    f"sandbox {spec.sandbox_id} stopped at once "
                    f"(exit code {state['State']['ExitCode']}) {state['State']['Error']}".rstrip()
                )
        except Exception as e:
            self._remove_quietly(api, container_id)
            if isinstance(e, RuntimeFailure):
                raise
            raise RuntimeFailure(
                f"cannot start sandbox {spec.sandbox_id}: {engine_message(e)}"
            ) from e
        return Started(spec.sandbox_id, container_id, ip, self.agent_port)

    def _remove_quietly(self, api, container_id):
        try:
            api.remove_container(container_id, force=True, v=True)
        except Exception:
            self.log.failure("cannot remove failed container {container}", container=container_id)

    def destroy(self, container_id):
        """
        Force-remove the container and its anonymous volumes; a container
        that is already gone (or going) counts as removed.
        """
        return self._call(self._destroy, container_id)

    @staticmethod
    def _destroy(api, container_id):
        try:
            api.remove_container(container_id, force=True, v=True)
        except docker_errors.APIError as e:
            if status(e) == 404:
                return
            if status(e) == 409 and "already in progress" in engine_message(e):
                return
            raise RuntimeFailure(
                f"cannot remove container {container_id}: {engine_message(e)}"
            ) from e

    def list_owned(self):
        """
        Fire with [(container_id, labels)] for every container, in any state,
        labelled C{sandboxd.managed=1}.
        """
        return self._call(
            lambda api: [
                (c["Id"], c.get("Labels") or {})
                for c in api.containers(all=True, filters={"label": f"{MANAGED_LABEL}=1"})
            ]
        )

    def stats(self, container_id, one_shot=False):
        """
        Fire with the engine's raw stats dict for the container (one sample,
        not a stream).  By default the engine waits one cycle so
        C{precpu_stats} is filled; C{one_shot=True} answers at once without
        it.
        """
        return self._call(lambda api: api.stats(container_id, stream=False, one_shot=one_shot))
