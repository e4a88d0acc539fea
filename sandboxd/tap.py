"""
``twistd -n sandboxd``: options and service wiring.
"""

import os

import txaio
from twisted.application.service import MultiService
from twisted.python import usage
from twisted.web.server import Site

from sandboxd.api.app import SandboxAPI
from sandboxd.api.relaytap import RelayTap
from sandboxd.cluster.etcd import EtcdClient
from sandboxd.cluster.membership import Membership, describe_node, node_key
from sandboxd.config import ConfigError, load_config
from sandboxd.defaults import defaults_loader
from sandboxd.eventfeed import EventFeed
from sandboxd.listeners import ListenerError, listener_services
from sandboxd.egress.firewall import EgressFirewall
from sandboxd.egress.guard import EgressGuard
from sandboxd.manager import SandboxManager
from sandboxd.metrics import DaemonMetrics, MeteredResource
from sandboxd.reload import ConfigReloader, ReloadService, applier
from sandboxd.runtimes._disks import DiskCache
from sandboxd.runtimes.dispatch import RuntimeSet
from sandboxd.runtimes.docker import DockerRuntime
from sandboxd.runtimes.firecracker import FirecrackerRuntime
from sandboxd.runtimes.qemu import QemuRuntime
from sandboxd.service import ManagerService
from sandboxd.stats import SandboxStats
from sandboxd.store import Store, StoreError
from sandboxd.templates import builder_for, catalog_for
from sandboxd.volumes.registry import volumes_for
from sandboxd.tunnels import Tunnels
from sandboxd.tunnels.ingress import load_key
from sandboxd.tunnels.streaming import StreamingRequest


class QuietSite(Site):
    """
    A Site without per-request access logging (it costs more than a warm
    create does).
    """

    def log(self, request):
        pass


class Options(usage.Options):
    synopsis = "[--config PATH]"
    optParameters = [
        ["config", "c", None, "TOML configuration file (default: built-in defaults)"],
        ["relay-tap", None, None,
         "append every frame the sessions relay to this file (debugging: shows what the "
         "operator sees of a session, docs/security.md)"],
    ]

    def postOptions(self):
        try:
            self["loaded"] = load_config(self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e))


def egress_guard(reactor, config, store, runtime):
    """
    The guard of the sandboxes' egress (sandboxd/egress/): its rules are
    keyed by this daemon's data directory; its proxy listens on the Docker
    bridge's gateway.
    """
    owner = os.path.abspath(config.server.data_dir)

    async def bridge():
        engine = runtime.serving("docker").engine()
        network = await engine.call("GET", f"/networks/{config.network.bridge_name}")
        ipam = network["IPAM"]["Config"][0]
        return ipam["Gateway"], ipam["Subnet"]

    return EgressGuard(reactor, EgressFirewall(reactor, owner=owner), store, bridge=bridge)


def runtimes(config, reactor):
    """
    The runtimes the profiles choose from, behind one IRuntime.
    """
    docker = DockerRuntime(reactor, bridge_name=config.network.bridge_name)
    vm_images = sorted({p.image for p in config.profiles.values() if p.runtime == "qemu"})
    qemu = QemuRuntime(reactor, config.qemu, os.path.join(config.server.data_dir, "vm"),
                       images=vm_images)
    fc_disks = (qemu.disks if config.firecracker.rootfs_dir == config.qemu.disk_dir
                else DiskCache(reactor, config.firecracker.rootfs_dir))
    firecracker = FirecrackerRuntime(
        reactor, config.firecracker, os.path.join(config.server.data_dir, "fc"),
        config.qemu.initrd, fc_disks.path,
    )
    return RuntimeSet({"docker": docker, "docker+gvisor": docker, "qemu": qemu,
                       "firecracker": firecracker})


def cluster_membership(config, manager, templates, reactor):
    """The node's record in etcd (docs/deploy.md "Many hosts")."""
    cluster = config.cluster
    return Membership(EtcdClient(cluster.etcd, reactor), reactor,
                      node_key(cluster.prefix, config.server.node_id),
                      lambda: describe_node(config, manager, templates),
                      cluster.lease_ttl, cluster.refresh)


def makeService(options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    config = options["loaded"]
    # Autobahn logs every frame and connection at debug level; formatting
    # those costs more than relaying the frame.
    txaio.set_global_log_level("info")
    for directory in (config.server.data_dir, os.path.dirname(config.server.socket)):
        if directory:
            os.makedirs(directory, mode=0o750, exist_ok=True)
    runtime = runtimes(config, reactor)
    try:
        store = Store(config.server.data_dir)
    except StoreError as e:
        raise usage.UsageError(str(e))
    manager = SandboxManager(
        reactor, runtime, config, store, owner=os.path.abspath(config.server.data_dir),
        egress=egress_guard(reactor, config, store, runtime),
    )
    events = EventFeed(store, reactor)
    metrics = DaemonMetrics(reactor, manager, events, SandboxAPI.app.url_map)
    tunnels = Tunnels(reactor, store, config.limits, config.tunnels,
                      ingress_key=load_key(config.server.data_dir))
    manager.lifecycle.observe(tunnels)
    templates = catalog_for(reactor, config, runtime, manager, events)
    api = SandboxAPI(manager, config, reactor, stats=SandboxStats(runtime, reactor),
                     events=events, metrics=metrics, tunnels=tunnels, templates=templates,
                     builder=builder_for(runtime),
                     relay_tap=RelayTap(options["relay-tap"]) if options.get("relay-tap") else None,
                     volumes=volumes_for(reactor, store, config, manager))
    # Bodies are JSON: never parsed as form submissions (Twisted would answer
    # a malformed multipart body with an empty 400 before any route saw it).
    # Path-proxy bodies stream to the sandbox as they come (StreamingRequest).
    site = QuietSite(MeteredResource(api.resource(), metrics, reactor),
                     requestFactory=StreamingRequest, parsePOSTFormSubmission=False)
    site.displayTracebacks = False
    site.signedBodies = api.signedBodies
    top = MultiService()
    managing = ManagerService(manager, reactor)
    managing.setServiceParent(top)
    managing.ready.addCallback(lambda _: templates.start())
    if config.cluster.enabled:
        # Join once the adopted sandboxes are known: a router that sees the
        # record forwards to them.
        membership = cluster_membership(config, manager, templates, reactor)
        managing.ready.addCallback(lambda _: membership.setServiceParent(top))
    managing.ready.addErrback(lambda _: None)
    path = options["config"]
    reloader = ConfigReloader(path, config, applier(manager, api), events,
                              load=load_config if path else defaults_loader(runtime))
    ReloadService(reloader, reactor, reload_when=None if path else managing.ready
                  ).setServiceParent(top)
    try:
        listeners = listener_services(config, site, reactor)
    except ListenerError as e:
        raise usage.UsageError(str(e))
    for listener in listeners:
        listener.setServiceParent(top)
    return top
