"""
Applying sandboxes' egress policies: when a sandbox is handed out (warm or
cold: a pooled sandbox was booted before its request was known, and the
rules are host-side, so they are put in place at claim time, before the
caller hears of the sandbox), after a restart (the recorded policies of the
adopted sandboxes again, every other sandbox's rules swept), and when its
container is gone (rules removed).
"""

import ipaddress
import socket

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from sandboxd.egress.firewall import chain_rules
from sandboxd.egress.policy import NONE, parse_network
from sandboxd.egress.proxy import EgressProxy
from sandboxd.egress.secrets import SecretVault
from sandboxd.runtimes._firewall import FirewallError

#: The resolvers dockerd's embedded DNS uses when the host names only
#: loopback ones (libnetwork's defaults).
DOCKER_DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")


class NetworkUnsupported(Exception):
    """
    A policy this sandbox's runtime cannot enforce; the message says why.
    """


class EgressFailed(Exception):
    """
    The rules could not be applied (iptables refused, a host name did not
    resolve); the sandbox is not handed out.
    """


def host_nameservers(path="/etc/resolv.conf"):
    """
    The IPv4 resolvers a container's DNS queries leave for: the host's own,
    without loopback ones (as dockerd picks them), else Docker's defaults.
    """
    servers = []
    try:
        with open(path) as handle:
            for line in handle:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    try:
                        address = ipaddress.IPv4Address(words[1])
                    except ValueError:
                        continue
                    if not address.is_loopback:
                        servers.append(str(address))
    except OSError:
        pass
    return tuple(servers) or DOCKER_DEFAULT_DNS


