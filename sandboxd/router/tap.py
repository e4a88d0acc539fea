"""
``twistd -n sandboxd-router --config router.toml``: options and wiring.
"""

from twisted.application import strports
from twisted.application.service import MultiService, Service
from twisted.python import usage
from twisted.web.server import Site

from sandboxd.cluster.etcd import EtcdClient
from sandboxd.router.app import Router
from sandboxd.router.config import RouterConfigError, load_router_config
from sandboxd.router.directory import NodeDirectory
from sandboxd.router.forward import Forwarder
from sandboxd.router.metrics import RouterMetrics


class Options(usage.Options):
    synopsis = "--config PATH"
    optParameters = [
        ["config", "c", None, "TOML configuration file (docs/deploy.md)"],
    ]

    def postOptions(self):
        if not self["config"]:
            raise usage.UsageError("--config is required")
        try:
            self["loaded"] = load_router_config(self["config"])
        except RouterConfigError as e:
            raise usage.UsageError(str(e))


class DirectoryService(Service):
    """Reads the node records while the router runs."""

    def __init__(self, directory, etcd, forwarder):
        self._directory = directory
        self._etcd = etcd
        self._forwarder = forwarder

    def startService(self):
        super().startService()
        self._directory.start()

    def stopService(self):
        super().stopService()
        self._directory.stop()
        self._forwarder.close()
        return self._etcd.close()


class QuietSite(Site):
    """No access log line per request (it costs more than forwarding)."""

    def log(self, request):
        pass


def router_resource(config, reactor):
    """(Router resource, NodeDirectory, Forwarder, etcd client) for ``config``."""
    etcd = EtcdClient(list(config.etcd), reactor)
    directory = NodeDirectory(etcd, reactor, config.prefix, config.poll)
    forwarder = Forwarder(reactor, config.connect_timeout, config.node_ca)
    directory.observe(forwarder)
    router = Router(directory, forwarder, RouterMetrics(directory), reactor)
    return router, directory, forwarder, etcd


def makeService(options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    config = options["loaded"]
    router, directory, forwarder, etcd = router_resource(config, reactor)
    site = QuietSite(router, parsePOSTFormSubmission=False)
    site.displayTracebacks = False
    top = MultiService()
    DirectoryService(directory, etcd, forwarder).setServiceParent(top)
    strports.service(config.listen, site).setServiceParent(top)
    return top
