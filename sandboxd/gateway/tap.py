"""
``twistd -n sandboxd-gateway --config gateway.toml``: options and wiring.
"""

from twisted.application import strports
from twisted.python import usage
from twisted.web.server import Site

from sandboxd.gateway.keys import GatewayConfigError, load_gateway_config
from sandboxd.gateway.proxy import Gateway


class Options(usage.Options):
    synopsis = "--config PATH"
    optParameters = [
        ["config", "c", None, "TOML configuration file (docs/multi-tenant.md)"],
    ]

    def postOptions(self):
        if not self["config"]:
            raise usage.UsageError("--config is required")
        try:
            self["loaded"] = load_gateway_config(self["config"])
        except GatewayConfigError as e:
            raise usage.UsageError(str(e))


def makeService(options, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    config = options["loaded"]
    site = Site(Gateway(config, reactor), parsePOSTFormSubmission=False)
    site.displayTracebacks = False
    return strports.service(config.listen, site)
