"""
Keep sandboxes off the host itself.

Docker lets a container open connections to every address of the host (the
bridge's gateway, the host's other interfaces): any service listening on all
addresses, the daemon's own TCP API among them, would be a sandbox's to use.
L{HostFirewall} drops, in the host's INPUT chain, every packet arriving from
the sandbox bridge except answers to connections the host opened (the
daemon's agent connections, tunnels).  Traffic from sandboxes to elsewhere
(Docker's FORWARD path) is untouched.

The rules live in a chain of their own, C{SANDBOXD-INPUT}, jumped to from
the top of INPUT; installing is idempotent (each rule is checked before it
is added), and L{HostFirewall.release} removes one bridge's rules.
"""

from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger

CHAIN = "SANDBOXD-INPUT"


class FirewallError(Exception):
    """
    iptables is missing or refused a rule; the message says which.
    """


def rules(interface):
    """
    The rules of C{CHAIN} for one bridge interface, in order.
    """
    return [
        ["-i", interface, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-i", interface, "-j", "DROP"],
    ]


class HostFirewall:
    """
    iptables rules that keep a bridge's containers from opening connections
    to the host.  C{run(args)} runs iptables with C{args} and fires with
    (stdout, stderr, exit code); by default the real C{iptables}, off the
    reactor's thread.
    """

    log = Logger()

    def __init__(self, reactor, run=None, binary="iptables"):
        self._reactor = reactor
        self._binary = binary
        self._run = run or self._spawn

    def _spawn(self, args):
        return getProcessOutputAndValue(
            self._binary, ["-w", *args], env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"},
            reactor=self._reactor,
        )

    async def _iptables(self, args):
        try:
            out, err, code = await self._run(args)
        except OSError as e:
            raise FirewallError(f"cannot run {self._binary}: {e}") from e
        return code, err.decode(errors="replace").strip()

    async def _ensure(self, check, add):
        code, _ = await self._iptables(["-C", *check])
        if code == 0:
            return
        code, err = await self._iptables(add)
        if code != 0:
            raise FirewallError(f"{self._binary} {' '.join(add)}: {err or f'exit {code}'}")

    async def isolate(self, interface):
        """
        Drop new connections from C{interface} to the host.
        """
        code, err = await self._iptables(["-N", CHAIN])
        if code != 0 and "exists" not in err:
            raise FirewallError(f"{self._binary} -N {CHAIN}: {err or f'exit {code}'}")
        for rule in rules(interface):
            await self._ensure([CHAIN, *rule], ["-A", CHAIN, *rule])
        await self._ensure(["INPUT", "-j", CHAIN], ["-I", "INPUT", "1", "-j", CHAIN])
        self.log.info("connections from {interface} to the host are dropped", interface=interface)

    async def release(self, interface):
        """
        Remove C{interface}'s rules (the chain and its jump stay).
        """
        for rule in rules(interface):
            code, _ = await self._iptables(["-C", CHAIN, *rule])
            if code == 0:
                await self._iptables(["-D", CHAIN, *rule])


def bridge_interface(network):
    """
    The host interface of a Docker bridge network (its engine inspect
    object): the name given as an option, else Docker's C{br-<id prefix>}.
    """
    options = network.get("Options") or {}
    return options.get("com.docker.network.bridge.name") or f"br-{network['Id'][:12]}"