class EgressGuard:
    """
    Puts each sandbox's policy into C{firewall} (an L{EgressFirewall}) and
    records it in C{store} so a restarted daemon applies it again.
    C{resolve(host)} fires with the IPv4 addresses of a host name (by
    default getaddrinfo in the reactor's thread pool).
    """

    log = Logger()

    def __init__(self, reactor, firewall, store, resolve=None, nameservers=None, bridge=None):
        self._reactor = reactor
        self._firewall = firewall
        self._store = store
        self._resolve = resolve or self._getaddrinfo
        self._nameservers = nameservers
        #: ``bridge()`` fires with (gateway address, subnet) of the sandbox
        #: bridge, where the egress proxy listens (None: no secrets).
        self._bridge = bridge
        self.vault = SecretVault()
        self._proxy = None
        self._proxyAddress = None

    def _getaddrinfo(self, host):
        def lookup():
            found = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
            return sorted({entry[4][0] for entry in found})

        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), lookup)

    async def _rules(self, policy):
        allowed = []
        for rule in policy.rules:
            if rule.network is not None:
                allowed.append((rule.network, rule.port))
                continue
            try:
                addresses = await self._resolve(rule.host)
            except Exception as e:
                raise EgressFailed(f"cannot resolve {rule.host}: {e}") from e
            if not addresses:
                raise EgressFailed(f"{rule.host} has no IPv4 address")
            allowed.extend((f"{address}/32", rule.port) for address in addresses)
        dns = ()
        if policy.needs_dns:
            dns = self._nameservers if self._nameservers is not None else host_nameservers()
        return chain_rules(allowed, dns)

    @staticmethod
    def check(policy, runtime):
        """
        Refuse (L{NetworkUnsupported}) a policy the runtime cannot enforce:
        a VM runtime has no network device, so an allow list would reach
        nothing (``none`` holds there by construction).
        """
        if runtime in ("qemu", "firecracker") and policy.rules:
            raise NetworkUnsupported(
                f"runtime {runtime} gives sandboxes no network device: an allow list "
                f"cannot be honoured (use \"none\" or \"open\", both mean no network there)")

    async def apply(self, sandbox, policy):
        """
        Enforce C{policy} on the sandbox (nothing for ``open``), and record it.
        """
        self.check(policy, sandbox.runtime)
        sandbox.network = policy
        if policy.is_open or sandbox.address is None:
            if getattr(sandbox, "secret_names", ()):
                self._record(sandbox)
            return
        try:
            await self._firewall.apply(sandbox.id, sandbox.address, await self._rules(policy))
        except FirewallError as e:
            raise EgressFailed(f"cannot apply the egress rules of {sandbox.id}: {e}") from e
        self._record(sandbox)

    def _record(self, sandbox):
        self._store.putNetwork(sandbox.id, {"network": sandbox.network.toJSON(),
                                            "secrets": list(sandbox.secret_names)})

    def checkSecrets(self, specs, runtime):
        """
        Refuse (L{NetworkUnsupported}) secrets where no proxy can carry them.
        """
        if not specs:
            return
        if self._bridge is None:
            raise NetworkUnsupported("this daemon runs no egress proxy: secrets refused")
        if runtime in ("qemu", "firecracker"):
            raise NetworkUnsupported(f"runtime {runtime} gives sandboxes no network "
                                     "device: secrets would have nowhere to go")

    async def grant(self, sandbox, specs):
        """
        Hold the sandbox's secrets ({name: SecretSpec}) and let it reach the
        egress proxy; return the environment it gets: each name with its
        placeholder, ``SANDBOX_EGRESS_PROXY`` (HOST:PORT) and ``http_proxy``.
        """
        if not specs:
            return {}
        self.checkSecrets(specs, sandbox.runtime)
        try:
            gateway, port = await self._listening()
            await self._firewall.open_proxy(sandbox.id, sandbox.address, gateway, port)
        except Exception as e:
            raise EgressFailed(f"cannot start the egress proxy for {sandbox.id}: {e}") from e
        env = self.vault.grant(sandbox.id, specs)
        sandbox.secret_names = tuple(sorted(specs))
        self._proxy.admit(sandbox)
        self._record(sandbox)
        # net.fetch uses SANDBOX_EGRESS_PROXY for http and https; user
        # processes honour http_proxy for plain http (their https goes direct,
        # placeholders unreplaced: the proxy cannot read inside TLS).
        url = f"http://{gateway}:{port}"
        return dict(env, SANDBOX_EGRESS_PROXY=f"{gateway}:{port}", http_proxy=url, HTTP_PROXY=url)

    async def _listening(self):
        if self._proxy is None:
            gateway, subnet = await self._bridge()
            proxy = EgressProxy(self._reactor, self.vault, self._resolve)
            proxy.forbid(subnet)
            port = proxy.listen(gateway)
            self._proxy, self._proxyAddress = proxy, (gateway, port)
        return self._proxyAddress

    def release(self, sandbox):
        """
        The sandbox's container is gone: remove its rules (in the background).
        """
        self.vault.drop(sandbox.id)
        if self._proxy is not None:
            self._proxy.forget(sandbox)
        policy = getattr(sandbox, "network", None)
        if sandbox.address is None or (
                (policy is None or policy.is_open) and not sandbox.secret_names):
            return
        done = Deferred.fromCoroutine(self._firewall.remove(sandbox.id))
        done.addErrback(lambda f: self.log.failure(
            "cannot remove the egress rules of {sandbox}", f, sandbox=sandbox.id))

    async def adopt(self, sandboxes):
        """
        After a restart: apply the recorded policy of each adopted sandbox
        again and sweep every other sandbox's rules.
        """
        recorded = self._store.networks()
        kept = []
        for sandbox in sandboxes:
            written = recorded.get(sandbox.id)
            if written is None:
                continue
            policy = parse_network(written["network"])
            sandbox.secret_names = tuple(written["secrets"])
            if sandbox.secret_names:
                # Their values were in the old process's memory only.
                self.log.warn("sandbox {sandbox} lost its secrets in the restart",
                              sandbox=sandbox.id)
                await self._lose(sandbox)
            try:
                await self.apply(sandbox, policy)
                kept.append(sandbox.id)
            except Exception as e:
                # Fail closed: a sandbox whose rules are lost cannot stay.
                self.log.error("egress rules of {sandbox} not restored: {error}",
                               sandbox=sandbox.id, error=e)
                sandbox.network = parse_network(NONE)
                try:
                    await self._firewall.apply(sandbox.id, sandbox.address, chain_rules([]))
                    kept.append(sandbox.id)
                except Exception:
                    self.log.failure("cannot isolate {sandbox}", sandbox=sandbox.id)
        await self._firewall.sweep(kept)

    async def _lose(self, sandbox):
        """
        An adopted sandbox's secrets are gone: its net.fetch goes direct
        again (its placeholders leave unreplaced), and says so if it asks
        the proxy.
        """
        try:
            await sandbox.connection.call(
                "env.delete", {"names": ["SANDBOX_EGRESS_PROXY", "http_proxy", "HTTP_PROXY"]})
        except Exception:
            self.log.failure("cannot tell {sandbox} its proxy is gone", sandbox=sandbox.id)
